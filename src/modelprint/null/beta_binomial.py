"""Counts: the beta-binomial null of per-query agreements, fitted conservatively over the
likelihood region of its parameters, its tail table, and the chance null of an uncalibrated
count fingerprint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from ..errors import ParameterError
from .base import Null, close_to_refit
from .region import CONFIDENCE, MEAN_GRID, RHO_GRID, RHO_MAX, beta_parameters, region_frontier, region_problem
from .sequential import upper_bound


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


class BetaBinomialNull(Null):
    """Counts: each independent model agrees with each item with its own rate theta ~ Beta, so
    its count of agreements is beta-binomial; p-values are maximised over the likelihood
    region (:func:`fit_count_null`)."""

    family = "beta-binomial"
    limits = {
        "mean": (0.0, 1.0),
        "rho": (0.0, RHO_MAX),
        "n_queries": (1, 10_000_000),
        "confidence": (0.5, 0.999999),
    }
    summary_fields = ("mean", "rho")

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        counts = [round(float(np.sum(v))) for v in evidence]
        return cls(cls._references(fit_count_null(counts, len(evidence[0]) if evidence else 0), statistics))

    def p_value(self, values: np.ndarray, statistic: float) -> float:
        return count_p_value(self.data, round(float(np.sum(values))), len(values))

    def typical_p(self, values: np.ndarray, statistic: float) -> float:
        return count_tail(round(float(np.sum(values))), len(values), self.data["mean"], self.data.get("rho", 0.0))

    def p_values(self, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> np.ndarray:
        k = np.array([round(float(np.sum(v))) for v in evidence], dtype=int)
        n = {len(v) for v in evidence}
        if len(n) != 1:
            return super().p_values(evidence, statistics)
        return tail_table(self.data, n.pop())[k]

    def critical(self, alpha: float) -> float:
        return critical_rate(self.data, alpha)

    def decide(self, values: np.ndarray, statistic: float, fpr: float) -> tuple[str, float, float]:
        """``match`` when p < fpr; ``no-match`` when the suspect is :meth:`typical` and even the
        exact upper 1 - fpr bound of its rate stays below theta* (more queries would not make it
        a match); ``inconclusive`` otherwise."""
        k, n = round(float(np.sum(values))), len(values)
        p, theta = count_p_value(self.data, k, n), critical_rate(self.data, fpr)
        if p < fpr:
            return "match", p, theta
        if self.typical(values, statistic) and upper_bound(k, n, fpr) < theta:
            return "no-match", p, theta
        return "inconclusive", p, theta

    def smallest_p(self) -> float | None:
        n = self.data.get("n_queries")
        return count_p_value(self.data, n, n) if n else None

    @classmethod
    def inconsistency(cls, data: dict[str, Any]) -> str | None:
        n = data.get("n_queries")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10_000_000:
            return "its null's n_queries is not a positive count"
        problem = region_problem(data)
        if problem:
            return problem
        rates = np.asarray(data["statistics"], dtype=np.float64)
        counts = np.round(rates * n)
        if np.any(rates < 0) or np.any(rates > 1) or np.any(np.abs(rates * n - counts) > 1e-6 * n):
            return f"its null's reference statistics are not agreement rates out of {n} queries"
        if counts.size < 3:
            return "its null was fitted on fewer than 3 reference models"
        refit = fit_count_null(counts.astype(int), n, confidence=data["confidence"])
        same = close_to_refit(data["mean"], refit["mean"]) and close_to_refit(data["rho"], refit["rho"])
        if not same or not np.allclose(tail_table(data, n), tail_table(refit, n), rtol=1e-6, atol=1e-15):
            return "its null's parameters are not the ones its reference statistics give (the null was altered)"
        return None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        d = self.data
        if critical is None:
            return ""
        head = (
            f"null: beta-binomial fitted on {d['n_models']} independent models ({d.get('source', '?')}), "
            f"mean {d['mean']:.2f}, rho {d['rho']:.3f}"
        )
        if fpr is None or not n:  # decided another way (sequentially, by a threshold): that line says what it needs
            return head
        head += "; "
        k = needed_count(d, n, fpr)  # what calibration reports as "needed"
        if k is None:
            return head + f"no rate out of {n} queries is a match at FPR {fpr:g}"
        return head + f"a match needs {k} of {n} ({k / n:.2f}) at FPR {fpr:g}"

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        n = self.data["n_queries"]
        out: dict[str, Any] = {"mean": self.data["mean"], "rho": self.data["rho"], "n_queries": n}
        counts = [round(s * n) for s in self.data.get("statistics") or []]
        for a in alphas:
            k = needed_count(self.data, n, a)
            out[f"needed_at_{a:g}"] = None if k is None else k / n
            out[f"theta_star_at_{a:g}"] = critical_rate(self.data, a)
            if k is None and len(counts) >= 3:
                out[f"references_at_{a:g}"] = references_needed(counts, n, a, confidence=self.data["confidence"])
        return out


class ChanceNull(BetaBinomialNull):
    """The uncalibrated fallback of count methods: every item agrees by chance, 1 / classes."""

    family = "chance"
    calibrated = False
    warning = (
        "this fingerprint is not calibrated: the p-value is against agreeing by chance (1/classes) only, "
        "and independent models agree far more often than that; run `modelprint fingerprint calibrate` first"
    )

    @classmethod
    def of(cls, num_classes: int) -> ChanceNull:
        return cls(chance_null(num_classes))

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        return f"null: chance agreement {self.data['mean']:.2f} per query (uncalibrated)"
