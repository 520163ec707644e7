"""``modelprint demo``: the whole owner / verifier story on the bundled digits, in minutes:
black-box fingerprints, the white-box frequency mark (marked, calibrated, verified against
fine-tuning, an overwrite and the adaptive reset), then a FingerBench-style zoo, a benchmark
of every black-box method on it and its report.

Digits are upscaled to 16 px. LTRC's settings are tuned on the owner's own reference
models (``fingerprint create --tune``), not hand-set: the paper's k scaled from 224 px gives
k = 1 at 16 px, which we measured to change little (README, "What the demo shows"). Every
fingerprint is calibrated on reference models modelprint trains itself (other seeds and
architectures on the owner's data), disjoint from the models the tuning used and from
every model the demo then scores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ._io import atomic_write_text
from .attacks import create_attack
from .bench import run_bench
from .bench.report import write_report
from .calibrate import calibrate
from .data import load_splits
from .evaluate import evaluate_fingerprint, print_table, pruned_copies
from .fingerprints import (
    BASELINE_METHOD,
    MARK_METHOD,
    PAPER_METHODS,
    PROPOSED_METHOD,
    Fingerprint,
    create_method,
)
from .models import ModelprintModel, save_model
from .progress import Steps, console
from .reference import ReferencePlan, source_meta, train_reference
from .train import TrainConfig, accuracy, train_new
from .tune import tune_method
from .verify import format_verification, verify
from .zoo.build import build_zoo, load_spec

DATA = "digits:16"
# (file name, architecture, split, seed, architecture arguments): independent models, none derived from the source.
INDEPENDENT = [
    ("cnn-attacker-s1", "cnn", "attacker", 1, {}),
    ("cnn-attacker-s2", "cnn", "attacker", 2, {}),
    ("cnn-attacker-s3", "cnn", "attacker", 3, {}),
    ("cnn-owner-s4", "cnn", "owner", 4, {}),
    ("resnet18-attacker-s5", "resnet18", "attacker", 5, {"width": 16}),
    ("vgg11-attacker-s6", "vgg11", "attacker", 6, {"width": 16}),
]
METHODS = {m: {} for m in PAPER_METHODS}
TUNED = PROPOSED_METHOD
REFERENCE_MODELS = 8  # calibration negatives the owner trains (fast: 3)
FAST_REFERENCE_ARCHS = [("cnn", {"width": 8})]
PRUNE_RATES = (0.3, 0.5, 0.7)
ZOO_SPEC = "demo-digits"  # built-in, 30 models
FAST_ZOO_SPEC = "smoke-digits"  # --fast: ten tiny models, a smoke run of the same flow
WHITEBOX_HOST, WHITEBOX_KEY = "features.0", 7  # the first convolution; the owner's key
# Float sums depend on how many threads share them and on the CPU's kernels: a fixed thread count
# makes the demo repeat to the last digit wherever the kernels are the same (docs/verification.md).
THREADS = 2


_STEPS = Steps(6, "demo")


def _step(title: str) -> None:
    _STEPS.start(title)


def run_demo(out: Path, *, fast: bool = False, seed: int = 0) -> dict:
    """The whole story in six steps on digits (``fast``: fewer and shorter runs), on
    :data:`THREADS` threads; writes ``out/results.json`` and returns it."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run(out, fast=fast, seed=seed)
    finally:
        torch.set_num_threads(before)


