"""A one-page dispute report from verification records and the fingerprint they were made with.

The report is what an arbiter reads first: the claim in one sentence, each verification's
verdict with what it means and what it does not, the fingerprint (its sha256, the commitment,
when it was made, the method and its paper), the suspect as the verifier recorded it, the
suspect's statistic drawn against the independent models the null was fitted on, a grid of
the queries with the source's and the suspect's answers, and the commands that reproduce it.

Every record is audited (:func:`~modelprint.record.audit`) before anything is drawn: the
numbers shown are the recomputed ones, and a record that does not reproduce is named at the
top with what differs. What the audit cannot check (the suspect's identity, the times) is
shown as recorded and says so. Records are untrusted input: their strings are made printable,
shortened, and escaped before they reach Markdown or HTML.

Example::

    report = write_dispute_report(["api-monday.json", "api-friday.json"], "owner.fp.safetensors", "dispute")
    report.html, report.reproduced      # dispute/report.html, True when every record reproduced
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write_text, html_with_code, printable, sha256_file
from ._lazy import pyplot
from ._pages import html_figure, html_head, html_table, md_table, save_png
from .errors import ParameterError
from .fingerprints import Fingerprint, FingerprintMethod, method_of
from .null import Null
from .record import Audit, audit, query_sha256, read_record
from .verify import null_of

THUMBNAILS = 40  # queries drawn in the grid: enough to see what they are, few enough to read
COLUMNS = 10
MAX_RECORDS = 12  # verifications one report compares
# Left-aligned text tables; only code (hashes, paths) may break anywhere, so headers keep their words.
STYLE = (
    "<style>pre{background:#f3f3f3;padding:8px}td,th{text-align:left!important}td code{overflow-wrap:anywhere}</style>"
)
SHOWN_CHARS = 160  # the longest string from a record the report prints


@dataclass(frozen=True)
class AuditedRecord:
    """One record as the report uses it: its file, its content and what the audit found."""

    path: Path
    record: dict[str, Any]
    audit: Audit

    @property
    def verification(self) -> dict[str, Any]:
        """The recomputed verification where the audit could replay it, else the recorded one."""
        return self.audit.recomputed or self.audit.recorded


@dataclass(frozen=True)
class DisputeReport:
    """The files written and whether every record reproduced."""

    markdown: Path
    html: Path
    reproduced: bool
    differences: dict[str, list[str]]


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A value from a record as safe text: printable, at most ``limit`` characters, with no
    backticks or table bars (it goes inside a code span and a Markdown table cell)."""
    text = printable(value).replace("`", "'").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: Any) -> str:
    text = shown(value, 40).replace("T", " ")
    return text.replace("+00:00", " UTC") if text.endswith("+00:00") else text.replace("Z", " UTC")


def _p(value: Any) -> str:
    return "–" if value is None else f"{value:.3g}"


def _audited(records: Sequence[str | Path], fingerprint: str | Path) -> list[AuditedRecord]:
    if not records:
        raise ParameterError("give at least one verification record")
    if len(records) > MAX_RECORDS:
        raise ParameterError(f"one report compares at most {MAX_RECORDS} records, got {len(records)}")
    audited = []
    for r in records:
        record = read_record(r)
        if isinstance(record["fingerprint_sha256"], list):
            raise ParameterError(
                f"{r} records a combined verdict of several fingerprints; a dispute report shows one fingerprint's "
                "verifications: audit it with `modelprint audit RECORD FP...`"
            )
        audited.append(AuditedRecord(Path(r), record, audit(record, fingerprint)))
    return audited


# -- what the verdict says ------------------------------------------------------------------------
def claim(fp: Fingerprint, method: FingerprintMethod, suspect: dict[str, Any]) -> str:
    """The owner's claim in one sentence."""
    what = (
        "learnt from the owner's private training data, as the source model did"
        if method.evidence_of == "training-data"
        else "was derived from the owner's model (copied, fine-tuned, pruned, quantised or distilled from it)"
    )
    return (
        f"The owner of source model `{shown(fp.meta.get('source_sha256', '?'))[:16]}…` claims that the suspect "
        f"{_suspect_name(suspect)} {what}; the evidence is the suspect's answers to the "
        f"{len(fp)} queries of a `{method.name}` fingerprint."
    )


