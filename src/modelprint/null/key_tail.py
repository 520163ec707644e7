"""Keys: how often a component of an independent owner's key clears the similarity threshold,
estimated on simulated keys, and the exact binomial tail of the count over the key's components."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ParameterError
from .base import Null, close_to_refit, number_in
from .region import CONFIDENCE
from .sequential import upper_bound


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
    limits = {"q_hat": (0.0, 1.0), "q_upper": (0.0, 1.0), "components": (1, math.inf)}

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
