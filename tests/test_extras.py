"""`pip install .` without extras: fingerprint and verify a model file with none of the optional
packages importable; what needs one says which extra to install, in one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ("onnx", "onnxruntime", "onnxscript", "fastapi", "starlette", "uvicorn", "matplotlib", "ray",
            "torchvision", "timm")  # fmt: skip
# click arrives with the extras (uvicorn, ray); a typer that carries its own copy installs none
# (`make demo` failed on `import click`), so the core install is tested without it too
if importlib.util.find_spec("typer._click") is not None:
    OPTIONAL += ("click",)

# Runs the CLI in a fresh interpreter where every optional package is absent.
RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` fails and find_spec says absent, as when not installed
from modelprint.cli import main
main(sys.argv[2:])
"""


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"MODELPRINT_QUIET": "1", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", RUNNER, ",".join(OPTIONAL), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_core_dependencies_name_no_optional_package():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    assert not names & set(OPTIONAL), names & set(OPTIONAL)
    torch = [d for d in deps if d.startswith("torch")][0]
    assert "==" not in torch, "torch is a range, so an installed CUDA build is kept"


def test_fingerprint_and_verify_a_model_file_without_extras(tmp_path, splits):
    def ok(*args: str) -> subprocess.CompletedProcess:
        run = cli(list(args), tmp_path)
        assert run.returncode == 0, (args, run.stderr[-1500:])
        return run

    ok("train", "--data", "digits", "--arch", "cnn", "--arch-arg", "width=8", "--epochs", "3", "--seed", "0",
       "--out", "owner")  # fmt: skip
    # the independent models are the test's fixtures, not the user's path: trained here, in process
    from modelprint.models import save_model
    from modelprint.train import TrainConfig, train_new, training_settings

    as_the_cli_trains = TrainConfig(**training_settings("cnn", {"epochs": 3}))
    for seed in (1, 2, 3):
        other = train_new("cnn", splits.attacker, as_the_cli_trains, seed=seed, progress=False, width=8)
        save_model(other, tmp_path / f"other{seed}")
    ok("fingerprint", "create", "owner.safetensors", "--method", "c", "--n", "20", "--param", "steps=20",
       "--seed", "0", "--out", "owner.fp.safetensors")  # fmt: skip
    ok("fingerprint", "calibrate", "owner.fp.safetensors", "--negatives", "other1.safetensors", "other2.safetensors",
       "other3.safetensors", "--out", "owner.fp.safetensors")  # fmt: skip
    # the source itself agrees on every query; the null fitted on the 3 independent models (attacker
    # split) puts 20 of 20 at p = 0.012 here, below the FPR 0.05
    run = cli(["verify", "owner.fp.safetensors", "owner.safetensors", "--fpr", "0.05"], tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr[-1500:])
    assert run.stdout.startswith("match: matching rate 1.00 (20/20)"), run.stdout


@pytest.mark.parametrize(
    "args, extra",
    [
        (["export", "owner.safetensors", "--format", "onnx", "--out", "x.onnx"], "onnx"),
        (["serve", "owner.safetensors"], "serve"),
    ],
)
def test_what_needs_an_extra_says_which(tmp_path, source, args, extra):
    from modelprint.models import save_model

    save_model(source, tmp_path / "owner")
    run = cli(args, tmp_path)
    assert run.returncode == 2, run.stderr[-1500:]
    assert run.stderr.strip().splitlines()[-1].endswith(f"pip install 'modelprint[{extra}]'"), run.stderr
