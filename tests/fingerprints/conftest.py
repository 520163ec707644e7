"""Shared by the methods that learn from trained models (NaturalFinger, MetaFinger, MetaV)."""

import pytest

from modelprint.zoo import build_zoo

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
    root = tmp_path_factory.mktemp("train-zoo")
    spec = root / "tiny-train.toml"
    spec.write_text(TRAIN_SPEC)
    build_zoo(spec, root / "zoo", workers=0, progress=False)
    return root / "zoo"