def _run(out: Path, *, fast: bool, seed: int) -> dict:
    global _STEPS
    _STEPS = Steps(6, "demo")  # step i of 6 with an ETA, on a terminal and in a log
    started = time.time()
    machine = {"torch": torch.__version__, "threads": THREADS, "cpu_kernels": torch.backends.cpu.get_cpu_capability()}
    console.print(
        f"demo: torch {machine['torch']}, {THREADS} threads, {machine['cpu_kernels']} CPU kernels (its numbers "
        "repeat exactly with the same three; elsewhere they move a little and the verdicts stay)",
        markup=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(DATA)
    cfg = TrainConfig(epochs=3 if fast else 15)
    independent = INDEPENDENT[:2] if fast else INDEPENDENT
    source, negatives = _train_models(out, splits, cfg, independent, seed)
    _step("prune the source (the owner's legitimate compressed copies)")
    pruned = pruned_copies(source, PRUNE_RATES, seed=seed)
    for rate, model in pruned:
        save_model(model, out / "models" / f"source-prune{int(rate * 100)}")
        console.print(f"pruned {rate:.0%}: test accuracy {accuracy(model, splits.test):.3f}")
    method_params, record, reference, results, commitments = _fingerprint(
        out, source, negatives, pruned, cfg, fast=fast, seed=seed
    )
    verdicts = _verify_black_box(out, results, pruned, negatives, independent)
    whitebox = _whitebox(out, source, splits, reference, negatives[0], fast=fast, seed=seed)
    summary = {
        "data": DATA,
        "fast": fast,
        "machine": machine,
        "seconds": round(time.time() - started, 1),
        "source_accuracy": source.card.accuracy,
        "independent_accuracy": {n: m.card.accuracy for (n, *_), m in zip(independent, negatives)},
        "commitments": commitments,
        "tuned": {TUNED: record["chosen"]},
        "verdicts": verdicts,
        "whitebox": whitebox,
        "results": {k: v.to_dict() for k, v in results.items()},
    }
    summary["zoo"] = _zoo_bench(out, method_params, fast=fast, seed=seed)
    summary["seconds"] = round(time.time() - started, 1)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    console.print(
        f"wrote {out}/results.json, models in {out}/models, fingerprints in {out}/fingerprints ({summary['seconds']} s)"
    )
    console.print("ARUC on the zoo: " + ", ".join(f"{m} {v:.2f}" for m, v in summary["zoo"]["aruc"].items()))
    console.print(f"report: {summary['zoo']['report']}")
    console.print(
        f"try: modelprint verify {out}/fingerprints/ltrc.fp.safetensors {out}/models/cnn-attacker-s1.safetensors"
    )
    return summary


def _train_models(
    out: Path, splits: Any, cfg: TrainConfig, independent: list, seed: int
) -> tuple[ModelprintModel, list[ModelprintModel]]:
    _step(f"train the owner's model and {len(independent)} independent models on {DATA}")
    source = train_new("cnn", splits.owner, cfg, seed=seed, test=splits.test)
    save_model(source, out / "models" / "source")
    negatives: list[ModelprintModel] = []
    for name, arch, split, s, args in independent:
        model = train_new(arch, splits.get(split), cfg, seed=seed + s, test=splits.test, **args)
        save_model(model, out / "models" / name)
        negatives.append(model)
    console.print(
        f"source accuracy {source.card.accuracy:.3f}; independent: "
        + ", ".join(f"{n} {m.card.accuracy:.3f}" for (n, *_), m in zip(independent, negatives))
    )
    return source, negatives


def _fingerprint(
    out: Path, source: ModelprintModel, negatives: list, pruned: list, cfg: TrainConfig, *, fast: bool, seed: int
) -> tuple[dict[str, dict], dict, list[ModelprintModel], dict, dict[str, str]]:
    """Step 3: tune LTRC, fingerprint with every black-box method, evaluate, calibrate, save."""
    _step("fingerprint the source (LTRC tuned on the owner's references), calibrate on reference models")
    fast_params = {"steps": 100} if fast else {}
    tuned, record = tune_method(
        source,
        TUNED,
        params=fast_params,
        grid={"k": [2, 6]} if fast else None,
        n=100,
        seed=seed,
        data=DATA,
        negatives=3 if fast else 6,
        epochs=cfg.epochs,
        archs=FAST_REFERENCE_ARCHS if fast else None,
        positive_epochs=1 if fast else 5,
        workers=0 if fast else None,  # three tiny models are quicker in process
    )
    console.print(f"tuned {TUNED}: " + ", ".join(f"{k}={v}" for k, v in record["chosen"].items()))
    method_params = {name: {**params, **fast_params} for name, params in METHODS.items()}
    method_params[TUNED] = tuned
    if fast:
        method_params = {m: {**p, **({"q": 3} if "gm" in m else {})} for m, p in method_params.items()}
    plan = ReferencePlan(
        3 if fast else REFERENCE_MODELS, data=DATA, epochs=cfg.epochs, archs=FAST_REFERENCE_ARCHS if fast else None
    )
    reference = train_reference(
        source_meta(source), plan, out_dir=out / "models" / "reference", workers=0 if fast else None
    )
    results, commitments = {}, {}
    for name, params in method_params.items():
        fp = create_method(name, **params).generate(source, n=100, seed=seed)
        if name == TUNED:
            fp.meta["tuning"] = record
        results[name] = evaluate_fingerprint(fp, source, [], negatives, pruned)
        fp = calibrate(fp, reference, [m for _, m in pruned], origin=f"{len(reference)} reference models")
        commitments[name] = fp.save(out / "fingerprints" / f"{name}.fp.safetensors")
    return method_params, record, reference, results, commitments


def _verify_black_box(out: Path, results: dict, pruned: list, negatives: list, independent: list) -> dict[str, str]:
    """Step 4: the evaluation table, then LTRC's verdicts on the most pruned copy and an independent model."""
    _step("evaluate and verify: pruned copies should match, independent models should not")
    print_table(results, f"digits 16 px, small CNN source, {len(negatives)} independent models")
    best = max(results.values(), key=lambda r: r.uniqueness)
    c, ltrc = results[BASELINE_METHOD], results[PROPOSED_METHOD]
    console.print(
        f"LTRC transferability {ltrc.transferability:.2f} vs C {c.transferability:.2f}; uniqueness "
        f"{ltrc.uniqueness:+.2f} vs {c.uniqueness:+.2f} (best: {best.method})"
    )
    fp_ltrc = Fingerprint.load(out / "fingerprints" / f"{PROPOSED_METHOD}.fp.safetensors")
    verdicts = {}
    for label, suspect in (
        (f"the {PRUNE_RATES[-1]:.0%}-pruned copy", pruned[-1][1]),
        (independent[0][0], negatives[0]),
    ):
        check = verify(fp_ltrc, suspect, fpr=1e-3)
        verdicts[label] = check.verdict
        console.print(f"verify ltrc on {label}:\n" + format_verification(check), markup=False)
    return verdicts


def _zoo_bench(out: Path, method_params: dict[str, dict], *, fast: bool, seed: int) -> dict[str, Any]:
    """Step 6: build a zoo of derived and independent suspects, benchmark every method, write the report."""
    _step("a zoo of derived and independent suspects: benchmark, report")
    zoo_dir, bench_dir = out / "zoo", out / "bench"
    spec = load_spec(FAST_ZOO_SPEC if fast else ZOO_SPEC)
    workers = 0 if fast else None  # a ten-model smoke zoo is quicker in process
    build_zoo(spec, zoo_dir, workers=workers, progress=True)
    bench_params = {m: p for m, p in method_params.items() if p}
    report = run_bench(zoo_dir, list(METHODS), bench_dir, n=100, seed=seed, method_params=bench_params)
    _, report_html = write_report(bench_dir)
    aruc = {m: round(r["metrics"]["aruc"], 4) for m, r in report["methods"].items()}
    return {"spec": spec.name, "models": len(spec.models), "report": str(report_html), "aruc": aruc}


def _whitebox(
    out: Path,
    source: ModelprintModel,
    splits,
    reference: list[ModelprintModel],
    independent: ModelprintModel,
    *,
    fast: bool,
    seed: int,
) -> dict:
    """The white-box story: mark the source's first convolution with the owner's key, read the
    fingerprint, calibrate on the reference models (each carrying its own owner's mark), and
    verify the marked model, copies an attacker made of it and an independent model."""
    _step(f"white-box: mark {WHITEBOX_HOST} with key {WHITEBOX_KEY}, fingerprint its spectrum, verify")
    method = create_method(MARK_METHOD)
    marked = method.prepare(
        source, splits.owner, key=WHITEBOX_KEY, test=splits.test, host=WHITEBOX_HOST, epochs=3 if fast else 20
    )
    save_model(marked, out / "models" / "source-marked")
    fp = method.generate(marked, n=16, seed=WHITEBOX_KEY)
    refs = [method.reference_model(fp, m, int(m.card.seed)) for m in reference]
    fp = calibrate(fp, refs, origin=f"{len(refs)} reference models, each marked with its own key")
    commitment = fp.save(out / "fingerprints" / f"{MARK_METHOD}.fp.safetensors")
    console.print(
        f"marked model: test accuracy {marked.card.accuracy:.3f} (unmarked {source.card.accuracy:.3f}), "
        f"{len(fp.extra['freqs'])} key frequencies; commitment {commitment[:16]}…"
    )
    attacks = {
        "an SGD fine-tuned copy": [("finetune", {"mode": "ftal", "epochs": 1 if fast else 5}, splits.tune)],
        "a copy with the module replaced": [("overwrite", {"how": "replace"}, None)],
        "a copy after spectral-reset (the adaptive attack)": [("spectral-reset", {}, None)],
    }
    suspects = {"the marked model": marked}
    for label, steps in attacks.items():
        model = marked
        for name, params, data in steps:
            model = create_attack(name, **params).apply(model, data, seed=seed, test=splits.test)
        suspects[label] = model
    suspects["an independent model"] = independent
    rows = {}
    for label, suspect in suspects.items():
        check = verify(fp, suspect, fpr=1e-3)
        acc = accuracy(suspect, splits.test)
        rows[label] = {"verdict": check.verdict, "score": check.statistic, "p_value": check.p_value, "accuracy": acc}
        console.print(
            f"verify frequency on {label} (test accuracy {acc:.3f}):\n" + format_verification(check), markup=False
        )
    return {
        "host": WHITEBOX_HOST,
        "key": WHITEBOX_KEY,
        "marked_accuracy": marked.card.accuracy,
        "unmarked_accuracy": source.card.accuracy,
        "commitment": commitment,
        "suspects": rows,
    }
