"""Progress in a log: timestamped lines naming the job, at a steady interval, even while one step runs long."""

import logging
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from modelprint.progress import LogBar, configure_logging


def test_a_stalled_step_still_logs_at_the_interval(caplog):
    configure_logging()
    logger = logging.getLogger("modelprint")
    logger.propagate = True  # let caplog see it
    try:
        with caplog.at_level(logging.INFO, logger="modelprint"):
            bar = LogBar(4, "train cnn seed 3", every=0.2)
            bar.update(1)
            time.sleep(1.1)  # one long step: no update, the heartbeat speaks
            bar.finish()
    finally:
        logger.propagate = False
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "train cnn seed 3: started, 4 steps" and lines[-1].startswith("train cnn seed 3: done")
    beats = [line for line in lines if "1/4 (25%)" in line]
    assert len(beats) >= 3 and all("ETA" in b and "elapsed" in b for b in beats), lines


def test_zoo_build_into_a_log_file_shows_progress_lines(tmp_path):
    from modelprint.zoo.spec import read_spec_text

    # the smoke spec with models that take a few seconds each, so lines must come between them
    spec = tmp_path / "slow.toml"
    spec.write_text(read_spec_text("smoke-digits")[0].replace("epochs = 3", "epochs = 40"))
    log = tmp_path / "build.log"
    env = {**os.environ, "MODELPRINT_PROGRESS_EVERY": "1"}
    env.pop("MODELPRINT_QUIET", None)
    with log.open("w") as stderr:  # a file, not a terminal
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelprint",
                "zoo",
                "build",
                str(spec),
                "--out",
                str(tmp_path / "zoo"),
                "--workers",
                "0",
            ],
            stderr=stderr,
            stdout=subprocess.PIPE,
            env=env,
            timeout=600,
        )
    assert run.returncode == 0, log.read_text()[-2000:]
    text = log.read_text()
    stamps = [
        datetime.strptime(m, "%Y-%m-%d %H:%M:%S") for m in re.findall(r"(?m)^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ", text)
    ]
    assert len(stamps) >= 5, text[-2000:]
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) <= 1 + 2, (max(gaps), text[-3000:])  # the interval, plus a second of rounding each side
    assert "zoo smoke-digits: building cnn[width=8](owner,s0)" in text and "0/10 (0%)" in text  # ETA: unit test
    assert "\x1b[" not in text and "━" not in text, "terminal bars in a log file"
    assert Path(tmp_path / "zoo" / "manifest.jsonl").is_file()


def test_a_training_attack_logs_at_the_interval_while_it_runs(tmp_path, source):
    """`attack distill` trains for a long while in one step; it printed nothing at all."""
    from modelprint.models import save_model

    model = save_model(source, tmp_path / "victim")
    env = {**os.environ, "MODELPRINT_PROGRESS_EVERY": "0.3"}
    env.pop("MODELPRINT_QUIET", None)
    log = tmp_path / "attack.log"
    with log.open("w") as stderr:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelprint",
                "attack",
                "distill",
                str(model),
                "--data",
                "digits",
                "--param",
                "epochs=5",  # a couple of seconds: several heartbeats however fast the machine
                "--seed",
                "1",
                "--out",
                str(tmp_path / "student"),
            ],
            stderr=stderr,
            stdout=subprocess.PIPE,
            env=env,
            timeout=600,
        )
    text = log.read_text()
    assert run.returncode == 0, text[-2000:]
    beats = re.findall(
        r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO attack distill\(cnn\): 0/1 \(0%\), \S+ elapsed$", text
    )
    assert len(beats) >= 2, text
    assert re.search(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO attack distill\(cnn\): done", text), text


def test_a_library_call_is_quiet_unless_the_caller_configures_logging(tmp_path):
    """A script that trains a model printed INFO progress lines on stderr it never asked for;
    now only a caller that turns the ``modelprint`` logger on gets them."""
    script = tmp_path / "train_one.py"
    script.write_text(
        "import logging, sys\n"
        "from modelprint.data import load_splits\n"
        "from modelprint.train import TrainConfig, train_new\n"
        "if sys.argv[1] == 'info':\n"
        "    logging.basicConfig(level=logging.INFO)\n"
        "train_new('cnn', load_splits('digits:8').owner, TrainConfig(epochs=1), seed=0, width=4)\n"
    )
    env = {**os.environ, "MODELPRINT_PROGRESS_EVERY": "0.5"}
    env.pop("MODELPRINT_QUIET", None)
    quiet, asked = (
        subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=300)
        for mode in ("quiet", "info")
    )
    assert quiet.returncode == 0 and asked.returncode == 0, quiet.stderr + asked.stderr
    assert quiet.stderr == "" and quiet.stdout == ""
    assert "train cnn seed 0 on digits:8 owner: started, 12 steps" in asked.stderr
    assert "train cnn seed 0 on digits:8 owner: done" in asked.stderr
