"""The null of an uncalibrated score fingerprint: none (a score has no chance level)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError
from .base import Null, Verdict


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
