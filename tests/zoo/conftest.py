import pytest

# Ten tiny models (8 px digits, 8-channel CNNs, a few epochs): seconds to build.
TINY_SPEC = """
name = "tiny"
data = "digits"
split_seed = 0

[train]
epochs = 3

[[models]]
name = "source"
role = "positive"
category = "source"
arch = "cnn"
args = { width = 8 }
split = "owner"
seed = 0

[[models]]
name = "mirror"
role = "negative"
category = "source"
arch = "cnn"
args = { width = 8 }
split = "attacker"
seed = 1

[[models]]
from = ["source", "mirror"]
category = "finetune"
variants = [{ mode = "ftll" }, { mode = "rtal" }]
steps = [{ attack = "finetune", mode = "$mode", epochs = 2 }]

[[models]]
from = ["source", "mirror"]
category = "prune"
steps = [{ attack = "prune", rate = 0.5 }, { attack = "finetune", mode = "ftal", epochs = 2 }]

[[models]]
from = ["source", "mirror"]
category = "distill"
steps = [{ attack = "distill", arch = "cnn", arch_args = { width = 4 }, epochs = 2 }]
"""


@pytest.fixture()
def tiny_spec(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="session")
def reference_zoo(tmp_path_factory):
    """The tiny zoo built once, in process, as the reference other builds are compared with."""
    from modelprint.zoo import build_zoo

    root = tmp_path_factory.mktemp("spec")
    spec = root / "tiny.toml"
    spec.write_text(TINY_SPEC)
    out = root / "zoo"
    build_zoo(spec, out, workers=0, progress=False)
    return out
