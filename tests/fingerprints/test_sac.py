"""SAC: correlation matrices of outputs, misclassified and CutMix samples, one similarity score."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelprint.errors import ParameterError, SuspectError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.sac import correlation_matrix, correlation_similarity, cutmix


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 12), classes=st.integers(2, 8))
def test_correlation_similarity_is_one_for_the_same_relations_and_ignores_a_class_relabelling(seed, n, classes):
    g = torch.Generator().manual_seed(seed)
    ours = torch.rand((n, classes), generator=g).softmax(1)
    m = correlation_matrix(ours)
    assert m.shape == (n, n) and torch.all(m >= -1e-12) and torch.all(m <= 1 + 1e-12)
    assert torch.allclose(m, m.T) and torch.allclose(m.diagonal(), torch.zeros(n, dtype=m.dtype), atol=1e-12)
    assert correlation_similarity(ours, ours) == pytest.approx(1.0)
    # relations between samples, not labels: the same outputs with classes renamed relate alike
    renamed = ours[:, torch.randperm(classes, generator=g)]
    assert correlation_similarity(ours, renamed) == pytest.approx(1.0)
    other = torch.rand((n, classes), generator=g).softmax(1)
    assert correlation_similarity(ours, other) <= 1.0


def test_cutmix_pastes_one_corner_patch_from_another_image():
    x = torch.arange(6, dtype=torch.float32)[:, None, None, None].expand(6, 1, 20, 20).clone() / 10
    out = cutmix(x, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(out, cutmix(x, 0.2, torch.Generator().manual_seed(0)))  # seeded
    for i in range(6):
        changed = (out[i, 0] != x[i, 0]).nonzero()
        assert len(changed) == 16  # a 4 x 4 patch (0.2 of 20), from an image with another value
        rows, cols = changed[:, 0], changed[:, 1]
        cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
        # centred outside the middle two thirds of both axes (clipped at the border)
        assert (cy < 20 / 6 + 2 or cy > 100 / 6 - 2) and (cx < 20 / 6 + 2 or cx > 100 / 6 - 2)


def test_sac_w_keeps_misclassified_images_and_refuses_a_source_with_too_few(source, splits):
    method = create_method("sac-w")
    fp = method.generate(source, splits.test, n=10, seed=0, progress=False)
    with torch.no_grad():
        wrong = source(fp.x).argmax(1)
    truth = {tuple(x.flatten().tolist()): int(y) for x, y in zip(splits.test.x, splits.test.y)}
    assert all(truth[tuple(x.flatten().tolist())] != int(p) for x, p in zip(fp.x, wrong))
    assert fp.meta["misclassified"] >= 20 and fp.meta["samples"] == len(fp) == 10
    with pytest.raises(ParameterError, match="misclassifies .* fewer than min_samples"):
        create_method("sac-w", min_samples=10_000).generate(source, splits.test, n=10, progress=False)


def test_sac_m_scores_the_source_one_a_copy_high_and_reads_labels_when_asked(source, independent, tmp_path):
    fp = create_method("sac-m").generate(source, n=40, seed=0, progress=False)
    fp.save(tmp_path / "m.fp.safetensors")
    fp = Fingerprint.load(tmp_path / "m.fp.safetensors")
    method = create_method("sac-m")
    score = lambda m, meth=method: meth.statistic(meth.evidence(fp, m).values)  # noqa: E731
    assert score(source) == pytest.approx(1.0)
    noisy = copy.deepcopy(source)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert 0.9 < score(noisy) <= 1.0 and score(independent) < score(noisy)
    api = copy.deepcopy(independent)
    api.labels_only = True
    with pytest.raises(SuspectError, match="labels only"):
        method.evidence(fp, api)
    labels = create_method("sac-m", output="labels")
    assert 0 <= labels.evidence(fp, api).values[0] <= 1
    for output in ("logits", "labels"):
        assert create_method("sac-m", output=output).evidence(fp, source).values[0] == pytest.approx(1.0)
    assert np.isfinite(create_method("sac-m", output="logits").evidence(fp, independent).values[0])
    with pytest.raises(ParameterError, match="output must be"):
        create_method("sac-m", output="logit")
