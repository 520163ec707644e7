"""Verification: evidence -> statistic -> p-value under the calibrated null -> verdict.

Nothing here knows which fingerprint family made the evidence: the method stored in the
fingerprint says how to get evidence from a suspect and how to reduce it to one statistic,
and whether its null models counts (0/1 per item: beta-binomial) or scores (normal).

Verdict at a false-positive rate ``fpr`` (alpha):

* ``match``: the p-value under the calibrated null is below alpha;
* ``no-match``: the suspect sits inside the null. For counts: even the exact upper
  1 - alpha confidence bound of the suspect's agreement rate stays below theta*, the rate
  an independent model exceeds with probability alpha; for scores: p >= 0.05;
* ``inconclusive``: in between, where the evidence cannot decide.

Sequential verification (``max_queries``) spends queries in batches and stops as soon as
an anytime-valid test decides; see :func:`verify` for which test and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ParameterError
from .fingerprints import Fingerprint, method_of
from .fingerprints.base import fitting
from .models import ModelprintModel
from .null import (
    chance_null,
    count_p_value,
    critical_rate,
    mixture_log_evidence,
    score_p_value,
    upper_bound,
)
from .suspects import Suspect, as_suspect

DEFAULT_FPR = 1e-3
DEFAULT_BATCH = 10
# A score this typical of independent models (p >= 0.05) is "inside the null".
NO_MATCH_P = 0.05
UNCALIBRATED_WARNING = (
    "this fingerprint is not calibrated: the p-value is against agreeing by chance (1/classes) only, "
    "and independent models agree far more often than that; run `modelprint fingerprint calibrate` first"
)


@dataclass(frozen=True)
class Verification:
    statistic: float
    statistic_name: str
    n: int  # evidence items used
    queries: int  # queries spent on the suspect
    p_value: float | None
    fpr: float
    threshold: float | None  # the statistic's critical value (theta* for counts) or the user's threshold
    verdict: str  # "match" | "no-match" | "inconclusive"
    decided_by: str  # "p-value" | "sequential" | "threshold"
    calibrated: bool
    null: dict[str, Any]
    method: str
    source_sha256: str
    suspect_sha256: str  # the weights' or the file's sha256; the URL for an API
    matching_rate: float | None = None  # label methods
    matches: int | None = None
    positives: dict[str, Any] | None = None  # how typical the suspect is of the owner's derived copies
    sequential: dict[str, Any] | None = None
    warning: str | None = None
    suspect: dict[str, Any] | None = None  # adapter, location, labels-only, queries sent, requests, retries
    evidence: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("evidence")
        return d


def _null_summary(null: dict[str, Any]) -> dict[str, Any]:
    keep = ("family", "mean", "rho", "sd", "n_models", "n_queries", "confidence", "source")
    return {k: null[k] for k in keep if k in null}


def _positives(fp: Fingerprint, statistic: float) -> dict[str, Any] | None:
    pos = fp.meta.get("positives")
    if not pos or not pos.get("statistics"):
        return None
    s = np.asarray(pos["statistics"], dtype=np.float64)
    return {
        "n_models": int(s.size),
        "min": float(s.min()),
        "median": float(np.median(s)),
        "max": float(s.max()),
        "fraction_at_or_below": float(np.mean(s <= statistic + 1e-12)),
    }


def _count_decision(null: dict[str, Any], k: int, n: int, fpr: float) -> tuple[str, float, float]:
    p = count_p_value(null, k, n)
    theta = critical_rate(null, fpr)
    if p < fpr:
        return "match", p, theta
    if upper_bound(k, n, fpr) < theta:
        return "no-match", p, theta
    return "inconclusive", p, theta


def verify(
    fp: Fingerprint,
    suspect: ModelprintModel | Suspect,
    *,
    fpr: float = DEFAULT_FPR,
    max_queries: int | None = None,
    batch: int = DEFAULT_BATCH,
    threshold: float | None = None,
) -> Verification:
    """Verify ``suspect`` against ``fp`` at false-positive rate ``fpr``.

    Fixed (``max_queries=None``): every item of the fingerprint is evidence; the verdict
    follows the module docstring. ``threshold`` replaces it with ``statistic >= threshold``
    (the p-value is still reported).

    Sequential (``max_queries=B``, count evidence only): queries go out ``batch`` at a time,
    at most B, and stop as soon as a **confidence sequence** decides. We test the suspect's
    agreement rate theta against theta* (the rate an independent model exceeds with
    probability alpha/2, from the calibrated null) with two mixture likelihood ratios
    (uniform mixture over the alternative side, :func:`modelprint.null.mixture_log_evidence`):
    ``match`` once the one against "theta <= theta*" reaches 2/alpha, ``no-match`` once the
    one against "theta >= theta*" reaches 1/alpha. Both are nonnegative supermartingales
    under their nulls, so Ville's inequality bounds the error *whatever the stopping time*:
    an independent model is called a match with probability at most alpha/2 + alpha/2. We
    chose this over Wald's SPRT because the SPRT needs a simple alternative (one rate for a
    derived copy), which the verifier does not know (pruned copies agree at 1.0, distilled
    ones far less), and over a fixed-n p-value, which is invalid once one peeks after each
    batch. A budget spent without a decision is ``inconclusive``.
    """
    if not 0 < fpr < 1:
        raise ParameterError(f"fpr must be in (0, 1), got {fpr}")
    if batch < 1:
        raise ParameterError(f"batch must be at least 1, got {batch}")
    if threshold is not None and not math.isfinite(threshold):
        raise ParameterError(f"threshold must be a finite number, got {threshold}")
    method = method_of(fp)
    suspect = as_suspect(suspect)
    with fitting(fp, method.name):
        total = method.items(fp)
    if total < 1:
        raise ParameterError("the fingerprint holds no evidence items")
    calibrated = "null" in fp.meta
    if calibrated:
        null = fp.meta["null"]
        if (null.get("family") == "normal") != (method.null_family == "scores"):
            raise ParameterError(f"the stored null ({null.get('family')}) does not fit method {method.name}'s evidence")
    elif method.null_family == "counts":
        classes = int(fp.meta.get("num_classes") or suspect.num_classes or 0)
        if classes < 2:
            raise ParameterError("neither the fingerprint nor the suspect says how many classes there are")
        null = chance_null(classes)
    else:
        null = {"family": "none"}
    seq_info = None
    if max_queries is not None:
        if max_queries < 1:
            raise ParameterError(f"--max-queries must be at least 1, got {max_queries}")
        if not method.sequential:
            raise ParameterError(
                f"method {method.name} has {method.evidence_kind} evidence, not per-query 0/1 agreement: "
                "sequential verification does not apply (drop --max-queries)"
            )
        budget = min(max_queries, total)
        theta = critical_rate(null, fpr / 2)
        values: list[float] = []
        verdict = "inconclusive"
        trail = []
        while len(values) < budget:
            ev = method.evidence(fp, suspect, len(values), min(len(values) + batch, budget))
            values += ev.values.tolist()
            k, n = int(round(sum(values))), len(values)
            up = mixture_log_evidence(k, n, theta, "above")
            down = mixture_log_evidence(k, n, theta, "below")
            trail.append({"queries": n, "matches": k, "log_e_match": round(up, 3), "log_e_no_match": round(down, 3)})
            if up >= math.log(2 / fpr):
                verdict = "match"
                break
            if down >= math.log(1 / fpr):
                verdict = "no-match"
                break
        seq_info = {"max_queries": max_queries, "batch": batch, "theta_star": theta, "steps": trail}
        evidence = np.asarray(values)
        queries = len(values)
    else:
        ev = method.evidence(fp, suspect)
        evidence, queries = ev.values, ev.queries
    stat = method.statistic(evidence)
    n = len(evidence)
    p_value: float | None
    crit: float | None = None
    if method.null_family == "counts":
        k = int(round(float(evidence.sum())))
        fixed_verdict, p_value, crit = _count_decision(null, k, n, fpr)
    elif calibrated:
        p_value = score_p_value(null, stat)
        fixed_verdict = "match" if p_value < fpr else "no-match" if p_value >= NO_MATCH_P else "inconclusive"
    else:
        p_value, fixed_verdict = None, "inconclusive"
    if threshold is not None:
        decided_by, verdict, crit = "threshold", ("match" if stat >= threshold else "no-match"), threshold
    elif seq_info is not None:
        decided_by, crit = "sequential", seq_info["theta_star"]
    else:
        decided_by, verdict = "p-value", fixed_verdict
    labels = method.evidence_kind == "labels"
    warning = None
    if not calibrated:
        warning = (
            UNCALIBRATED_WARNING
            if method.null_family == "counts"
            else (
                "this fingerprint is not calibrated: a score has no chance level, so there is no p-value; "
                "run `modelprint fingerprint calibrate` first"
            )
        )
    return Verification(
        statistic=stat,
        statistic_name=method.statistic_name,
        n=n,
        queries=int(queries),
        p_value=p_value,
        fpr=fpr,
        threshold=crit,
        verdict=verdict,
        decided_by=decided_by,
        calibrated=calibrated,
        null={**_null_summary(null), "calibrated": calibrated},
        method=method.name,
        source_sha256=str(fp.meta.get("source_sha256", "")),
        suspect_sha256=suspect.identity,
        matching_rate=stat if labels else None,
        matches=int(round(float(evidence.sum()))) if labels else None,
        positives=_positives(fp, stat),
        sequential=seq_info,
        warning=warning,
        suspect=suspect.describe(),
        evidence=evidence.tolist(),
    )


def suspect_statistic(fp: Fingerprint, suspect: ModelprintModel | Suspect) -> float:
    """The fingerprint's statistic on ``suspect`` over all its items (no verdict)."""
    method = method_of(fp)
    return method.statistic(method.evidence(fp, suspect).values)
