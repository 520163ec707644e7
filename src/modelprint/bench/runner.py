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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_text
from .._version import __version__
from ..attacks import ATTACKS
from ..data import load_splits
from ..errors import ParameterError
from ..fingerprints import METHODS, Fingerprint, FingerprintMethod, ablation_variants, create_method, method_of
from ..metrics import group_summary, margin
from ..models import ModelBytes, load_model, model_from_bytes, read_model_bytes, trust_arch
from ..models.custom import trusted_archs
from ..parallel import task_backend, task_threads
from ..progress import note, progress_bar, timed
from ..scoring import separation, statistics_of
from ..stealth import StealthConfig, detection_rates
from ..zoo import ZooManifest, ZooRow, source_row
from ..zoo.build import build_data
from .combined import combined_entry
from .heldout import honest_thresholds, split_negatives
from .screening import Screen, check_screens, screen_step

RESULTS = "results.json"
DEFAULT_BUDGETS = (10, 20, 50, 100)


def _cache_key(source_sha: str, method: str, params: dict[str, Any], n: int, seed: int, inputs: str = "") -> str:
    blob = {"source": source_sha, "method": method, "params": params, "n": n, "seed": seed}
    if inputs:
        blob["inputs"] = inputs
    blob = json.dumps(blob, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def query_suspect(model: Any, fingerprints: dict[str, Any], trusted: Sequence[str] = ()) -> dict[str, list[float]]:
    """A suspect's evidence for every method's fingerprint, item by item. Runs in a worker,
    anywhere: ``model`` is the suspect (a model, or its :class:`~modelprint.models.ModelBytes`)
    and ``fingerprints`` the fingerprints themselves, so no file is opened; ``trusted`` the
    architecture import paths the driver trusted (a worker is another process)."""
    trust_arch(*trusted)
    with task_threads(1):
        if isinstance(model, ModelBytes):
            model = model_from_bytes(model)
        return {m: method_of(fp).evidence(fp, model).values.tolist() for m, fp in fingerprints.items()}


def check_held_out(fp_meta: dict[str, dict[str, Any]], suspects: list[ZooRow], src: ZooRow) -> None:
    """Refuse to score a suspect that a method learnt from (its sha256 is among the trained
    models recorded in the fingerprint): its matching rate would measure memory, not
    generalisation. The source itself is shared by design and is never scored."""
    for m, meta in fp_meta.items():
        trained = METHODS.get(meta["method"]).learnt_from(meta) if meta.get("method") in METHODS else {}
        shared = [r["id"] for r in suspects if r is not src and r["sha256"] in trained]
        if shared:
            more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
            raise ParameterError(
                f"{m} learnt from {len(shared)} model(s) of this zoo ({', '.join(shared[:3])}{more}); "
                "build its training zoo with other seeds (e.g. the built-in *-train specs) so no suspect is shared"
            )


def _stealth(
    manifest: Any, source: Any, fp_files: dict[str, str], config: StealthConfig, progress: bool
) -> dict[str, Any]:
    """Detection rates of every method's queries, on the data the zoo was built from."""
    info = build_data(manifest.root)
    splits = load_splits(info["data"], split_seed=info["split_seed"], train_subset=info["train_subset"])
    queries = {m: Fingerprint.load(f).x for m, f in fp_files.items()}
    # White-box fingerprints send no queries: there is nothing to detect (their rate stays None).
    queries = {m: x for m, x in queries.items() if len(x)}
    return detection_rates(queries, splits.attacker, holder=source, test=splits.test, config=config, progress=progress)


def _mirror_id(row_id: str, source_id: str, mirror_id: str) -> str | None:
    return mirror_id + row_id[len(source_id) :] if row_id.startswith(source_id) else None


def _strength(recipe: list[dict[str, Any]]) -> tuple[str, Any] | None:
    """The first attack step whose strength setting (its class's ``strength``) the recipe names."""
    for step in recipe:
        name = step.get("attack")
        key = ATTACKS.get(name).strength if name in ATTACKS else None
        if key is not None and key in step:
            return f"{name}.{key}", step[key]
    return None


@dataclass
class BenchPlan:
    """What every step of a benchmark reads: the zoo, its source, the suspects, and each
    entry of ``methods`` (a method or an ablation variant) as a configured method object."""

    zoo: Path
    manifest: ZooManifest
    src: ZooRow
    suspects: list[ZooRow]
    methods: dict[str, FingerprintMethod]
    screens: dict[str, Screen] = field(default_factory=dict)  # entries whose queries are screened
    screen_references: Path | None = None  # the owner's reference set that screens them, if given


@dataclass
class BenchFingerprints:
    """Step 1's output: per entry of the plan, the fingerprint, its file and its metadata."""

    files: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)


