"""Scores: a normal model of a similarity over independent models, used through the Student-t
prediction interval for one new model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ParameterError
from .base import Null, close_to_refit


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


class NormalNull(Null):
    """Scores: a normal model of the statistic, used through the Student-t prediction interval
    for one new model (:func:`score_p_value`), its sd floored at :data:`SD_FLOOR`."""

    family = "normal"
    evidence = "scores"
    limits = {"mean": (-math.inf, math.inf), "sd": (0.0, math.inf)}
    summary_fields = ("mean", "sd")

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
        if not (close_to_refit(data["mean"], refit["mean"]) and close_to_refit(data["sd"], refit["sd"])):
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
