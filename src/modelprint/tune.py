"""``fingerprint create --tune``: choose a method's settings on the owner's own reference models.

The owner can always make both kinds of reference model: *positives* by pruning and
fine-tuning the source, *negatives* by training other models on the same data
(:func:`modelprint.reference.train_reference`, seeds from ``TUNING_SEED``, disjoint from
the seeds calibration uses, so the null is never fitted on the models the settings were
chosen on). Each candidate fingerprint is scored by

1. TPR at ``fpr``: the share of reference positives whose p-value, under the null fitted
   on the reference negatives, is below ``fpr`` (exactly the rule ``verify`` applies);
2. then ARUC between reference positives and negatives (ties on 1 are common: few
   reference negatives make the conservative null strict, and pruned copies all match).

The search is coordinate-wise over :meth:`FingerprintMethod.tuning_grid` (one parameter
at a time, in the grid's order, others held at the best so far): a few fingerprints, not
the product of every grid. The whole table goes into the fingerprint's metadata.
"""

from __future__ import annotations

from typing import Any

from .data import load_splits
from .errors import ParameterError
from .fingerprints import create_method
from .models import ModelprintModel, weights_digest
from .progress import note, progress_bar
from .reference import TUNING_SEED, ReferencePlan, derived_copies, source_meta, source_subset, train_reference
from .scoring import null_tpr


def score_candidate(fp: Any, method: Any, positives: list, negatives: list, fpr: float) -> dict[str, float]:
    """TPR at ``fpr`` under the null fitted on ``negatives``, and the separation, of one candidate."""
    return null_tpr(
        method,
        fp,
        [method.evidence(fp, m).values for m in positives],
        [method.evidence(fp, m).values for m in negatives],
        fpr,
    )


def _search(
    source: ModelprintModel,
    method_name: str,
    fixed: dict[str, Any],
    grid: dict[str, list[Any]],
    poss: list,
    negs: list,
    *,
    n: int,
    seed: int,
    fpr: float,
    device: str,
    progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One setting at a time, in the grid's order: keep the value with the best (TPR at ``fpr``,
    ARUC) on the reference models. Returns the chosen settings and every candidate's scores."""
    chosen = {k: values[0] for k, values in grid.items()}
    candidates = 1 + sum(len(values) - 1 for values in grid.values())  # the first value of each is shared
    table: list[dict[str, Any]] = []
    cache: dict[str, dict[str, float]] = {}
    for key, values in grid.items():
        best: tuple[tuple[float, float], Any] | None = None
        for value in values:
            trial = {**fixed, **chosen, key: value}
            tag = repr(sorted(trial.items()))
            if tag not in cache:
                method = create_method(method_name, **trial)
                fp = method.generate(source, n=n, seed=seed, device=device, progress=False)
                cache[tag] = score_candidate(fp, method, poss, negs, fpr)
                table.append({"params": {k: trial[k] for k in grid}, **cache[tag]})
                if progress:
                    note(
                        f"tune candidate {len(table)}/{candidates}: {', '.join(f'{k}={trial[k]}' for k in grid)}: "
                        f"TPR@{fpr:g} {cache[tag]['tpr']:.2f}, ARUC {cache[tag]['aruc']:.3f}, "
                        f"negatives {cache[tag]['negative_mean']:.2f}"
                    )
            score = (cache[tag]["tpr"], cache[tag]["aruc"])
            if best is None or score > best[0]:
                best = (score, value)
        chosen[key] = best[1]
    return chosen, table


def tune_method(
    source: ModelprintModel,
    method_name: str,
    *,
    params: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    n: int = 100,
    seed: int = 0,
    fpr: float = 1e-2,
    data: str | None = None,
    split_seed: int = 0,
    negatives: int = 6,
    epochs: int | None = None,
    archs: list[tuple[str, dict[str, Any]]] | None = None,
    positive_epochs: int = 5,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (chosen settings, the tuning record for the fingerprint's metadata). The
    ``negatives`` reference models train as a zoo on ``workers`` processes (default: one per core)."""
    fixed = dict(params or {})
    grid = _open_grid(method_name, fixed, grid, source)
    meta = source_meta(source)
    spec = data or meta["dataset"]
    if not spec:
        raise ParameterError(
            "tuning trains reference models on the owner's data set, and the source model's card names none: "
            "give `data` as a data set spec (e.g. 'digits:16', 'folder:PATH'), not as tensors",
            params=("data",),
        )
    splits = load_splits(spec, split_seed=split_seed, train_subset=source_subset(meta))
    if progress:
        note(f"tune {method_name}: {negatives} reference negatives and 4 reference positives on {spec} (owner split)")
    # seeds from TUNING_SEED: never the models calibration draws
    plan = ReferencePlan(
        negatives, data=spec, split_seed=split_seed, first_seed=TUNING_SEED, archs=archs, epochs=epochs
    )
    negs = train_reference(meta, plan, workers=workers, device=device, progress=progress)
    with progress_bar(1, f"tune {method_name}: the owner's 4 derived copies", enabled=progress) as bar:
        poss = derived_copies(source, splits.owner, epochs=positive_epochs)
        bar.update(1)
    settings = {"n": n, "seed": seed, "fpr": fpr, "device": device, "progress": progress}
    chosen, table = _search(source, method_name, fixed, grid, poss, negs, **settings)
    record = {
        "fpr": fpr,
        "chosen": chosen,
        "grid": grid,
        "table": table,
        "reference_negatives": [weights_digest(m) for m in negs],
        "reference_positives": [weights_digest(m) for m in poss],
        "criterion": "TPR at fpr under the null fitted on the reference negatives, then ARUC",
    }
    return {**fixed, **chosen}, record


def _open_grid(method_name: str, fixed: dict[str, Any], grid: dict | None, source: ModelprintModel) -> dict:
    """The settings left to tune: the method's grid (or ``grid``) without the ``fixed`` ones."""
    whole = grid if grid is not None else create_method(method_name, **fixed).tuning_grid(source.card.input_shape)
    open_ = {k: v for k, v in whole.items() if k not in fixed}
    if not open_:
        raise ParameterError(
            f"method {method_name!r} has nothing to tune (every tunable setting is fixed or it has none)"
        )
    return open_