def _suspect_name(suspect: dict[str, Any]) -> str:
    location, identity = shown(suspect.get("location", "?")), shown(suspect.get("identity", "?"))
    return f"`{location}`" if location == identity else f"`{location}` (identity `{identity}`)"


def meaning(verdict: str, method: FingerprintMethod, v: dict[str, Any]) -> tuple[str, str]:
    """What a verdict shows and what it does not, for this method's kind of evidence."""
    null = v.get("null") or {}
    models = null.get("n_models", "?")
    if verdict == "match":
        shows = (
            f"A model trained independently of the source would score {v['statistic']:.3g} or more with "
            f"probability p = {_p(v.get('p_value'))}, below the false-positive rate {v['fpr']:g} the verifier "
            f"set, as estimated from {models} independent models. "
        )
        if method.evidence_of == "training-data":
            return shows + "That is evidence the suspect learnt from the owner's private training points.", (
                "lineage (a model trained on the same data without any theft matches as well); who trained the "
                "suspect; that the fingerprint predates it (the commitment's publication date does that)."
            )
        return shows + "That is evidence the suspect was derived from the source model.", (
            "who derived it or when; that the fingerprint existed before the suspect (the commitment's "
            "publication date does that). And the p-value is only as good as the independent models are "
            "representative of what an honest competitor would train."
        )
    if verdict == "no-match":
        return (
            "The suspect answered as the independent models do, and more queries would not have changed that at "
            f"the false-positive rate {v['fpr']:g}.",
            "independence: a copy changed enough (or one that recognises the queries and answers them "
            "differently) can look independent to this method.",
        )
    return (
        f"The evidence decided nothing: {shown(v.get('reason') or 'no reason recorded', 400)}",
        "anything either way: it is evidence neither of copying nor of independence.",
    )


# -- the plots --------------------------------------------------------------------------------------
def _tail(null: Null, statistics: np.ndarray, n: int, counts: bool) -> np.ndarray:
    """P[an independent model scores at least s] for each s, with ``n`` evidence items: for
    counts the evidence is round(s n) agreements, which is all a count null reads."""
    evidence = [
        np.r_[np.ones(k), np.zeros(n - k)] if counts else np.zeros(1)
        for k in np.clip(np.rint(statistics * n).astype(int), 0, n)
    ]
    return null.p_values(evidence, list(statistics))


