"""The README is a manual: its walk-through runs as written, and every other command block
either runs here (long ones with small sizes) or is marked illustrative in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent
ILLUSTRATIVE = "<!-- illustrative"
# Blocks run by this file, by their first line, and the small sizes they run with.
RUN_HERE = {
    "export MODELPRINT_TRUST_ARCH=mynets:TinyNet PYTHONPATH=$PWD": {},
    # the Quick start, at its real size: about two minutes
    "modelprint train --data digits:16 --arch cnn --seed 0 --out owner": {},
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


def test_quick_start_runs_as_written_and_gives_the_verdicts_it_shows(tmp_path):
    quick = section(README.read_text(), "Quick start")
    code = [c for lang, c, _ in blocks(quick) if lang == "bash"][0]
    shown = [c for lang, c, _ in blocks(quick) if lang == "" and c.startswith("match:")][0]
    verdicts = []
    for line in (line.strip() for line in code.splitlines() if line.strip()):
        run = _bash(line.split("#")[0], tmp_path)
        expected = int(m.group(1)) if (m := re.search(r"# exit code (\d)", line)) else 0
        assert run.returncode == expected, (line, run.stdout, run.stderr[-1500:])
        if line.startswith("modelprint verify"):
            verdicts.append(run.stdout.split(":")[0])
    assert (
        verdicts == ["match", "no-match"] == [v.split(":")[0] for v in shown.splitlines() if not v.startswith("null:")]
    )
    # spent sequentially, the same verdicts well within the budget (the README says after 40 and 20 here)
    for suspect, expected in (("stolen", 0), ("other", 1)):
        run = _bash(f"modelprint verify owner.fp.safetensors {suspect}.safetensors --max-queries 100", tmp_path)
        assert run.returncode == expected, run.stdout
        spent = int(re.search(r"stopped after (\d+) of at most 100 queries", run.stdout).group(1))
        assert spent <= 60, run.stdout
