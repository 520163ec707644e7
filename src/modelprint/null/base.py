"""The :class:`Null` every family extends: fitting, checking a stored null against a refit,
p-values, the verdict rule and its plain description."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ParameterError

NO_MATCH_P = 0.05
# What a verification concludes.
Verdict = Literal["match", "no-match", "inconclusive"]
# The evidence a null models, as a method's ``null_family`` names it.
NullEvidence = Literal["counts", "scores", "probabilities", "keys"]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number_in(value: Any, low: float, high: float) -> bool:
    return is_number(value) and bool(np.isfinite(value)) and low <= value <= high


def close_to_refit(stored: float, refit: float) -> bool:
    return abs(stored - refit) <= 1e-9 * (1 + abs(refit))


class Null(ABC):
    """The null distribution of a fingerprint statistic over independent models.

    One class per family; :meth:`fit` from reference models' evidence, :meth:`p_value` and
    :meth:`decide` for a suspect, :meth:`critical` (the statistic an independent model exceeds
    with probability alpha), :meth:`to_json` / :meth:`from_json` for the fingerprint's metadata,
    :meth:`describe` for people. ``data`` is the JSON the fingerprint stores (the calibration
    adds the reference models' sha256s and statistics to it). Nothing outside this package
    branches on the family.

    Example::

        null = Null.for_method("counts").fit(reference_evidence, reference_statistics)
        verdict, p, critical = null.decide(suspect_values, suspect_statistic, fpr=1e-3)
    """

    family: ClassVar[str] = ""
    # The evidence it models: a method's ``null_family`` ("counts", "scores", "probabilities", "keys").
    evidence: ClassVar[NullEvidence] = "counts"
    calibrated: ClassVar[bool] = True
    # The numbers a stored null of this family carries, each finite and within its (low, high).
    limits: ClassVar[dict[str, tuple[float, float]]] = {}
    # The parameters that sum it up in a results table (beside its family's name).
    summary_fields: ClassVar[tuple[str, ...]] = ()
    # What verification says next to a verdict reached without a fitted null.
    warning: ClassVar[str | None] = None

    # Every family by its name, registered as its class is defined (one module per family).
    _families: ClassVar[dict[str, type[Null]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Null._families[cls.family] = cls

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @staticmethod
    def fitted_families() -> list[type[Null]]:
        """The families a calibration fits, one per kind of evidence."""
        return [kind for kind in Null._families.values() if kind.calibrated]

    @staticmethod
    def for_method(null_family: NullEvidence) -> type[Null]:
        """The class that models a method's ``null_family``: ``counts``, ``scores``, ``probabilities`` or ``keys``."""
        kind = next((kind for kind in Null.fitted_families() if kind.evidence == null_family), None)
        if kind is None:
            raise ParameterError(f"no null models evidence of kind {null_family!r}")
        return kind

    @classmethod
    @abstractmethod
    def fit(cls, evidence: Sequence[np.ndarray], statistics: Sequence[float]) -> Null:
        """The null fitted on reference models' evidence (one array each) and statistics."""

    @staticmethod
    def uncalibrated(null_family: NullEvidence, num_classes: int | None) -> Null:
        """What an uncalibrated fingerprint is tested against: chance agreement (1 / classes) for
        count methods, nothing at all for score methods (a score has no chance level)."""
        if null_family != "counts":
            return Null._families["none"]({"family": "none"})
        if not num_classes or num_classes < 2:
            raise ParameterError("neither the fingerprint nor the suspect says how many classes there are")
        return Null._families["chance"].of(num_classes)  # type: ignore[attr-defined]

    @staticmethod
    def problem(data: Any) -> str | None:
        """Why ``data`` is not a null a calibration could have stored (None when it is one): a
        fingerprint is the owner's file, so its null is checked like any hostile input, every
        number finite and in range and the parameters the ones its own reference statistics give."""
        family = data.get("family") if isinstance(data, dict) else None
        kind = next((k for k in Null.fitted_families() if k.family == family), None)
        if kind is None:
            return f"its null is not one modelprint fits ({str(data)[:60]})"
        for key, (low, high) in {"n_models": (1, math.inf), **kind.limits}.items():
            value = data.get(key)
            if not is_number(value) or not np.isfinite(value):
                return f"its {kind.family} null has {key} = {str(value)[:40]!r}, not a finite number"
            if not low <= value <= high:
                return f"its {kind.family} null has {key} = {value!r}, outside [{low:g}, {high:g}]"
        statistics = data.get("statistics")
        if not isinstance(statistics, list) or not all(is_number(v) and np.isfinite(v) for v in statistics):
            return f"its {kind.family} null records no finite reference statistics"
        if len(statistics) != data["n_models"]:
            return f"its null says {data['n_models']} reference models but records {len(statistics)} statistics"
        if "smallest_p" in data and data["smallest_p"] is not None and not number_in(data["smallest_p"], 0, 1):
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
        kind = Null._families.get(family) if isinstance(family, str) else None
        if kind is None:
            raise ParameterError(f"unknown null family {family!r}")
        return kind(data)

    def to_json(self) -> dict[str, Any]:
        return self.data

    def summary_parameters(self) -> dict[str, Any]:
        """The family's name and the parameters that sum it up (:attr:`summary_fields`)."""
        return {"family": self.data["family"], **{k: self.data[k] for k in self.summary_fields if k in self.data}}

    def fits(self, null_family: NullEvidence) -> bool:
        """Whether this null models the statistic of a method whose ``null_family`` is given."""
        return null_family == self.evidence

    @abstractmethod
    def p_value(self, values: np.ndarray, statistic: float) -> float | None:
        """P[an independent model scores at least this], from its evidence ``values`` and ``statistic``."""

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

    def decide(self, values: np.ndarray, statistic: float, fpr: float) -> tuple[Verdict, float | None, float | None]:
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
        keep = (
            "family",
            "mean",
            "rho",
            "sd",
            "n_models",
            "n_queries",
            "confidence",
            "source",
            "region",
            *("tau", "keys", "components", "above", "trials", "q_hat", "q_upper"),
        )
        return {**{k: self.data[k] for k in keep if k in self.data}, "smallest_p": self.smallest_p()}

    @staticmethod
    def _references(data: dict[str, Any], statistics: Sequence[float]) -> dict[str, Any]:
        """``data`` with the reference models' statistics, which :meth:`typical` compares with."""
        return {**data, "n_models": len(statistics), "statistics": [float(s) for s in statistics]}

    @abstractmethod
    def describe(self, critical: float | None = None, *, fpr: float | None = None, n: int | None = None) -> str:
        """One line for people: what the null is and where it sits (``critical``, and for
        count nulls what ``n`` items need at ``fpr``, the same number calibration states)."""

    def needed(self, alphas: Sequence[float]) -> dict[str, Any]:
        """Per alpha, the statistic a suspect needs to be called a match (None: unreachable)."""
        return {}
