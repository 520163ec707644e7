"""Tiny models and data made inside the tests: digits at 8 px, narrow CNNs, few epochs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.data import load_splits  # noqa: E402
from modelprint.train import TrainConfig, train_new  # noqa: E402

TINY = TrainConfig(epochs=6, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def splits():
    return load_splits("digits")


@pytest.fixture(scope="session")
def source(splits):
    return train_new("cnn", splits.owner, TINY, seed=0, test=splits.test, width=8)


@pytest.fixture(scope="session")
def independent(splits):
    return train_new("cnn", splits.attacker, TINY, seed=1, test=splits.test, width=8)


@pytest.fixture()
def fresh(source):
    """A private copy of the source, for tests that write files or change cards."""
    import copy

    return copy.deepcopy(source)
