"""Tuning trains its reference negatives as asked: the architectures, seeds and workers given."""

import pytest

import modelprint.tune as tune


def test_tuning_trains_its_negatives_with_the_architectures_and_workers_asked_for(source, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def recording(meta, plan, **kwargs):
        seen.update(kwargs, plan=plan)
        raise Stop

    monkeypatch.setattr(tune, "train_reference", recording)
    with pytest.raises(Stop):
        tune.tune_method(source, "c", negatives=2, archs=[("vgg11", {"width": 4})], workers=0, progress=False)
    plan = seen["plan"]
    assert plan.archs == [("vgg11", {"width": 4})] and plan.n == 2 and plan.first_seed == tune.TUNING_SEED
    assert seen["workers"] == 0
