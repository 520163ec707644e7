import json

import pytest
import torch

from modelprint.errors import ModelFileError
from modelprint.models import create_model, load_model, save_model


def test_round_trip_is_bit_exact(fresh, tmp_path):
    path = save_model(fresh, tmp_path / "m")
    loaded = load_model(path)
    for (k, a), (k2, b) in zip(fresh.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(5, *fresh.card.input_shape)
    assert torch.equal(fresh.eval()(x), loaded(x))
    assert loaded.card.weights_sha256 == fresh.card.weights_sha256 and len(loaded.card.weights_sha256) == 64
    assert loaded.card.accuracy == fresh.card.accuracy and loaded.card.split == "owner"


def test_saving_twice_gives_the_same_bytes(fresh, tmp_path):
    save_model(fresh, tmp_path / "a")
    save_model(fresh, tmp_path / "b")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_tampered_weights_are_detected(fresh, tmp_path):
    path = save_model(fresh, tmp_path / "m")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(path)


def test_card_that_does_not_fit_the_weights(fresh, tmp_path):
    path = save_model(fresh, tmp_path / "m")
    card = json.loads(path.with_suffix(".json").read_text())
    card["arch_args"] = {"width": 16}
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="does not fit its card"):
        load_model(path)


def test_missing_and_corrupt_files(fresh, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nothing.safetensors")
    path = save_model(fresh, tmp_path / "m")
    card = json.loads(path.with_suffix(".json").read_text())
    card["weights_sha256"] = ""
    path.with_suffix(".json").write_text(json.dumps(card))
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(path)
    path.with_suffix(".json").write_text("{broken")
    with pytest.raises(ModelFileError, match="JSON"):
        load_model(path)


def test_a_tiny_weights_file_whose_card_asks_for_a_huge_model_is_refused_before_allocation(tmp_path):
    """Measured in a fresh process: the peak memory stays near an idle interpreter's."""
    import subprocess
    import sys
    import textwrap

    from safetensors.torch import save

    (tmp_path / "m.safetensors").write_bytes(save({"x": torch.zeros(1)}))
    card = create_model("cnn", num_classes=10, input_shape=(1, 8, 8), width=4).card
    card.arch_args = {"width": 2048, "depth": 4}
    (tmp_path / "m.json").write_text(card.to_json())
    code = textwrap.dedent(
        f"""
        import resource, torch
        from modelprint.errors import ModelFileError
        from modelprint.models import load_model
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_model({str(tmp_path / "m")!r})
        except ModelFileError as e:
            print("refused:", e)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split("\n")
    assert out[0].startswith("refused:") and "does not fit its card" in out[0]
    assert int(out[1]) < 100  # MB of peak growth; building the model for real takes gigabytes
