"""The README is a manual: its walk-through runs as written, and every other command block
either runs here (long ones with small sizes) or is marked illustrative in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent
ILLUSTRATIVE = "<!-- illustrative"
# Blocks run by this file, by their first line, and the small sizes they run with.
RUN_HERE = {
    "export MODELPRINT_TRUST_ARCH=mynets:TinyNet PYTHONPATH=$PWD": {},
    "modelprint train --data digits:16 --arch cnn --seed 0 --out owner": {
        "--seed 0 --out owner": "--seed 0 --epochs 2 --out owner",
        "--reference-models 10": "--reference-models 3 --epochs 1",
    },
}


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, code, the line before the fence) of every fenced block."""
    out = []
    for m in re.finditer(r"(?ms)^([^\n]*)\n\n?```(\w*)\n(.*?)^```", text):
        out.append((m.group(2), m.group(3), m.group(1)))
    return out


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _env(tmp_path: Path) -> dict[str, str]:
    # no PYTHONPATH: the user's module is found as the README says, beside the script / in the working folder
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MODELPRINT_QUIET": "1"}


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    # Each line's exit code is reported; the script goes on past a verdict's non-zero code.
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=900)


def test_every_command_block_runs_here_or_is_marked_illustrative():
    text = README.read_text()
    unaccounted = []
    for lang, code, before in blocks(text):
        if lang not in ("bash", "sh", "console"):
            continue
        first = code.strip().splitlines()[0]
        if first not in RUN_HERE and not before.startswith(ILLUSTRATIVE):
            unaccounted.append(first)
    assert not unaccounted, f"README command blocks neither run by tests/test_readme.py nor marked: {unaccounted}"
    for first in RUN_HERE:
        assert first in text, f"tests/test_readme.py runs a block the README no longer has: {first!r}"


def test_your_own_model_walkthrough_runs_as_written(tmp_path):
    own = section(README.read_text(), "Your own model")
    code = blocks(own)
    files = {c.splitlines()[0].removeprefix("# ").strip(): c for lang, c, _ in code if lang == "python"}
    assert set(files) == {"mynets.py", "train_mine.py", "verify_mine.py"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    shown = [c for lang, c, _ in code if lang == "" and "$ python train_mine.py" in c][0]

    for script in ("train_mine.py", "verify_mine.py"):
        run = subprocess.run([sys.executable, script], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr
    # the verdicts the README shows are the ones the code gives, the rates close to the ones it shows
    assert [line.split()[:2] for line in run.stdout.splitlines()] == [
        line.split()[:2] for line in shown.splitlines()[1:]
    ], run.stdout
    rates = [float(re.search(r"matching rate (\d\.\d+)", line).group(1)) for line in run.stdout.splitlines()]
    shown_rates = [float(re.search(r"matching rate (\d\.\d+)", line).group(1)) for line in shown.splitlines()[1:]]
    assert all(abs(a - b) <= 0.1 for a, b in zip(rates, shown_rates)), (rates, shown_rates)

    script = [c for lang, c, _ in code if lang == "bash"][0]
    lines = script.splitlines()
    # the two verify lines are checked by exit code, as the README's comments say
    body = "\n".join(line for line in lines if not line.startswith("modelprint verify"))
    run = _bash("set -e\n" + body, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    shown_cli = [c for lang, c, _ in code if lang == "" and c.startswith(("match:", "no-match:"))][0]
    verdicts = []
    for line in lines:
        if line.startswith("modelprint verify"):
            expected = int(re.search(r"# exit code (\d)", line).group(1))
            run = _bash(f"export MODELPRINT_TRUST_ARCH=mynets:TinyNet PYTHONPATH=$PWD\n{line.split('#')[0]}", tmp_path)
            assert run.returncode == expected, (line, run.stdout, run.stderr[-1000:])
            verdicts.append(run.stdout.split(":")[0])
    assert verdicts == [v.split(":")[0] for v in shown_cli.splitlines() if not v.startswith("null:")]


@pytest.mark.parametrize("first", [k for k in RUN_HERE if k.startswith("modelprint train")])
def test_quick_start_commands_run_with_small_sizes(tmp_path, first):
    code = [c for lang, c, _ in blocks(README.read_text()) if lang == "bash" and c.startswith(first)][0]
    for long, short in RUN_HERE[first].items():
        assert long in code, long
        code = code.replace(long, short)
    lines = [line.split("#")[0].strip() for line in code.splitlines() if line.strip()]
    for line in lines[:-1]:
        run = _bash(line, tmp_path)
        assert run.returncode == 0, (line, run.stderr[-1500:])
    # The verify, at these sizes: 3 reference models cannot reach FPR 1e-3 (their null's smallest
    # p-value is larger), so the one right verdict on the pruned copy is inconclusive, saying why;
    # a match here would be a false claim, a no-match would clear a copy.
    run = _bash(lines[-1], tmp_path)
    assert run.returncode == 3, (lines[-1], run.stdout, run.stderr[-1500:])
    assert run.stdout.startswith("inconclusive: ")
    assert "why: at FPR 0.001 this null cannot call anything a match" in run.stdout
