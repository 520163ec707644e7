"""What if reference sets held students of independent models? False matches among held-out
null models when each calibration set of N is a third the source's architecture trained from
scratch on the owner's half, a third students (distilled from independent teachers of the
owner's half) and the rest other architectures on the owner's half; the same protocol as
``modelprint null-check`` (20 seeded draws per N, every other null model called).

    python benchmarks/bench_reference_mix.py --null-zoo null-digits --bench bench-digits \
        [--methods c,ltrc,ltrcgm,metav] [--out benchmarks/results_reference_mix_digits.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import numpy as np

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.bench.nullcheck import bench_fingerprints, null_evidence, owner_pools  # noqa: E402
from modelprint.fingerprints import method_of  # noqa: E402
from modelprint.models.attachments import split_attachments  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null-zoo", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--methods", default="c,ltrc,ltrcgm")
    ap.add_argument("--sizes", default="20,40")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    _, fps = bench_fingerprints(Path(args.bench))
    fps = {m: fps[m] for m in args.methods.split(",")}
    out = null_evidence(args.null_zoo, fps, progress=False)
    scratch, ids = out["scratch"], out["ids"]
    record = {
        "null_zoo": Path(args.null_zoo).name,
        "bench": Path(args.bench).name,
        "repeats": args.repeats,
        "methods": {},
    }
    for m, fp in fps.items():
        arch = fp.meta["source_arch"]
        arch_args = split_attachments(dict(fp.meta.get("source_arch_args") or {}))[0]
        own, other = owner_pools(scratch, arch, arch_args)
        students = [i for i, x in enumerate(ids) if scratch[i] is None and "(owner" in x]
        method, values, stats = method_of(fp), out["methods"][m]["values"], out["methods"][m]["statistics"]
        record["methods"][m] = {}
        for size in (int(s) for s in args.sizes.split(",")):
            rng, k = random.Random(f"0/{size}"), -(-size // 3)
            false = {"0.01": 0, "0.001": 0}
            trials = 0
            for _ in range(args.repeats):
                calib = set(rng.sample(own, k)) | set(rng.sample(students, k)) | set(rng.sample(other, size - 2 * k))
                rest = [i for i in range(len(ids)) if i not in calib]
                null = method.fit_null(fp, [values[i] for i in sorted(calib)], [stats[i] for i in sorted(calib)])
                p = null.p_values([values[i] for i in rest], [stats[i] for i in rest])
                false["0.01"] += int(np.sum(p < 1e-2))
                false["0.001"] += int(np.sum(p < 1e-3))
                trials += len(rest)
            record["methods"][m][str(size)] = {
                a: {"false_matches": f, "observed_fpr": f / trials} for a, f in false.items()
            }
            print(m, size, {a: round(f / trials, 4) for a, f in false.items()}, flush=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
