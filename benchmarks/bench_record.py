"""What recording a verification costs (``verify --record``), as a ratio within one run.

One CNN on digits as a model file, a 100-query characteristic-example fingerprint calibrated on
independent models, loaded once (as ``verify`` loads it); verification through the model-file
adapter, without and with the record (chained entries, then the JSON written atomically),
alternated, median of ``--repeats`` runs each; and the audit of the record, which loads the
fingerprint file and replays the record without the suspect.

    python benchmarks/bench_record.py [--repeats 200] [--resnet18] [--out benchmarks/results_record.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MODELPRINT_QUIET", "1")

import torch  # noqa: E402
from bench_serve import default_model  # noqa: E402

from modelprint.calibrate import calibrate  # noqa: E402
from modelprint.data import load_splits  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.models import create_model, load_model, save_model  # noqa: E402
from modelprint.record import audit, recorded_verify  # noqa: E402
from modelprint.suspects import open_suspect  # noqa: E402
from modelprint.train import TrainConfig, train_new  # noqa: E402
from modelprint.verify import verify  # noqa: E402


def _models(root: Path, resnet18: bool) -> tuple:
    """The suspect (also the fingerprinted model) and 5 independent models to calibrate on."""
    if resnet18:  # cost only: random weights are enough
        shape = {"num_classes": 10, "input_shape": (3, 32, 32), "width": 64}
        return create_model("resnet18", seed=0, **shape), [
            create_model("resnet18", seed=s, **shape) for s in range(1, 6)
        ]
    splits = load_splits("digits")
    refs = [train_new("cnn", splits.attacker, TrainConfig(epochs=3), seed=s, width=8) for s in range(1, 6)]
    return load_model(default_model(root)), refs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--resnet18", action="store_true", help="a ResNet-18 at 3x32x32 (random weights) instead")
    ap.add_argument("--out", default="benchmarks/results_record.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, refs = _models(root, args.resnet18)
        path = save_model(model, root / "suspect")
        fp = calibrate(create_method("c").generate(model, n=args.n, seed=0, progress=False), refs)
        fp_path = root / "c.fp.safetensors"
        digest = fp.save(fp_path)
        suspect = open_suspect(str(path))
        plain, recorded, audited = [], [], []
        for i in range(args.repeats + 1):  # the first round warms up and is not counted
            t0 = time.perf_counter()
            verify(fp, suspect)
            t1 = time.perf_counter()
            recorded_verify(fp, suspect, root / "record.json", fingerprint_sha256=digest)
            t2 = time.perf_counter()
            assert audit(root / "record.json", fp_path).reproduced
            t3 = time.perf_counter()
            if i:
                plain.append(t1 - t0)
                recorded.append(t2 - t1)
                audited.append(t3 - t2)
        record_bytes = (root / "record.json").stat().st_size
    verify_s, record_s, audit_s = (statistics.median(v) for v in (plain, recorded, audited))
    # the machine's noise is as large as the effect on a small model: the share in each fifth of
    # the runs as well, so the spread is in the result, not only one number
    fifth = max(1, len(plain) // 5)
    blocks = [
        statistics.median(recorded[i : i + fifth]) / statistics.median(plain[i : i + fifth]) - 1
        for i in range(0, fifth * 5, fifth)
    ]
    result = {
        "model": "resnet18 3x32x32, random weights" if args.resnet18 else "cnn width 16, digits 8x8",
        "queries": args.n,
        "repeats": args.repeats,
        "verify_s": round(verify_s, 5),
        "verify_recorded_s": round(record_s, 5),
        "audit_s": round(audit_s, 5),
        "recording_overhead": round(record_s / verify_s - 1, 3),
        "recording_overhead_by_fifth": [round(b, 3) for b in blocks],
        "record_bytes": record_bytes,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=1))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
