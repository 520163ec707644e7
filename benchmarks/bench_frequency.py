"""The white-box frequency mark under attack: fingerprint score and accuracy per attack,
for a model marked with and without L_attack (the table of the paper's kind), beside the
two baselines on the same attacked models: direct weight cosine and CKA of penultimate
features (REEF-style).

Trains a model (default: a CNN on digits at 16 px), marks it at ``--host``, reads a 16-frequency fingerprint
with the key, runs every attack on the marked model and records the score (fraction of
frequencies with similarity > 0.98), the baselines' statistics and test accuracy. Two
independent models of the same architecture (one marked with another key, one unmarked) give the baselines' floor, and
the source trained for as many more epochs without the module gives the marking's cost.

Run:  python benchmarks/bench_frequency.py [--data digits:16] [--train-subset N] [--arch cnn]
          [--arch-args '{"width": 16}'] [--host features.0] [--out FILE]
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
from modelprint.errors import ParameterError  # noqa: E402
from modelprint.fingerprints import create_method  # noqa: E402
from modelprint.fingerprints.frequency import inject  # noqa: E402
from modelprint.train import TrainConfig, accuracy, train_new, training_settings  # noqa: E402

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
    ("noise 0.1 + fine-tune", [("noise", {"sigma": 0.1}, None), FT]),
    ("noise 0.5 + fine-tune", [("noise", {"sigma": 0.5}, None), FT]),
    ("quantise int8", [("quantize", {}, None)]),
]
ATTACKS += [("permute channels", [("permute", {}, None)]), ("rescale channels (ReLU)", [("scale", {}, None)])]
ATTACKS += [
    (f"overwrite ({h})", [("overwrite", {"how": h}, None)]) for h in ("replace", "spectrum-noise", "weight-noise")
]
ATTACKS += [
    ("overwrite (replace) then fine-tune", [REPLACE, FT]),
    ("fine-tune then overwrite (replace)", [FT, REPLACE]),
    ("spectral-reset (adaptive)", [("spectral-reset", {}, None)]),
    ("nullspace-reset (adaptive, blind)", [("nullspace-reset", {}, "attacker")]),
    ("distill into a fresh CNN", [("distill", {"arch": "cnn", "arch_args": {"width": 16}, "epochs": 15}, "attacker")]),
]


def continue_training(source, data, *, epochs: int, lr: float, seed: int, batch_size: int = 64):
    """The source trained on as inject() trains the marked model (SGD momentum 0.9, weight decay
    5e-4, constant lr, same batches), without the module: what the marking's epochs alone do."""
    import copy

    import torch.nn.functional as F

    model = copy.deepcopy(source)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=g).split(batch_size):
            loss = F.cross_entropy(model(data.x[idx]), data.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def markdown_table(result: dict) -> str:
    """The README's table from a results file: score and accuracy with and without L_attack,
    the baselines on the model marked with L_attack."""
    rows = [r for r in result["rows"] if r["l_attack"] is not None and not r["attack"].startswith("(")]
    by = {(r["attack"], r["l_attack"]): r for r in rows}
    lines = [
        "| attack | score, with L_attack | accuracy | score, without | accuracy | weight cosine | CKA |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {name: i for i, (name, _) in enumerate(ATTACKS)}  # the attacks in their list's order, then the rest
    for name in sorted(dict.fromkeys(r["attack"] for r in rows), key=lambda n: order.get(n, len(order))):
        a, b = by[name, True], by[name, False]
        if a["score"] is None:
            lines.append(f"| {name} | not applicable: {a['not_applicable']} | | | | | |")
            continue
        lines.append(
            f"| {name} | {a['score']:.2f} | {a['accuracy']:.3f} | {b['score']:.2f} | {b['accuracy']:.3f} "
            f"| {a['weight-cosine']:.2f} | {a['cka']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits:16")
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--arch-args", default='{"width": 16}', help="JSON")
    ap.add_argument("--host", default="features.0")
    ap.add_argument("--key", type=int, default=7)
    ap.add_argument("--train-subset", type=int, default=0, help="images kept of each training half (0: all)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", default=None, help="print the Markdown table of a results file and stop")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return
    torch.set_num_threads(1)
    splits = load_splits(args.data, train_subset=args.train_subset)
    arch_args = json.loads(args.arch_args)
    cfg = TrainConfig(**training_settings(args.arch, {"epochs": 15}))  # the architecture's own optimiser
    source = train_new(args.arch, splits.owner, cfg, seed=0, test=splits.test, **arch_args)
    method = create_method("frequency")
    baselines = {name: create_method(name) for name in ("weight-cosine", "cka")}
    rows = []
    other = train_new(args.arch, splits.attacker, cfg, seed=1, test=splits.test, **arch_args)
    who = "CNN" if args.arch == "cnn" else args.arch
    independent = {
        f"independent {who}, marked with another key": inject(
            other, splits.attacker, host=args.host, key=args.key + 1, test=splits.test, progress=False
        ),  # fmt: skip
        f"independent {who}, unmarked": other,
    }
    rows.append({"l_attack": None, "attack": "(source, unmarked)", "score": None, "accuracy": source.card.accuracy})
    plain = continue_training(source, splits.owner, epochs=20, lr=0.01, seed=args.key)
    rows.append({"l_attack": None, "attack": "(source, 20 more epochs without the module)", "score": None,
                 "accuracy": round(accuracy(plain, splits.test), 4)})  # fmt: skip
    for aux in (True, False):
        started = time.perf_counter()
        marked = inject(source, splits.owner, host=args.host, key=args.key, aux_class=aux, test=splits.test,
                        progress=False)  # fmt: skip
        fp = method.generate(marked, n=16, seed=args.key, progress=False)
        mark_s = time.perf_counter() - started
        base_fps = {name: m.generate(marked, n=200, seed=0, progress=False) for name, m in baselines.items()}
        suspects = []
        for name, steps in ATTACKS:
            model = marked
            try:
                for i, (attack, settings, split) in enumerate(steps):
                    data = splits.get(split) if split else None
                    model = create_attack(attack, **settings).apply(model, data, seed=100 + i)
            except ParameterError as e:  # e.g. scale on a GELU network: the attack does not apply
                rows.append({"l_attack": aux, "attack": name, "score": None, "not_applicable": str(e)})
                continue
            suspects.append((name, model))
        for name, model in suspects + list(independent.items()):
            row = {"l_attack": aux, "attack": name, "score": method.statistic(method.evidence(fp, model).values)}
            for b, m in baselines.items():
                row[b] = round(m.statistic(m.evidence(base_fps[b], model).values), 4)
            rows.append({**row, "accuracy": round(accuracy(model, splits.test), 4)})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"l_attack": aux, "attack": "(marking seconds)", "score": None, "accuracy": round(mark_s, 1)})
    result = {
        "data": args.data,
        "train_subset": args.train_subset,
        "arch": args.arch,
        "arch_args": arch_args,
        "host": args.host,
        "source_accuracy": source.card.accuracy,
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
