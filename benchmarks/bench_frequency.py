"""The white-box frequency mark under attack: fingerprint score and accuracy per attack,
for a model marked with and without L_attack (the table of the paper's kind).

Marks the source of a zoo (default: a CNN trained here on digits at 16 px) at ``--host``,
reads a 16-frequency fingerprint with the key, runs every attack on the marked model and
records score (fraction of frequencies with similarity > 0.98) and test accuracy.

Run:  python benchmarks/bench_frequency.py [--data digits:16] [--host features.0] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

os.environ.setdefault("MODELPRINT_QUIET", "1")

from modelprint.attacks import create_attack  # noqa: E402
from modelprint.data import load_splits  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.fingerprints.frequency import inject  # noqa: E402
from modelprint.train import TrainConfig, accuracy, train_new  # noqa: E402

# (row name, [(attack, settings, data split or None), ...]); fine-tuning runs on the tune split.
FT = ("finetune", {"mode": "ftal", "epochs": 10}, "tune")
REPLACE = ("overwrite", {"how": "replace"}, None)
ATTACKS = [("none", [])]
ATTACKS += [
    (f"fine-tune {opt} lr {lr:g}", [("finetune", {"mode": "ftal", "lr": lr, "optimizer": opt, "epochs": 10}, "tune")])
    for opt in ("sgd", "adam")
    for lr in (1e-2, 1e-3, 1e-4)
]
ATTACKS += [
    ("prune 50 % + fine-tune", [("prune", {"rate": 0.5}, None), FT]),
    ("noise 0.5 + fine-tune", [("noise", {"sigma": 0.5}, None), FT]),
]
ATTACKS += [
    (f"overwrite ({h})", [("overwrite", {"how": h}, None)]) for h in ("replace", "spectrum-noise", "weight-noise")
]
ATTACKS += [
    ("overwrite (replace) then fine-tune", [REPLACE, FT]),
    ("fine-tune then overwrite (replace)", [FT, REPLACE]),
    ("spectral-reset (adaptive)", [("spectral-reset", {}, None)]),
    ("distill into a fresh CNN", [("distill", {"arch": "cnn", "arch_args": {"width": 16}, "epochs": 15}, "attacker")]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits:16")
    ap.add_argument("--host", default="features.0")
    ap.add_argument("--key", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = load_splits(args.data)
    source = train_new("cnn", splits.owner, TrainConfig(epochs=15), seed=0, test=splits.test, width=16)
    method = create_method("frequency")
    rows = []
    for aux in (True, False):
        started = time.perf_counter()
        marked = inject(source, splits.owner, host=args.host, key=args.key, aux_class=aux, test=splits.test,
                        progress=False)  # fmt: skip
        fp = method.generate(marked, n=16, seed=args.key, progress=False)
        mark_s = time.perf_counter() - started
        for name, steps in ATTACKS:
            model = marked
            for i, (attack, settings, split) in enumerate(steps):
                data = splits.get(split) if split else None
                model = create_attack(attack, **settings).apply(model, data, seed=100 + i)
            score = method.statistic(method.evidence(fp, model).values)
            rows.append(
                {"l_attack": aux, "attack": name, "score": score, "accuracy": round(accuracy(model, splits.test), 4)}
            )
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"l_attack": aux, "attack": "(marking seconds)", "score": None, "accuracy": round(mark_s, 1)})
    result = {"data": args.data, "host": args.host, "source_accuracy": source.card.accuracy, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
