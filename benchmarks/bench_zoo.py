"""Zoo build time with 1 vs 2 local workers, as a ratio within one run.

Builds the `mini-digits` zoo twice into fresh temp folders (1 worker, then 2 workers;
one torch thread per model in both, the builder's default), and records the wall time,
the speed-up, the slowest models, and whether both builds wrote byte-identical files
(they should: a fixed thread count per model makes the bytes independent of --workers).

Run:  python benchmarks/bench_zoo.py [--spec mini-digits] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.zoo import ZooManifest, build_zoo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="mini-digits")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_zoo.json")))
    parser.add_argument("--keep", default=None, help="Also keep the last build in this (new) folder.")
    args = parser.parse_args()
    results: dict = {"spec": args.spec, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    shas = {}
    runs = [int(w) for w in args.workers.split(",")]
    for i, workers in enumerate(runs):
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(args.keep) if args.keep and i == len(runs) - 1 else Path(tmp) / "zoo"
            started = time.perf_counter()
            manifest = build_zoo(args.spec, target, workers=workers, progress=False)
            seconds = time.perf_counter() - started
            shas[workers] = {r["id"]: r["sha256"] for r in ZooManifest.read(manifest.root).rows}
            results[f"workers_{workers}_s"] = round(seconds, 1)
            results["models"] = len(manifest.rows)
            print(f"{workers} worker(s): {len(manifest.rows)} models in {seconds:.1f}s", flush=True)
    counts = sorted(shas)
    if len(counts) >= 2:
        a, b = counts[0], counts[-1]
        results["speedup"] = round(results[f"workers_{a}_s"] / results[f"workers_{b}_s"], 2)
        results["identical_files"] = shas[a] == shas[b]
        print(f"speed-up {a}->{b} workers: {results['speedup']}x; identical files: {results['identical_files']}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
