"""Reference screening: keep the queries whose answer the owner's independent models do not give.

A query set is only as strong as the queries independent models answer differently from the
source. Generated queries transfer: independent models, and students distilled from them most
of all, follow the source on many of them, which widens the null until a copy of the source
cannot be told apart at a small FPR (``inconclusive``). Screening asks part of the owner's
reference models, the *selection* models, and keeps the queries they agree with least; the
null is then fitted on the *other* reference models only. The models that chose the queries
never calibrate them (cross-fitting), so the null still describes models the queries were not
chosen against, as every suspect is.

Only methods with per-query 0/1 agreement can be screened (``FingerprintMethod.sequential``).
The fingerprint's metadata records the selection models' sha256s, the candidates and what
was kept.

Example::

    selection, null_models = split_references(reference_models("owner-refs", fp), seed=0)
    fp = calibrate(screen(fp, selection, keep=50), null_models)
    fp = screened_calibration(fp, reference_models("owner-refs", fp), keep=50)   # the same, in one call
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibrate import calibrate
from .errors import ParameterError
from .fingerprints import Fingerprint, method_of
from .models import ModelprintModel, weights_digest


def split_references(
    models: Sequence[ModelprintModel], seed: int = 0
) -> tuple[list[ModelprintModel], list[ModelprintModel]]:
    """The reference models cut into (selection, null) halves. A reference set lists its kinds
    in turn (the source's architecture, others, students), so the models are taken in pairs and
    one of each pair, drawn by ``seed``, selects: every kind lands on both sides. An odd last
    model fits the null."""
    if len(models) < 4:
        raise ParameterError(
            f"screening needs at least 4 reference models (2 select, 2 fit the null), got {len(models)}"
        )
    rng = np.random.default_rng(seed)
    selection, null = [], []
    for first, second in zip(models[0::2], models[1::2]):
        chosen, other = (first, second) if rng.random() < 0.5 else (second, first)
        selection.append(chosen)
        null.append(other)
    if len(models) % 2:
        null.append(models[-1])
    return selection, null


def agreement_rates(fp: Fingerprint, models: Sequence[ModelprintModel]) -> np.ndarray:
    """Per query, the share of ``models`` whose answer agrees with the fingerprint's."""
    method = method_of(fp)
    if not method.sequential or method.items(fp) != len(fp):
        raise ParameterError(
            f"{method.name} has {method.evidence_kind} evidence: only per-query agreement can be screened"
        )
    return np.mean([method.evidence(fp, m).values for m in models], axis=0)


def screen(fp: Fingerprint, selection: Sequence[ModelprintModel], keep: int) -> Fingerprint:
    """``fp`` reduced to the ``keep`` queries the ``selection`` models agree with least (ties:
    the earlier query), in their original order; the record goes into ``meta["screening"]``."""
    rates = agreement_rates(fp, selection)
    selection_sha256 = [weights_digest(m) for m in selection]
    rule = "the queries the selection models agree with least; the null is fitted on the other references"
    return keep_least_followed(fp, rates, keep, selection_sha256=selection_sha256, rule=rule)[0]


def keep_least_followed(fp: Fingerprint, rates: np.ndarray, keep: int, **record: Any) -> tuple[Fingerprint, list[int]]:
    """The ``keep`` queries of ``fp`` with the lowest agreement ``rates`` (ties: the earlier), in
    their original order, with ``record`` and the agreement figures in ``meta["screening"]``;
    and their indices."""
    if not 1 <= keep <= len(fp):
        raise ParameterError(f"screening keeps between 1 and {len(fp)} queries of this fingerprint, not {keep}")
    order = np.argsort(rates, kind="stable")[:keep]
    index = [int(j) for j in np.sort(order)]
    meta = {
        "candidates": len(fp),
        "kept": keep,
        **record,
        "candidate_agreement": float(rates.mean()),
        "kept_agreement": float(rates[order].mean()),
        "kept_agreement_max": float(rates[order].max()),
    }
    extra = {k: v[index] if v.ndim and len(v) == len(fp) else v for k, v in fp.extra.items()}
    return Fingerprint(fp.x[index], fp.y[index], {**fp.meta, "screening": meta}, extra), index


def screened_calibration(
    fp: Fingerprint,
    references: Sequence[ModelprintModel],
    keep: int,
    positives: Sequence[ModelprintModel] = (),
    *,
    seed: int = 0,
    origin: str = "models",
) -> Fingerprint:
    """Split ``references`` (:func:`split_references`), keep the ``keep`` queries the selection
    half follows least (:func:`screen`) and fit the null on the other half."""
    selection, null = split_references(references, seed)
    kept = screen(fp, selection, keep)
    kept.meta["screening"]["split_seed"] = seed
    return calibrate(kept, null, positives, origin=f"{origin}: the {len(null)} that did not choose the queries")
