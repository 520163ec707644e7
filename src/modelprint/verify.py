"""Verification: evidence -> statistic -> p-value under the calibrated null -> verdict.

Nothing here knows which fingerprint family made the evidence: the method stored in the
fingerprint says how to get evidence from a suspect and how to reduce it to one statistic,
and which null models it (:mod:`modelprint.null`).

Verdict at a false-positive rate ``fpr`` (alpha):

* ``match``: the p-value under the calibrated null is below alpha;
* ``no-match``: the suspect is typical of independent models (:meth:`Null.typical`: its
  p-value at the fitted null is at least 0.05 and its statistic no higher than the highest
  reference model's); for counts, also the exact upper 1 - alpha confidence bound of its
  agreement rate stays below theta*, the rate an independent model exceeds with probability
  alpha, so more queries would not make it a match;
* ``inconclusive``: anything else, and always without a fitted null.

Sequential verification (``max_queries``) spends queries in batches and stops as soon as a
likelihood-ratio martingale decides (:func:`modelprint.null.sequence_log_evidence`). Under
the null an independent model is a random draw of the reference population (its rate from
the fitted Beta, then its answers); the alternative mixes binomial rates over a prior that
sits where the owner's reference positives agree (stored at calibration; without them, near
1). ``match`` once the ratio reaches 2/alpha: by Ville's inequality an independent model
gets there with probability at most alpha/2 *whatever the stopping time*; if the budget is
spent without a decision, the fixed test on all of it decides at alpha/2 (so the two add up to
alpha, and a copy too weak for the anytime test is still caught). ``no-match`` once the
reverse ratio reaches 1/alpha, the suspect is typical, and a confidence sequence (uniform
mixture, :func:`modelprint.null.mixture_log_evidence`) shows at 95 % that its rate is below
the highest reference model's: a copy unlike the owner's own (a distilled student) must not
be let go after a lucky first batch. Before any query is sent, the
budget is checked: if neither test could call even a suspect agreeing on every query a match
within the budget, verification stops with the number of queries it would need. We chose a mixture
over Wald's SPRT because the SPRT needs one rate for a derived copy, which the verifier does
not know (pruned copies agree at 1.0, distilled ones far less), and over a fixed-n p-value,
which is invalid once one peeks after each batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import ParameterError
from .fingerprints import Fingerprint, FingerprintMethod, method_of
from .fingerprints.base import fitting
from .models import ModelprintModel
from .null import SCORE_MAX, Null, Verdict, mixture_log_evidence, queries_to_match, sequence_log_evidence
from .suspects import Suspect, as_suspect

DEFAULT_FPR = 1e-3
DEFAULT_BATCH = 10


@dataclass(frozen=True)
class Verification:
    statistic: float
    statistic_name: str
    n: int  # evidence items used
    queries: int  # queries spent on the suspect
    p_value: float | None
    fpr: float
    threshold: float | None  # the statistic's critical value (theta* for counts) or the user's threshold
    verdict: Verdict
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
    reason: str | None = None  # why the verdict is inconclusive
    suspect: dict[str, Any] | None = None  # adapter, location, labels-only, queries sent, requests, retries
    evidence: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field but the evidence; nested tables are shared, not copied (asdict's deep copy
        of the null's region was a quarter of what recording a verification cost)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}


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


def null_of(fp: Fingerprint, method: FingerprintMethod, num_classes: int | None = None) -> Null:
    """The fingerprint's calibrated null; uncalibrated, chance agreement for count methods
    (``num_classes``: the suspect's, where the fingerprint does not say) and no null at all for
    score methods."""
    if "null" in fp.meta:
        null = Null.from_json(fp.meta["null"])
        if not null.fits(method.null_family):
            raise ParameterError(f"the stored null ({null.family}) does not fit method {method.name}'s evidence")
        return null
    return Null.uncalibrated(method.null_family, int(fp.meta.get("num_classes") or num_classes or 0))


# The share of the FPR that sequential verification keeps for one fixed test over the whole
# budget, when the anytime test has not decided by then (union bound: the two shares add up to
# the FPR). Half, as Bonferroni would split it: a copy that agrees only moderately (an
# adversarially trained one) builds evidence too slowly for the anytime test but is caught by
# the fixed test, and perfect copies pay little for the halved anytime level (log 2 more).
FINAL_SHARE = 0.5

# How sure sequential verification must be that a suspect agrees less than every reference model before it
# may stop at no-match (a copy unlike the owner's own would otherwise be let go after its first batches).
TYPICAL_LEVEL = 0.05


def _sequential(
    fp: Fingerprint, method: FingerprintMethod, suspect: Suspect, null: Null, *, budget: int, batch: int, fpr: float
) -> tuple[str, np.ndarray, dict[str, Any]]:
    """Spend queries ``batch`` at a time, at most ``budget``, until the sequential test decides
    (see the module docstring): (verdict, evidence values, what it did)."""
    rates = (fp.meta.get("positives") or {}).get("statistics") or []
    level, final_fpr = fpr * (1 - FINAL_SHARE), fpr * FINAL_SHARE  # the anytime test's share; the last look's
    needed = queries_to_match(null.data, level, rates)
    final_can_match = null.calibrated and null.decide(np.ones(budget), SCORE_MAX, final_fpr)[0] == "match"
    if null.calibrated and (needed is None or needed > budget) and not final_can_match:
        raise ParameterError(
            f"sequential verification cannot decide within {budget} queries: at FPR {fpr:g} even a suspect "
            f"agreeing on every query needs {needed or 'more than 10000'}; raise `max_queries`"
            + (f" (the fingerprint holds {method.items(fp)} queries)" if needed and needed > method.items(fp) else "")
            + " or verify with the fixed test",
            params=("max_queries",),
        )
    highest = max(null.data.get("statistics") or [null.critical(0.05) or 1.0])

    def below_references(k: int, n: int) -> bool:  # anytime-valid 95 %: its rate is below every reference's
        return mixture_log_evidence(k, n, min(highest, 1 - 1e-9), "below") >= math.log(1 / TYPICAL_LEVEL)

    values: list[float] = []
    verdict, trail = "inconclusive", []
    while len(values) < budget:
        ev = method.evidence(fp, suspect, len(values), min(len(values) + batch, budget))
        values += ev.values.tolist()
        k, n = int(round(sum(values))), len(values)
        up, down = sequence_log_evidence(null.data, k, n, rates)
        trail.append({"queries": n, "matches": k, "log_e_match": round(up, 3), "log_e_no_match": round(down, 3)})
        if up >= math.log(1 / level):
            verdict = "match"
            break
        if down >= math.log(1 / fpr) and below_references(k, n) and null.typical(np.asarray(values), k / n):
            verdict = "no-match"
            break
    last = None
    if verdict == "inconclusive" and len(values) >= budget:  # the budget is spent: the fixed test on all of it
        last_verdict, p, _ = null.decide(np.asarray(values), float(np.mean(values)), final_fpr)
        last = {"queries": len(values), "fpr": final_fpr, "p_value": p, "verdict": last_verdict}
        verdict = last_verdict
    prior_of = f"at {len(rates)} reference positives" if rates else "at 1 (no reference positives stored)"
    info = {"prior": prior_of, "queries_to_match": needed, "anytime_fpr": level, "steps": trail, "final_test": last}
    return verdict, np.asarray(values), info


def _why_inconclusive(null: Null, evidence: np.ndarray, fpr: float, p: float | None, seq: dict[str, Any] | None) -> str:
    """What kept a calibrated fingerprint from deciding, in one sentence."""
    if seq is not None:
        last = seq.get("final_test") or {}
        at_end = (
            f" and the fixed test over them gave p = {last['p_value']:.3g}, not below its share of the FPR "
            f"({last['fpr']:g})"
            if last.get("p_value") is not None
            else ""
        )
        return (
            f"the budget of {seq['max_queries']} queries ran out before the anytime test decided{at_end}; "
            "a larger query budget, or the fixed test over every query, may decide"
        )
    best, _, _ = null.decide(np.ones_like(evidence), SCORE_MAX, fpr)  # a perfect suspect
    if best != "match":
        return f"at FPR {fpr:g} this null cannot call anything a match: calibrate on more reference models"
    return f"p = {p:.3g} is not below the FPR {fpr:g}, and the suspect is not typical of independent models either"


def _check_verify_args(fpr: float, batch: int, threshold: float | None, max_queries: int | None) -> None:
    if not 0 < fpr < 1:
        raise ParameterError(f"fpr must be in (0, 1), got {fpr}")
    if batch < 1:
        raise ParameterError(f"batch must be at least 1, got {batch}")
    if threshold is not None and not math.isfinite(threshold):
        raise ParameterError(f"threshold must be a finite number, got {threshold}")
    if max_queries is not None and max_queries < 1:
        raise ParameterError(f"`max_queries` must be at least 1, got {max_queries}", params=("max_queries",))


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
    (the p-value is still reported). Sequential (``max_queries=B``, count evidence only):
    queries go out ``batch`` at a time, at most B, until a confidence sequence decides (the
    module docstring says which and why); a budget spent without a decision is ``inconclusive``.
    """
    _check_verify_args(fpr, batch, threshold, max_queries)
    method = method_of(fp)
    suspect = as_suspect(suspect)
    with fitting(fp, method.name):
        total = method.items(fp)
    if total < 1:
        raise ParameterError("the fingerprint holds no evidence items")
    null = null_of(fp, method, suspect.num_classes)
    evidence, queries, seq_info, verdict = _gather(fp, method, suspect, null, max_queries, total, batch, fpr)
    stat = method.statistic(evidence)
    verdict, decided_by, p_value, crit, reason = _decide(null, evidence, stat, fpr, threshold, verdict, seq_info)
    labels = method.evidence_kind == "labels"
    return Verification(
        statistic=stat,
        statistic_name=method.statistic_name,
        n=len(evidence),
        queries=int(queries),
        p_value=p_value,
        fpr=fpr,
        threshold=crit,
        verdict=verdict,
        decided_by=decided_by,
        calibrated=null.calibrated,
        null={**null.summary(), "calibrated": null.calibrated},
        method=method.name,
        source_sha256=str(fp.meta.get("source_sha256", "")),
        suspect_sha256=suspect.identity,
        matching_rate=stat if labels else None,
        matches=int(round(float(evidence.sum()))) if labels else None,
        positives=_positives(fp, stat),
        sequential=seq_info,
        warning=null.warning,
        reason=reason,
        suspect=suspect.describe(),
        evidence=evidence.tolist(),
    )


def _decide(
    null: Null,
    evidence: np.ndarray,
    stat: float,
    fpr: float,
    threshold: float | None,
    sequential_verdict: str | None,
    seq_info: dict[str, Any] | None,
) -> tuple[str, str, float | None, float | None, str | None]:
    """The verdict, what decided it, the p-value, the critical statistic and, for an
    inconclusive verdict, why. Without a null fitted on independent models it is inconclusive."""
    fixed_verdict, p_value, crit = null.decide(evidence, stat, fpr)
    if threshold is not None:
        decided_by, verdict, crit = "threshold", ("match" if stat >= threshold else "no-match"), threshold
    elif seq_info is not None:
        decided_by, verdict = "sequential", sequential_verdict
    else:
        decided_by, verdict = "p-value", fixed_verdict
    reason = None
    if not null.calibrated:
        verdict, reason = "inconclusive", null.warning
    elif verdict == "inconclusive":
        reason = _why_inconclusive(null, evidence, fpr, p_value, seq_info)
    return verdict, decided_by, p_value, crit, reason


def _gather(
    fp: Fingerprint,
    method: Any,
    suspect: Suspect,
    null: Null,
    max_queries: int | None,
    total: int,
    batch: int,
    fpr: float,
) -> tuple[np.ndarray, int, dict[str, Any] | None, str | None]:
    """The suspect's evidence: every item at once, or (``max_queries``) batches until a
    sequential decision. Returns the evidence, the queries spent, the sequential record and
    the sequential verdict (None for a fixed run)."""
    if max_queries is None:
        ev = method.evidence(fp, suspect)
        return ev.values, ev.queries, None, None
    if not method.sequential:
        raise ParameterError(
            f"method {method.name} has {method.evidence_kind} evidence, not per-query 0/1 agreement: "
            "sequential verification does not apply (drop `max_queries`)",
            params=("max_queries",),
        )
    budget = min(max_queries, total)
    verdict, evidence, trail = _sequential(fp, method, suspect, null, budget=budget, batch=batch, fpr=fpr)
    return evidence, len(evidence), {"max_queries": max_queries, "batch": batch, **trail}, verdict


def _count(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def format_verification(r: Verification) -> str:
    """Two or three plain lines: the verdict with its numbers, then what it was tested against."""
    stat = (
        f"matching rate {r.statistic:.2f} ({r.matches}/{r.n})"
        if r.matches is not None
        else f"{r.statistic_name} {r.statistic:.3f} over {r.n} items"
    )
    p = "no p-value" if r.p_value is None else f"p = {r.p_value:.3g}"
    lines = [f"{r.verdict}: {stat}, {p} at FPR {r.fpr:g}, {r.queries} queries"]
    if r.reason:
        lines.append(f"why: {r.reason}")
    null = Null.from_json(r.null) if r.null.get("family") else None
    fixed_test = r.decided_by == "p-value"  # the sequential and threshold rules state their own needs
    lines.append(null.describe(r.threshold, fpr=r.fpr, n=r.n if fixed_test else None) if null else "")
    if r.decided_by == "threshold":
        lines.append(f"decided by the threshold {r.threshold:g}, not the p-value")
    if r.sequential:
        lines.append(
            f"sequential: stopped after {r.queries} of at most {r.sequential['max_queries']} queries "
            f"(batches of {r.sequential['batch']}; a suspect agreeing on every query is a match after "
            f"{r.sequential['queries_to_match']}; copies' prior {r.sequential['prior']})"
        )
        last = r.sequential.get("final_test")
        if last:
            lines.append(
                f"the anytime test had not decided when the budget was spent: the fixed test over all "
                f"{last['queries']} queries gave p = {last['p_value']:.3g} at FPR {last['fpr']:g} (its share)"
            )
    sus = r.suspect or {}
    if sus.get("type") in ("onnx", "torchscript", "http"):
        what = "labels only" if sus["labels_only"] else "labels and probabilities"
        if sus["type"] == "http":
            cost = f"{_count(sus['queries_sent'], 'query', 'queries')} sent in "
            cost += f"{_count(sus['requests'], 'HTTP request', 'HTTP requests')} (/v1/info included)"
            if sus.get("retries"):
                cost += f", {_count(sus['retries'], 'retry', 'retries')}"
        else:
            cost = f"{_count(sus['queries'], 'query', 'queries')} in {_count(sus['requests'], 'batch', 'batches')}"
        lines.append(f"suspect: {sus['type']} {sus['location']} ({what}); {cost}")
        if "containment" in sus:
            lines.append(f"sandbox: {describe_containment(sus['containment'])}")
    if r.positives:
        pos = r.positives
        lines.append(
            f"the owner's {pos['n_models']} derived copies scored {pos['min']:.2f}-{pos['max']:.2f} "
            f"(median {pos['median']:.2f}); {pos['fraction_at_or_below']:.0%} of them at or below this suspect"
        )
    return "\n".join(line for line in lines if line)


def describe_containment(c: dict[str, Any]) -> str:
    """One line on how a file suspect was contained."""
    limits = c.get("limits", {})
    held = [f"worker process, {limits.get('memory_mb', '?')} MB, {limits.get('cpu_seconds', '?')} CPU s"]
    held.append("no file writes, reads only beneath Python and system libraries" if c.get("filesystem") else "")
    held.append("no TCP" if c.get("tcp") else "")
    held.append("own network namespace" if c.get("network_namespace") else "")
    text = ", ".join(h for h in held if h)
    if not c.get("filesystem"):
        text += " (file-system sandbox NOT enforced: Landlock unavailable)"
    return text
