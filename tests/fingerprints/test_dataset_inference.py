"""Dataset inference: blind walks to the boundary, a confidence regressor, Welch's t."""

import numpy as np
import pytest
import torch
from torch import nn

from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.dataset_inference import NOISE_KINDS, blind_walk, walk_directions
from modelprint.suspects.torch_module import TorchSuspect


class BrightnessThreshold(nn.Module):
    """Class 1 when the image's mean exceeds 0.5, else class 0: its boundary is known exactly."""

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([0.5 - m, m - 0.5], 1) * 100


def test_walk_directions_have_the_step_as_their_largest_pixel_change():
    d = walk_directions(4, 3, (1, 5, 5), 0.02, seed=0)
    assert d.shape == (4, 3 * len(NOISE_KINDS), 1, 5, 5)
    assert torch.allclose(d.flatten(2).abs().amax(2), torch.full((4, 9), 0.02))
    assert torch.equal(d, walk_directions(4, 3, (1, 5, 5), 0.02, seed=0))


def test_blind_walk_finds_the_first_step_across_a_known_boundary():
    suspect = TorchSuspect(BrightnessThreshold(), input_shape=(1, 4, 4), num_classes=2)
    x = torch.full((2, 1, 4, 4), 0.3)
    deltas = torch.stack([torch.full((1, 4, 4), 0.02), torch.full((1, 4, 4), -0.02)])[None].expand(2, 2, 1, 4, 4)
    d = blind_walk(suspect, x, torch.zeros(2, dtype=torch.long), deltas, max_steps=20)
    norm = 0.02 * 4  # ||delta||_2 over 16 pixels
    # brighter: 0.3 + 0.02 k > 0.5 first at k = 11; darker never crosses: max_steps + 1
    assert torch.allclose(d, torch.tensor([[11 * norm, 21 * norm]] * 2, dtype=torch.float64))
    assert suspect.queries == 2 * 11 + 2 * 20  # a walk stops querying once it crosses


def test_welch_t_reads_private_minus_unseen():
    method = create_method("dataset-inference")
    assert method.statistic(np.r_[np.full(5, 0.8), np.full(5, 0.2)] + np.linspace(0, 0.01, 10)) > 10
    assert method.statistic(np.r_[np.full(5, 0.2), np.full(5, 0.8)] + np.linspace(0, 0.01, 10)) < -10


def test_dataset_inference_end_to_end_on_the_source(source, tmp_path):
    method = create_method("dataset-inference", train_points=40, directions=2, max_steps=10, step=0.05)
    fp = method.generate(source, n=10, seed=0, progress=False)
    assert len(fp) == 10 and fp.meta["private_points"] == 5 and 0 <= fp.meta["regressor_accuracy"] <= 1
    fp.save(tmp_path / "di.fp.safetensors")
    fp = Fingerprint.load(tmp_path / "di.fp.safetensors")
    labels_only = TorchSuspect(source, labels_only=True)  # the walk needs labels only
    ev = method.evidence(fp, labels_only)
    assert ev.values.shape == (10,) and np.all((ev.values >= 0) & (ev.values <= 1))
    assert 0 < ev.queries <= 10 * 2 * len(NOISE_KINDS) * 10
    assert np.array_equal(ev.values, method.evidence(fp, source).values)  # the same walks every time
    with pytest.raises(ParameterError, match="needs n >= 4"):
        method.generate(source, n=2, progress=False)
    with pytest.raises(ParameterError, match="private .* test split"):
        create_method("dataset-inference", train_points=100_000).generate(source, n=10, progress=False)


def test_a_source_that_memorised_its_points_scores_above_models_that_did_not_learn_them(splits):
    """The paper's premise at test scale: a source trained to fit 150 images scores far above an
    independent model of the attacker's half."""
    from modelprint.train import TrainConfig, train_new

    private = splits.owner.balanced(150, 0)
    cfg = TrainConfig(epochs=40, batch_size=32, lr=0.05, augment="none")
    source = train_new("cnn", private, cfg, seed=0, test=splits.test, width=8)
    other = train_new("cnn", splits.attacker.balanced(150, 0), cfg, seed=1, test=splits.test, width=8)
    method = create_method("dataset-inference", train_points=60)
    fp = method.generate(source, private, n=40, seed=0, progress=False)
    assert fp.meta["regressor_accuracy"] > 0.6  # the source's own distances tell its points from unseen ones
    t = {name: method.statistic(method.evidence(fp, m).values) for name, m in (("source", source), ("other", other))}
    assert t["source"] > 1.5 and t["other"] < t["source"] - 1
    assert method.evidence_of == "training-data"


def test_mingd_finds_the_distance_to_a_known_boundary():
    from modelprint.fingerprints.dataset_inference import min_gd_distances

    x = torch.full((2, 1, 4, 4), 0.31)
    d = min_gd_distances(BrightnessThreshold(), x, torch.zeros(2, dtype=torch.long), step=0.05, max_steps=20)
    # L-infinity steps of 0.05 on every pixel: the mean passes 0.5 after 4 steps (0.31 + 0.2); L2 steps of
    # 0.05 along the uniform gradient move each of the 16 pixels by 0.0125: 16 steps, ||delta||_2 = 0.8
    assert d.shape == (2, 2)
    assert torch.allclose(d[:, 0], torch.full((2,), 0.2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(d[:, 1], torch.full((2,), 16 * 0.05, dtype=torch.float64), atol=1e-5)


def test_mingd_reads_weights_and_separates_a_memorising_source(splits):
    from modelprint.train import TrainConfig, train_new

    private = splits.owner.balanced(150, 0)
    cfg = TrainConfig(epochs=40, batch_size=32, lr=0.05, augment="none")
    source = train_new("cnn", private, cfg, seed=0, test=splits.test, width=8)
    other = train_new("cnn", splits.attacker.balanced(150, 0), cfg, seed=1, test=splits.test, width=8)
    method = create_method("dataset-inference-mingd", train_points=60, max_steps=30)
    fp = method.generate(source, private, n=40, seed=0, progress=False)
    assert method.evidence_kind == "components" and "MinGD" in method.summary(fp)
    t = {name: method.statistic(method.evidence(fp, m).values) for name, m in (("source", source), ("other", other))}
    assert t["source"] > 1.5 and t["other"] < t["source"] - 1, t
