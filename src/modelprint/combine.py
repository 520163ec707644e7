"""One verdict from several fingerprints of the same source.

Each fingerprint is verified on its own, against its own calibrated null
(:func:`modelprint.verify.verify`), and the p-values are combined by Holm's step-down
procedure: sort them, p_(1) <= ... <= p_(k), and reject H_(i) while::

    adjusted_(i) = max_{j <= i} min(1, (k - j + 1) p_(j)) < alpha

The suspect is a ``match`` when at least one family is rejected. Under the global null (the
suspect is independent of the source) this happens with probability at most alpha whatever
the dependence between families, which is why Holm and not Fisher's or Stouffer's
combination: every family reads the same suspect, so their p-values are dependent, and a
calibrated combination would need the joint null of all families on the same reference
models, which 20 references cannot pin down at 1e-3. Holm also says *which* families are
rejected with the family-wise error held at alpha, and for the global verdict it equals
Bonferroni (min p < alpha / k). A family without a p-value (uncalibrated) counts in k with
p = 1. ``no-match`` needs every family to call the suspect typical of independent models;
anything else is ``inconclusive``.

Example::

    result = verify_combined([fp_c, fp_ltrc, fp_ipguard], suspect, fpr=1e-3)
    result.verdict, [(f.method, f.p_value) for f in result.families], result.adjusted_p
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ParameterError
from .fingerprints import Fingerprint, method_of
from .models import ModelprintModel
from .null import Verdict
from .suspects import Suspect, as_suspect
from .verify import DEFAULT_FPR, Verification, verify

RULE = "holm"


@dataclass(frozen=True)
class CombinedVerification:
    verdict: Verdict
    fpr: float
    rule: str
    families: list[Verification]
    adjusted_p: list[float]  # Holm-adjusted, in the order the fingerprints were given
    rejected: list[bool]
    queries: int
    reason: str | None = None

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "fpr": self.fpr,
            "rule": self.rule,
            "queries": self.queries,
            "reason": self.reason,
            "families": [
                {**f.to_dict(), "adjusted_p": a, "rejected": r}
                for f, a, r in zip(self.families, self.adjusted_p, self.rejected)
            ],
        }


def holm(p_values: Sequence[float | None], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values (a missing p counts as 1) and which hypotheses are rejected at ``alpha``."""
    p = [1.0 if v is None else float(v) for v in p_values]
    k = len(p)
    order = sorted(range(k), key=lambda i: p[i])
    adjusted = [1.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p[i]))
        adjusted[i] = running
    return adjusted, [a < alpha for a in adjusted]


def verify_combined(
    fps: Sequence[Fingerprint],
    suspect: ModelprintModel | Suspect,
    *,
    fpr: float = DEFAULT_FPR,
    max_queries: int | None = None,
) -> CombinedVerification:
    """Verify ``suspect`` against every fingerprint in ``fps`` (all of one source) and combine
    their p-values by Holm's procedure at ``fpr`` (module docstring). ``max_queries`` caps the
    queries all of them may need together, checked before any is sent (fixed tests: each
    fingerprint is asked in full)."""
    if len(fps) < 2:
        raise ParameterError("a combined verdict needs at least two fingerprints (verify one with verify())")
    sources = {str(fp.meta.get("source_sha256", "")) for fp in fps}
    if len(sources) != 1:
        raise ParameterError("the fingerprints were made from different source models: combine one owner's only")
    need = {f"{i + 1}:{method_of(fp).name}": method_of(fp).items(fp) for i, fp in enumerate(fps)}
    if max_queries is not None and sum(need.values()) > max_queries:
        raise ParameterError(
            f"the fingerprints need at least {sum(need.values())} queries together ("
            + ", ".join(f"{k} {v}" for k, v in need.items())
            + f"), more than `max_queries` {max_queries}: raise the budget or combine fewer fingerprints",
            params=("max_queries",),
        )
    suspect = as_suspect(suspect)
    families = [verify(fp, suspect, fpr=fpr) for fp in fps]
    adjusted, rejected = holm([f.p_value for f in families], fpr)
    reason = None
    if any(rejected):
        verdict = "match"
    elif all(f.verdict == "no-match" for f in families):
        verdict = "no-match"
    else:
        verdict = "inconclusive"
        left = [f.method for f in families if f.verdict != "no-match"]
        reason = (
            f"no family is rejected at FPR {fpr:g} after Holm's adjustment, and "
            f"{', '.join(left)} did not find the suspect typical of independent models"
        )
    queries = sum(f.queries for f in families)
    return CombinedVerification(verdict, fpr, RULE, families, adjusted, rejected, queries, reason)


def format_combined(r: CombinedVerification) -> str:
    """The combined verdict, then one line per family: statistic, p, Holm-adjusted p, decision."""
    k = len(r.families)
    lines = [f"{r.verdict}: {k} fingerprints combined by Holm's procedure at FPR {r.fpr:g}, {r.queries} queries"]
    if r.reason:
        lines.append(f"why: {r.reason}")
    for f, a, rej in zip(r.families, r.adjusted_p, r.rejected):
        p = "no p-value" if f.p_value is None else f"p = {f.p_value:.3g}"
        word = "rejected (match)" if rej else ("typical (no-match)" if f.verdict == "no-match" else "not decided")
        stat = (
            f"matching rate {f.statistic:.2f} ({f.matches}/{f.n})"
            if f.matches is not None
            else f"{f.statistic_name} {f.statistic:.3f}"
        )
        lines.append(f"  {f.method}: {stat}, {p}, adjusted {a:.3g}: {word}")
    return "\n".join(lines)
