import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.characteristic import NoisyGradient
from modelprint.models import create_model, weights_digest

FAST = {"steps": 60, "alpha": 0.02}


def test_generation_is_deterministic_per_seed(source):
    a = create_method("ltrc", **FAST).generate(source, n=12, seed=5, progress=False)
    b = create_method("ltrc", **FAST).generate(source, n=12, seed=5, progress=False)
    c = create_method("ltrc", **FAST).generate(source, n=12, seed=6, progress=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_c_examples_reach_their_targets_on_the_source(source):
    fp = create_method("c", steps=300).generate(source, n=30, seed=0, progress=False)
    assert torch.equal(fp.y, fp.extra["target"]), "every C-example should be classified as its target"
    assert fp.meta["target_hit_rate"] == 1.0
    assert fp.x.min() >= 0 and fp.x.max() <= 1 and fp.x.shape == (30, 1, 8, 8)


def test_examples_leave_the_batch_once_under_eta(source):
    import torch.nn.functional as F

    fp = create_method("c", steps=300, eta=1e-2, final_clip=False).generate(source, n=30, seed=0, progress=False)
    steps = fp.extra["steps"]
    assert fp.meta["forward_backward_examples"] == int(steps.sum()) + int((steps < 300).sum())
    stopped = steps < 300
    assert stopped.sum() >= 10, "with eta = 0.01 many examples should stop early"
    loss = F.cross_entropy(source(fp.x), fp.extra["target"], reduction="none")
    assert loss[stopped].max() < 1e-2, "an example left the batch before its loss fell under eta"


def test_generation_leaves_the_model_unchanged(fresh):
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    create_method("rcgm", steps=5, q=3).generate(fresh, n=4, seed=0, progress=False)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in fresh.parameters())


@pytest.mark.parametrize("arch,args", [("cnn", {"width": 4}), ("resnet18", {"width": 4, "depth": 2})])
def test_gm_vmap_equals_loop(arch, args):
    model = create_model(arch, num_classes=10, input_shape=(3, 8, 8), seed=0, **args).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, t = torch.rand(6, 3, 8, 8), torch.randint(0, 10, (6,))
    grads = {}
    for mode in ("loop", "vmap"):
        g = torch.Generator().manual_seed(11)
        fn = NoisyGradient(model, delta=0.02, q=4, mode=mode, generator=g)
        grads[mode] = fn(x, t)
        fn.restore()
    torch.testing.assert_close(grads["vmap"][0], grads["loop"][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads["vmap"][1], grads["loop"][1], rtol=1e-5, atol=1e-6)
    # Noise matters: a different generator state gives a different gradient.
    other = NoisyGradient(model, delta=0.02, q=4, mode="loop", generator=torch.Generator().manual_seed(12))(x, t)
    assert not torch.allclose(other[0], grads["loop"][0])


def test_gm_generation_agrees_between_implementations(source):
    # Same memory format on both sides: channels-last convolutions round differently, and sign()
    # turns rounding differences of near-zero gradients into whole steps.
    loop = create_method("rcgm", steps=20, q=3, gm="loop", channels_last=False).generate(
        source, n=8, seed=1, progress=False
    )
    vmap = create_method("rcgm", steps=20, q=3, gm="vmap").generate(source, n=8, seed=1, progress=False)
    assert (loop.x - vmap.x).abs().max() < 1e-5
    assert torch.equal(loop.y, vmap.y)


def test_ltrc_queries_have_no_low_frequencies_before_the_final_clip(source):
    fp = create_method("ltrc", k=3, final_clip=False, **FAST).generate(source, n=6, seed=0, progress=False)
    from modelprint.transforms import dct2, highpass_mask

    coeffs = dct2(fp.x.double())
    mask = highpass_mask(8, 8, 3)
    assert coeffs[..., ~mask].abs().max() < 1e-4


@pytest.mark.parametrize("name", ["c", "rc", "rcgm", "ltrc", "ltrcgm"])
def test_method_contract(name, source, independent, tmp_path):
    fp = create_method(name, steps=40, **({"q": 2} if "gm" in name else {})).generate(
        source, n=10, seed=0, progress=False
    )
    assert fp.x.shape == (10, 1, 8, 8) and fp.y.shape == (10,) and fp.y.dtype == torch.int64
    assert fp.x.min() >= 0 and fp.x.max() <= 1
    digest = fp.save(tmp_path / "f.fp.safetensors")
    loaded = Fingerprint.load(tmp_path / "f.fp.safetensors")
    assert torch.equal(loaded.x, fp.x) and torch.equal(loaded.y, fp.y) and loaded.meta == fp.meta
    assert len(digest) == 64
    assert loaded.meta["method"] == name and loaded.meta["source_sha256"] == weights_digest(source)
    src_rate = (source.predict(fp.x) == fp.y).float().mean()
    other_rate = (independent.predict(fp.x) == fp.y).float().mean()
    assert src_rate == 1.0 and other_rate < src_rate


def test_same_seed_gives_the_same_file_bytes(source, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name in ("a", "b"):
        create_method("c", steps=10).generate(source, n=5, seed=2, progress=False).save(tmp_path / name)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_bad_parameters_are_rejected():
    with pytest.raises(ParameterError, match="no parameter"):
        create_method("c", sigma=1)
    with pytest.raises(ParameterError):
        create_method("ltrc", alpha=-1)
    with pytest.raises(ParameterError):
        create_method("rcgm", gm="magic")
