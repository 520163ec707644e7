"""Metrics as pure functions on arrays. Scores are matching rates in [0, 1]; positives are
models derived from the source (should match), negatives independent ones (should not)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from .errors import ParameterError

ArrayLike = Sequence[float] | np.ndarray


def _scores(values: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ParameterError(f"{what} is empty: give at least one model's matching rate")
    if np.isnan(arr).any():
        raise ParameterError(f"{what} contains NaN")
    return arr


def uniqueness_score(robustness: float, transferability: float) -> float:
    """Characteristic-examples uniqueness: ``robustness - transferability`` (mean matching
    rate on positives minus mean matching rate on negatives); negative means false claims."""
    return float(robustness - transferability)


def roc_auc(positive: ArrayLike, negative: ArrayLike) -> float:
    """Area under the ROC curve of matching rate as the detector score (scikit-learn):
    the probability that a random positive scores above a random negative (ties count 1/2)."""
    pos, neg = _scores(positive, "positive scores"), _scores(negative, "negative scores")
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    return float(roc_auc_score(labels, np.r_[pos, neg]))


def f1_at_threshold(positive: ArrayLike, negative: ArrayLike, threshold: float) -> float:
    """F1 of the verdict ``score >= threshold``: ``2 TP / (2 TP + FP + FN)``."""
    pos, neg = _scores(positive, "positive scores"), _scores(negative, "negative scores")
    tp, fn, fp = np.sum(pos >= threshold), np.sum(pos < threshold), np.sum(neg >= threshold)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def best_f1(positive: ArrayLike, negative: ArrayLike) -> tuple[float, float]:
    """The highest F1 over all thresholds and the threshold reaching it (the paper's "with an
    appropriate threshold"). Among equal F1 the threshold midway into the widest gap wins."""
    pos, neg = _scores(positive, "positive scores"), _scores(negative, "negative scores")
    values = np.unique(np.r_[pos, neg])
    candidates = np.unique(np.r_[values, (values[:-1] + values[1:]) / 2, values[-1] + 1e-9])
    f1s = np.array([f1_at_threshold(pos, neg, t) for t in candidates])
    best = np.flatnonzero(np.isclose(f1s, f1s.max()))
    # Midway through the run of best thresholds keeps the most margin on both sides.
    t = float((candidates[best[0]] + candidates[best[-1]]) / 2)
    return float(f1s.max()), t


def tpr_at(positive: ArrayLike, threshold: float) -> float:
    """Robustness at threshold t: ``TPR(t) = |{p : p >= t}| / |P|``, the share of positives
    (derived models) whose matching rate reaches the threshold."""
    pos = _scores(positive, "positive scores")
    return float(np.mean(pos >= threshold))


def tnr_at(negative: ArrayLike, threshold: float) -> float:
    """Uniqueness at threshold t (NaturalFinger's sense): ``TNR(t) = |{n : n < t}| / |N|``,
    the share of negatives (independent models) whose matching rate stays below it."""
    neg = _scores(negative, "negative scores")
    return float(np.mean(neg < threshold))


def robustness_uniqueness_curve(positive: ArrayLike, negative: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t, TPR(t), TNR(t))`` at every threshold where either changes, plus 0 and 1.

    Both are step functions of t: TPR falls just after each positive score, TNR rises just
    after each negative score. Between consecutive points they are constant, with the value
    given at the interval's right end (``t[i]`` holds for ``t in (t[i-1], t[i]]``)."""
    pos, neg = _scores(positive, "positive scores"), _scores(negative, "negative scores")
    t = np.unique(np.clip(np.r_[0.0, 1.0, pos, neg], 0.0, 1.0))
    tpr = (pos[None, :] >= t[:, None]).mean(1)
    tnr = (neg[None, :] < t[:, None]).mean(1)
    return t, tpr, tnr


def aruc(positive: ArrayLike, negative: ArrayLike) -> float:
    """Area under the robustness-uniqueness curve (NaturalFinger):
    ``ARUC = integral_0^1 min(TPR(t), TNR(t)) dt``.

    Integrated exactly, not on a grid: both curves are step functions of t that change only
    at the observed scores, so the integral is ``sum_i (t_i - t_{i-1}) * min(TPR, TNR)`` over
    the intervals ``(t_{i-1}, t_i]`` between consecutive distinct scores (and 0, 1). 1 means
    one threshold range separates every positive from every negative over the whole [0, 1];
    0 means no threshold does both at once."""
    t, tpr, tnr = robustness_uniqueness_curve(positive, negative)
    return float(np.sum(np.diff(t) * np.minimum(tpr, tnr)[1:]))


def margin(positive_rate: ArrayLike, mirror_rate: ArrayLike) -> np.ndarray:
    """Matching-rate margin (NaturalFinger): ``positive - mirror negative``, element by element,
    for each attack applied to the source and to the independent mirror model alike."""
    pos = np.asarray(positive_rate, dtype=np.float64)
    neg = np.asarray(mirror_rate, dtype=np.float64)
    if pos.shape != neg.shape:
        raise ParameterError(f"positive and mirror rates must pair up, got shapes {pos.shape} and {neg.shape}")
    return pos - neg


def threshold_at_fpr(negative: ArrayLike, fpr: float = 0.01) -> float:
    """The lowest threshold whose false-positive rate on ``negative`` is at most ``fpr``
    (verdict ``score >= t``): with ``k = floor(fpr * |N|)`` negatives allowed through, ``t`` is
    the smallest number above the (k+1)-th highest negative score; ``fpr >= 1`` gives the
    lowest negative score. Calibrate on negatives the verdicts will not be judged on."""
    neg = np.sort(_scores(negative, "negative scores"))[::-1]
    if not 0.0 <= fpr <= 1.0:
        raise ParameterError(f"fpr must be in [0, 1], got {fpr}")
    allowed = int(np.floor(fpr * neg.size + 1e-9))
    if allowed >= neg.size:
        return float(neg[-1])
    return float(np.nextafter(neg[allowed], np.inf))


def tpr_at_fpr(positive: ArrayLike, negative: ArrayLike, fpr: float = 0.01) -> float:
    """Robustness at a fixed false-positive rate: ``TPR(threshold_at_fpr(negative, fpr))``."""
    return tpr_at(positive, threshold_at_fpr(negative, fpr))


def group_summary(
    values: ArrayLike, roles: Sequence[str], groups: Sequence[str]
) -> dict[str, dict[str, float | int | None]]:
    """Per group (zoo category, architecture): the mean statistic of its positives and of
    its negatives (``None`` when it has none), its model count, and
    ``aruc = ARUC(positives of the group, every negative)``: whether that group's copies
    are told apart from all independent models (``None`` without positives).
    ``roles[i]`` / ``groups[i]`` belong to ``values[i]``; groups keep first-seen order."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if not len(v) == len(roles) == len(groups):
        raise ParameterError(f"{len(v)} values, {len(roles)} roles and {len(groups)} groups must pair up")
    bad = sorted(set(roles) - {"positive", "negative"})
    if bad:
        raise ParameterError(f"roles must be positive or negative, got {bad}")
    role, group = np.asarray(roles), np.asarray(groups, dtype=object)
    all_neg = v[role == "negative"]
    out: dict[str, dict[str, float | int | None]] = {}
    for g in dict.fromkeys(groups):
        pos, neg = v[(group == g) & (role == "positive")], v[(group == g) & (role == "negative")]
        out[g] = {
            "positive": float(pos.mean()) if pos.size else None,
            "negative": float(neg.mean()) if neg.size else None,
            "models": int(pos.size + neg.size),
            "aruc": aruc(pos, all_neg) if pos.size and all_neg.size else None,
        }
    return out
