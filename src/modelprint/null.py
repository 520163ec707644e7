"""The null distribution of a fingerprint statistic over independent models, as pure functions.

Two families, chosen by the evidence a fingerprint method produces:

* **Counts** (per-query 0/1 agreement, e.g. label matching): a model independent of the
  source agrees with query i with some probability theta that is *its own*: given the
  model, the N queries (drawn independently by the generator) are Bernoulli(theta), and
  theta varies from model to model, theta ~ Beta(a, b). The count K of agreements is then
  beta-binomial. A plain binomial (one theta for every model, let alone theta = 1/classes)
  is wrong: independent models agree with characteristic examples at 0.2-0.7 depending on
  the model, so the binomial's tail is far too thin and calls independent models matches.
* **Scores** (a similarity, a cosine): a normal model for the statistic, used through the
  Student-t prediction interval for one new model, which is exact under normality with
  unknown mean and variance and so accounts for few models.
* **Probabilities** (a verifier's score in [0, 1], which independent models push towards 0
  or 1, far from a bell): a Beta distribution, U-shaped where the scores are, with the same
  conservative likelihood region as counts.
* **Keys** (per-component similarities of a white-box mark): how often a component of an
  independent owner's key clears the similarity threshold, estimated on thousands of
  simulated keys, and the exact binomial tail of the count over the key's components.

Every null states the smallest p-value it can give (``smallest_p``), and the verdict rule
is the same for all: ``match`` when p < FPR; ``no-match`` only when the suspect is typical
of independent models (see :meth:`Null.typical`); ``inconclusive`` otherwise.

Few reference models pin (a, b) down poorly, so count p-values are conservative: the
largest tail probability over the likelihood-ratio confidence region of (a, b) (level
``confidence``, chi-square with 2 degrees of freedom), not the tail at the estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

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
    region = _frontier(2 * (ll[best] - ll) <= stats.chi2.ppf(confidence, 2))
    return {
        "family": "beta-binomial",
        "n_queries": int(n),
        "mean": float(mean[best]),
        "rho": float(rho[best]),
        "confidence": confidence,
        "region": region,
    }


def _frontier(inside: np.ndarray) -> list[list[float]]:
    """The upper frontier of a region of the (mean, rho) grid. Upper tails grow with the mean and
    (above the mean) with the dispersion: keep, per rho, the largest mean inside the region; per
    mean, the largest rho. Their union is the frontier."""
    points = set()
    for j in range(len(_RHOS)):
        rows = np.flatnonzero(inside[:, j])
        if rows.size:
            points.add((int(rows[-1]), j))
    for i in range(len(_MEANS)):
        cols = np.flatnonzero(inside[i])
        if cols.size:
            points.add((i, int(cols[-1])))
    return [[float(_MEANS[i]), float(_RHOS[j])] for i, j in sorted(points)]


def references_needed(
    counts: Sequence[int], n: int, alpha: float, *, confidence: float = CONFIDENCE, most: int = 1000
) -> int | None:
    """How many reference models a count null needs before ``n`` of ``n`` agreements has a
    p-value below ``alpha``, if further models agreed like ``counts`` do (the same proportions:
    the log-likelihood scales with the number of models, so the confidence region shrinks).
    None when even ``most`` models would not do."""
    k = np.asarray(counts, dtype=np.float64)
    mean, rho = np.meshgrid(_MEANS, _RHOS, indexing="ij")
    ll = _loglik(k, n, mean, rho)
    gap = 2 * (ll.max() - ll)
    limit = stats.chi2.ppf(confidence, 2)

    def reaches(copies: int) -> bool:
        region = _frontier(copies * gap <= limit)
        return max(_tail(n, n, m, r) for m, r in region) < alpha

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


def _tail(k: int, n: int, mean: float, rho: float) -> float:
    """P[K >= k] for K beta-binomial(n; mean, rho), binomial when rho = 0."""
    if k <= 0:
        return 1.0
    if rho <= 0:
        return float(stats.binom.sf(k - 1, n, mean))
    a, b = _ab(np.float64(mean), np.float64(rho))
    return float(stats.betabinom.sf(k - 1, n, a, b))


def tail_table(null: dict, n: int) -> np.ndarray:
    """(n + 1,): P[K >= k] for k = 0..n, at its largest over the null's confidence region: every
    count's conservative p-value at once (one array operation instead of a tail per point)."""
    points = np.asarray(null.get("region") or [[null["mean"], null.get("rho", 0.0)]], dtype=np.float64)
    k = np.arange(n + 1)
    mean, rho = points[:, :1], points[:, 1:]
    a, b = _ab(mean, rho)
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
# The largest value a score statistic takes (every registered score method's is a fraction, a
# probability, a cosine or a CKA): a match that needs more is out of reach.
SCORE_MAX = 1.0