def statistic_plot(fp: Fingerprint, method: FingerprintMethod, audited: list[AuditedRecord], path: Path) -> str:
    """The tail of the null against the statistic, with the reference models, the owner's own
    copies and each verified suspect on it; returns the caption."""
    null = null_of(fp, method)
    references = np.asarray(null.data.get("statistics") or [], dtype=float)
    positives = np.asarray((fp.meta.get("positives") or {}).get("statistics") or [], dtype=float)
    found = [(i, a.verification) for i, a in enumerate(audited, 1) if a.verification.get("statistic") is not None]
    counts = method.null_family == "counts"
    n = max(int(v.get("n") or 0) for _, v in found) if found else len(fp)
    values = np.r_[references, positives, [v["statistic"] for _, v in found]]
    lo, hi = (0.0, 1.0) if counts else (float(values.min()), float(values.max()))
    pad = 0.0 if counts else 0.1 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 201)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    floor = 1e-12
    if null.calibrated:
        ax.plot(grid, np.maximum(_tail(null, grid, n, counts), floor), color="#555", label="null: P(independent ≥ s)")
        for values, colour, label in (
            (references, "#ff7f0e", "reference models (the null's fit)"),
            (positives, "#1f77b4", "the owner's own derived copies"),
        ):
            if values.size:
                ax.scatter(values, np.maximum(_tail(null, values, n, counts), floor), s=22, color=colour, label=label)
    for i, v in found:
        p = max(float(v.get("p_value") or 1.0), floor)
        ax.scatter(
            [v["statistic"]],
            [p],
            marker="*",
            s=220,
            color="#d62728",
            zorder=5,
            label="suspect" if i == found[0][0] else None,
        )
        ax.annotate(f"{i}: {v['verdict']}", (v["statistic"], p), textcoords="offset points", xytext=(6, 6))
    fpr = min(float(v["fpr"]) for _, v in found) if found else 1e-3
    ax.axhline(fpr, color="#d62728", linestyle="--", linewidth=1, label=f"false-positive rate {fpr:g}")
    ax.set_yscale("log")
    ax.set_xlabel(f"statistic s ({shown(fp.meta.get('statistic_name') or method.statistic_name)}), {n} items")
    ax.set_ylabel("p-value")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    save_png(fig, path)
    return (
        "The suspect's statistic (red star, numbered by verification) against the null fitted on independent "
        "models: the curve is the chance that an independent model scores at least s; the dashed line is the "
        "false-positive rate; a star below it is a match."
        + ("" if null.calibrated else " The fingerprint is not calibrated: there is no null to draw.")
    )


def thumbnail_plot(fp: Fingerprint, audited: list[AuditedRecord], path: Path) -> str:
    """The first queries in a grid, each titled with the source's label and each suspect's answer,
    framed red where a suspect answered otherwise; returns the caption."""
    answers = [{e["input_sha256"]: int(e["label"]) for e in a.record["entries"]} for a in audited]
    shown_n = min(THUMBNAILS, len(fp))
    rows = -(-shown_n // COLUMNS)
    plt = pyplot()
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(1.3 * COLUMNS, 1.55 * rows), squeeze=False)
    x = fp.x[:shown_n].numpy()
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= shown_n:
            ax.axis("off")
            continue
        image = np.moveaxis(x[i], 0, -1) if x.shape[1] == 3 else x[i][0]
        ax.imshow(np.clip(image, 0, 1), cmap=None if x.shape[1] == 3 else "gray", vmin=0, vmax=1)
        digest = query_sha256(x[i])
        got = [str(a.get(digest, "–")) for a in answers]
        differs = any(g != str(int(fp.y[i])) for g in got)
        ax.set_title(f"{int(fp.y[i])} | {' '.join(got)}", fontsize=8, color="#d62728" if differs else "#222")
        for side in ax.spines.values():
            side.set_edgecolor("#d62728" if differs else "#999")
            side.set_linewidth(2 if differs else 0.5)
    save_png(fig, path)
    return (
        f"The first {shown_n} of the fingerprint's {len(fp)} queries, titled with the source's label, then each "
        "verification's answer in order (source | answers; – where a verification did not send that query); red "
        "where a suspect answered otherwise."
    )


# -- the page ---------------------------------------------------------------------------------------
Block = tuple[
    str, Any
]  # ("h2" | "p" | "list" | "code", text) or ("table", (header, rows)) or ("figure", (file, caption))


def _verdict_lines(audited: list[AuditedRecord]) -> list[str]:
    lines = []
    for i, a in enumerate(audited, 1):
        v = a.verification
        check = "reproduced" if a.audit.reproduced else "**does not reproduce**"
        statistic = f"{shown(v.get('statistic_name'), 40).replace('_', ' ')} {v['statistic']:.3g}"
        lines.append(
            f"Verification {i} (`{shown(a.path.name, 60)}`, {_when(a.record.get('created'))}): **{v['verdict']}**, "
            f"{statistic}, p = {_p(v.get('p_value'))} at false-positive rate {v['fpr']:g}, {v['queries']} queries; "
            f"audit: {check}."
        )
    return lines