@dataclass
class BenchRun:
    """What a benchmark run was asked for, where it writes, and the time each stage took
    (``timings``, as results.json records it); every step reads it."""

    plan: BenchPlan
    out: Path
    n: int
    seed: int
    budgets: tuple[int, ...]
    fpr: float
    workers: int
    backend: str
    device: str
    progress: bool
    timings: dict[str, Any] = field(default_factory=lambda: {"generation": {}, "querying": 0.0, "metrics": 0.0})


@dataclass
class BenchScores:
    """Step 3's output: the negatives' calibration / evaluation split, the source's mirror
    twin, each entry's results, each suspect's row, and the stealth and combined results."""

    split: tuple[list[str], list[str]]
    mirror: ZooRow | None
    positives: list[str]
    methods: dict[str, Any] = field(default_factory=dict)
    suspects: list[dict[str, Any]] = field(default_factory=list)
    stealth: dict[str, Any] | None = None
    combined: dict[str, Any] | None = None


def plan_bench(
    zoo: str | os.PathLike,
    methods: list[str],
    method_params: dict[str, dict[str, Any]] | None,
    variants: dict[str, tuple[str, dict[str, Any]]] | None,
    combine: list[str] | None = None,
    screen: dict[str, Screen] | None = None,
    screen_references: str | os.PathLike | None = None,
    *,
    ablation: bool = False,
) -> BenchPlan:
    """Check the request against the registry and the zoo; configure every method (and with
    ``ablation`` each combination of its tricks, after the methods themselves)."""
    if not methods:
        raise ParameterError("give at least one method in `methods`, e.g. c,ltrc", params=("methods",))
    if ablation:
        variants = {**(variants or {}), **ablation_entries(methods)}
        methods = [*methods, *(label for label in variants if label not in methods)]
    variants, method_params = variants or {}, method_params or {}
    base_of = {m: variants[m][0] if m in variants else m for m in methods}
    _check_request(base_of, method_params, combine)
    configured = {
        m: create_method(
            base_of[m], **{**method_params.get(base_of[m], {}), **(variants[m][1] if m in variants else {})}
        )
        for m in methods
    }
    missing = [
        f"{m} needs `method_params` {base_of[m]}.{setting}=... ({what})"
        for m, method in configured.items()
        for setting, what in method.missing_inputs().items()
    ]
    if missing:  # before any fingerprint is made: a method that cannot run must not fail after the others
        raise ParameterError("; ".join(missing), params=("method_params",))
    manifest = ZooManifest.read(zoo)
    src = source_row(manifest)
    suspects = manifest.select()
    if not manifest.select("negative"):
        raise ParameterError(f"{zoo} has no negative models: a benchmark needs both roles")
    check_screens(screen or {}, configured, screen_references, src["sha256"])
    references = Path(screen_references) if screen_references is not None else None
    return BenchPlan(Path(zoo), manifest, src, suspects, configured, dict(screen or {}), references)


def _check_request(
    base_of: dict[str, str], method_params: dict[str, dict[str, Any]], combine: list[str] | None
) -> None:
    """Every entry's method is registered, settings are given only for methods asked for, and
    a combined verdict is over two or more of them."""
    methods = list(base_of)
    if combine is not None and (len(set(combine)) < 2 or not set(combine) <= set(methods)):
        raise ParameterError(
            f"`combine` takes two or more of `methods` ({', '.join(methods)}), got {combine}",
            params=("combine", "methods"),
        )
    for base in base_of.values():
        METHODS.get(base)
    unknown = sorted(set(method_params) - set(base_of.values()))
    if unknown:
        raise ParameterError(
            f"parameters given for {', '.join(unknown)}, which is not among `methods`", params=("methods",)
        )


