"""The combined verdict on a zoo: several families at once, as ``modelprint verify FP... SUSPECT``
decides (:mod:`modelprint.combine`), with every null fitted on the calibration negatives only.

For each suspect and family, p = the family's null (fitted on the calibration half) at the
suspect's evidence; the combined verdict is a match when Holm's smallest adjusted p,
``min(1, k * min_i p_i)``, is below the FPR. Reported: the false matches among the
evaluation negatives (with the 95 % Clopper-Pearson interval of that rate), the TPR over
the positives and per category, at the FPR and at 1e-3, and the ROC AUC of
``-log10(combined p)`` over all suspects. No ARUC: it integrates over a statistic in [0, 1],
and any map of a combined p-value onto [0, 1] would be a scale we chose, not a measurement.

Example::

    entry = combined_entry(methods, fps, values, pos_ids, neg_ids, calib, evaluation, categories, fpr=0.01)
    entry["by_category"]["distill"]["tpr"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..combine import RULE, holm
from ..fingerprints import Fingerprint, FingerprintMethod
from ..metrics import roc_auc
from ..null import clopper_pearson

STRICT = 1e-3


def family_p_values(
    method: FingerprintMethod, fp: Fingerprint, values: dict[str, list[float]], calib: Sequence[str]
) -> dict[str, float]:
    """Every suspect's p-value under the family's null fitted on the ``calib`` negatives."""
    stat = {i: method.statistic(np.asarray(v)) for i, v in values.items()}
    null = method.fit_null(fp, [np.asarray(values[i]) for i in calib], [stat[i] for i in calib])
    ids = list(values)
    p = null.p_values([np.asarray(values[i]) for i in ids], [stat[i] for i in ids])
    return dict(zip(ids, (float(x) for x in p)))


def combined_entry(
    methods: dict[str, FingerprintMethod],
    fingerprints: dict[str, Fingerprint],
    values: dict[str, dict[str, list[float]]],
    pos_ids: Sequence[str],
    neg_ids: Sequence[str],
    calib: Sequence[str],
    evaluation: Sequence[str],
    category: dict[str, str],
    *,
    fpr: float,
) -> dict[str, Any]:
    """The combined verdict's entry of results.json for the families in ``methods`` (module docstring)."""
    per = {m: family_p_values(methods[m], fingerprints[m], values[m], calib) for m in methods}
    ids = list(next(iter(per.values())))
    # the verdict verify_combined reaches: Holm's smallest adjusted p (Bonferroni's, globally)
    p = {i: min(holm([per[m][i] for m in per], fpr)[0]) for i in ids}

    def rate(group: Sequence[str], alpha: float) -> float:
        return float(np.mean([p[i] < alpha for i in group])) if group else 0.0

    false = int(sum(p[i] < fpr for i in evaluation))
    lo, hi = clopper_pearson(false, len(evaluation), 0.95)
    score = {i: -np.log10(max(p[i], 1e-300)) for i in ids}
    by_category: dict[str, Any] = {}
    for c in dict.fromkeys(category[i] for i in pos_ids):
        group = [i for i in pos_ids if category[i] == c]
        by_category[c] = {
            "positives": len(group),
            "tpr": rate(group, fpr),
            f"tpr_at_{STRICT:g}": rate(group, STRICT),
            "families_alone": {m: float(np.mean([per[m][i] < fpr for i in group])) for m in per},
        }
    return {
        "methods": list(per),
        "rule": RULE,
        "fpr": fpr,
        "auc": roc_auc([score[i] for i in pos_ids], [score[i] for i in neg_ids]),
        "held_out": {
            "calibration_negatives": len(calib),
            "evaluation_negatives": len(evaluation),
            "false_matches": false,
            "fpr": false / max(len(evaluation), 1),
            "fpr_interval": [lo, hi],
            "fpr_within": bool(lo <= fpr <= hi),
            f"false_matches_at_{STRICT:g}": int(sum(p[i] < STRICT for i in evaluation)),
        },
        "tpr": rate(pos_ids, fpr),
        f"tpr_at_{STRICT:g}": rate(pos_ids, STRICT),
        "by_category": by_category,
    }
