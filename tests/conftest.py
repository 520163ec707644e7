"""Tiny models and data made inside the tests: digits at 8 px, narrow CNNs, few epochs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (cli_run) importable under --import-mode=importlib

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.data import load_splits  # noqa: E402
from modelprint.models.custom import TRUST_ENV  # noqa: E402
from modelprint.train import TrainConfig, train_new  # noqa: E402
from modelprint.zoo.spec import read_spec_text  # noqa: E402

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


# The built-in smoke spec: ten tiny models (8 px digits, 8-channel CNNs, a few epochs), seconds to build.
TINY_SPEC = read_spec_text("smoke-digits")[0]


def built_once(tmp_path_factory, name: str, build) -> Path:
    """``build(folder)`` run once per test run. Under pytest-xdist each worker process has its own
    session, so the first worker builds into the run's shared temporary folder while the others
    wait on a lock, then read what it built (the fixtures using this never write to it)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        root = tmp_path_factory.mktemp(name)
        build(root)
        return root
    from filelock import FileLock  # a dependency of torch

    root = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{root}.lock"):
        if not (root / ".built").exists():
            root.mkdir(exist_ok=True)
            build(root)
            (root / ".built").touch()
    return root


def _build_spec(root: Path, spec_text: str, spec_name: str) -> None:
    from modelprint.zoo.build import build_zoo

    spec = root / spec_name
    spec.write_text(spec_text)
    build_zoo(spec, root / "zoo", workers=0, progress=False)


@pytest.fixture(scope="session")
def reference_zoo(tmp_path_factory):
    """The tiny zoo built once, in process, as the reference other builds are compared with."""
    return built_once(tmp_path_factory, "spec", lambda root: _build_spec(root, TINY_SPEC, "tiny.toml")) / "zoo"


@pytest.fixture(scope="session")
def negatives(splits):
    """Six small models trained independently of the source (other seeds, both halves, two widths)."""
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.05)
    return [
        train_new("cnn", splits.get(split), cfg, seed=seed, test=splits.test, width=width)
        for seed, split, width in [
            (11, "attacker", 8),
            (12, "owner", 8),
            (13, "attacker", 4),
            (14, "owner", 4),
            (15, "attacker", 8),
            (16, "attacker", 4),
        ]
    ]


# Shared by the methods that learn from trained models (NaturalFinger, MetaFinger, MetaV) and by
# the suspect adapters' tests, which verify a MetaV fingerprint through every adapter.
# A training zoo at test scale: the source, 3 positives derived from it, 4 negatives.
TRAIN_SPEC = """
name = "tiny-train"
data = "digits"
[train]
epochs = 6
lr = 0.05
[[models]]
name = "source"
role = "positive"
category = "source"
arch = "cnn"
args = { width = 8 }
seed = 0
[[models]]
from = ["source"]
category = "modified"
steps = [{ attack = "finetune", mode = "ftal", epochs = 2, seed = 901 }]
[[models]]
from = ["source"]
category = "extracted"
variants = [{ w = 8, s = 902 }, { w = 4, s = 903 }]
steps = [{ attack = "distill", arch = "cnn", arch_args = { width = "$w" }, epochs = 4, seed = "$s" }]
[[models]]
name = "independent"
role = "negative"
category = "independent"
arch = "cnn"
split = "attacker"
variants = [{ args = { width = 8 }, seed = 101 }, { args = { width = 4 }, seed = 102 }]
[[models]]
from = ["independent"]
category = "independent-distill"
steps = [{ attack = "distill", arch = "cnn", arch_args = { width = 8 }, epochs = 4, seed = 904 }]
"""


@pytest.fixture(scope="session")
def training_zoo(tmp_path_factory):
    """The tiny training zoo, built once: its folder."""
    root = built_once(tmp_path_factory, "train-zoo", lambda folder: _build_spec(folder, TRAIN_SPEC, "tiny-train.toml"))
    return root / "zoo"


# The files whose tests run longest go first, so that spread over workers (pytest-xdist) they
# start at once instead of leaving one worker busy after the others are done.
SLOW_FIRST = ("test_readme.py", "test_cluster.py", "test_cli.py", "test_extras.py")


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))


@pytest.fixture(scope="session")
def committed(source, negatives, tmp_path_factory):
    """A calibrated LTRC fingerprint file, a pruned copy of its source and an independent model, as files."""
    from modelprint.attacks import create_attack
    from modelprint.calibrate import calibrate
    from modelprint.fingerprints import create_method
    from modelprint.models import save_model

    root = tmp_path_factory.mktemp("record")
    fp = create_method("ltrc", steps=200).generate(source, n=40, seed=0, progress=False)
    fp = calibrate(fp, negatives[:5], origin="test negatives")
    fp.save(root / "ltrc.fp.safetensors")
    save_model(create_attack("prune", rate=0.3).apply(source, None, seed=1), root / "pruned.safetensors")
    save_model(negatives[5], root / "independent.safetensors")
    return root


# A user's own architecture, in a module file of their own.
USER_NET = """
from torch import nn

class Net(nn.Module):
    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.head = nn.Linear(width * 64, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).relu().flatten(1))

IMPORTED = []
IMPORTED.append(1)   # a side effect: counts how often the module is imported
"""


@pytest.fixture()
def user_module(tmp_path, monkeypatch, request):
    """A module file in a folder the user put on PYTHONPATH (and works in); a fresh name per test."""
    name = f"usernets_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))  # what the interpreter makes of PYTHONPATH at start-up
    monkeypatch.delenv(TRUST_ENV, raising=False)
    yield name
    sys.modules.pop(name, None)
