"""Zoo build time with 1 vs 2 local workers (and Ray), as ratios within one run.

Builds a zoo (default `mini-digits`) once per run into fresh temp folders (one torch thread
per model in every run, the builder's default), and records the wall time, the speed-up
against the first run, the bytes moved between driver and workers (the data put into Ray's
object store once, each parent's bytes once, every new model's bytes back), the slowest models
(the build's tail), the sum of single-model times
(what one worker would need, as measured inside the builds) and whether all runs wrote
byte-identical files (they should: a fixed thread count per model makes the bytes
independent of --workers and of the backend).

Run:  python benchmarks/bench_zoo.py [--spec mini-digits] [--runs local:1,local:2,ray:2]
      [--reference ZOO_DIR]   (also compare every sha256 with an existing build of the spec)
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

from modelprint.zoo import ZooManifest  # noqa: E402
from modelprint.zoo.build import build_zoo  # noqa: E402


def _model_seconds(root: Path) -> dict[str, float]:
    """Each model's own build time, from the train_seconds its card records."""
    seconds = {}
    for row in ZooManifest.read(root).rows:
        card = json.loads((root / row["file"]).with_suffix(".json").read_text())
        seconds[row["id"]] = card.get("train_seconds") or 0.0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="mini-digits")
    parser.add_argument("--runs", default="local:1,local:2", help="backend:workers, comma-separated")
    parser.add_argument("--reference", default=None, help="An existing build of the same spec to compare bytes with.")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_zoo.json")))
    parser.add_argument("--keep", default=None, help="Also keep the last build in this (new) folder.")
    args = parser.parse_args()
    results: dict = {"spec": args.spec, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    shas, runs = {}, [tuple(r.split(":")) for r in args.runs.split(",")]
    for i, (backend, workers) in enumerate(runs):
        label = f"{backend}_{workers}"
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(args.keep) if args.keep and i == len(runs) - 1 else Path(tmp) / "zoo"
            started = time.perf_counter()
            manifest = build_zoo(args.spec, target, workers=int(workers), backend=backend, progress=False)
            seconds = time.perf_counter() - started
            shas[label] = {r["id"]: r["sha256"] for r in ZooManifest.read(manifest.root).rows}
            per_model = _model_seconds(Path(manifest.root))
            results[f"{label}_s"] = round(seconds, 1)
            results[f"{label}_sum_of_models_s"] = round(sum(per_model.values()), 1)
            results[f"{label}_slowest"] = sorted(per_model.items(), key=lambda kv: -kv[1])[:8]
            # bytes between driver and workers: data once (Ray's object store), parents once, every result
            results[f"{label}_moved"] = manifest.stats
            results["models"] = len(manifest.rows)
            results.setdefault("runs", []).append(label)
            print(f"{backend} x{workers}: {len(manifest.rows)} models in {seconds:.1f}s", flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # keep what is done if a later run dies
    first = results["runs"][0]
    for label in results["runs"][1:]:
        results[f"speedup_{label}_vs_{first}"] = round(results[f"{first}_s"] / results[f"{label}_s"], 2)
    if args.reference:
        shas["reference"] = {r["id"]: r["sha256"] for r in ZooManifest.read(args.reference).rows}
    labels = list(shas)
    results["identical_files"] = all(shas[label] == shas[labels[0]] for label in labels)
    results["compared"] = labels
    print(json.dumps({k: v for k, v in results.items() if "speedup" in k or k == "identical_files"}))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
