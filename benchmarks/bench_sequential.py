"""Sequential vs fixed verification on a zoo: queries to a decision and verdict agreement.

For each method: the fingerprint is made from the zoo's source (LTRC's settings tuned with
``--tune`` on the owner's own reference models, never on this zoo), its null is fitted on the
calibration half of the zoo's negatives (the split ``bench`` uses) and it stores the owner's
four reference positives (pruned 30 % / 60 %, fine-tuned, pruned + fine-tuned: made from the
source, not taken from the zoo). Every other suspect (all positives, the evaluation half of
the negatives) is verified at FPR 1e-3 three times: fixed (all 100 queries, p-value rule),
sequential (``verify --max-queries 100``, batches of 10) and the previous sequential test
(mixture likelihood ratios against theta* at alpha/2, kept here for comparison).

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

from modelprint.bench.heldout import split_negatives  # noqa: E402
from modelprint.calibrate import calibrate  # noqa: E402
from modelprint.data import load_splits  # noqa: E402
from modelprint.errors import ParameterError  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import load_model  # noqa: E402
from modelprint.null import Null, mixture_log_evidence  # noqa: E402
from modelprint.reference import derived_copies, source_meta, source_subset  # noqa: E402
from modelprint.tune import tune_method  # noqa: E402
from modelprint.verify import verify  # noqa: E402
from modelprint.zoo import ZooManifest, source_row  # noqa: E402


def previous_sequential(fp, model, fpr: float, budget: int, batch: int) -> tuple[str, int]:
    """The sequential rule before this benchmark's change, on the fixed evidence's prefixes."""
    method = create_method(fp.meta["method"], **fp.meta.get("params", {}))
    values = method.evidence(fp, model).values[:budget]
    theta = Null.from_json(fp.meta["null"]).critical(fpr / 2)
    for n in range(batch, len(values) + 1, batch):
        k = int(values[:n].sum())
        if mixture_log_evidence(k, n, theta, "above") >= np.log(2 / fpr):
            return "match", n
        if mixture_log_evidence(k, n, theta, "below") >= np.log(1 / fpr):
            return "no-match", n
    return "inconclusive", len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--fpr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0, help="the zoo spec's split_seed")
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
    meta = source_meta(source)
    splits = load_splits(meta["dataset"], split_seed=args.split_seed, train_subset=source_subset(meta))
    owner_copies = derived_copies(source, splits.owner)
    out = {"zoo": str(Path(args.zoo).resolve()), "fpr": args.fpr, "batch": args.batch, "methods": {}}
    for name, params in (("c", {}), ("ltrc", tuned)):
        fp = create_method(name, **params).generate(source, n=100, seed=args.seed, progress=False)
        fp = calibrate(fp, calib, owner_copies, origin="calibration half of the zoo's negatives")
        per = []
        t_fixed = t_seq = 0.0
        for r in scored:
            t0 = time.perf_counter()
            fixed = verify(fp, models[r["id"]], fpr=args.fpr)
            t1 = time.perf_counter()
            try:
                seq = verify(fp, models[r["id"]], fpr=args.fpr, max_queries=100, batch=args.batch)
                seq_verdict, seq_queries, refused = seq.verdict, seq.queries, None
            except ParameterError as e:  # the budget cannot decide: said before any query
                seq_verdict, seq_queries, refused = "inconclusive", 0, str(e)
            t2 = time.perf_counter()
            t_fixed, t_seq = t_fixed + t1 - t0, t_seq + t2 - t1
            old, old_queries = previous_sequential(fp, models[r["id"]], args.fpr, 100, args.batch)
            per.append({"id": r["id"], "role": r["role"], "category": r["category"], "fixed": fixed.verdict,
                        "sequential": seq_verdict, "queries": seq_queries, "refused": refused,
                        "previous": old, "previous_queries": old_queries, "statistic": fixed.statistic})  # fmt: skip
        # a refused run sends nothing and decides nothing: it counts as the whole budget
        q = np.array([p["queries"] if p["refused"] is None else 100 for p in per])
        q_old = np.array([p["previous_queries"] for p in per])
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
                for k in ("fixed", "sequential", "previous")
            },
            "previous": {
                "median_queries": float(np.median(q_old)),
                "decided": sum(p["previous"] != "inconclusive" for p in per),
                "negatives_called_match": sum(p["previous"] == "match" for p in per if p["role"] == "negative"),
                "opposite_to_fixed": sum(
                    1 for p in per if "inconclusive" not in (p["fixed"], p["previous"]) and p["fixed"] != p["previous"]
                ),
            },
            "refused": next((p["refused"] for p in per if p["refused"]), None),
            "seconds": {"fixed": round(t_fixed, 3), "sequential": round(t_seq, 3)},
            "per_suspect": per,
        }
        m = out["methods"][name]
        print(f"{name} {params}: median queries {m['median_queries']:.0f} (decided: {m['median_queries_decided']}), "
              f"decided {m['sequential_decided']}/{len(per)}, pairs {m['fixed_vs_sequential']}, "
              f"TPR {m['tpr']}, negatives called match {m['negatives_called_match']}; previous test: "
              f"{m['previous']}")  # fmt: skip
    out["tuning"] = {"chosen": record["chosen"]}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
