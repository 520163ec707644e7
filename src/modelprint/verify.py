"""Verification: does a suspect reproduce a fingerprint's expected labels?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .errors import FingerprintFileError
from .fingerprints import Fingerprint
from .metrics import binomial_p_value, matching_rate
from .models import ModelprintModel

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Verification:
    matching_rate: float
    matches: int
    n: int
    p_value: float
    chance: float
    threshold: float
    verdict: str  # "match" | "no-match"
    queries: int
    method: str
    source_sha256: str
    suspect_sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_compatible(fp: Fingerprint, suspect: ModelprintModel) -> None:
    if tuple(suspect.card.input_shape) != fp.input_shape:
        raise FingerprintFileError(
            f"the fingerprint's queries are {'x'.join(map(str, fp.input_shape))} (C x H x W) but the suspect "
            f"takes {'x'.join(map(str, suspect.card.input_shape))}; verify a model of the same input shape"
        )
    n_classes = fp.meta.get("num_classes")
    if n_classes is not None and suspect.card.num_classes != n_classes:
        raise FingerprintFileError(
            f"the fingerprint expects {n_classes} classes but the suspect has {suspect.card.num_classes}"
        )


def suspect_labels(fp: Fingerprint, suspect: ModelprintModel) -> torch.Tensor:
    check_compatible(fp, suspect)
    return suspect.predict(fp.x)


def verify(fp: Fingerprint, suspect: ModelprintModel, threshold: float | None = None) -> Verification:
    """Matching rate of ``suspect`` on ``fp``, its binomial p-value against agreeing by chance
    (1 / classes per query) and the verdict ``matching_rate >= threshold``.

    ``threshold`` defaults to the one stored with the fingerprint (from calibration), else 0.5.
    """
    if threshold is None:
        threshold = float(fp.meta.get("threshold", DEFAULT_THRESHOLD))
    predicted = suspect_labels(fp, suspect)
    rate = matching_rate(predicted.numpy(), fp.y.numpy())
    matches = int((predicted == fp.y).sum())
    chance = 1.0 / int(fp.meta.get("num_classes", suspect.card.num_classes))
    return Verification(
        matching_rate=rate,
        matches=matches,
        n=len(fp),
        p_value=binomial_p_value(matches, len(fp), chance),
        chance=chance,
        threshold=threshold,
        verdict="match" if rate >= threshold else "no-match",
        queries=len(fp),
        method=str(fp.meta.get("method", "")),
        source_sha256=str(fp.meta.get("source_sha256", "")),
        suspect_sha256=suspect.card.weights_sha256,
    )
