"""Metrics as pure functions on arrays. Scores are matching rates in [0, 1]; positives are
models derived from the source (should match), negatives independent ones (should not)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binom
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


def matching_rate(predicted: ArrayLike, expected: ArrayLike) -> float:
    """Fraction of queries whose suspect label equals the expected label:
    ``m = (1/N) * sum_i [pred_i == expected_i]``."""
    p, e = np.asarray(predicted).ravel(), np.asarray(expected).ravel()
    if p.shape != e.shape or p.size == 0:
        raise ParameterError(f"predicted and expected must be non-empty and equal in length ({p.size} vs {e.size})")
    return float(np.mean(p == e))


def binomial_p_value(matches: int, n: int, chance: float) -> float:
    """P[X >= matches] for X ~ Binomial(n, chance): how likely a model that agrees with the
    expected labels only by chance (rate ``chance``, e.g. 1/classes) matches this often."""
    if not 0 <= matches <= n or n < 1:
        raise ParameterError(f"need 0 <= matches <= n and n >= 1, got matches={matches}, n={n}")
    if not 0 < chance < 1:
        raise ParameterError(f"chance must be in (0, 1), got {chance}")
    return float(binom.sf(matches - 1, n, chance))


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
