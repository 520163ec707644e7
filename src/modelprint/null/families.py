"""The null families: beta-binomial counts (and chance), normal scores, Beta probabilities,
simulated keys, and none (an uncalibrated fingerprint)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ParameterError
from .base import Null, Verdict, close_to_refit, number_in, region_problem
from .counts import (
    chance_null,
    count_p_value,
    count_tail,
    critical_rate,
    fit_count_null,
    needed_count,
    references_needed,
    tail_table,
)
from .scores import (
    SCORE_MAX,
    SD_FLOOR,
    fit_key_null,
    fit_probability_null,
    fit_score_null,
    key_p_value,
    probability_p_value,
    probability_p_values,
    score_p_value,
)
from .sequential import upper_bound


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
        cls,
        evidence: Sequence[np.ndarray],
        statistics: Sequence[float],
        *,
        simulated: np.ndarray | None = None,
        tau: float | None = None,
    ) -> Null:
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
        if not number_in(data.get("tau"), -1, 1) or not number_in(data.get("confidence"), 0.5, 0.999999):
            return "its key null's tau or confidence is out of range"
        if not close_to_refit(data["q_hat"], above / trials) or not close_to_refit(
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

    @classmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        raise ParameterError("an uncalibrated null is not fitted: a score method fits NormalNull or BetaNull")

    def p_value(self, values: np.ndarray, statistic: float) -> None:
        return None

    def decide(self, values: np.ndarray, statistic: float, fpr: float) -> tuple[Verdict, None, None]:
        return "inconclusive", None, None

    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        return ""