def make_fingerprints(run: BenchRun) -> BenchFingerprints:
    """Step 1: every method's fingerprint of the zoo's source, cached in ``out/fingerprints`` by
    content (source, method, settings, n, seed and the files the settings name); an entry to be
    screened gets its number of candidates instead of ``n``."""
    plan, out = run.plan, run.out
    source = load_model(plan.manifest.path(plan.src))
    made = BenchFingerprints()
    for m, method in plan.methods.items():
        count = plan.screens[m].candidates if m in plan.screens else run.n
        key = _cache_key(plan.src["sha256"], method.name, method.params(), count, run.seed, method.inputs_digest())
        path = out / "fingerprints" / f"{method.name}-{key}.fp.safetensors"
        generation = run.timings["generation"][m] = {"seconds": 0.0, "cached": path.is_file()}
        if generation["cached"]:
            fp = Fingerprint.load(path)
        else:
            with timed(generation, "seconds"):
                fp = method.generate(source, n=count, seed=run.seed, device=run.device, progress=run.progress)
                fp.save(path)
        made.files[m], made.fingerprints[m], made.items[m] = str(path), fp, method.items(fp)
        made.meta[m] = {"params": method.params(), "file": str(path.relative_to(out)), **fp.meta}
        made.meta[m] |= {"queries": len(fp), "summary": method.summary(fp)}
        if method.ablation:
            kept = {short: bool(getattr(method, k)) for short, k in method.ablation.items()}
            label = "+".join(short for short, on in kept.items() if on) or "none"
            made.meta[m]["ablation"] = {"kept": kept, "label": label, "paper_aruc": method.paper_ablation.get(label)}
    return made


def query_all(
    plan: BenchPlan, fingerprints: dict[str, Fingerprint], *, workers: int, backend: str, progress: bool
) -> dict[str, dict[str, list[float]]]:
    """Step 2: every suspect's evidence for every fingerprint, ``{suspect id: {entry: values}}``."""
    if workers < 0:
        raise ParameterError(f"`workers` must be >= 0, got {workers}", params=("workers",))
    answers: dict[str, dict[str, list[float]]] = {}
    with task_backend(backend, workers) as pool, progress_bar(len(plan.suspects), "query suspects", progress) as bar:
        # Values, not paths: in process the loaded objects, elsewhere the suspects' bytes (Ray: through the
        # object store, the fingerprints put there once), so no worker needs this machine's files.
        inline = backend == "local" and workers == 0
        shared = fingerprints if inline else pool.put(fingerprints)
        # A bounded number in flight: results (and the progress) come as suspects finish, and no
        # more than a few suspects' bytes wait at once. In process a task runs as it is submitted.
        pending, running = list(plan.suspects), {}
        while pending or running:
            while pending and len(running) < max(workers, 1) * 2:
                r = pending.pop(0)
                suspect = load_model(plan.manifest.path(r)) if inline else read_model_bytes(plan.manifest.path(r))
                running[pool.submit(query_suspect, suspect, shared, trusted_archs())] = r
            done, _ = pool.wait(list(running))
            for handle in done:
                row = running.pop(handle)
                answers[row["id"]] = pool.result(handle)
                bar.update(1)
    return answers


def _budgets_of(method: FingerprintMethod, items: int, budgets: tuple[int, ...]) -> list[int]:
    # A query budget is a prefix of the queries; white-box evidence costs none, so it has only its full set.
    if method.evidence_kind == "components":
        return [items]
    return sorted({b for b in budgets if 0 < b < items} | {items})


def _mirror(plan: BenchPlan) -> ZooRow | None:
    """The negative trained like the source (same category and architecture, other seed or split)."""
    src = plan.src
    return next(
        (
            r
            for r in plan.suspects
            if r["role"] == "negative"
            and r["parent"] is None
            and r["category"] == src["category"]
            and r["arch"] == src["arch"]
        ),
        None,
    )


def _margins(plan: BenchPlan, mirror: ZooRow | None, rates: dict[str, float]) -> list[dict[str, Any]]:
    """Each positive's statistic minus that of its mirror twin (the same recipe applied to the mirror)."""
    out: list[dict[str, Any]] = []
    if mirror is None:
        return out
    for r in plan.suspects:
        twin = _mirror_id(r["id"], plan.src["id"], mirror["id"]) if r["role"] == "positive" else None
        if twin and twin in rates:
            strength = _strength(r["recipe"]) if r is not plan.src else None
            out.append(
                {
                    "id": r["id"],
                    "mirror": twin,
                    "category": r["category"],
                    "strength": list(strength) if strength else None,
                    "margin": float(margin([rates[r["id"]]], [rates[twin]])[0]),
                }
            )
    return out


