"""Reference screening: the kept queries are the ones the selection models follow least, and the
models that chose them can never calibrate them."""

import numpy as np
import pytest

from modelprint.calibrate import calibrate
from modelprint.errors import CalibrationError, ParameterError
from modelprint.fingerprints import create_method
from modelprint.screening import agreement_rates, screen, split_references


@pytest.fixture(scope="module")
def candidates(source):
    return create_method("c", steps=30).generate(source, n=40, seed=0, progress=False)


def test_the_split_puts_one_of_each_pair_on_each_side_and_is_seeded(negatives):
    selection, null = split_references(negatives, seed=0)
    assert len(selection) == len(null) == 3 and not {id(m) for m in selection} & {id(m) for m in null}
    for first, second in zip(negatives[0::2], negatives[1::2]):
        assert (first in selection) != (second in selection)
    assert split_references(negatives, seed=0) == (selection, null)
    seven = [*negatives, negatives[0]]
    assert len(split_references(seven, seed=1)[1]) == 4  # an odd last model fits the null
    with pytest.raises(ParameterError, match="at least 4"):
        split_references(negatives[:3])


def test_screening_keeps_the_queries_the_selection_follows_least(candidates, negatives):
    selection, _ = split_references(negatives, seed=0)
    rates = agreement_rates(candidates, selection)
    kept = screen(candidates, selection, keep=10)
    record = kept.meta["screening"]
    assert len(kept) == 10 and record["candidates"] == 40 and len(record["selection_sha256"]) == 3
    # the ten lowest rates (ties: the earlier query), in their original order
    order = np.sort(np.argsort(rates, kind="stable")[:10])
    assert np.array_equal(kept.x.numpy(), candidates.x[order].numpy())
    assert np.array_equal(kept.y.numpy(), candidates.y[order].numpy())
    assert record["kept_agreement"] == pytest.approx(rates[order].mean())
    assert record["kept_agreement"] <= record["candidate_agreement"]
    assert record["kept_agreement_max"] <= np.sort(rates)[10]
    for name, tensor in candidates.extra.items():
        if tensor.ndim and len(tensor) == len(candidates):
            assert np.array_equal(kept.extra[name].numpy(), tensor[order].numpy()), name


def test_the_models_that_chose_the_queries_cannot_calibrate_them(candidates, negatives):
    selection, null = split_references(negatives, seed=0)
    kept = screen(candidates, selection, keep=10)
    with pytest.raises(CalibrationError, match="chose this fingerprint's queries"):
        calibrate(kept, [*null, selection[0]])
    calibrated = calibrate(kept, null)
    assert calibrated.meta["null"]["n_models"] == 3 and calibrated.meta["screening"] == kept.meta["screening"]


def test_only_per_query_agreement_is_screened(source, negatives):
    fp = create_method("weight-cosine").generate(source, progress=False)
    with pytest.raises(ParameterError, match="only per-query agreement"):
        screen(fp, negatives[:3], keep=1)


def test_calibrate_screens_from_the_command_line(source, negatives, tmp_path, capsys):
    import json

    from cli_run import run

    from modelprint.models import save_model

    src = save_model(source, tmp_path / "src")
    for i, model in enumerate(negatives):
        save_model(model, tmp_path / "refs" / f"reference-{i:02d}")
    fp = tmp_path / "c.fp.safetensors"
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=20", "--n", "20", "--seed", "0"]
    assert run([*args, "--out", str(fp)], capsys)[0] == 0
    calibrate_args = ["fingerprint", "calibrate", str(fp), "--negatives", str(tmp_path / "refs"), "--screen", "10"]
    code, _, err = run([*calibrate_args, "--out", str(fp)], capsys)
    assert code == 0, err
    assert "screened: kept 10 of 20 queries, the ones 3 reference models follow least" in " ".join(err.split())
    code, out, _ = run(["fingerprint", "show", str(fp), "--json"], capsys)
    shown = json.loads(out)
    assert shown["queries"] == 10 and shown["null"]["n_models"] == 3 and shown["screening"]["split_seed"] == 0
    code, _, err = run([*args, "--screen", "10", "--out", str(tmp_path / "x.fp")], capsys)
    assert code == 2 and "--screen chooses queries with a reference set" in err and err.count("\n") == 1
