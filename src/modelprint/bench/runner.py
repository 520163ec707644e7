"""``modelprint bench``: every method against every suspect of a zoo.

1. Each method's fingerprint is made once from the zoo's source and cached under
   ``DIR/fingerprints/`` by a content hash of (source sha256, method, parameters, n, seed),
   so a rerun, or another benchmark folder given the same cache, skips generation.
2. Every suspect is loaded once and answers every method's queries (one task per
   suspect, on the local pool or Ray, as the zoo builder). Answers are kept per query, so
   every metric can be recomputed at smaller query budgets (prefixes of the query set).
3. Metrics per method, per budget, per category and per architecture go to
   ``results.json`` with the method parameters, the package version and stage timings.
4. Honest thresholds: the negatives are split, per architecture and seeded, into a
   calibration half and an evaluation half. The threshold (and the null, for p-values)
   is fitted on the calibration half only, and FPR / TPR are reported on the evaluation
   half beside the in-sample numbers, with the binomial interval of the observed FPR.

Nothing here knows a method's family: each suspect returns per-item evidence
(:meth:`~modelprint.fingerprints.FingerprintMethod.evidence`), and every number is the
method's statistic on a prefix of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._io import atomic_write_text
from ..errors import ParameterError
from ..metrics import aruc, best_f1, group_summary, margin, roc_auc, threshold_at_fpr, tnr_at, tpr_at, tpr_at_fpr
from ..null import clopper_pearson, fit_null, p_value
from ..parallel import task_backend
from ..progress import console, progress_bar
from ..zoo import ZooManifest, source_row

RESULTS = "results.json"
DEFAULT_BUDGETS = (10, 20, 50, 100)
# Attack settings that measure strength, for margin-by-strength plots (first found wins).
STRENGTH_KEYS = ("rate", "sigma", "p", "mode", "arch")


def _cache_key(source_sha: str, method: str, params: dict[str, Any], n: int, seed: int, inputs: str = "") -> str:
    blob = {"source": source_sha, "method": method, "params": params, "n": n, "seed": seed}
    if inputs:
        blob["inputs"] = inputs
    blob = json.dumps(blob, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def query_suspect(model: Any, fingerprints: dict[str, Any]) -> dict[str, list[float]]:
    """A suspect's evidence for every method's fingerprint, item by item. Runs in a worker,
    anywhere: ``model`` is the suspect (a model, or its :class:`~modelprint.models.ModelBytes`)
    and ``fingerprints`` the fingerprints themselves, so no file is opened."""
    import torch

    from ..fingerprints import method_of
    from ..models import ModelBytes, model_from_bytes

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(model, ModelBytes):
            model = model_from_bytes(model)
        return {m: method_of(fp).evidence(fp, model).values.tolist() for m, fp in fingerprints.items()}
    finally:
        torch.set_num_threads(threads_before)  # in-process querying runs in the caller's process


def _metrics(pos: np.ndarray, neg: np.ndarray, fpr: float) -> dict[str, float]:
    f1, threshold = best_f1(pos, neg)
    robustness, transfer = float(pos.mean()), float(neg.mean())
    return {
        "robustness": robustness,
        "transferability": transfer,
        "uniqueness": robustness - transfer,
        "aruc": aruc(pos, neg),
        "auc": roc_auc(pos, neg),
        "f1": f1,
        "threshold": threshold,
        "tpr_at_threshold": tpr_at(pos, threshold),
        "tnr_at_threshold": tnr_at(neg, threshold),
        f"tpr_at_{fpr:g}_fpr": tpr_at_fpr(pos, neg, fpr),
    }


def split_negatives(rows: list[dict[str, Any]], seed: int) -> tuple[list[str], list[str]]:
    """Negatives' ids cut into (calibration, evaluation) halves, per architecture: each
    architecture's negatives are shuffled (seeded) and dealt alternately; an odd one out goes
    to whichever half is smaller, so both halves see every architecture that has two."""
    import random

    rng = random.Random(seed)
    calib: list[str] = []
    evaluation: list[str] = []
    by_arch: dict[str, list[str]] = {}
    for r in rows:
        if r["role"] == "negative":
            by_arch.setdefault(r["arch"], []).append(r["id"])
    for arch in sorted(by_arch):
        ids = sorted(by_arch[arch])
        rng.shuffle(ids)
        half = len(ids) // 2
        calib += ids[:half]
        evaluation += ids[half : 2 * half]
        if len(ids) % 2:
            (calib if len(calib) <= len(evaluation) else evaluation).append(ids[-1])
    return calib, evaluation


def honest_thresholds(
    method: Any, values: dict[str, list[float]], pos_ids: list[str], calib: list[str], evaluation: list[str], fpr: float
) -> dict[str, Any]:
    """FPR and TPR of two calibrated decision rules, fitted on ``calib`` negatives only and
    scored on ``evaluation`` negatives (and every positive):

    * ``threshold``: the empirical threshold at ``fpr`` on the calibration negatives;
    * ``null``: the method's null fitted on the calibration negatives, verdict ``p < fpr``
      (and ``p < 1e-3``), as ``modelprint verify`` decides.

    ``fpr_interval`` is the 95 % Clopper-Pearson interval of each observed FPR;
    ``fpr_within`` says whether the nominal ``fpr`` lies inside it."""
    stat = {i: method.statistic(np.asarray(v)) for i, v in values.items()}
    cal = np.array([stat[i] for i in calib])
    ev = np.array([stat[i] for i in evaluation])
    pos = np.array([stat[i] for i in pos_ids])
    out: dict[str, Any] = {"calibration_negatives": len(calib), "evaluation_negatives": len(evaluation)}
    if len(calib) < 3 or len(evaluation) < 1:
        out["skipped"] = "fewer than 3 calibration or no evaluation negatives"
        return out

    def rates(false_pos: int, true_pos: int) -> dict[str, Any]:
        lo, hi = clopper_pearson(false_pos, len(ev), 0.95)
        return {
            "fpr": false_pos / len(ev),
            "false_positives": false_pos,
            "fpr_interval": [lo, hi],
            "fpr_within": bool(lo <= fpr <= hi),
            "tpr": true_pos / max(len(pos), 1),
        }

    t = threshold_at_fpr(cal, fpr)
    out["threshold"] = {"value": t, **rates(int(np.sum(ev >= t)), int(np.sum(pos >= t)))}
    null = fit_null(method.null_family, [np.asarray(values[i]) for i in calib], cal)

    def p_of(i: str) -> float:
        return p_value(null, np.asarray(values[i]), stat[i])

    summary = {k: null[k] for k in ("family", "mean", "rho", "sd") if k in null}
    p_ev = np.array([p_of(i) for i in evaluation])
    p_pos = np.array([p_of(i) for i in pos_ids])
    out["null"] = {
        **summary,
        **rates(int(np.sum(p_ev < fpr)), int(np.sum(p_pos < fpr))),
        "evaluation_matches_at_0.001": int(np.sum(p_ev < 1e-3)),
        "tpr_at_0.001": float(np.mean(p_pos < 1e-3)) if len(pos) else 0.0,
    }
    return out


def check_held_out(fp_meta: dict[str, dict[str, Any]], suspects: list[dict[str, Any]], src: dict[str, Any]) -> None:
    """Refuse to score a suspect that a method learnt from (its sha256 is among the trained
    models recorded in the fingerprint): its matching rate would measure memory, not
    generalisation. The source itself is shared by design and is never scored."""
    for m, meta in fp_meta.items():
        trained = {r["sha256"]: r["id"] for r in meta.get("trained_models") or []}
        shared = [r["id"] for r in suspects if r is not src and r["sha256"] in trained]
        if shared:
            more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
            raise ParameterError(
                f"{m} learnt from {len(shared)} model(s) of this zoo ({', '.join(shared[:3])}{more}); "
                "build its training zoo with other seeds (e.g. the built-in *-train specs) so no suspect is shared"
            )


def _stealth(manifest: Any, source: Any, fp_files: dict[str, str], progress: bool) -> dict[str, Any]:
    """Detection rates of every method's queries, on the data the zoo was built from."""
    from ..data import load_splits
    from ..fingerprints import Fingerprint
    from ..stealth import detection_rates
    from ..zoo.build import BUILD_FILE

    try:
        info = json.loads((manifest.root / BUILD_FILE).read_text("utf-8"))
        data, split_seed, subset = info["data"], int(info.get("split_seed", 0)), int(info.get("train_subset", 0))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ParameterError(f"--stealth needs the zoo's {BUILD_FILE} (which data it was built from)") from None
    splits = load_splits(data, split_seed=split_seed, train_subset=subset)
    queries = {m: Fingerprint.load(f).x for m, f in fp_files.items()}
    # White-box fingerprints send no queries: there is nothing to detect (their rate stays None).
    queries = {m: x for m, x in queries.items() if len(x)}
    return detection_rates(queries, splits.attacker, holder=source, test=splits.test, progress=progress)


