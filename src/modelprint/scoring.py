"""The evaluation core that ``evaluate``, ``bench``, ``tune`` and ``calibrate`` share:
suspects -> evidence -> statistic -> separation metrics.

Every protocol scores the same way: each model's evidence for a fingerprint
(:func:`model_evidence`, or :func:`model_statistics` alone), reduced by the method to one
statistic, larger = more like the source; positives (derived copies) against negatives
(independent models) then give :func:`separation`. The null of a fingerprint is fitted on negatives' evidence
(:class:`~modelprint.null.Null`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fingerprints import Fingerprint, FingerprintMethod, method_of
from .metrics import aruc, best_f1, roc_auc, tnr_at, tpr_at, tpr_at_fpr, uniqueness_score
from .models import ModelprintModel, weights_digest


@dataclass(frozen=True)
class ModelEvidence:
    """One model's answer to a fingerprint: its weights' sha256, evidence values and statistic."""

    sha256: str
    values: np.ndarray
    statistic: float


def model_statistics(fp: Fingerprint, models: Sequence[ModelprintModel]) -> list[float]:
    """The fingerprint's statistic on each model (no hashing: for scoring, not for the record)."""
    method = method_of(fp)
    return [method.statistic(method.evidence(fp, m).values) for m in models]


def model_evidence(fp: Fingerprint, models: Sequence[ModelprintModel]) -> list[ModelEvidence]:
    """Each model's evidence for ``fp`` over all its items, and the method's statistic of it."""
    method = method_of(fp)
    out = []
    for m in models:
        values = method.evidence(fp, m).values
        out.append(ModelEvidence(weights_digest(m), values, method.statistic(values)))
    return out


def statistics_of(method: FingerprintMethod, values: Mapping[str, Sequence[float]], budget: int) -> dict[str, float]:
    """The statistic of each suspect's first ``budget`` evidence items: ``{suspect: statistic}``."""
    return {i: method.statistic(np.asarray(v[:budget])) for i, v in values.items()}


def separation(pos: np.ndarray, neg: np.ndarray, fpr: float) -> dict[str, float]:
    """How well the statistic separates positives from negatives.

    robustness = mean(pos), transferability = mean(neg), uniqueness = robustness -
    transferability; ARUC, ROC AUC, the best F1 with its threshold and the TPR / TNR there,
    and the TPR at the threshold whose empirical FPR on ``neg`` is ``fpr``."""
    f1, threshold = best_f1(pos, neg)
    robustness, transfer = float(pos.mean()), float(neg.mean())
    return {
        "robustness": robustness,
        "transferability": transfer,
        "uniqueness": uniqueness_score(robustness, transfer),
        "aruc": aruc(pos, neg),
        "auc": roc_auc(pos, neg),
        "f1": f1,
        "threshold": threshold,
        "tpr_at_threshold": tpr_at(pos, threshold),
        "tnr_at_threshold": tnr_at(neg, threshold),
        f"tpr_at_{fpr:g}_fpr": tpr_at_fpr(pos, neg, fpr),
    }


def null_tpr(
    method: FingerprintMethod,
    fp: Fingerprint,
    positives: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
    fpr: float,
) -> dict[str, Any]:
    """Fit the method's null on the negatives' evidence and call each positive at ``fpr``:
    the share called a match (``tpr``), with the statistics' means and the ARUC."""
    pos = np.array([method.statistic(v) for v in positives])
    neg = np.array([method.statistic(v) for v in negatives])
    null = method.fit_null(fp, list(negatives), neg)
    p = [null.p_value(v, s) for v, s in zip(positives, pos)]
    return {
        "tpr": float(np.mean(np.asarray(p) < fpr)),
        "aruc": aruc(pos, neg),
        "positive_mean": float(pos.mean()),
        "negative_mean": float(neg.mean()),
    }
