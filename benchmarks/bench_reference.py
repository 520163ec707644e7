"""Reference-set build time on 1 vs 2 local workers (and Ray), and its peak memory, in one run.

``modelprint reference build`` trains its models as a zoo. This builds the same reference set
once per run (each into a fresh folder, each run in a fresh process) and records the wall
time, the speed-up against the first run, the peak resident memory of the build's whole
process tree (the driver and its workers, summed, sampled every 0.2 s) and whether every run
wrote the same sha256s (they should: one torch thread per model makes the bytes independent
of the workers and the backend).

Run:  python benchmarks/bench_reference.py --model SOURCE.safetensors [--n 20]
      [--runs local:1,local:2,ray:2] [--epochs E] [--no-positives] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss_kb(root_pid: int) -> int:
    """Resident memory of ``root_pid`` and every process below it, from /proc."""
    parent, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pages = int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
        pid = int(entry.name)
        parent[pid] = int(stat[stat.rindex(")") + 2 :].split()[1])
        rss[pid] = pages * PAGE_KB
    total = 0
    for pid in rss:
        up = pid
        while up not in (root_pid, 0, 1) and up in parent:
            up = parent[up]
        total += rss[pid] if up == root_pid else 0
    return total


class PeakSampler(threading.Thread):
    """The largest summed resident memory of this process tree while it runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb, self.running = 0, True

    def run(self) -> None:
        while self.running:
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))
            time.sleep(0.2)


def build_once(model: str, n: int, backend: str, workers: int, root: Path, settings: dict) -> dict:
    """One reference build in this process: seconds, peak memory, the models' sha256s."""
    from modelprint.models import load_model
    from modelprint.reference import ReferencePlan, build_reference_set

    source = load_model(model)
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    plan = ReferencePlan(n, epochs=settings["epochs"])
    record = build_reference_set(
        source, plan, root, positives=settings["positives"], workers=workers, backend=backend, progress=False
    )
    seconds = time.perf_counter() - started
    sampler.running = False
    sampler.join()
    cards = [json.loads((root / m["file"]).with_suffix(".json").read_text()) for m in record["models"]]
    model_seconds = [card["train_seconds"] for card in cards]
    return {
        "seconds": round(seconds, 1),
        "peak_mb": round(sampler.peak_kb / 1024),
        "sum_of_model_seconds": round(sum(model_seconds), 1),
        "slowest_model_s": round(max(model_seconds), 1),
        "sha256": [m["sha256"] for m in record["models"]] + [p["sha256"] for p in record["positives"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="The owner's source model (.safetensors).")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--runs", default="local:1,local:2", help="backend:workers, comma-separated")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--no-positives", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_reference.json")))
    ap.add_argument("--one", nargs=3, metavar=("BACKEND", "WORKERS", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    settings = {"epochs": args.epochs, "positives": not args.no_positives}
    if args.one:
        backend, workers, root = args.one
        print(json.dumps(build_once(args.model, args.n, backend, int(workers), Path(root), settings)))
        return
    results: dict = {
        "model": Path(args.model).name,
        "n": args.n,
        **settings,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "runs": {},
    }
    for run in args.runs.split(","):
        backend, workers = run.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, __file__, "--model", args.model, "--n", str(args.n), "--one", backend, workers]
            command += [str(Path(tmp) / "refs")]
            command += ["--epochs", str(args.epochs)] if args.epochs is not None else []
            command += ["--no-positives"] if args.no_positives else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{run} failed: {done.stderr.strip().splitlines()[-1:]}")
            results["runs"][run] = json.loads(done.stdout.strip().splitlines()[-1])
        first = next(iter(results["runs"].values()))
        this = results["runs"][run]
        this["speedup"] = round(first["seconds"] / this["seconds"], 2)
        this["same_bytes_as_first"] = this["sha256"] == first["sha256"]
        print(run, {k: v for k, v in this.items() if k != "sha256"}, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