def _mirror_id(row_id: str, source_id: str, mirror_id: str) -> str | None:
    return mirror_id + row_id[len(source_id) :] if row_id.startswith(source_id) else None


def _strength(recipe: list[dict[str, Any]]) -> tuple[str, Any] | None:
    for key in STRENGTH_KEYS:
        for step in recipe:
            if key in step and "train" not in step:
                return f"{step['attack']}.{key}", step[key]
    return None


def run_bench(
    zoo: str | os.PathLike,
    methods: list[str],
    out: str | os.PathLike,
    *,
    n: int = 100,
    seed: int = 0,
    method_params: dict[str, dict[str, Any]] | None = None,
    budgets: tuple[int, ...] = DEFAULT_BUDGETS,
    fpr: float = 0.01,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    stealth: bool = False,
    workers: int = 0,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark ``methods`` on the zoo in ``zoo``; writes ``out/results.json`` and returns it.

    ``workers=0`` (default) queries in this process: on CPU a suspect answers in tens of
    milliseconds, less than a worker process takes to start (benchmarks/BENCHMARKS.md);
    use workers (or ``backend="ray"``) for large models or big zoos.

    ``variants`` names further entries of ``methods`` as ``{label: (method, settings)}`` (an
    ablation: :func:`~modelprint.fingerprints.ablation_variants`); a variant takes its
    method's ``method_params`` too, with its own settings on top.

    ``stealth`` adds each method's detection rate (:mod:`modelprint.stealth`): detectors
    trained on the zoo's attacker split against noise and FGSM on the zoo's source."""
    from ..fingerprints import METHODS, Fingerprint, create_method
    from ..models import load_model, read_model_bytes

    if not methods:
        raise ParameterError("give at least one method, e.g. --methods c,ltrc")
    variants = variants or {}
    base_of = {m: variants[m][0] if m in variants else m for m in methods}
    for m in methods:
        METHODS.get(base_of[m])
    method_params = method_params or {}
    unknown = sorted(set(method_params) - set(base_of.values()))
    if unknown:
        raise ParameterError(f"parameters given for {', '.join(unknown)}, which is not among --methods")
    manifest = ZooManifest.read(zoo)
    src = source_row(manifest)
    suspects = [r for r in manifest.rows if r["status"] == "done"]
    if not any(r["role"] == "negative" for r in suspects):
        raise ParameterError(f"{zoo} has no negative models: a benchmark needs both roles")
    out = Path(out)
    (out / "fingerprints").mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {"generation": {}, "querying": 0.0, "metrics": 0.0}

    # 1. fingerprints, cached by content
    source = load_model(manifest.path(src))
    fp_files: dict[str, str] = {}
    fingerprints: dict[str, Fingerprint] = {}
    fp_meta: dict[str, dict[str, Any]] = {}
    items: dict[str, int] = {}
    method_objs: dict[str, Any] = {}
    for m in methods:
        name = base_of[m]
        settings = {**method_params.get(name, {}), **(variants[m][1] if m in variants else {})}
        method = method_objs[m] = create_method(name, **settings)
        key = _cache_key(src["sha256"], name, method.params(), n, seed, method.inputs_digest())
        path = out / "fingerprints" / f"{name}-{key}.fp.safetensors"
        started = time.perf_counter()
        if path.is_file():
            fp = Fingerprint.load(path)
            timings["generation"][m] = {"seconds": 0.0, "cached": True}
        else:
            fp = method.generate(source, n=n, seed=seed, device=device, progress=progress)
            fp.save(path)
            timings["generation"][m] = {"seconds": round(time.perf_counter() - started, 3), "cached": False}
        fp_files[m] = str(path)
        fingerprints[m] = fp
        fp_meta[m] = {"params": method.params(), "file": str(path.relative_to(out)), **fp.meta}
        if method.ablation:
            kept = {short: bool(getattr(method, k)) for short, k in method.ablation.items()}
            label = "+".join(short for short, on in kept.items() if on) or "none"
            paper = getattr(method, "paper_ablation", {}).get(label)
            fp_meta[m]["ablation"] = {"kept": kept, "label": label, "paper_aruc": paper}
        items[m] = method.items(fp)

    check_held_out(fp_meta, suspects, src)
    stealth_result = None
    if stealth:
        started = time.perf_counter()
        stealth_result = _stealth(manifest, source, fp_files, progress)
        timings["stealth"] = round(time.perf_counter() - started, 3)

    # 2. every suspect answers every method's queries
    cpus = os.cpu_count() or 1
    if workers < 0:
        raise ParameterError(f"workers must be >= 0, got {workers}")
    started = time.perf_counter()
    answers: dict[str, dict[str, list[float]]] = {}
    with task_backend(backend, workers) as pool, progress_bar(len(suspects), "query suspects", progress) as bar:
        # Values, not paths: in process the loaded objects, elsewhere the suspects' bytes (Ray: through the
        # object store, the fingerprints put there once), so no worker needs this machine's files.
        inline = backend == "local" and workers == 0
        shared = fingerprints if inline else pool.put(fingerprints)
        running = {}
        for r in suspects:
            suspect = load_model(manifest.path(r)) if inline else read_model_bytes(manifest.path(r))
            running[pool.submit(query_suspect, suspect, shared)] = r
        while running:
            done, _ = pool.wait(list(running))
            for handle in done:
                row = running.pop(handle)
                answers[row["id"]] = pool.result(handle)
                bar.update(1)
    timings["querying"] = round(time.perf_counter() - started, 3)
    timings["suspects_per_second"] = round(len(suspects) / max(timings["querying"], 1e-9), 2)

    # 3. metrics
    started = time.perf_counter()

    def budgets_of(m: str) -> list[int]:
        # A query budget is a prefix of the queries; white-box evidence costs none, so it has only its full set.
        if method_objs[m].evidence_kind == "components":
            return [items[m]]
        return sorted({b for b in budgets if 0 < b < items[m]} | {items[m]})

    budget_list = sorted({b for m in methods for b in budgets_of(m)})
    mirror = next(
        (
            r
            for r in suspects
            if r["role"] == "negative"
            and r["parent"] is None
            and r["category"] == src["category"]
            and r["arch"] == src["arch"]
        ),
        None,
    )
    per_method: dict[str, Any] = {}
    suspect_rows = [
        {k: r[k] for k in ("id", "role", "category", "arch", "parent", "recipe", "accuracy")} for r in suspects
    ]
    calib_ids, eval_ids = split_negatives(suspects, seed)
    pos_ids = [r["id"] for r in suspects if r["role"] == "positive" and r is not src]
    if not pos_ids:
        raise ParameterError(f"{zoo} has no positive model besides the source")
    for m in methods:
        method, full = method_objs[m], items[m]
        rates_at = {
            b: {r["id"]: method.statistic(np.asarray(answers[r["id"]][m][:b])) for r in suspects} for b in budgets_of(m)
        }
        rates = rates_at[full]
        by_budget = {
            str(b): _metrics(
                np.array([rates_at[b][i] for i in pos_ids]),
                np.array([rates_at[b][r["id"]] for r in suspects if r["role"] == "negative"]),
                fpr,
            )
            for b in budgets_of(m)
        }
        others = [r for r in suspects if r is not src]
        values = [rates[r["id"]] for r in others]
        roles = [r["role"] for r in others]
        summary = {kind: group_summary(values, roles, [r[kind] for r in others]) for kind in ("category", "arch")}
        honest = honest_thresholds(
            method, {r["id"]: answers[r["id"]][m][:full] for r in suspects}, pos_ids, calib_ids, eval_ids, fpr
        )
        margins = []
        if mirror is not None:
            for r in suspects:
                twin = _mirror_id(r["id"], src["id"], mirror["id"]) if r["role"] == "positive" else None
                if twin and twin in rates:
                    strength = _strength(r["recipe"]) if r is not src else None
                    margins.append(
                        {
                            "id": r["id"],
                            "mirror": twin,
                            "category": r["category"],
                            "strength": list(strength) if strength else None,
                            "margin": float(margin([rates[r["id"]]], [rates[twin]])[0]),
                        }
                    )
        per_method[m] = {
            "statistic": method.statistic_name,
            "evidence": method.evidence_kind,
            "fingerprint": fp_meta[m],
            "calibrated": honest,
            "metrics": by_budget[str(full)],
            "budgets": by_budget,
            "by_category": summary["category"],
            "by_architecture": summary["arch"],
            "margins": margins,
        }
        if stealth_result is not None:
            per_method[m]["detection_rate"] = stealth_result["methods"].get(m)
        for row in suspect_rows:
            row.setdefault("rates", {})[m] = rates[row["id"]]
    timings["metrics"] = round(time.perf_counter() - started, 3)
    results = {
        "modelprint": __version__,
        "zoo": str(Path(zoo).resolve()),
        "source": src["id"],
        "mirror": mirror["id"] if mirror else None,
        "n": n,
        "seed": seed,
        "fpr": fpr,
        "budgets": budget_list,
        "negative_split": {"calibration": calib_ids, "evaluation": eval_ids, "seed": seed},
        "methods": per_method,
        "stealth": None if stealth_result is None else {k: stealth_result[k] for k in ("false_alarm", "settings")},
        "suspects": suspect_rows,
        "timings": timings,
        "machine": {"cpus": cpus, "workers": workers, "backend": backend, "platform": platform.platform()},
    }
    # Insertion order (methods as asked, categories in spec order, budgets ascending) is the reading order.
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    if progress:
        console.print(f"wrote {out / RESULTS}: {len(methods)} methods x {len(suspects)} suspects")
    return results
