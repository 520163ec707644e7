"""Sequential vs fixed verification on a zoo: queries to a decision and verdict agreement.

For each method: the fingerprint is made from the zoo's source (LTRC's settings tuned with
``--tune`` on the owner's own reference models, never on this zoo), its null is fitted on the
calibration half of the zoo's negatives (the per-architecture split ``bench`` uses), and every
other suspect (all positives, the evaluation half of the negatives) is verified twice at
FPR 1e-3: fixed (all 100 queries, p-value rule) and sequential (batches of 10, at most 100).

    python benchmarks/bench_sequential.py --zoo ZOO [--fpr 1e-3] [--out benchmarks/results_sequential.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.bench.runner import split_negatives  # noqa: E402
from modelprint.calibrate import calibrate  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import load_model  # noqa: E402
from modelprint.tune import tune_method  # noqa: E402
from modelprint.verify import verify  # noqa: E402
from modelprint.zoo import ZooManifest, source_row  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--fpr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_sequential.json")))
    args = ap.parse_args()
    manifest = ZooManifest.read(args.zoo)
    src = source_row(manifest)
    source = load_model(manifest.path(src))
    rows = [r for r in manifest.rows if r["status"] == "done"]
    calib_ids, eval_ids = split_negatives(rows, args.seed)
    calib = [load_model(manifest.path(r)) for r in rows if r["id"] in calib_ids]
    scored = [r for r in rows if r is not src and (r["role"] == "positive" or r["id"] in eval_ids)]
    models = {r["id"]: load_model(manifest.path(r)) for r in scored}
    tuned, record = tune_method(source, "ltrc", seed=args.seed, fpr=1e-2, progress=False)
    out = {"zoo": str(Path(args.zoo).resolve()), "fpr": args.fpr, "batch": args.batch, "methods": {}}
    for name, params in (("c", {}), ("ltrc", tuned)):
        fp = create_method(name, **params).generate(source, n=100, seed=args.seed, progress=False)
        fp = calibrate(fp, calib, origin="calibration half of the zoo's negatives")
        per = []
        t_fixed = t_seq = 0.0
        for r in scored:
            t0 = time.perf_counter()
            fixed = verify(fp, models[r["id"]], fpr=args.fpr)
            t1 = time.perf_counter()
            seq = verify(fp, models[r["id"]], fpr=args.fpr, max_queries=100, batch=args.batch)
            t2 = time.perf_counter()
            t_fixed, t_seq = t_fixed + t1 - t0, t_seq + t2 - t1
            per.append({"id": r["id"], "role": r["role"], "category": r["category"], "fixed": fixed.verdict,
                        "sequential": seq.verdict, "queries": seq.queries, "statistic": fixed.statistic})  # fmt: skip
        q = np.array([p["queries"] for p in per])
        pairs = Counter((p["fixed"], p["sequential"]) for p in per)
        decided = [p for p in per if p["sequential"] != "inconclusive"]
        out["methods"][name] = {
            "params": params,
            "suspects": len(per),
            "median_queries": float(np.median(q)),
            "mean_queries": float(q.mean()),
            "median_queries_decided": float(np.median([p["queries"] for p in decided])) if decided else None,
            "sequential_decided": len(decided),
            "fixed_vs_sequential": {f"{a} / {b}": n for (a, b), n in sorted(pairs.items())},
            "disagree_decided": sum(
                1 for p in per if "inconclusive" not in (p["fixed"], p["sequential"]) and p["fixed"] != p["sequential"]
            ),
            "negatives_called_match": {
                "fixed": sum(p["fixed"] == "match" for p in per if p["role"] == "negative"),
                "sequential": sum(p["sequential"] == "match" for p in per if p["role"] == "negative"),
            },
            "tpr": {
                k: float(np.mean([p[k] == "match" for p in per if p["role"] == "positive"]))
                for k in ("fixed", "sequential")
            },
            "seconds": {"fixed": round(t_fixed, 3), "sequential": round(t_seq, 3)},
            "per_suspect": per,
        }
        m = out["methods"][name]
        print(f"{name} {params}: median queries {m['median_queries']:.0f} (decided: {m['median_queries_decided']}), "
              f"decided {m['sequential_decided']}/{len(per)}, pairs {m['fixed_vs_sequential']}, "
              f"TPR {m['tpr']}, negatives called match {m['negatives_called_match']}")  # fmt: skip
    out["tuning"] = {"chosen": record["chosen"]}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