def _fingerprint_rows(fp: Fingerprint, method: FingerprintMethod, digest: str, audited: list) -> list[list[str]]:
    commitments = {shown(a.record.get("commitment")) for a in audited if a.record.get("commitment")}
    if not commitments:
        committed = "none was given at verification"
    elif commitments == {digest}:
        committed = "given at verification, and it is this file's sha256"
    else:
        committed = f"**differs**: the records name `{'`, `'.join(sorted(commitments))}`"
    null = null_of(fp, method)
    return [
        ["sha256 of the fingerprint file", f"`{digest}`"],
        ["commitment", committed],
        [
            "made",
            f"{_when(fp.meta.get('created', '?'))} with modelprint {shown(fp.meta.get('modelprint_version', '?'))}",
        ],
        ["source model sha256", f"`{shown(fp.meta.get('source_sha256', '?'))}`"],
        ["method", f"`{method.name}` ({len(fp)} queries, seed {shown(fp.meta.get('seed', '?'))})"],
        ["paper", shown(method.paper or "none recorded", 300)],
        ["evidence of", "use of the owner's training data" if method.evidence_of == "training-data" else "lineage"],
        ["null", shown(null.describe(null.critical(1e-3), fpr=1e-3, n=len(fp)) or null.family, 400)],
    ]


def _suspect_rows(audited: list[AuditedRecord]) -> list[list[str]]:
    keys: list[str] = []
    for a in audited:
        keys += [k for k in a.record["suspect"] if k not in keys]
    rows = []
    for key in keys[:30]:
        values = [a.record["suspect"].get(key) for a in audited]
        rows.append([f"`{shown(key, 40)}`", *(f"`{shown(v)}`" if v is not None else "–" for v in values)])
    return rows


def _verification_rows(audited: list[AuditedRecord]) -> list[list[str]]:
    rows = []
    for i, a in enumerate(audited, 1):
        v, entries = a.verification, a.record["entries"]
        first, last = (_when(entries[0].get("received")), _when(entries[-1].get("received"))) if entries else ("–",) * 2
        answered = first if first == last else f"{first} to {last}"
        rows.append(
            [
                str(i),
                f"`{shown(a.path.name, 60)}`",
                _when(a.record.get("created")),
                answered,
                str(v["queries"]),
                f"{v['statistic']:.3g}",
                _p(v.get("p_value")),
                f"{v['fpr']:g}",
                f"**{v['verdict']}**",
                "reproduced" if a.audit.reproduced else "**differs**",
            ]
        )
    return rows


def _reproduce(audited: list[AuditedRecord], fingerprint: Path) -> str:
    fp = shown(fingerprint.name, 80)
    records = [shown(a.path.name, 80) for a in audited]
    lines = [f"modelprint fingerprint commit {fp}          # prints the sha256: compare it with the commitment"]
    lines += [f"modelprint audit {r} {fp}" for r in records]
    lines.append(f"modelprint report {' '.join(f'--record {r}' for r in records)} --fingerprint {fp} --out report")
    return "\n".join(lines)


