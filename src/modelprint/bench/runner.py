"""``modelprint bench``: every method against every suspect of a zoo.

1. Each method's fingerprint is made once from the zoo's source and cached under
   ``DIR/fingerprints/`` by a content hash of (source sha256, method, parameters, n, seed),
   so a rerun, or another benchmark folder given the same cache, skips generation.
2. Every suspect is loaded once and answers every method's queries (one task per
   suspect, on the local pool or Ray, as the zoo builder). Answers are kept per query, so
   every metric can be recomputed at smaller query budgets (prefixes of the query set).
3. Metrics per method, per budget, per category and per architecture go to
   ``results.json`` with the method parameters, the package version and stage timings.
"""

from __future__ import annotations

import functools
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
from ..metrics import aruc, best_f1, margin, roc_auc, tnr_at, tpr_at, tpr_at_fpr
from ..parallel import task_backend
from ..progress import console, progress_bar
from ..zoo import ZooManifest, source_row

RESULTS = "results.json"
DEFAULT_BUDGETS = (10, 20, 50, 100)
# Attack settings that measure strength, for margin-by-strength plots (first found wins).
STRENGTH_KEYS = ("rate", "sigma", "p", "mode", "arch")


def _cache_key(source_sha: str, method: str, params: dict[str, Any], n: int, seed: int) -> str:
    blob = json.dumps({"source": source_sha, "method": method, "params": params, "n": n, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, mtime_ns: int, size: int) -> Any:
    """One load per fingerprint file and process, not one per suspect (the stamp keys a rewrite)."""
    from ..fingerprints import Fingerprint

    return Fingerprint.load(path)


def query_suspect(model_file: str, fingerprint_files: dict[str, str]) -> dict[str, list[int]]:
    """A suspect's answers to every method's queries (runs in a worker)."""
    import torch

    from ..models import load_model
    from ..verify import suspect_labels

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_model(model_file)
        answers = {}
        for m, f in fingerprint_files.items():
            stat = os.stat(f)
            answers[m] = suspect_labels(_fingerprint(f, stat.st_mtime_ns, stat.st_size), model).tolist()
        return answers
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
    workers: int = 0,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark ``methods`` on the zoo in ``zoo``; writes ``out/results.json`` and returns it.

    ``workers=0`` (default) queries in this process: on CPU a suspect answers in tens of
    milliseconds, less than a worker process takes to start (benchmarks/BENCHMARKS.md);
    use workers (or ``backend="ray"``) for large models or big zoos."""
    from ..fingerprints import METHODS, Fingerprint, create_method
    from ..models import load_model

    if not methods:
        raise ParameterError("give at least one method, e.g. --methods c,ltrc")
    for m in methods:
        METHODS.get(m)
    method_params = method_params or {}
    unknown = sorted(set(method_params) - set(methods))
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
    fp_meta: dict[str, dict[str, Any]] = {}
    expected: dict[str, np.ndarray] = {}
    for m in methods:
        method = create_method(m, **method_params.get(m, {}))
        key = _cache_key(src["sha256"], m, method.params(), n, seed)
        path = out / "fingerprints" / f"{m}-{key}.fp.safetensors"
        started = time.perf_counter()
        if path.is_file():
            fp = Fingerprint.load(path)
            timings["generation"][m] = {"seconds": 0.0, "cached": True}
        else:
            fp = method.generate(source, n=n, seed=seed, device=device, progress=progress)
            fp.save(path)
            timings["generation"][m] = {"seconds": round(time.perf_counter() - started, 3), "cached": False}
        fp_files[m] = str(path)
        fp_meta[m] = {"params": method.params(), "file": str(path.relative_to(out)), **fp.meta}
        expected[m] = fp.y.numpy()

    # 2. every suspect answers every method's queries
    cpus = os.cpu_count() or 1
    if workers < 0:
        raise ParameterError(f"workers must be >= 0, got {workers}")
    started = time.perf_counter()
    answers: dict[str, dict[str, list[int]]] = {}
    with task_backend(backend, workers) as pool, progress_bar(len(suspects), "query suspects", progress) as bar:
        running = {pool.submit(query_suspect, str(manifest.path(r)), fp_files): r for r in suspects}
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
    full = min(len(y) for y in expected.values())
    budget_list = sorted({b for b in budgets if 0 < b < full} | {full})
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
    for m in methods:
        y = expected[m]
        rates_at = {
            b: {r["id"]: float(np.mean(np.asarray(answers[r["id"]][m][:b]) == y[:b])) for r in suspects}
            for b in budget_list
        }
        rates = rates_at[full]
        if not any(r["role"] == "positive" and r is not src for r in suspects):
            raise ParameterError(f"{zoo} has no positive model besides the source")
        by_budget = {
            str(b): _metrics(
                np.array([rates_at[b][r["id"]] for r in suspects if r["role"] == "positive" and r is not src]),
                np.array([rates_at[b][r["id"]] for r in suspects if r["role"] == "negative"]),
                fpr,
            )
            for b in budget_list
        }
        groups: dict[str, dict[str, dict[str, list[float]]]] = {"category": {}, "arch": {}}
        for r in suspects:
            if r is src:
                continue
            for kind in groups:
                groups[kind].setdefault(r[kind], {"positive": [], "negative": []})[r["role"]].append(rates[r["id"]])
        summary = {
            kind: {
                g: {role: float(np.mean(v)) if v else None for role, v in d.items()}
                | {"models": sum(map(len, d.values()))}
                for g, d in by_kind.items()
            }
            for kind, by_kind in groups.items()
        }
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
            "fingerprint": fp_meta[m],
            "metrics": by_budget[str(full)],
            "budgets": by_budget,
            "by_category": summary["category"],
            "by_architecture": summary["arch"],
            "margins": margins,
        }
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
        "methods": per_method,
        "suspects": suspect_rows,
        "timings": timings,
        "machine": {"cpus": cpus, "workers": workers, "backend": backend, "platform": platform.platform()},
    }
    # Insertion order (methods as asked, categories in spec order, budgets ascending) is the reading order.
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    if progress:
        console.print(f"wrote {out / RESULTS}: {len(methods)} methods x {len(suspects)} suspects")
    return results
