"""The held-out protocol of a benchmark: the zoo's negatives cut into a calibration half, which
fits every decision rule (a threshold, the method's null), and an evaluation half, on which
the rules' false-positive rates are counted, with their Clopper-Pearson intervals.

Example::

    calibration, evaluation = split_negatives(manifest.rows, seed=0)
    rates = honest_thresholds(method, fp, values, positives, calibration, evaluation, fpr=0.01)
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from ..fingerprints import Fingerprint
from ..metrics import threshold_at_fpr
from ..null import clopper_pearson


def split_negatives(rows: list[dict[str, Any]], seed: int) -> tuple[list[str], list[str]]:
    """Negatives' ids cut into (calibration, evaluation) halves, per category and architecture:
    each group's negatives are shuffled (seeded) and dealt alternately; an odd one out goes
    to whichever half is smaller, so both halves see every group that has two (same-data
    independents among them, whose held-out FPR is reported on their own)."""
    rng = random.Random(seed)
    calib: list[str] = []
    evaluation: list[str] = []
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["role"] == "negative":
            groups.setdefault((r["category"], r["arch"]), []).append(r["id"])
    for group in sorted(groups):
        ids = sorted(groups[group])
        rng.shuffle(ids)
        half = len(ids) // 2
        calib += ids[:half]
        evaluation += ids[half : 2 * half]
        if len(ids) % 2:
            (calib if len(calib) <= len(evaluation) else evaluation).append(ids[-1])
    return calib, evaluation


def honest_thresholds(
    method: Any,
    fp: Fingerprint,
    values: dict[str, list[float]],
    pos_ids: list[str],
    calib: list[str],
    evaluation: list[str],
    fpr: float,
    category: dict[str, str] | None = None,
) -> dict[str, Any]:
    """FPR and TPR of two calibrated decision rules, fitted on ``calib`` negatives only and
    scored on ``evaluation`` negatives (and every positive):

    * ``threshold``: the empirical threshold at ``fpr`` on the calibration negatives;
    * ``null``: the method's null fitted on the calibration negatives, verdict ``p < fpr``
      (and ``p < 1e-3``), as ``modelprint verify`` decides.

    ``fpr_interval`` is the 95 % Clopper-Pearson interval of each observed FPR;
    ``fpr_within`` says whether the nominal ``fpr`` lies inside it. ``by_category`` (given
    each negative's ``category``) counts both rules' false matches per category of the
    evaluation negatives, and the null's verdicts there (``no-match`` / ``inconclusive``)."""
    stat = {i: method.statistic(np.asarray(v)) for i, v in values.items()}
    cal = np.array([stat[i] for i in calib])
    ev = np.array([stat[i] for i in evaluation])
    pos = np.array([stat[i] for i in pos_ids])
    out: dict[str, Any] = {"calibration_negatives": len(calib), "evaluation_negatives": len(evaluation)}
    if len(calib) < 3 or len(evaluation) < 1:
        out["skipped"] = "fewer than 3 calibration or no evaluation negatives"
        return out

    def rates(false_pos: int, true_pos: int) -> dict[str, Any]:
        return _observed_rates(false_pos, len(ev), true_pos, len(pos), fpr)

    t = threshold_at_fpr(cal, fpr)
    out["threshold"] = {"value": t, **rates(int(np.sum(ev >= t)), int(np.sum(pos >= t)))}
    null = method.fit_null(fp, [np.asarray(values[i]) for i in calib], cal)

    def p_of(i: str) -> float:
        return null.p_value(np.asarray(values[i]), stat[i])

    p_ev = np.array([p_of(i) for i in evaluation])
    p_pos = np.array([p_of(i) for i in pos_ids])
    out["null"] = {
        **null.summary_parameters(),
        "smallest_p": null.smallest_p(),
        **rates(int(np.sum(p_ev < fpr)), int(np.sum(p_pos < fpr))),
        "evaluation_matches_at_0.001": int(np.sum(p_ev < 1e-3)),
        "tpr_at_0.001": float(np.mean(p_pos < 1e-3)) if len(pos) else 0.0,
    }
    if category:
        verdicts = {i: null.decide(np.asarray(values[i]), stat[i], fpr)[0] for i in evaluation}
        out["by_category"] = {
            c: _category_fpr([i for i in evaluation if category[i] == c], stat, t, verdicts)
            for c in dict.fromkeys(category[i] for i in evaluation)
        }
    return out


def _observed_rates(false_pos: int, negatives: int, true_pos: int, positives: int, fpr: float) -> dict[str, Any]:
    """A rule's FPR with its 95 % Clopper-Pearson interval (holding the nominal ``fpr`` or not) and its TPR."""
    lo, hi = clopper_pearson(false_pos, negatives, 0.95)
    return {
        "fpr": false_pos / negatives,
        "false_positives": false_pos,
        "fpr_interval": [lo, hi],
        "fpr_within": bool(lo <= fpr <= hi),
        "tpr": true_pos / max(positives, 1),
    }


def _category_fpr(ids: list[str], stat: dict[str, float], threshold: float, verdicts: dict[str, str]) -> dict[str, Any]:
    """One category's evaluation negatives: false matches under the threshold and the null, with
    the 95 % interval of the null's FPR, and how many the null called no-match / inconclusive."""
    false_null = sum(verdicts[i] == "match" for i in ids)
    lo, hi = clopper_pearson(false_null, len(ids), 0.95)
    return {
        "negatives": len(ids),
        "threshold_false_positives": int(sum(stat[i] >= threshold for i in ids)),
        "null_false_positives": false_null,
        "null_fpr_interval": [lo, hi],
        "no_match": sum(verdicts[i] == "no-match" for i in ids),
        "inconclusive": sum(verdicts[i] == "inconclusive" for i in ids),
    }
