"""Reference screening in a benchmark: the zoo's calibration negatives play the owner's
reference models.

``fingerprint create --references DIR --screen K`` keeps the K queries the selection half of
the owner's reference models follow least and fits the null on the other half
(:mod:`modelprint.screening`). The benchmark does the same with the calibration half of the
zoo's negatives: it is cut again, group by group, into *selection* models, which choose each
screened method's queries from the suspects' recorded answers, and *null* models, which fit
every method's threshold and null. The selection models are scored nowhere (they are neither
calibration nor evaluation negatives), the evaluation half stays as it was, so every FPR is
still held out from everything that chose or calibrated the queries.

A zoo's negatives are mostly descendants of a mirror source trained on other data, unlike an
owner's reference set (independent models trained on the owner's own data, and their
students). To screen as an owner does, give the reference set built for the zoo's source
(``screen_references``): all its models choose the queries, and the calibration half of the
zoo's negatives is left whole to fit the nulls.

Example::

    screens = {"natural": Screen(keep=100, candidates=2000)}
    run_bench("zoo-fmnist", ["c", "natural"], "bench-out", screen=screens)
    run_bench("zoo-fmnist", ["natural"], "bench-owner", screen=screens, screen_references="fmnist-refs")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..fingerprints import Fingerprint, FingerprintMethod, method_of
from ..reference import read_reference_set, reference_models
from ..screening import keep_least_followed

REFERENCE_PREFIX = "reference:"  # selection ids of reference models, apart from the zoo's ids


@dataclass(frozen=True)
class Screen:
    """Keep ``keep`` of ``candidates`` generated queries."""

    keep: int
    candidates: int

    def __post_init__(self) -> None:
        if not 1 <= self.keep <= self.candidates:
            raise ParameterError(f"screening keeps 1 to {self.candidates} of the candidates, not {self.keep}")


def parse_screens(entries: Sequence[str]) -> dict[str, Screen]:
    """``["natural=100:2000", "ltrc=100:200"]`` -> ``{method: Screen(keep, candidates)}``."""
    out: dict[str, Screen] = {}
    for entry in entries:
        name, _, counts = entry.partition("=")
        keep, _, candidates = counts.partition(":")
        if not name or not keep.isdigit() or not candidates.isdigit():
            raise ParameterError(f"screen takes METHOD=KEEP:CANDIDATES (e.g. natural=100:2000), got {entry!r}")
        out[name.strip()] = Screen(int(keep), int(candidates))
    return out


def check_screens(
    screens: dict[str, Screen],
    methods: dict[str, FingerprintMethod],
    references: str | os.PathLike | None = None,
    source_sha256: str = "",
) -> None:
    """Every screened entry is among the methods and has per-query agreement to screen; a
    reference set to screen with has something to screen and was built for the source."""
    if references is not None:
        if not screens:
            raise ParameterError(
                "a reference set to screen with was given, but no method to screen (e.g. natural=100:2000)"
            )
        _check_built_for(read_reference_set(references), references, source_sha256)
    for m in screens:
        if m not in methods:
            raise ParameterError(f"screening names {m!r}, which is not among the methods ({', '.join(methods)})")
        if not methods[m].sequential:
            raise ParameterError(
                f"{m} has {methods[m].evidence_kind} evidence: only per-query agreement can be screened"
            )


def split_selection(calibration: Sequence[str]) -> tuple[list[str], list[str]]:
    """The calibration negatives dealt alternately into (selection, null). The calibration half
    lists its negatives group by group (category, architecture), so each group lands on both
    sides; the null gets the odd one."""
    selection, null = list(calibration[1::2]), list(calibration[0::2])
    if len(selection) < 2 or len(null) < 3:
        raise ParameterError(
            "screening needs at least 5 calibration negatives (2 select, 3 fit the null), "
            f"the zoo gives {len(calibration)}"
        )
    return selection, null


RULE = "the queries the selection negatives agree with least; the null is fitted on the other calibration negatives"
REFERENCE_RULE = (
    "the queries the owner's reference models agree with least; the null is fitted on the calibration negatives"
)


def screen_answers(
    fp: Fingerprint,
    values: dict[str, list[float]],
    selection: Sequence[str],
    keep: int,
    sha256: dict[str, str],
    rule: str = RULE,
) -> tuple[Fingerprint, dict[str, list[float]]]:
    """The fingerprint reduced to the ``keep`` queries the ``selection`` suspects agree with least
    (:func:`~modelprint.screening.keep_least_followed`), and every suspect's answers to them."""
    rates = np.mean([values[i] for i in selection], axis=0)
    reduced, index = keep_least_followed(
        fp, rates, keep, selection=list(selection), selection_sha256=[sha256[i] for i in selection], rule=rule
    )
    return reduced, {i: [v[j] for j in index] for i, v in values.items()}


