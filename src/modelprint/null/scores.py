"""Scores, probabilities and keys: the normal, Beta and simulated-key nulls as functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import special, stats

from ..errors import ParameterError
from .counts import CONFIDENCE, MEAN_GRID, RHO_GRID, beta_parameters, region_frontier
from .sequential import upper_bound


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
    a, b = beta_parameters(mean[..., None], rho[..., None])
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
    mean, rho = np.meshgrid(MEAN_GRID, RHO_GRID, indexing="ij")
    ll = _beta_loglik(s, mean, rho)
    best = np.unravel_index(np.argmax(ll), ll.shape)
    region = region_frontier(2 * (ll[best] - ll) <= stats.chi2.ppf(confidence, 2))
    return {
        "family": "beta",
        "mean": float(mean[best]),
        "rho": float(rho[best]),
        "confidence": confidence,
        "region": region,
        "n_models": int(s.size),
    }


def probability_p_values(null: dict, scores: np.ndarray, *, conservative: bool = True) -> np.ndarray:
    """P[S >= score] for each score and an independent model, S ~ Beta: the largest over the
    confidence region (``conservative``), or at the estimate; one array operation."""
    s = np.clip(np.asarray(scores, dtype=np.float64), SCORE_EPS, 1 - SCORE_EPS)
    points = null.get("region") if conservative and null.get("region") else [[null["mean"], null["rho"]]]
    a, b = beta_parameters(*np.asarray(points, dtype=np.float64).T[:, :, None])
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
    return {
        "family": "key-tail",
        "tau": float(tau),
        "keys": int(sims.shape[0]),
        "components": int(sims.shape[1]),
        "above": above,
        "trials": trials,
        "q_hat": above / trials,
        "confidence": confidence,
        "q_upper": upper_bound(above, trials, 1 - confidence),
        "key_statistics_max": float(np.max(np.mean(sims > tau, axis=1))),
    }


def key_p_value(null: dict, statistic: float, components: int, *, conservative: bool = True) -> float:
    """P[at least ``statistic * components`` of the key's components clear tau] for an
    independent owner's module: binomial(components, q) with q = ``q_upper`` (or ``q_hat``)."""
    k = round(statistic * components)
    q = null["q_upper"] if conservative else null["q_hat"]
    return 1.0 if k <= 0 else float(stats.binom.sf(k - 1, components, q))