def score_method(
    plan: BenchPlan,
    m: str,
    values: dict[str, list[float]],
    items: int,
    *,
    budgets: tuple[int, ...],
    fpr: float,
    split: tuple[list[str], list[str]],
    pos_ids: list[str],
    mirror: ZooRow | None,
    fingerprint: dict[str, Any],
    fp: Fingerprint,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Step 3 for one entry: metrics at every budget, per category and architecture, the
    calibrated decision rules on held-out negatives, and the margins over the mirror; returns
    the entry of results.json (in reading order) and each suspect's statistic."""
    method = plan.methods[m]
    negatives = [r["id"] for r in plan.suspects if r["role"] == "negative"]
    rates_at = {b: statistics_of(method, values, b) for b in _budgets_of(method, items, budgets)}
    rates = rates_at[items]
    by_budget = {
        str(b): separation(np.array([r[i] for i in pos_ids]), np.array([r[i] for i in negatives]), fpr)
        for b, r in rates_at.items()
    }
    others = [r for r in plan.suspects if r is not plan.src]
    scores, roles = [rates[r["id"]] for r in others], [r["role"] for r in others]
    summary = {kind: group_summary(scores, roles, [r[kind] for r in others]) for kind in ("category", "arch")}
    full = {i: v[:items] for i, v in values.items()}
    entry = {
        "statistic": method.statistic_name,
        "evidence": method.evidence_kind,
        "fingerprint": fingerprint,
        "calibrated": honest_thresholds(
            method, fp, full, pos_ids, split[0], split[1], fpr, {r["id"]: r["category"] for r in plan.suspects}
        ),
        "metrics": by_budget[str(items)],
        "budgets": by_budget,
        "by_category": summary["category"],
        "by_architecture": summary["arch"],
        "margins": _margins(plan, mirror, rates),
    }
    return entry, rates


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
    stealth: bool | StealthConfig = False,
    workers: int = 0,
    backend: str = "local",
    device: str = "cpu",
    progress: bool = True,
    combine: list[str] | None = None,
    screen: dict[str, Screen] | None = None,
    screen_references: str | os.PathLike | None = None,
    ablation: bool = False,
) -> dict[str, Any]:
    """Benchmark ``methods`` on the zoo in ``zoo``; writes ``out/results.json`` and returns it.

    The steps: :func:`plan_bench` -> :func:`make_fingerprints` -> :func:`query_all` ->
    :func:`score_method` per method. ``workers=0`` (default) queries in this process: on CPU a
    suspect answers faster than a worker process starts; use workers (or ``backend="ray"``)
    for large models or big zoos. ``variants``: further entries ``{label: (method, settings)}``,
    each with its method's ``method_params`` under its own settings; ``ablation`` adds every
    combination of each method's tricks (:func:`ablation_entries`). ``stealth``: each method's detection rate
    (:mod:`modelprint.stealth`; a :class:`~modelprint.stealth.StealthConfig` sets the detectors'
    training, True its defaults). ``combine``: the combined verdict over those methods
    (:mod:`modelprint.bench.combined`). ``screen`` (``{entry: Screen(keep, candidates)}``):
    those entries' queries are screened by part of the calibration negatives, then scored
    nowhere, or by the reference set in ``screen_references`` (:mod:`modelprint.bench.screening`)."""
    plan = plan_bench(zoo, methods, method_params, variants, combine, screen, screen_references, ablation=ablation)
    run = BenchRun(plan, Path(out), n, seed, budgets, fpr, workers, backend, device, progress)
    (run.out / "fingerprints").mkdir(parents=True, exist_ok=True)
    made = make_fingerprints(run)
    check_held_out(made.meta, plan.suspects, plan.src)
    with timed(run.timings, "querying"):
        answers = query_all(plan, made.fingerprints, workers=workers, backend=backend, progress=progress)
    run.timings["suspects_per_second"] = round(len(plan.suspects) / max(run.timings["querying"], 1e-9), 2)
    split, selection = screen_step(plan, made, answers, split_negatives(plan.suspects, seed), run.out)
    scored = BenchScores(split, _mirror(plan), _positive_ids(plan))
    if stealth:
        with timed(run.timings, "stealth"):
            scored.stealth = _stealth_rates(run, made, stealth)
    with timed(run.timings, "metrics"):
        _score_all(run, made, answers, scored)
        if combine:
            scored.combined = _combined(plan, made, answers, combine, scored, fpr)
    results = _results(run, made, scored)
    results["negative_split"].update(selection)  # screening: which models chose the queries
    # Insertion order (methods as asked, categories in spec order, budgets ascending) is the reading order.
    atomic_write_text(run.out / RESULTS, json.dumps(results, indent=2) + "\n")
    if progress:
        note(f"wrote {run.out / RESULTS}: {len(plan.methods)} methods x {len(plan.suspects)} suspects")
    return results


