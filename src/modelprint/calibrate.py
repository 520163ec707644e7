"""Calibration: fit a fingerprint's null on models independent of its source, and store it.

The null, the number of reference models and their sha256s go into the fingerprint's
metadata, so the owner's commitment (the file's sha256) covers them: calibrate, then
publish the commitment. Positives (the owner's own pruned / fine-tuned copies) are
stored too, so a verdict can say how typical a suspect is of a derived copy.

The owner's own reference models (what they are, how they are trained and kept) live in
:mod:`modelprint.reference`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import CalibrationError, ParameterError
from .fingerprints import METHODS, Fingerprint, method_of
from .models import ModelprintModel, weights_digest
from .null import Null
from .registry import comma_list, parse_settings
from .scoring import model_evidence

# Independent models whose statistic averages this much sit where copies do: more of them
# cannot make a null that tells a copy apart.
SEPARATION_LIMIT = 0.9


def is_derived_from(model: ModelprintModel, source_sha256: str) -> bool:
    """True when ``model`` is the source or its card's lineage passes through it."""
    if not source_sha256:
        return False
    if weights_digest(model) == source_sha256:
        return True
    return any(step.get("parent_sha256") == source_sha256 for step in model.card.lineage)


def calibrate(
    fp: Fingerprint,
    negatives: Sequence[ModelprintModel],
    positives: Sequence[ModelprintModel] = (),
    *,
    origin: str = "models",
) -> Fingerprint:
    """A copy of ``fp`` whose metadata holds the null fitted on ``negatives`` (and the
    positives' statistics). ``origin`` says where the negatives came from (files, zoo, reference)."""
    source = str(fp.meta.get("source_sha256", ""))
    derived = [i for i, m in enumerate(negatives) if is_derived_from(m, source)]
    if derived:
        raise CalibrationError(
            f"negative #{derived[0] + 1} ({weights_digest(negatives[derived[0]])[:12]}…) is the source or derived "
            "from it: a null needs models trained independently of the source"
        )
    shas = [weights_digest(m) for m in negatives]
    if len(set(shas)) != len(shas):
        raise CalibrationError("the same negative model is given twice: each reference model must count once")
    chose = set((fp.meta.get("screening") or {}).get("selection_sha256") or []) & set(shas)
    if chose:  # cross-fitting: the models that chose the queries cannot also calibrate them
        raise CalibrationError(
            f"{len(chose)} of the negatives chose this fingerprint's queries (reference screening) "
            "and cannot also fit its null: give the other reference models"
        )
    method = method_of(fp)
    rows = model_evidence(fp, negatives)
    null = method.fit_null(fp, [r.values for r in rows], [r.statistic for r in rows]).to_json()
    # n_models and statistics are the null's own: a family may fit on some of the references only
    null.update({"source": origin, "sha256": shas})
    meta = {**fp.meta, "null": null}
    if positives:
        pos = model_evidence(fp, positives)
        meta["positives"] = {"sha256": [r.sha256 for r in pos], "statistics": [r.statistic for r in pos]}
    return Fingerprint(fp.x, fp.y, meta, dict(fp.extra))


def separation_advice(independent_mean: float, method: str) -> str | None:
    """The sentence for independent models that agree with the source as copies do (their
    mean statistic at least :data:`SEPARATION_LIMIT`), naming the other methods; None otherwise."""
    if independent_mean < SEPARATION_LIMIT:
        return None
    others = ", ".join(name for name in METHODS.names() if name != method)
    return (
        f"the independent models score {independent_mean:.2f} on average, as a copy would: {method}'s queries do "
        f"not separate models here, so use another method ({others}; `modelprint bench` on a zoo of yours shows "
        "which do)"
    )


def parse_arch(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:K=V,K=V`` (values as JSON where they parse)."""

    name, _, rest = text.partition(":")
    return name, parse_settings(comma_list(rest), f"the arguments of architecture {name!r}")


def null_description(fp: Fingerprint, fprs: Sequence[float] = (1e-2, 1e-3)) -> dict[str, Any]:
    """The stored null in numbers a person can check: where independent models sit and the
    statistic a suspect needs to be called a match at each FPR."""
    null = fp.meta.get("null")
    if not null:
        raise ParameterError("the fingerprint is not calibrated")
    stats_ = np.asarray(null["statistics"])
    return {
        "family": null["family"],
        "n_models": null["n_models"],
        "source": null.get("source"),
        "reference_statistics": {"min": float(stats_.min()), "mean": float(stats_.mean()), "max": float(stats_.max())},
        "smallest_p": Null.from_json(null).smallest_p(),
        **Null.from_json(null).needed(fprs),
    }
