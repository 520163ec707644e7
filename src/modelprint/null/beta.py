"""Probabilities: a Beta model of a verifier's score in [0, 1], U-shaped where independent models
push the scores to 0 or 1, with the same conservative likelihood region as counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from ..errors import ParameterError
from .base import Null, close_to_refit
from .region import CONFIDENCE, MEAN_GRID, RHO_GRID, RHO_MAX, beta_parameters, region_frontier, region_problem

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
    limits = {"mean": (0.0, 1.0), "rho": (0.0, RHO_MAX)}
    summary_fields = ("mean", "rho")

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
        problem = region_problem(data)
        if problem:
            return problem
        scores = np.asarray(data["statistics"], dtype=np.float64)
        if scores.size < 3 or np.any(scores < 0) or np.any(scores > 1):
            return "its null's reference statistics are not 3 or more probabilities"
        refit = fit_probability_null(scores, confidence=data["confidence"])
        grid = np.linspace(0.0, 1.0, 101)
        same = close_to_refit(data["mean"], refit["mean"]) and close_to_refit(data["rho"], refit["rho"])
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
