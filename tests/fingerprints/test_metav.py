"""MetaV: queries and a meta-verifier learnt together on trained models, scored on held-out ones."""

import copy

import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.calibrate import calibrate
from modelprint.errors import ParameterError, SuspectError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.metrics import roc_auc
from modelprint.models import load_model
from modelprint.zoo import ZooManifest, source_row


@pytest.fixture(scope="module")
def zoo_source(training_zoo):
    manifest = ZooManifest.read(training_zoo)
    return load_model(manifest.path(source_row(manifest)))


def test_metav_verifier_separates_held_out_models_better_than_chance(zoo_source, training_zoo, negatives, splits,
                                                                     tmp_path):  # fmt: skip
    method = create_method("metav", trained=str(training_zoo), iterations=150)
    fp = method.generate(zoo_source, n=20, seed=0, progress=False)
    # its own objective on the models it learnt from
    assert fp.meta["trained_positive_score"] > 0.9 and fp.meta["trained_negative_score"] < 0.1
    # held out: copies of the source it never saw, independent models of other seeds
    copies = [create_attack("finetune", mode="ftal", epochs=1).apply(zoo_source, splits.tune, seed=s) for s in (1, 2)]
    copies += [create_attack("prune", rate=r).apply(zoo_source, seed=1) for r in (0.2, 0.5)]
    score = lambda m: method.statistic(method.evidence(fp, m).values)  # noqa: E731
    pos, neg = [score(m) for m in copies], [score(m) for m in negatives]
    assert roc_auc(pos, neg) > 0.75 and min(pos) > 0.5
    # the verifier travels in the file; the score path calibrates like any score family
    fp.save(tmp_path / "v.fp.safetensors")
    loaded = Fingerprint.load(tmp_path / "v.fp.safetensors")
    assert score(copies[0]) == pytest.approx(method.statistic(method.evidence(loaded, copies[0]).values))
    assert calibrate(fp, negatives[:3]).meta["null"]["family"] == "beta"
    assert (
        method.needs_scores
        and method.items(fp) == 1
        and {r["role"] for r in fp.meta["trained_models"]}
        == {
            "positive",
            "negative",
        }
    )
    again = method.generate(zoo_source, n=20, seed=0, progress=False)
    assert torch.equal(again.x, fp.x)
    # a suspect that answers with labels only (a label-only API) is refused, by MetaV only
    api = copy.deepcopy(copies[0])
    api.labels_only = True
    with pytest.raises(SuspectError, match="labels only"):
        method.evidence(fp, api)
    c = create_method("c", steps=20).generate(zoo_source, n=5, seed=0, progress=False)
    assert len(create_method("c").evidence(c, api).values) == 5


def test_metav_needs_a_training_zoo(zoo_source):
    with pytest.raises(ParameterError, match="trained"):
        create_method("metav").generate(zoo_source, n=5, progress=False)
