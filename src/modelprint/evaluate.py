"""The Characteristic Examples evaluation protocol on the user's models.

Robustness = mean matching rate on positives (pruned copies of the source and any
derived models given); transferability = mean matching rate on negatives (independently
trained models); uniqueness = robustness - transferability; ROC AUC and F1 between them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .attacks import create_attack
from .fingerprints import Fingerprint, create_method
from .metrics import group_summary
from .models import ModelprintModel
from .progress import console
from .scoring import model_statistics, separation
from .zoo import ZooManifest, source_row


@dataclass
class MethodEvaluation:
    method: str
    robustness: float
    transferability: float
    uniqueness: float
    auc: float
    f1: float
    threshold: float
    robustness_by_rate: dict[str, float] = field(default_factory=dict)
    positive_rates: list[float] = field(default_factory=list)
    negative_rates: list[float] = field(default_factory=list)
    source_rate: float = 1.0
    generation_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pruned_copies(
    source: ModelprintModel, rates: Sequence[float], *, repeats: int = 1, criterion: str = "magnitude", seed: int = 0
) -> list[tuple[float, ModelprintModel]]:
    """Unstructured pruned copies of ``source``; magnitude pruning is deterministic, so
    ``repeats`` only adds copies for ``criterion="random"``."""
    n_rep = repeats if criterion == "random" else 1
    return [
        (rate, create_attack("prune", rate=rate, criterion=criterion).apply(source, seed=seed + r))
        for rate in rates
        for r in range(n_rep)
    ]


def evaluate_fingerprint(
    fp: Fingerprint,
    source: ModelprintModel,
    positives: Sequence[ModelprintModel],
    negatives: Sequence[ModelprintModel],
    pruned: Sequence[tuple[float, ModelprintModel]] = (),
) -> MethodEvaluation:
    """Score ``fp`` on derived ``positives`` (and the ``pruned`` copies, reported per rate) against
    independent ``negatives``: :func:`modelprint.scoring.separation` of their statistics."""

    stats = model_statistics(fp, [*(m for _, m in pruned), *positives, *negatives, source])
    pruned_stats, stats = stats[: len(pruned)], stats[len(pruned) :]
    by_rate: dict[str, list[float]] = {}
    for (r, _), s in zip(pruned, pruned_stats):
        by_rate.setdefault(f"{r:g}", []).append(s)
    pos = stats[: len(positives)] + [v for vs in by_rate.values() for v in vs]
    neg = stats[len(positives) : len(positives) + len(negatives)]
    s = separation(np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64), fpr=0.01)
    return MethodEvaluation(
        method=str(fp.meta.get("method")),
        robustness=s["robustness"],
        transferability=s["transferability"],
        uniqueness=s["uniqueness"],
        auc=s["auc"],
        f1=s["f1"],
        threshold=s["threshold"],
        robustness_by_rate={k: float(np.mean(v)) for k, v in by_rate.items()},
        positive_rates=pos,
        negative_rates=neg,
        source_rate=stats[-1],
        generation_seconds=fp.meta.get("generation_seconds"),
    )


def evaluate(
    source: ModelprintModel,
    methods: Sequence[str],
    positives: Sequence[ModelprintModel] = (),
    negatives: Sequence[ModelprintModel] = (),
    *,
    prune_rates: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
    prune_repeats: int = 1,
    prune_criterion: str = "magnitude",
    n: int = 100,
    seed: int = 0,
    method_params: dict[str, dict[str, Any]] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, MethodEvaluation]:
    """Generate each method's fingerprint from ``source`` and score it on the suspects."""
    pruned = pruned_copies(source, prune_rates, repeats=prune_repeats, criterion=prune_criterion, seed=seed)
    results = {}
    for name in methods:
        method = create_method(name, **(method_params or {}).get(name, {}))
        fp = method.generate(source, n=n, seed=seed, device=device, progress=progress)
        results[name] = evaluate_fingerprint(fp, source, positives, negatives, pruned)
    return results


@dataclass
class ZooSuspects:
    """A zoo as ``evaluate`` reads it: the source's file, the positives' (the source left out)
    and the negatives' files, and each one's category."""

    source: Path
    positives: list[Path]
    negatives: list[Path]
    positive_categories: list[str]
    negative_categories: list[str]


def zoo_suspects(zoo: str | os.PathLike) -> ZooSuspects:
    """The source and suspects of the zoo in ``zoo`` (``modelprint zoo build``)."""
    manifest = ZooManifest.read(zoo)
    source = source_row(manifest)
    positives = [r for r in manifest.select("positive") if r is not source]
    negatives = manifest.select("negative")
    return ZooSuspects(
        manifest.path(source),
        [manifest.path(r) for r in positives],
        [manifest.path(r) for r in negatives],
        [r["category"] for r in positives],
        [r["category"] for r in negatives],
    )


def print_table(results: dict[str, MethodEvaluation], title: str = "Characteristic-examples evaluation") -> None:
    rates = sorted({k for r in results.values() for k in r.robustness_by_rate}, key=float)
    table = Table(title=title)
    for col in ["method", "robust", *[f"prune {r}" for r in rates], "transfer", "unique", "AUC", "F1", "thresh"]:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in results.values():
        table.add_row(
            r.method,
            f"{r.robustness:.2f}",
            *[f"{r.robustness_by_rate[k]:.2f}" for k in rates],
            f"{r.transferability:.2f}",
            f"{r.uniqueness:+.2f}",
            f"{r.auc:.2f}",
            f"{r.f1:.2f}",
            f"{r.threshold:.2f}",
        )
    # Results go to stdout (pipeable), wide enough not to truncate when not on a terminal.
    Console(width=max(100, console.width)).print(table)


def rates_by_group(
    results: dict[str, MethodEvaluation], positive_groups: list[str], negative_groups: list[str]
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """:func:`modelprint.metrics.group_summary` per method (the same summary ``bench`` writes):
    ``positive_groups[i]`` names the group of the i-th positive (same for negatives)."""
    out = {}
    for method, r in results.items():
        if len(positive_groups) != len(r.positive_rates) or len(negative_groups) != len(r.negative_rates):
            raise ValueError("one group per positive and per negative rate is needed")
        out[method] = group_summary(
            r.positive_rates + r.negative_rates,
            ["positive"] * len(r.positive_rates) + ["negative"] * len(r.negative_rates),
            list(positive_groups) + list(negative_groups),
        )
    return out


def print_group_table(by_group: dict[str, dict[str, dict[str, float]]], title: str) -> None:
    methods = list(by_group)
    groups = list(dict.fromkeys(g for per_method in by_group.values() for g in per_method))
    table = Table(title=title)
    table.add_column("category")
    for m in methods:
        table.add_column(f"{m} pos", justify="right")
        table.add_column(f"{m} neg", justify="right")
    for group in groups:
        cells = []
        for m in methods:
            roles = by_group[m].get(group, {})
            cells += [f"{roles[k]:.2f}" if roles.get(k) is not None else "–" for k in ("positive", "negative")]
        table.add_row(group, *cells)
    Console(width=max(100, console.width)).print(table)
