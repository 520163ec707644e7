"""MetaFinger: queries meta-trained so derived models keep their labels and independent ones lose them."""

import pytest
import torch

from modelprint.bench.runner import check_held_out
from modelprint.errors import ParameterError
from modelprint.fingerprints import create_method
from modelprint.fingerprints.learnt import augmented_copy
from modelprint.models import load_model
from modelprint.zoo import ZooManifest, source_row


@pytest.fixture(scope="module")
def source(training_zoo):
    manifest = ZooManifest.read(training_zoo)
    return load_model(manifest.path(source_row(manifest)))


def test_metafinger_separates_its_trained_models_and_is_deterministic(source, training_zoo, splits):
    method = create_method("metafinger", trained=str(training_zoo), iterations=150)
    fp = method.generate(source, splits.owner, n=30, seed=0, progress=False)
    # its own objective: the trained positives keep the labels, the trained negatives leave them
    start = splits.owner.x[torch.randperm(len(splits.owner), generator=torch.Generator().manual_seed(0))[:30]]
    before = create_method("metafinger", trained=str(training_zoo), iterations=0)
    fp0 = before.generate(source, splits.owner, n=30, seed=0, progress=False)
    assert torch.equal(fp0.x, start)  # zero iterations: the owner images themselves
    # (at this scale the width-4 students disagree with the source on a quarter of the owner images already)
    margin = lambda f: f.meta["trained_positive_match"] - f.meta["trained_negative_match"]  # noqa: E731
    assert fp.meta["trained_positive_match"] >= fp0.meta["trained_positive_match"] - 0.1
    assert margin(fp) > margin(fp0) + 0.25
    assert {r["role"] for r in fp.meta["trained_models"]} == {"positive", "negative"}
    again = method.generate(source, splits.owner, n=30, seed=0, progress=False)
    assert torch.equal(again.x, fp.x) and torch.equal(again.y, fp.y)
    assert all(p.requires_grad for p in source.parameters())  # the caller's source is left as it was
    assert method.statistic(method.evidence(fp, source).values) == 1.0
    # bench refuses to score a model MetaFinger learnt from, as for NaturalFinger
    manifest = ZooManifest.read(training_zoo)
    rows, src = manifest.rows, source_row(manifest)
    with pytest.raises(ParameterError, match="metafinger learnt from 7 model"):
        check_held_out({"metafinger": fp.meta}, rows, src)


def test_augmented_copies_prune_or_noise_the_source(source):
    g = torch.Generator().manual_seed(0)
    copies = [augmented_copy(source, g, 0.5, 0.1) for _ in range(6)]
    w0 = source.state_dict()
    changed = [any(not torch.equal(v, c.state_dict()[k]) for k, v in w0.items()) for c in copies]
    assert sum(changed) >= 5 and all(not p.requires_grad for c in copies for p in c.parameters())


def test_metafinger_needs_a_training_zoo(source):
    with pytest.raises(ParameterError, match="trained"):
        create_method("metafinger").generate(source, n=5, progress=False)
    with pytest.raises(ParameterError):
        create_method("metafinger", prune_max=1.0)