def ablation_entries(methods: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each method's tricks switched off in every combination but all on (the method itself):
    ``{label: (method, settings)}`` (:func:`~modelprint.fingerprints.ablation_variants`)."""
    entries: dict[str, tuple[str, dict[str, Any]]] = {}
    for m in methods:
        entries.update({label: v for label, v in ablation_variants(m).items() if label != m})
    if not entries:
        raise ParameterError("`ablation`: none of `methods` has tricks to remove", params=("ablation", "methods"))
    return entries


def _positive_ids(plan: BenchPlan) -> list[str]:
    """The zoo's positives but its source: what a method must match."""
    ids = [r["id"] for r in plan.suspects if r["role"] == "positive" and r is not plan.src]
    if not ids:
        raise ParameterError(f"{plan.zoo} has no positive model besides the source")
    return ids


def _stealth_rates(run: BenchRun, made: BenchFingerprints, stealth: bool | StealthConfig) -> dict[str, Any]:
    """Each method's detection rate (:mod:`modelprint.stealth`)."""
    config = stealth if isinstance(stealth, StealthConfig) else StealthConfig()
    source = load_model(run.plan.manifest.path(run.plan.src))
    return _stealth(run.plan.manifest, source, made.files, config, run.progress)


def _score_all(
    run: BenchRun, made: BenchFingerprints, answers: dict[str, dict[str, list[float]]], scored: BenchScores
) -> None:
    """Every method's metrics (:func:`score_method`) and each suspect's row with its rate per
    method, into ``scored``."""
    plan = run.plan
    scored.suspects = [
        {k: r[k] for k in ("id", "role", "category", "arch", "parent", "recipe", "accuracy")} for r in plan.suspects
    ]
    scoring = {"budgets": run.budgets, "fpr": run.fpr, "split": scored.split, "mirror": scored.mirror}
    for m in plan.methods:
        values = {i: v[m] for i, v in answers.items()}
        fingerprint = {"fingerprint": made.meta[m], "fp": made.fingerprints[m]}
        entry, rates = score_method(plan, m, values, made.items[m], pos_ids=scored.positives, **scoring, **fingerprint)
        if scored.stealth is not None:
            entry["detection_rate"] = scored.stealth["methods"].get(m)
        scored.methods[m] = entry
        for row in scored.suspects:
            row.setdefault("rates", {})[m] = rates[row["id"]]


def _combined(
    plan: BenchPlan,
    made: BenchFingerprints,
    answers: dict[str, dict[str, list[float]]],
    combine: list[str],
    scored: BenchScores,
    fpr: float,
) -> dict[str, Any]:
    """The combined verdict over the ``combine`` methods (:mod:`modelprint.bench.combined`)."""
    negatives = [r["id"] for r in plan.suspects if r["role"] == "negative"]
    return combined_entry(
        {m: plan.methods[m] for m in combine},
        {m: made.fingerprints[m] for m in combine},
        {m: {i: v[m][: made.items[m]] for i, v in answers.items()} for m in combine},
        scored.positives,
        negatives,
        scored.split[0],
        scored.split[1],
        {r["id"]: r["category"] for r in plan.suspects},
        fpr=fpr,
    )


def _results(run: BenchRun, made: BenchFingerprints, scored: BenchScores) -> dict[str, Any]:
    """results.json, in reading order."""
    methods = run.plan.methods
    budgets = sorted({b for m in methods for b in _budgets_of(methods[m], made.items[m], run.budgets)})
    machine = {
        "cpus": os.cpu_count() or 1,
        "workers": run.workers,
        "backend": run.backend,
        "platform": platform.platform(),
    }
    stealth = None if scored.stealth is None else {k: scored.stealth[k] for k in ("false_alarm", "settings")}
    results = {
        "modelprint": __version__,
        "zoo": str(run.plan.zoo.resolve()),
        "source": run.plan.src["id"],
        "mirror": scored.mirror["id"] if scored.mirror else None,
        "n": run.n,
        "seed": run.seed,
        "fpr": run.fpr,
        "budgets": budgets,
        "negative_split": {"calibration": scored.split[0], "evaluation": scored.split[1], "seed": run.seed},
        "methods": scored.methods,
        "stealth": stealth,
        "suspects": scored.suspects,
        "timings": run.timings,
        "machine": machine,
    }
    if scored.combined is not None:
        results["combined"] = scored.combined
    return results
