"""Benchmark-runner throughput: suspects queried per second in process (0) and with 1 vs 2
local workers.

Runs `run_bench` on a zoo (default: builds the built-in `demo-digits` zoo into a temp
folder) with methods c,rc,rcgm,ltrc and n = 100 queries each. A first run makes the
fingerprints; the timed runs reuse them (cached), so only querying differs. Each suspect
is one task: load the model file, answer every method's queries.

Run:  python benchmarks/bench_runner.py [--zoo DIR] [--workers 0,1,2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.bench import run_bench  # noqa: E402
from modelprint.zoo.build import build_zoo  # noqa: E402

METHODS = ["c", "rc", "rcgm", "ltrc"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=None)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_runner.json")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Path(args.zoo) if args.zoo else Path(tmp) / "zoo"
        if not args.zoo:
            build_zoo("demo-digits", zoo, progress=False)
        bench_dir = Path(tmp) / "bench"
        params = {"ltrc": {"k": 6}}
        run_bench(zoo, METHODS, bench_dir, method_params=params, progress=False)  # makes the fingerprints
        results = {"zoo": str(zoo), "methods": METHODS, "cores": os.cpu_count(), "cpu": platform.machine()}
        for workers in [int(w) for w in args.workers.split(",")]:
            times = []
            for _ in range(args.repeat):
                r = run_bench(zoo, METHODS, bench_dir, method_params=params, workers=workers, progress=False)
                times.append(r["timings"]["querying"])
            best = min(times)
            results[f"workers_{workers}"] = {
                "suspects": len(r["suspects"]),
                "querying_s": times,
                "suspects_per_second": round(len(r["suspects"]) / best, 2),
            }
            print(
                f"{workers} worker(s): {len(r['suspects'])} suspects, best {best:.2f}s "
                f"({len(r['suspects']) / best:.1f} suspects/s)",
                flush=True,
            )
        counts = sorted(int(k.split("_")[1]) for k in results if k.startswith("workers_") and k != "workers_0")
        if len(counts) >= 2:
            a, b = (results[f"workers_{c}"]["suspects_per_second"] for c in (counts[0], counts[-1]))
            results["speedup"] = round(b / a, 2)
            print(f"speed-up {counts[0]}->{counts[-1]} workers: {results['speedup']}x")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