def score_p_value(null: dict, score: float) -> float:
    """P[S >= score] for a new independent model: ``(score - mean) / (sd sqrt(1 + 1/m))``
    follows Student's t with m - 1 degrees of freedom (the prediction interval)."""
    m = null["n_models"]
    sd = max(null["sd"], SD_FLOOR)
    return float(stats.t.sf((score - null["mean"]) / (sd * np.sqrt(1 + 1 / m)), m - 1))


# Probabilities closer than this to 0 or 1 are taken as at that distance: a sigmoid's last
# digits carry no information, and the Beta tail at 1 - SCORE_EPS is the smallest p-value.
SCORE_EPS = 1e-4


def _beta_loglik(scores: np.ndarray, mean: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Beta log-likelihood of ``scores`` at each (mean, rho) of the grid; rho = 0 (a point mass) is -inf."""
    a, b = _ab(mean[..., None], rho[..., None])
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = (a - 1) * np.log(scores) + (b - 1) * np.log1p(-scores) - special.betaln(a, b)
    ll = np.where((rho[..., None] > 0) & ~np.isnan(ll), ll, -np.inf)
    return ll.sum(-1)


def fit_probability_null(scores: Sequence[float], *, confidence: float = CONFIDENCE) -> dict:
    """Fit a Beta(a, b) to reference models' probabilities (clipped to [SCORE_EPS, 1 - SCORE_EPS]):
    the maximum-likelihood ``mean`` and ``rho`` = 1 / (a + b + 1), and the upper frontier of the
    likelihood-ratio ``region`` over which p-values take their maximum, as for counts."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size < 3:
        raise ParameterError(f"calibration needs at least 3 independent models, got {s.size} (10 or more is better)")
    if not np.isfinite(s).all() or np.any(s < 0) or np.any(s > 1):
        raise ParameterError("reference probabilities must be finite numbers in [0, 1]")
    s = np.clip(s, SCORE_EPS, 1 - SCORE_EPS)
    mean, rho = np.meshgrid(_MEANS, _RHOS, indexing="ij")
    ll = _beta_loglik(s, mean, rho)
    best = np.unravel_index(np.argmax(ll), ll.shape)
    region = _frontier(2 * (ll[best] - ll) <= stats.chi2.ppf(confidence, 2))
    return {"family": "beta", "mean": float(mean[best]), "rho": float(rho[best]), "confidence": confidence,
            "region": region, "n_models": int(s.size)}  # fmt: skip


def probability_p_values(null: dict, scores: np.ndarray, *, conservative: bool = True) -> np.ndarray:
    """P[S >= score] for each score and an independent model, S ~ Beta: the largest over the
    confidence region (``conservative``), or at the estimate; one array operation."""
    s = np.clip(np.asarray(scores, dtype=np.float64), SCORE_EPS, 1 - SCORE_EPS)
    points = null.get("region") if conservative and null.get("region") else [[null["mean"], null["rho"]]]
    a, b = _ab(*np.asarray(points, dtype=np.float64).T[:, :, None])
    return stats.beta.sf(s[None, :], a, b).max(axis=0)


def probability_p_value(null: dict, score: float, *, conservative: bool = True) -> float:
    """:func:`probability_p_values` of one score."""
    return float(probability_p_values(null, np.array([score]), conservative=conservative)[0])


def fit_key_null(similarities: np.ndarray, tau: float, *, confidence: float = CONFIDENCE) -> dict:
    """The chance q that one component of an independent owner's key clears ``tau``, from the
    similarities (keys, components) of simulated keys: the estimate ``q_hat`` and its exact
    one-sided upper ``confidence`` bound ``q_upper``; ``components`` per fingerprint."""
    sims = np.asarray(similarities, dtype=np.float64)
    if sims.ndim != 2 or sims.shape[0] < 100:
        raise ParameterError("a key null needs the similarities of at least 100 simulated keys")
    above, trials = int(np.sum(sims > tau)), int(sims.size)
    return {"family": "key-tail", "tau": float(tau), "keys": int(sims.shape[0]), "components": int(sims.shape[1]),
            "above": above, "trials": trials, "q_hat": above / trials, "confidence": confidence,
            "q_upper": upper_bound(above, trials, 1 - confidence),
            "key_statistics_max": float(np.max(np.mean(sims > tau, axis=1)))}  # fmt: skip


def key_p_value(null: dict, statistic: float, components: int, *, conservative: bool = True) -> float:
    """P[at least ``statistic * components`` of the key's components clear tau] for an
    independent owner's module: binomial(components, q) with q = ``q_upper`` (or ``q_hat``)."""
    k = round(statistic * components)
    q = null["q_upper"] if conservative else null["q_hat"]
    return 1.0 if k <= 0 else float(stats.binom.sf(k - 1, components, q))


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
        a, b = _ab(np.float64(mean), np.float64(rho))
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
NO_MATCH_P = 0.05


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _in(value: Any, low: float, high: float) -> bool:
    return _is_number(value) and bool(np.isfinite(value)) and low <= value <= high


def _region_problem(data: dict[str, Any]) -> str | None:
    """A likelihood region as a fit stores it: [mean, rho] pairs on the grid's range."""
    region = data.get("region")
    if not isinstance(region, list) or not region or len(region) > _MEANS.size * _RHOS.size:
        return "its null's region is not a list of [mean, rho] points"
    for point in region:
        if not (isinstance(point, list) and len(point) == 2 and _in(point[0], 0, 1) and _in(point[1], 0, 1)):
            return f"its null's region holds {str(point)[:40]}, not a [mean, rho] point in [0, 1]"
        if not 0 < point[0] < 1 or point[1] >= 1:
            return f"its null's region holds {str(point)[:40]}, outside the fitted range"
    if not _in(data.get("confidence"), 0.5, 0.999999):
        return "its null's confidence is not a level in (0.5, 1)"
    return None


def _close(stored: float, refit: float) -> bool:
    return abs(stored - refit) <= 1e-9 * (1 + abs(refit))


class Null:
    """The null distribution of a fingerprint statistic over independent models.

    One class per family; :meth:`fit` from reference models' evidence, :meth:`p_value` and
    :meth:`decide` for a suspect, :meth:`critical` (the statistic an independent model exceeds
    with probability alpha), :meth:`to_json` / :meth:`from_json` for the fingerprint's metadata,
    :meth:`describe` for people. ``data`` is the JSON the fingerprint stores (the calibration
    adds the reference models' sha256s and statistics to it). Nothing outside this module
    branches on the family.

    Example::

        null = Null.for_method("counts").fit(reference_evidence, reference_statistics)
        verdict, p, critical = null.decide(suspect_values, suspect_statistic, fpr=1e-3)
    """

    family: ClassVar[str] = ""
    # The evidence it models: a method's ``null_family`` ("counts", "scores", "probabilities", "keys").
    evidence: ClassVar[str] = "counts"
    calibrated: ClassVar[bool] = True
    # The numbers a stored null of this family must carry, all finite.
    required: ClassVar[tuple[str, ...]] = ()
    # What verification says next to a verdict reached without a fitted null.
    warning: ClassVar[str | None] = None

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @staticmethod
    def for_method(null_family: str) -> type[Null]:
        """The class that models a method's ``null_family``: ``counts``, ``scores``, ``probabilities`` or ``keys``."""
        kind = next((kind for kind in FITTED if kind.evidence == null_family), None)
        if kind is None:
            raise ParameterError(f"no null models evidence of kind {null_family!r}")
        return kind

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        """The null fitted on reference models' evidence (one array each) and statistics."""
        raise NotImplementedError  # abstract: every fitted family overrides it

    @staticmethod
    def uncalibrated(null_family: str, num_classes: int | None) -> Null:
        """What an uncalibrated fingerprint is tested against: chance agreement (1 / classes) for
        count methods, nothing at all for score methods (a score has no chance level)."""
        if null_family != "counts":
            return NoNull()
        if not num_classes or num_classes < 2:
            raise ParameterError("neither the fingerprint nor the suspect says how many classes there are")
        return ChanceNull.of(num_classes)

    @staticmethod
    def problem(data: Any) -> str | None:
        """Why ``data`` is not a null a calibration could have stored (None when it is one): a
        fingerprint is the owner's file, so its null is checked like any hostile input, every
        number finite and in range and the parameters the ones its own reference statistics give."""
        family = data.get("family") if isinstance(data, dict) else None
        kind = next((k for k in FITTED if k.family == family), None)
        if kind is None:
            return f"its null is not one modelprint fits ({str(data)[:60]})"
        for key in kind.required:
            value = data.get(key)
            if not _is_number(value) or not np.isfinite(value):
                return f"its {kind.family} null has {key} = {str(value)[:40]!r}, not a finite number"
        in_range = (data["n_models"] >= 1, data.get("sd", 0) >= 0, 0 <= data.get("rho", 0) < 1)
        if not all(in_range) or not 0 <= data.get("q_upper", 0) <= 1:
            return "its null's numbers are out of range"
        statistics = data.get("statistics")
        if not isinstance(statistics, list) or not all(_is_number(v) and np.isfinite(v) for v in statistics):
            return f"its {kind.family} null records no finite reference statistics"
        if len(statistics) != data["n_models"]:
            return f"its null says {data['n_models']} reference models but records {len(statistics)} statistics"
        if "smallest_p" in data and data["smallest_p"] is not None and not _in(data["smallest_p"], 0, 1):
            return "its null's smallest_p is not a probability"
        return kind.inconsistency(data)

    @classmethod
    def inconsistency(cls, data: dict[str, Any]) -> str | None:
        """Why the stored parameters are not the ones a fit of the null's own reference
        statistics gives (None when they are); ``data`` has passed :meth:`problem`'s checks."""
        return None

    @staticmethod
    def from_json(data: dict[str, Any]) -> Null:
        family = data.get("family")
        for kind in (*FITTED, ChanceNull, NoNull):
            if kind.family == family:
                return kind(data)
        raise ParameterError(f"unknown null family {family!r}")

    def to_json(self) -> dict[str, Any]:
        return self.data

    def fits(self, null_family: str) -> bool:
        """Whether this null models the statistic of a method whose ``null_family`` is given."""
        return null_family == self.evidence

    def p_value(self, values: np.ndarray, statistic: float) -> float | None:
        """P[an independent model scores at least this], from its evidence ``values`` and ``statistic``."""
        raise NotImplementedError  # abstract: every family overrides it

    def p_values(self, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> np.ndarray:
        """:meth:`p_value` of many suspects at once (families with a likelihood region vectorise it)."""
        return np.array([self.p_value(np.asarray(v), s) for v, s in zip(evidence, statistics)], dtype=float)

    def critical(self, alpha: float) -> float | None:
        """The statistic an independent model exceeds with probability ``alpha`` (None: none known)."""
        return None

    def typical_p(self, values: np.ndarray, statistic: float) -> float | None:
        """The p-value at the fitted estimate, not at the conservative bound: what :meth:`typical`
        compares with :data:`NO_MATCH_P` (a bound that favours the suspect must not make it look
        typical)."""
        return self.p_value(values, statistic)

    def typical(self, values: np.ndarray, statistic: float) -> bool:
        """Whether the suspect looks like an independent model, the condition for ``no-match``:
        its p-value at the estimate is at least :data:`NO_MATCH_P` and its statistic is no
        higher than the highest reference model's (when the null recorded them). A suspect
        above every reference but short of a match is ``inconclusive``, never ``no-match``."""
        p = self.typical_p(values, statistic)
        references = self.data.get("statistics") or []
        return p is not None and p >= NO_MATCH_P and (not references or statistic <= max(references) + 1e-12)

    def decide(self, values: np.ndarray, statistic: float, fpr: float) -> tuple[str, float | None, float | None]:
        """(verdict, p-value, critical value) for one suspect at false-positive rate ``fpr``."""
        p = self.p_value(values, statistic)
        verdict = "match" if p < fpr else "no-match" if self.typical(values, statistic) else "inconclusive"
        return verdict, p, self.critical(fpr)

    def smallest_p(self) -> float | None:
        """The smallest p-value this null can give (a perfect suspect's); None without a p-value."""
        return None

    def stated_smallest_p(self) -> float:
        """The smallest p as the full null stated it (a verification's summary keeps the number,
        not the likelihood region it came from)."""
        return self.data["smallest_p"] if self.data.get("smallest_p") is not None else self.smallest_p()

    def summary(self) -> dict[str, Any]:
        """The numbers a verification reports about the null it used."""
        # the region too: p-values and what a match needs are maxima over it, so a reader of the
        # summary (verify's own line, an arbiter) gets the same numbers as the fingerprint's owner
        keep = ("family", "mean", "rho", "sd", "n_models", "n_queries", "confidence", "source", "region",
                *("tau", "keys", "components", "above", "trials", "q_hat", "q_upper"))  # fmt: skip
        return {**{k: self.data[k] for k in keep if k in self.data}, "smallest_p": self.smallest_p()}

    @staticmethod
    def _references(data: dict[str, Any], statistics: Sequence[float]) -> dict[str, Any]:
        """``data`` with the reference models' statistics, which :meth:`typical` compares with."""
        return {**data, "n_models": len(statistics), "statistics": [float(s) for s in statistics]}

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        """One line for people: what the null is and where it sits (``critical``, and for
        count nulls what ``n`` items need at ``fpr``, the same number calibration states)."""
        raise NotImplementedError  # abstract: every family overrides it

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        """Per alpha, the statistic a suspect needs to be called a match (None: unreachable)."""
        return {}


class BetaBinomialNull(Null):
    """Counts: each independent model agrees with each item with its own rate theta ~ Beta, so
    its count of agreements is beta-binomial; p-values are maximised over the likelihood
    region (:func:`fit_count_null`)."""

    family = "beta-binomial"
    required = ("mean", "rho", "n_models", "n_queries", "confidence")

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        counts = [round(float(np.sum(v))) for v in evidence]
        return cls(cls._references(fit_count_null(counts, len(evidence[0]) if evidence else 0), statistics))

    def p_value(self, values: np.ndarray, statistic: float) -> float:
        return count_p_value(self.data, round(float(np.sum(values))), len(values))

    def typical_p(self, values: np.ndarray, statistic: float) -> float:
        return _tail(round(float(np.sum(values))), len(values), self.data["mean"], self.data.get("rho", 0.0))

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
        problem = _region_problem(data)
        if problem:
            return problem
        rates = np.asarray(data["statistics"], dtype=np.float64)
        counts = np.round(rates * n)
        if np.any(rates < 0) or np.any(rates > 1) or np.any(np.abs(rates * n - counts) > 1e-6 * n):
            return f"its null's reference statistics are not agreement rates out of {n} queries"
        if counts.size < 3:
            return "its null was fitted on fewer than 3 reference models"
        refit = fit_count_null(counts.astype(int), n, confidence=data["confidence"])
        same = _close(data["mean"], refit["mean"]) and _close(data["rho"], refit["rho"])
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


class NormalNull(Null):
    """Scores: a normal model of the statistic, used through the Student-t prediction interval
    for one new model (:func:`score_p_value`), its sd floored at :data:`SD_FLOOR`."""

    family = "normal"
    evidence = "scores"
    required = ("mean", "sd", "n_models")

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        return cls(cls._references(fit_score_null(statistics), statistics))

    def p_value(self, values: np.ndarray, statistic: float) -> float:
        return score_p_value(self.data, statistic)

    def smallest_p(self) -> float:
        return score_p_value(self.data, SCORE_MAX)

    @classmethod
    def inconsistency(cls, data: dict[str, Any]) -> str | None:
        if data["n_models"] < 3:
            return "its null was fitted on fewer than 3 reference models"
        refit = fit_score_null(data["statistics"])
        if not (_close(data["mean"], refit["mean"]) and _close(data["sd"], refit["sd"])):
            return "its null's mean and sd are not the ones its reference statistics give (the null was altered)"
        return None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        d = self.data
        floored = f" (floored at {SD_FLOOR:g}: the models all scored alike)" if d["sd"] < SD_FLOOR else ""
        left = d.get("left_out")
        left_out = f"; {left} of other architectures left out (nothing to compare)" if left else ""
        return (
            f"null: normal fitted on {d['n_models']} independent models ({d.get('source', '?')}), "
            f"mean {d['mean']:.3f}, sd {d['sd']:.3f}" + floored + left_out
        )

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        """The score whose prediction-interval p-value is alpha."""
        m, sd, mean = self.data["n_models"], max(self.data["sd"], SD_FLOOR), self.data["mean"]
        out: dict[str, Any] = {"mean": mean, "sd": self.data["sd"]}

        def needed(a: float, models: int) -> float:
            return mean + float(stats.t.isf(a, models - 1)) * sd * float(np.sqrt(1 + 1 / models))

        for a in alphas:
            score = needed(a, m)
            out[f"needed_at_{a:g}"] = score if score <= SCORE_MAX else None
            if score > SCORE_MAX:  # the fewest models, scoring like these, whose interval lets a score reach it
                out[f"references_at_{a:g}"] = next((k for k in range(m, 1001) if needed(a, k) <= SCORE_MAX), None)
        return out


class BetaNull(Null):
    """Probabilities in [0, 1] (a meta-classifier's score): independent models sit near 0 or 1,
    not on a bell, so a normal null is far too wide; a Beta fits either shape, and p-values are
    the largest tail over its likelihood region (:func:`fit_probability_null`), as for counts.

    A Beta fitted on a few scores piled at one end can put almost no mass at the other, so no
    p-value is below the references' own rank p-value, ``(1 + #{references >= s}) / (N + 1)``,
    which is exact for any shape when the suspect is exchangeable with the references (on
    independent digits models the Beta alone called 4 % a match at nominal 1 % from 5
    references). The smallest p is therefore at least 1 / (N + 1)."""

    family = "beta"
    evidence = "probabilities"
    required = ("mean", "rho", "n_models")

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        return cls(cls._references(fit_probability_null(statistics), statistics))

    def _rank_p(self, scores: np.ndarray) -> np.ndarray:
        refs = np.sort(np.asarray(self.data.get("statistics") or [], dtype=np.float64))
        if not refs.size:  # a null stored before references were recorded: the Beta alone
            return np.zeros_like(scores)
        at_least = refs.size - np.searchsorted(refs, scores - 1e-12, side="left")
        return (1.0 + at_least) / (refs.size + 1.0)

    def p_value(self, values: np.ndarray, statistic: float) -> float:
        return float(self.p_values([values], [statistic])[0])

    def typical_p(self, values: np.ndarray, statistic: float) -> float:
        return probability_p_value(self.data, statistic, conservative=False)

    def p_values(self, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> np.ndarray:
        scores = np.asarray(statistics, dtype=float)
        return np.maximum(probability_p_values(self.data, scores), self._rank_p(scores))

    def smallest_p(self) -> float:
        return self.p_value(np.ones(1), 1.0)

    @classmethod
    def inconsistency(cls, data: dict[str, Any]) -> str | None:
        problem = _region_problem(data)
        if problem:
            return problem
        scores = np.asarray(data["statistics"], dtype=np.float64)
        if scores.size < 3 or np.any(scores < 0) or np.any(scores > 1):
            return "its null's reference statistics are not 3 or more probabilities"
        refit = fit_probability_null(scores, confidence=data["confidence"])
        grid = np.linspace(0.0, 1.0, 101)
        same = _close(data["mean"], refit["mean"]) and _close(data["rho"], refit["rho"])
        if not same or not np.allclose(
            probability_p_values(data, grid), probability_p_values(refit, grid), rtol=1e-6, atol=1e-15
        ):
            return "its null's parameters are not the ones its reference statistics give (the null was altered)"
        return None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        d = self.data
        return (
            f"null: Beta fitted on {d['n_models']} independent models ({d.get('source', '?')}), "
            f"mean {d['mean']:.3f}, rho {d['rho']:.3f}, no p below their rank p-value; "
            f"the smallest p it can give is {self.stated_smallest_p():.2g}"
        )

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.data["mean"], "rho": self.data["rho"], "smallest_p": self.smallest_p()}
        grid = np.linspace(0.0, 1.0, 10_001)
        p = self.p_values([], grid)
        for a in alphas:
            below = np.flatnonzero(p < a)
            out[f"needed_at_{a:g}"] = float(grid[below[0]]) if below.size else None
            if not below.size and probability_p_value(self.data, 1.0) < a:  # only the rank floor stands in the way
                out[f"references_at_{a:g}"] = math.floor(1 / a)
        return out


class KeyNull(Null):
    """A white-box mark's components: each component of an independent owner's key clears the
    similarity threshold tau with chance q, estimated on thousands of simulated keys (they cost
    microseconds, trained reference models minutes); the statistic is the fraction of the
    fingerprint's components that clear tau, and its p-value the exact binomial tail at q's
    upper confidence bound (:func:`fit_key_null`). The components of one key are modelled as
    independent: the key's filters are i.i.d. Gaussian, and distinct frequencies of their
    Fourier transform are independent. The smallest p is ``q_upper ** components``."""

    family = "key-tail"
    evidence = "keys"
    required = ("q_hat", "q_upper", "components", "n_models")

    @classmethod
    def fit(
        cls, evidence: Sequence[np.ndarray], statistics: Sequence[float], *, simulated: np.ndarray | None = None,
        tau: float | None = None,
    ) -> Null:  # fmt: skip
        """``simulated``: similarities (keys, components) of independent keys to the fingerprint."""
        if simulated is None or tau is None:
            raise ParameterError("a key null is fitted on simulated keys: give simulated= and tau=")
        return cls(cls._references(fit_key_null(simulated, tau), statistics))

    def p_value(self, values: np.ndarray, statistic: float) -> float:
        return key_p_value(self.data, statistic, len(values))

    def typical_p(self, values: np.ndarray, statistic: float) -> float:
        return key_p_value(self.data, statistic, len(values), conservative=False)

    def smallest_p(self) -> float:
        return key_p_value(self.data, 1.0, self.data["components"])

    @classmethod
    def inconsistency(cls, data: dict[str, Any]) -> str | None:
        counts = [data.get(k) for k in ("keys", "components", "above", "trials")]
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            return "its key null's keys, components, above and trials are not counts"
        keys, components, above, trials = counts
        if keys < 100 or components < 1 or trials != keys * components or above > trials:
            return "its key null's counts do not add up (trials = keys x components, above <= trials)"
        if not _in(data.get("tau"), -1, 1) or not _in(data.get("confidence"), 0.5, 0.999999):
            return "its key null's tau or confidence is out of range"
        if not _close(data["q_hat"], above / trials) or not _close(
            data["q_upper"], upper_bound(above, trials, 1 - data["confidence"])
        ):
            return "its key null's q_hat and q_upper are not the ones its counts give (the null was altered)"
        return None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        d = self.data
        return (
            f"null: {d['keys']} simulated independent keys, a component clears tau = {d['tau']:g} with chance "
            f"at most {d['q_upper']:.2g} ({d['above']} of {d['trials']}); {d['n_models']} reference models; "
            f"the smallest p it can give is {self.stated_smallest_p():.2g}"
        )

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        f = self.data["components"]
        out: dict[str, Any] = {"q_upper": self.data["q_upper"], "smallest_p": self.smallest_p()}
        for a in alphas:
            k = next((k for k in range(1, f + 1) if key_p_value(self.data, k / f, f) < a), None)
            out[f"needed_at_{a:g}"] = None if k is None else k / f
        return out


class NoNull(Null):
    """An uncalibrated score method: a score has no chance level, so there is no p-value."""

    family = "none"
    evidence = "scores"
    calibrated = False
    warning = (
        "this fingerprint is not calibrated: a score has no chance level, so there is no p-value; "
        "run `modelprint fingerprint calibrate` first"
    )

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__(data or {"family": "none"})

    def p_value(self, values: np.ndarray, statistic: float) -> None:
        return None

    def decide(self, values: np.ndarray, statistic: float, fpr: float) -> tuple[str, None, None]:
        return "inconclusive", None, None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        return ""


# The families a calibration fits, one per kind of evidence.
FITTED: tuple[type[Null], ...] = (BetaBinomialNull, NormalNull, BetaNull, KeyNull)
