"""Sequential evidence: exact binomial bounds, the likelihood-ratio mixtures verify decides a
budgeted run with, and how many queries a match takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from .region import beta_parameters


def clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """Two-sided exact binomial confidence interval for a rate from ``k`` of ``n``."""
    tail = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def upper_bound(k: int, n: int, alpha: float) -> float:
    """One-sided exact (Clopper-Pearson) upper 1 - alpha confidence bound on a rate."""
    return 1.0 if k >= n else float(stats.beta.isf(alpha, k + 1, n - k))


def mixture_log_evidence(k: int, n: int, theta: float, side: str) -> float:
    """log M: the e-value against "rate <= theta" (``side="above"``) or "rate >= theta"
    (``side="below"``) after ``k`` agreements in ``n`` queries.

    ``M = integral over p of L(p) / L(theta)``, with p uniform on the alternative side and
    ``L(p) = p^k (1 - p)^(n - k)``. For every rate on the null side it is a nonnegative
    supermartingale in n, so by Ville's inequality ``P[sup_n M >= 1/delta] <= delta``: the
    test may look after every batch and stop whenever it likes (anytime-valid)."""
    if not 0 < theta < 1:
        return -np.inf
    a, b = k + 1, n - k + 1
    log_lik_theta = k * np.log(theta) + (n - k) * np.log1p(-theta)
    if side == "above":
        return float(special.betaln(a, b) + stats.beta.logsf(theta, a, b) - np.log1p(-theta) - log_lik_theta)
    return float(special.betaln(a, b) + stats.beta.logcdf(theta, a, b) - np.log(theta) - log_lik_theta)


# The alternative of sequential verification: rates on a grid, weighted where the owner's own
# copies agree (``positive_prior``).
_PRIOR_GRID = np.linspace(0.0005, 0.9995, 1000)


def positive_prior(rates: Sequence[float] | None, *, uniform: float = 0.5) -> np.ndarray:
    """Log weights over :data:`_PRIOR_GRID`: the rates where derived copies agree, in narrow
    bumps (sd 0.02) at the owner's reference positives' rates (stored at calibration; without
    any, at 1: pruned and fine-tuned copies agree with nearly every query), with ``uniform`` of
    the weight spread evenly for copies unlike them. Chosen before any suspect is seen, so the
    test stays valid whatever the prior; the prior only decides how fast it decides."""
    g = _PRIOR_GRID
    bumps = np.mean([np.exp(-0.5 * ((g - r) / 0.02) ** 2) for r in (rates or [1.0])], axis=0)
    with np.errstate(divide="ignore"):
        return np.log((1 - uniform) * bumps / bumps.sum() + uniform / g.size)


def sequence_log_evidence(null: dict, k: int, n: int, rates: Sequence[float] | None) -> tuple[float, float]:
    """(log e against "an independent model", log e against "a copy"), after ``k`` agreements in
    ``n`` queries, in this order of queries; ``rates``: the reference positives' (see
    :func:`positive_prior`).

    An independent model is a random draw from the null's population: theta ~ Beta(a, b), then
    each query agrees with probability theta, so a sequence with k agreements has likelihood
    ``L0 = B(k + a, n - k + b) / B(a, b)``; a copy has ``L1``, the binomial likelihood mixed over
    the prior. ``L1 / L0`` is a nonnegative martingale with mean 1 for an independent model, so
    by Ville's inequality it ever reaches 1/alpha with probability at most alpha, however often
    one looks (anytime-valid). ``L0`` is taken at its largest over the confidence region, which
    only lowers the first e-value, as the conservative fixed p-value does. The second is
    ``L0 / L1'``, ``L0`` at the estimate and ``L1'`` without the uniform part of the prior (the
    hypothesis "a copy like the owner's"): large when the suspect agrees far less than copies do."""
    log_binomial = k * np.log(_PRIOR_GRID) + (n - k) * np.log1p(-_PRIOR_GRID)
    log_l1 = float(special.logsumexp(positive_prior(rates) + log_binomial))
    log_copy = float(special.logsumexp(positive_prior(rates, uniform=0.0) + log_binomial))

    def log_l0(mean: float, rho: float) -> float:
        if rho <= 0:
            return float(k * np.log(mean) + (n - k) * np.log1p(-mean))
        a, b = beta_parameters(np.float64(mean), np.float64(rho))
        return float(special.betaln(k + a, n - k + b) - special.betaln(a, b))

    points = null.get("region") or [[null["mean"], null.get("rho", 0.0)]]
    worst = max(log_l0(m, r) for m, r in points)
    return log_l1 - worst, log_l0(null["mean"], null.get("rho", 0.0)) - log_copy


def queries_to_match(
    null: dict, alpha: float, rates: Sequence[float] | None, rate: float = 1.0, most: int = 10_000
) -> int | None:
    """The fewest queries (exact up to 200, then within 5 %) after which a suspect agreeing at
    ``rate`` (every query: 1.0) is called a match by the sequential test at ``alpha``; None
    beyond ``most``."""
    n = 1
    while n <= most:
        if sequence_log_evidence(null, round(rate * n), n, rates)[0] >= np.log(1 / alpha):
            return n
        n = n + 1 if n < 200 else int(n * 1.05)
    return None


# A score this typical of independent models (p >= NO_MATCH_P) is "inside the null".
