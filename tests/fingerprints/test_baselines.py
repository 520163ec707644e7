"""The white-box baselines: direct weight cosine and CKA of penultimate features."""

import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.calibrate import calibrate
from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.baselines import comparable_weights, linear_cka


def _stat(name, fp, model):
    method = create_method(name)
    return method.statistic(method.evidence(fp, model).values)


def test_linear_cka_is_invariant_to_rotation_and_isotropic_scale_not_to_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, torch.randn(50, 9, generator=g, dtype=torch.float64)) < 0.5
    with pytest.raises(ParameterError, match="same N"):
        linear_cka(x, x[:10])


def test_weight_cosine_sees_copies_and_is_fooled_by_permutation(source, independent, splits, tmp_path):
    fp = create_method("weight-cosine").generate(source, progress=False)
    assert len(fp.meta["layers"]) == len(comparable_weights(source)) and len(fp.x) == 0
    tuned = create_attack("finetune", mode="ftal", epochs=1).apply(source, splits.tune, seed=1)
    assert _stat("weight-cosine", fp, source) == pytest.approx(1.0)
    assert _stat("weight-cosine", fp, tuned) > 0.9
    assert abs(_stat("weight-cosine", fp, independent)) < 0.3
    assert _stat("weight-cosine", fp, create_attack("permute").apply(source, seed=1)) < 0.6
    path = tmp_path / "w.fp.safetensors"
    fp.save(path)
    assert _stat("weight-cosine", Fingerprint.load(path), tuned) == _stat("weight-cosine", fp, tuned)


def test_weight_cosine_compares_a_marked_copy_by_its_host_weights(source, splits):
    from modelprint.fingerprints.frequency import inject

    marked = inject(source, splits.owner, host="features.0", key=3, epochs=1, aux_class=False, progress=False)
    fp = create_method("weight-cosine").generate(source, progress=False)
    assert set(comparable_weights(marked)) == set(comparable_weights(source))  # host.weight -> weight, no branch
    assert _stat("weight-cosine", fp, marked) > 0.9


def test_cka_is_blind_to_permutation_and_separates_copies_from_independent_models(source, negatives, splits):
    method = create_method("cka")
    fp = method.generate(source, splits.owner, n=64, seed=0, progress=False)
    assert fp.x.shape[0] == 64 and method.items(fp) == 1
    assert _stat("cka", fp, source) == pytest.approx(1.0)
    assert _stat("cka", fp, create_attack("permute").apply(source, seed=1)) == pytest.approx(1.0, abs=1e-6)
    others = [_stat("cka", fp, m) for m in negatives]
    assert max(others) < 1.0 and _stat("cka", fp, source) > max(others)
    calibrated = calibrate(fp, negatives[:3])  # a normal null on independent models, like any score family
    assert calibrated.meta["null"]["family"] == "normal" and calibrated.meta["null"]["n_models"] == 3
    with pytest.raises(ParameterError, match="2 probe"):
        method.generate(source, splits.owner, n=1, progress=False)