def _check_built_for(record: dict[str, Any], folder: str | os.PathLike, source_sha256: str) -> None:
    if record.get("source_sha256") != source_sha256:
        raise ParameterError(
            f"the reference set in {folder} was built for another model (source sha256 "
            f"{str(record.get('source_sha256'))[:12]}...), not for the zoo's source ({source_sha256[:12]}...)"
        )


def reference_answers(
    folder: str | os.PathLike, fingerprints: dict[str, Fingerprint], source_sha256: str
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Every model of the reference set in ``folder`` answering each of ``fingerprints``
    (``{"reference:<file>": {entry: values}}``) and their sha256s; the set must have been built
    for the zoo's source (``source_sha256``), and is checked as ``--references`` checks it."""
    record = read_reference_set(folder)
    _check_built_for(record, folder, source_sha256)
    ids = [REFERENCE_PREFIX + str(e["file"]) for e in record["models"]]
    answers: dict[str, dict[str, list[float]]] = {i: {} for i in ids}
    for m, fp in fingerprints.items():
        method = method_of(fp)
        # reference_models checks every model against the sha256 the set records
        for i, model in zip(ids, reference_models(folder, fp)):
            answers[i][m] = method.evidence(fp, model).values.tolist()
    return answers, {i: str(e["sha256"]) for i, e in zip(ids, record["models"])}


def apply_screens(
    screens: dict[str, Screen],
    methods: dict[str, FingerprintMethod],
    made: Any,
    answers: dict[str, dict[str, list[float]]],
    calibration: Sequence[str],
    sha256: dict[str, str],
    out: Path,
    references: str | os.PathLike | None = None,
) -> tuple[list[str], list[str]]:
    """Screen every entry of ``screens`` in place: ``made`` (the benchmark's fingerprints, files,
    items and metadata) and ``answers`` keep only the chosen queries, and the selection suspects'
    answers are dropped. Returns (selection ids, null ids): the null ids replace the calibration
    half. With ``references`` (a reference set's folder) its models select and the whole
    calibration half fits the nulls (:func:`reference_answers`)."""
    pool, rule = answers, RULE
    if references is None:
        selection, null = split_selection(calibration)
    else:
        screened = {m: made.fingerprints[m] for m in screens}
        source_sha256 = made.meta[next(iter(screens))]["source_sha256"]
        ref_answers, ref_sha256 = reference_answers(references, screened, source_sha256)
        selection, null = list(ref_answers), list(calibration)
        pool, sha256, rule = {**answers, **ref_answers}, {**sha256, **ref_sha256}, REFERENCE_RULE
    for m, screen in screens.items():
        values = {i: v[m] for i, v in pool.items()}
        reduced, kept = screen_answers(made.fingerprints[m], values, selection, screen.keep, sha256, rule)
        path = (
            out
            / "fingerprints"
            / f"{Path(made.files[m]).name.removesuffix('.fp.safetensors')}-kept{screen.keep}.fp.safetensors"
        )
        reduced.save(path)
        made.files[m], made.fingerprints[m], made.items[m] = str(path), reduced, screen.keep
        made.meta[m].update(file=str(path.relative_to(out)), queries=screen.keep, summary=methods[m].summary(reduced))
        made.meta[m]["screening"] = reduced.meta["screening"]
        for i, v in answers.items():
            v[m] = kept[i]
    for i in selection:
        answers.pop(i, None)
    return selection, null


def screen_step(
    plan: Any, made: Any, answers: dict[str, Any], split: tuple[list[str], list[str]], out: Path
) -> tuple[tuple[list[str], list[str]], dict[str, Any]]:
    """The benchmark's screening step (:func:`apply_screens`) on its plan (``BenchPlan``): the
    selection negatives leave the plan and the calibration half. Returns the new split and,
    for the record of the negatives' split, the selection ids and where they came from (empty
    when nothing is screened)."""
    if not plan.screens:
        return split, {}
    sha256 = {r["id"]: r["sha256"] for r in plan.suspects}
    args = (plan.screens, plan.methods, made, answers, split[0], sha256, out, plan.screen_references)
    selection, null_ids = apply_screens(*args)
    plan.suspects = [r for r in plan.suspects if r["id"] not in selection]
    chosen_by = "references" if plan.screen_references is not None else "calibration"
    return (null_ids, split[1]), {"selection": selection, "selection_from": chosen_by}
