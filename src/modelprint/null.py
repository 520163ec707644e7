"""The null distribution of a fingerprint statistic over independent models, as pure functions.

Two families, chosen by the evidence a fingerprint method produces:

* **Counts** (per-query 0/1 agreement, e.g. label matching): a model independent of the
  source agrees with query i with some probability theta that is *its own*: given the
  model, the N queries (drawn independently by the generator) are Bernoulli(theta), and
  theta varies from model to model, theta ~ Beta(a, b). The count K of agreements is then
  beta-binomial. A plain binomial (one theta for every model, let alone theta = 1/classes)
  is wrong: independent models agree with characteristic examples at 0.2-0.7 depending on
  the model, so the binomial's tail is far too thin and calls independent models matches.
* **Scores** (a verifier score, a fraction of components): a normal model for the
  statistic, used through the Student-t prediction interval for one new model, which is
  exact under normality with unknown mean and variance and so accounts for few models.

Few reference models pin (a, b) down poorly, so count p-values are conservative: the
largest tail probability over the likelihood-ratio confidence region of (a, b) (level
``confidence``, chi-square with 2 degrees of freedom), not the tail at the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from .errors import ParameterError

CONFIDENCE = 0.95
# The (mean, dispersion) grid over which the likelihood region is found.
_MEANS = special.expit(np.linspace(-9.0, 9.0, 361))
_RHOS = np.r_[0.0, np.logspace(-4, np.log10(0.98), 120)]


def _ab(mean: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) from mean mu = a / (a + b) and intra-model correlation rho = 1 / (a + b + 1)."""
    total = 1.0 / np.maximum(rho, 1e-12) - 1.0
    return mean * total, (1.0 - mean) * total


def _loglik(counts: np.ndarray, n: int, mean: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Beta-binomial log-likelihood of ``counts`` (out of ``n``) at each (mean, rho); rho = 0 is binomial."""
    k = counts.reshape((1,) * mean.ndim + (-1,))
    mu, r = mean[..., None], rho[..., None]
    a, b = _ab(mu, r)
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
    mean, rho = np.meshgrid(_MEANS, _RHOS, indexing="ij")
    ll = _loglik(k, n, mean, rho)
    best = np.unravel_index(np.argmax(ll), ll.shape)
    inside = 2 * (ll[best] - ll) <= stats.chi2.ppf(confidence, 2)
    # Upper tails grow with the mean and (above the mean) with the dispersion: keep, per rho,
    # the largest mean inside the region; per mean, the largest rho. Their union is the frontier.
    points = set()
    for j in range(len(_RHOS)):
        rows = np.flatnonzero(inside[:, j])
        if rows.size:
            points.add((int(rows[-1]), j))
    for i in range(len(_MEANS)):
        cols = np.flatnonzero(inside[i])
        if cols.size:
            points.add((i, int(cols[-1])))
    region = [[float(_MEANS[i]), float(_RHOS[j])] for i, j in sorted(points)]
    return {
        "family": "beta-binomial",
        "n_queries": int(n),
        "mean": float(mean[best]),
        "rho": float(rho[best]),
        "confidence": confidence,
        "region": region,
    }


def _tail(k: int, n: int, mean: float, rho: float) -> float:
    """P[K >= k] for K beta-binomial(n; mean, rho), binomial when rho = 0."""
    if k <= 0:
        return 1.0
    if rho <= 0:
        return float(stats.binom.sf(k - 1, n, mean))
    a, b = _ab(np.float64(mean), np.float64(rho))
    return float(stats.betabinom.sf(k - 1, n, a, b))


def count_p_value(null: dict, k: int, n: int) -> float:
    """Conservative p-value of ``k`` agreements out of ``n`` queries: the largest P[K >= k]
    over the null's confidence region (its point estimate when it has no region, e.g. chance)."""
    if not 0 <= k <= n or n < 1:
        raise ParameterError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    points = null.get("region") or [[null["mean"], null.get("rho", 0.0)]]
    return max(_tail(k, n, m, r) for m, r in points)


def critical_rate(null: dict, alpha: float) -> float:
    """theta*: the agreement rate an independent model exceeds with probability ``alpha`` (the
    Beta's 1 - alpha quantile), at its largest over the confidence region."""
    points = null.get("region") or [[null["mean"], null.get("rho", 0.0)]]
    out = 0.0
    for m, r in points:
        if r <= 0:
            out = max(out, m)
        else:
            a, b = _ab(np.float64(m), np.float64(r))
            out = max(out, float(stats.beta.isf(alpha, a, b)))
    return out


def chance_null(num_classes: int) -> dict:
    """The uncalibrated fallback: every query agrees by chance, 1 / classes (binomial)."""
    return {"family": "chance", "mean": 1.0 / num_classes, "rho": 0.0}


def fit_score_null(scores: Sequence[float]) -> dict:
    """Normal model of a score over reference models: mean, standard deviation, count."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 3:
        raise ParameterError(f"calibration needs at least 3 independent models, got {s.size} (10 or more is better)")
    if not np.isfinite(s).all():
        raise ParameterError("reference statistics must be finite")
    return {"family": "normal", "mean": float(s.mean()), "sd": float(s.std(ddof=1)), "n_models": int(s.size)}


# A score null whose reference models all scored the same still needs a spread: a floor on sd.
SD_FLOOR = 0.01


def score_p_value(null: dict, score: float) -> float:
    """P[S >= score] for a new independent model: ``(score - mean) / (sd sqrt(1 + 1/m))``
    follows Student's t with m - 1 degrees of freedom (the prediction interval)."""
    m = null["n_models"]
    sd = max(null["sd"], SD_FLOOR)
    return float(stats.t.sf((score - null["mean"]) / (sd * np.sqrt(1 + 1 / m)), m - 1))


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


def fit_null(family: str, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> dict:
    """The null of a method's ``null_family`` from reference models: for ``"counts"`` a
    beta-binomial on each model's number of agreeing items, otherwise a normal on the statistics."""
    if family == "counts":
        return fit_count_null([round(float(np.sum(v))) for v in evidence], len(evidence[0]) if evidence else 0)
    return fit_score_null(statistics)


def p_value(null: dict, values: np.ndarray, statistic: float) -> float:
    """The p-value of one model's evidence ``values`` (and its ``statistic``) under ``null``."""
    if null["family"] == "normal":
        return score_p_value(null, statistic)
    return count_p_value(null, round(float(np.sum(values))), len(values))
