"""The white-box baselines: direct weight cosine and CKA of penultimate features."""

import numpy as np
import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.calibrate import calibrate
from modelprint.errors import CalibrationError, ParameterError
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


def test_weight_cosine_null_is_fitted_on_references_of_the_source_architecture_only(source):
    method = create_method("weight-cosine")
    fp = method.generate(source, progress=False)
    layers = len(fp.meta["layers"])
    rng = np.random.default_rng(0)
    alike = [rng.normal(0.0, 0.03, layers) for _ in range(6)]
    unlike = [np.zeros(layers) for _ in range(14)]  # other architectures: no layer lines up
    evidence = alike + unlike
    null = method.fit_null(fp, evidence, [float(v.mean()) for v in evidence])
    assert null.data["n_models"] == 6 and null.data["left_out"] == 14
    assert null.data["sd"] == pytest.approx(float(np.std([v.mean() for v in alike], ddof=1)))
    assert "14 of other architectures left out" in null.describe()
    with pytest.raises(CalibrationError, match="at least 3 reference models of the source's architecture"):
        method.fit_null(fp, alike[:2] + unlike, [0.0] * 16)


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
