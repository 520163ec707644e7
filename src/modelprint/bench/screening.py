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

Example::

    screens = {"natural": Screen(keep=100, candidates=2000)}
    run_bench("zoo-fmnist", ["c", "natural"], "bench-out", screen=screens)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..fingerprints import Fingerprint, FingerprintMethod
from ..screening import keep_least_followed


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


def check_screens(screens: dict[str, Screen], methods: dict[str, FingerprintMethod]) -> None:
    """Every screened entry is among the methods and has per-query agreement to screen."""
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


def screen_answers(
    fp: Fingerprint, values: dict[str, list[float]], selection: Sequence[str], keep: int, sha256: dict[str, str]
) -> tuple[Fingerprint, dict[str, list[float]]]:
    """The fingerprint reduced to the ``keep`` queries the ``selection`` suspects agree with least
    (:func:`~modelprint.screening.keep_least_followed`), and every suspect's answers to them."""
    rates = np.mean([values[i] for i in selection], axis=0)
    rule = "the queries the selection negatives agree with least; the null is fitted on the other calibration negatives"
    reduced, index = keep_least_followed(
        fp, rates, keep, selection=list(selection), selection_sha256=[sha256[i] for i in selection], rule=rule
    )
    return reduced, {i: [v[j] for j in index] for i, v in values.items()}


def apply_screens(
    screens: dict[str, Screen],
    methods: dict[str, FingerprintMethod],
    made: Any,
    answers: dict[str, dict[str, list[float]]],
    calibration: Sequence[str],
    sha256: dict[str, str],
    out: Path,
) -> tuple[list[str], list[str]]:
    """Screen every entry of ``screens`` in place: ``made`` (the benchmark's fingerprints, files,
    items and metadata) and ``answers`` keep only the chosen queries, and the selection suspects'
    answers are dropped. Returns (selection ids, null ids): the null ids replace the calibration half."""
    selection, null = split_selection(calibration)
    for m, screen in screens.items():
        values = {i: v[m] for i, v in answers.items()}
        reduced, kept = screen_answers(made.fingerprints[m], values, selection, screen.keep, sha256)
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
        del answers[i]
    return selection, null
