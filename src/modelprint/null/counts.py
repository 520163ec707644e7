"""Counts: the beta-binomial null of per-query agreements, fitted conservatively over the
likelihood region of its parameters, and its tail table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from ..errors import ParameterError

CONFIDENCE = 0.95
# The (mean, dispersion) grid over which the likelihood region is found.
MEAN_GRID = special.expit(np.linspace(-9.0, 9.0, 361))
RHO_GRID = np.r_[0.0, np.logspace(-4, np.log10(0.98), 120)]


def beta_parameters(mean: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) from mean mu = a / (a + b) and intra-model correlation rho = 1 / (a + b + 1)."""
    total = 1.0 / np.maximum(rho, 1e-12) - 1.0
    return mean * total, (1.0 - mean) * total


def _loglik(counts: np.ndarray, n: int, mean: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Beta-binomial log-likelihood of ``counts`` (out of ``n``) at each (mean, rho); rho = 0 is binomial."""
    k = counts.reshape((1,) * mean.ndim + (-1,))
    mu, r = mean[..., None], rho[..., None]
    a, b = beta_parameters(mu, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        bb = special.betaln(k + a, n - k + b) - special.betaln(a, b)
        binom = k * np.log(mu) + (n - k) * np.log1p(-mu)
    ll = np.where(r > 0, bb, binom) + special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return np.nan_to_num(ll, nan=-np.inf).sum(-1)


def fit_count_null(counts: Sequence[int], n: int, *, confidence: float = CONFIDENCE) -> dict:
    """Fit a beta-binomial to reference models' agreement counts out of ``n`` queries.

    Returns JSON-able data: the maximum-likelihood ``mean`` and ``rho`` (rho = 0: binomial),
    and ``region``: the (a, b) pairs (rho = 0 written as ``[mean, null]``) on the upper
    frontier of the likelihood-ratio region, ``2 (l_max - l) <= chi2_2(confidence)``, over
    which p-values take their maximum."""
    k = np.asarray(counts, dtype=np.float64)
    if k.size < 3:
        raise ParameterError(f"calibration needs at least 3 independent models, got {k.size} (10 or more is better)")
    if n < 1 or np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)):
        raise ParameterError(f"counts must be integers in [0, {n}]")
    mean, rho = np.meshgrid(MEAN_GRID, RHO_GRID, indexing="ij")
    ll = _loglik(k, n, mean, rho)
    best = np.unravel_index(np.argmax(ll), ll.shape)
    region = region_frontier(2 * (ll[best] - ll) <= stats.chi2.ppf(confidence, 2))
    return {
        "family": "beta-binomial",
        "n_queries": int(n),
        "mean": float(mean[best]),
        "rho": float(rho[best]),
        "confidence": confidence,
        "region": region,
    }


def region_frontier(inside: np.ndarray) -> list[list[float]]:
    """The upper frontier of a region of the (mean, rho) grid. Upper tails grow with the mean and
    (above the mean) with the dispersion: keep, per rho, the largest mean inside the region; per
    mean, the largest rho. Their union is the frontier."""
    points = set()
    for j in range(len(RHO_GRID)):
        rows = np.flatnonzero(inside[:, j])
        if rows.size:
            points.add((int(rows[-1]), j))
    for i in range(len(MEAN_GRID)):
        cols = np.flatnonzero(inside[i])
        if cols.size:
            points.add((i, int(cols[-1])))
    return [[float(MEAN_GRID[i]), float(RHO_GRID[j])] for i, j in sorted(points)]


def references_needed(
    counts: Sequence[int], n: int, alpha: float, *, confidence: float = CONFIDENCE, most: int = 1000
) -> int | None:
    """How many reference models a count null needs before ``n`` of ``n`` agreements has a
    p-value below ``alpha``, if further models agreed like ``counts`` do (the same proportions:
    the log-likelihood scales with the number of models, so the confidence region shrinks).
    None when even ``most`` models would not do."""
    k = np.asarray(counts, dtype=np.float64)
    mean, rho = np.meshgrid(MEAN_GRID, RHO_GRID, indexing="ij")
    ll = _loglik(k, n, mean, rho)
    gap = 2 * (ll.max() - ll)
    limit = stats.chi2.ppf(confidence, 2)

    def reaches(copies: int) -> bool:
        region = region_frontier(copies * gap <= limit)
        return max(count_tail(n, n, m, r) for m, r in region) < alpha

    copies_max = most // k.size
    low, high = 0, 1
    while not reaches(high):
        if high >= copies_max:
            return None
        low, high = high, min(2 * high, copies_max)
    while high - low > 1:  # the fewest copies that reach alpha: reaches(high), not reaches(low)
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high * k.size


def count_tail(k: int, n: int, mean: float, rho: float) -> float:
    """P[K >= k] for K beta-binomial(n; mean, rho), binomial when rho = 0."""
    if k <= 0:
        return 1.0
    if rho <= 0:
        return float(stats.binom.sf(k - 1, n, mean))
    a, b = beta_parameters(np.float64(mean), np.float64(rho))
    return float(stats.betabinom.sf(k - 1, n, a, b))


def tail_table(null: dict, n: int) -> np.ndarray:
    """(n + 1,): P[K >= k] for k = 0..n, at its largest over the null's confidence region: every
    count's conservative p-value at once (one array operation instead of a tail per point)."""
    points = np.asarray(null.get("region") or [[null["mean"], null.get("rho", 0.0)]], dtype=np.float64)
    k = np.arange(n + 1)
    mean, rho = points[:, :1], points[:, 1:]
    a, b = beta_parameters(mean, rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_bb = special.betaln(k + a, n - k + b) - special.betaln(a, b)
        log_binom = k * np.log(mean) + (n - k) * np.log1p(-mean)
    log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    log_pmf = np.nan_to_num(np.where(rho > 0, log_bb, log_binom) + log_choose, nan=-np.inf)
    log_tails = np.logaddexp.accumulate(log_pmf[:, ::-1], axis=1)[:, ::-1]  # log P[K >= k] per point
    return np.minimum(np.exp(log_tails.max(axis=0)), 1.0)


def count_p_value(null: dict, k: int, n: int) -> float:
    """Conservative p-value of ``k`` agreements out of ``n`` queries: the largest P[K >= k]
    over the null's confidence region (its point estimate when it has no region, e.g. chance)."""
    if not 0 <= k <= n or n < 1:
        raise ParameterError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return float(tail_table(null, n)[k])


def needed_count(null: dict, n: int, alpha: float) -> int | None:
    """The fewest agreements out of ``n`` whose conservative p-value is below ``alpha`` (None:
    not even ``n``): what a match needs, from one tail table."""
    below = np.flatnonzero(tail_table(null, n) < alpha)
    return int(below[0]) if below.size else None


def critical_rate(null: dict, alpha: float) -> float:
    """theta*: the agreement rate an independent model exceeds with probability ``alpha`` (the
    Beta's 1 - alpha quantile), at its largest over the confidence region."""
    points = null.get("region") or [[null["mean"], null.get("rho", 0.0)]]
    out = 0.0
    for m, r in points:
        if r <= 0:
            out = max(out, m)
        else:
            a, b = beta_parameters(np.float64(m), np.float64(r))
            out = max(out, float(stats.beta.isf(alpha, a, b)))
    return out


def chance_null(num_classes: int) -> dict:
    """The uncalibrated fallback: every query agrees by chance, 1 / classes (binomial)."""
    return {"family": "chance", "mean": 1.0 / num_classes, "rho": 0.0}