def _blocks(fp: Fingerprint, digest: str, audited: list[AuditedRecord], fingerprint: Path, plots: list) -> list[Block]:
    method = method_of(fp)
    suspect = audited[0].record["suspect"]
    blocks: list[Block] = [("p", claim(fp, method, suspect)), ("list", _verdict_lines(audited))]
    broken = [(i, a) for i, a in enumerate(audited, 1) if not a.audit.reproduced]
    for i, a in broken:
        blocks += [
            ("h2", f"Verification {i} does not reproduce"),
            ("list", [shown(d, 400) for d in a.audit.differences]),
        ]
    blocks += [("h2", "What the verdict means")]
    for verdict in dict.fromkeys(a.verification["verdict"] for a in audited):
        which = [i for i, a in enumerate(audited, 1) if a.verification["verdict"] == verdict]
        first = audited[which[0] - 1].verification
        shows, does_not = meaning(verdict, method, first)
        named = f"**{verdict}** (verification {', '.join(map(str, which))})" if len(audited) > 1 else f"**{verdict}**"
        blocks += [("p", f"{named}: {shows}"), ("p", "What it does not show: " + does_not)]
    blocks += [("h2", "The fingerprint"), ("table", (["", "value"], _fingerprint_rows(fp, method, digest, audited)))]
    head = ["field", *(f"verification {i}" for i in range(1, len(audited) + 1))]
    blocks += [
        ("h2", "The suspect"),
        ("p", "As the verifier recorded it: the audit checks the answers, not who gave them."),
        ("table", (head, _suspect_rows(audited))),
        ("h2", "Verifications"),
        (
            "table",
            (
                ["", "record", "verified", "answers received", "queries", "statistic", "p", "FPR", "verdict", "audit"],
                _verification_rows(audited),
            ),
        ),
    ]
    for title, name, caption in plots:
        blocks += [("h2", title), ("figure", (name, caption))]
    blocks += [
        ("h2", "Reproduce"),
        ("p", "With the record(s) and the fingerprint file, offline:"),
        ("code", _reproduce(audited, fingerprint)),
    ]
    return blocks


def _markdown(blocks: list[Block]) -> str:
    out = ["# Dispute report", ""]
    for kind, body in blocks:
        if kind == "h2":
            out += [f"## {body}", ""]
        elif kind == "p":
            out += [body, ""]
        elif kind == "list":
            out += [f"- {line}" for line in body] + [""]
        elif kind == "code":
            out += ["```", body, "```", ""]
        elif kind == "table":
            out += [md_table(*body), ""]
        elif kind == "figure":
            out += [f"![{body[1]}]({body[0]})", "", f"*{body[1]}*", ""]
    return "\n".join(out)


def _bold(text: str) -> str:
    """HTML of Markdown text with its code spans and **bold** (both from our own templates)."""
    out = html_with_code(text)
    while out.count("**") >= 2:
        out = out.replace("**", "<b>", 1).replace("**", "</b>", 1)
    return out


def _html(blocks: list[Block], root: Path) -> str:
    parts = [html_head("modelprint dispute report", STYLE)]
    parts.append("<h1>Dispute report</h1>")
    for kind, body in blocks:
        if kind == "h2":
            parts.append(f"<h2>{html.escape(body)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{_bold(body)}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_bold(line)}</li>" for line in body) + "</ul>")
        elif kind == "code":
            parts.append(f"<pre>{html.escape(body)}</pre>")
        elif kind == "table":
            header, rows = body
            parts.append(html_table(header, [[c.replace("**", "") for c in r] for r in rows]))
        elif kind == "figure":
            parts.append(html_figure(root / body[0], body[1]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_dispute_report(records: Sequence[str | Path], fingerprint: str | Path, out: str | Path) -> DisputeReport:
    """Audit each record against ``fingerprint`` and write ``out/report.md``, ``out/report.html``
    (self-contained) and the two plots ``out/statistic.png`` and ``out/queries.png``."""
    fingerprint, root = Path(fingerprint), Path(out)
    audited = _audited(records, fingerprint)
    fp = Fingerprint.load(fingerprint)
    method = method_of(fp)
    digest = sha256_file(fingerprint)
    plots = [
        (
            "The statistic against independent models",
            "statistic.png",
            statistic_plot(fp, method, audited, root / "statistic.png"),
        ),
        ("The queries and the answers", "queries.png", thumbnail_plot(fp, audited, root / "queries.png")),
    ]
    blocks = _blocks(fp, digest, audited, fingerprint, plots)
    md_path, html_path = root / "report.md", root / "report.html"
    atomic_write_text(md_path, _markdown(blocks))
    atomic_write_text(html_path, _html(blocks, root))
    differences = {str(a.path): a.audit.differences for a in audited if not a.audit.reproduced}
    return DisputeReport(md_path, html_path, not differences, differences)
