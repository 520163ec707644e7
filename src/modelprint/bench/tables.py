"""The benchmark report's tables, built from ``results.json`` as raw values.

A :class:`ReportTable` holds one value per cell (a number, a string, a flag or None) and a
display format per column: the Markdown and HTML pages show the formatted text, the CSV
files the values themselves, so a spreadsheet reads numbers, not ``+0.43`` or ``–``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

METRIC_COLUMNS = ("robustness", "transferability", "uniqueness", "aruc", "auc", "f1", "threshold")
# Display formats besides format specs: text as it is, a flag as a mark or as yes / NO.
TEXT, MARK, YES_NO = "", "mark", "yes"


@dataclass(frozen=True)
class ReportTable:
    """One table: ``rows`` of raw values under ``header``, each column shown with its ``formats`` entry."""

    title: str
    header: list[str]
    formats: list[str]
    rows: list[list[Any]]

    def __post_init__(self) -> None:
        if len(self.formats) != len(self.header) or any(len(r) != len(self.header) for r in self.rows):
            raise ValueError(f"table {self.title!r}: every row needs one value per column")

    def shown(self) -> list[list[str]]:
        """The rows as the pages show them."""
        return [[shown_cell(v, f) for v, f in zip(row, self.formats)] for row in self.rows]

    def csv(self) -> str:
        """The header and the raw values: numbers at full precision, empty where there is none."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows([[csv_cell(v) for v in row] for row in self.rows])
        return buf.getvalue()


def shown_cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == MARK:
        return "✓" if value else "–"
    if fmt == YES_NO:
        return "yes" if value else "NO"
    return format(value, fmt) if fmt else str(value)


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def fpr_key(results: dict[str, Any]) -> str:
    metrics = next(iter(results["methods"].values()))["metrics"]
    return next(k for k in metrics if k.startswith("tpr_at_") and k.endswith("_fpr"))


def leaderboard(results: dict[str, Any]) -> ReportTable:
    """Methods by ARUC, with the numbers a reader compares first."""
    key = fpr_key(results)
    rows = []
    for m, r in sorted(results["methods"].items(), key=lambda kv: -kv[1]["metrics"]["aruc"]):
        held = ((r.get("calibrated") or {}).get("threshold") or {}).get("tpr")
        metrics = r["metrics"]
        rows.append([m, metrics["aruc"], metrics["auc"], metrics[key], held, metrics["uniqueness"]])
    fpr = results.get("fpr", 0.01)
    head = ["method", "ARUC", "ROC AUC", f"TPR at {fpr:g} FPR", f"held-out TPR at {fpr:g}", "uniqueness"]
    return ReportTable("Leaderboard: methods by ARUC", head, [TEXT, ".2f", ".2f", ".2f", ".2f", "+.2f"], rows)


def metrics_table(results: dict[str, Any]) -> ReportTable:
    key = fpr_key(results)
    rows = [[m, *(r["metrics"][c] for c in METRIC_COLUMNS), r["metrics"][key]] for m, r in results["methods"].items()]
    formats = [TEXT, *("+.2f" if c == "uniqueness" else ".2f" for c in METRIC_COLUMNS), ".2f"]
    return ReportTable("Metrics over the whole zoo", ["method", *METRIC_COLUMNS, key.replace("_", " ")], formats, rows)


def category_table(results: dict[str, Any]) -> ReportTable:
    methods = results["methods"]
    categories = list(dict.fromkeys(c for r in methods.values() for c in r["by_category"]))
    keys = ("positive", "negative", "aruc")
    rows = [[c, *(r["by_category"].get(c, {}).get(k) for r in methods.values() for k in keys)] for c in categories]
    title = "By category: mean statistic (pos / neg) and ARUC of the category's positives against every negative"
    header = ["category", *(f"{m} {k}" for m in methods for k in ("pos", "neg", "aruc"))]
    return ReportTable(title, header, [TEXT] + [".2f"] * (len(header) - 1), rows)


def held_out_table(results: dict[str, Any]) -> ReportTable:
    key = fpr_key(results)
    rows = []
    for m, r in results["methods"].items():
        cal = r.get("calibrated") or {}
        for rule in ("threshold", "null"):
            if rule in cal:
                v = cal[rule]
                name = "empirical threshold" if rule == "threshold" else f"{v['family']} null, p < FPR"
                counts = [cal["calibration_negatives"], cal["evaluation_negatives"], v["false_positives"]]
                rows.append(
                    [m, name, *counts, v["fpr"], *v["fpr_interval"], v["fpr_within"], v["tpr"], r["metrics"][key]]
                )
    header = ["method", "rule", "calibration negatives", "evaluation negatives", "false positives"]
    header += ["observed FPR", "95% low", "95% high", "nominal inside", "TPR", "in-sample TPR"]
    formats = [TEXT, TEXT, "d", "d", "d", ".3f", ".3f", ".3f", YES_NO, ".2f", ".2f"]
    title = (
        f"Held-out false-positive rate at nominal FPR {results['fpr']:g}: fitted on the calibration half of "
        "the negatives, counted on the evaluation half"
    )
    selection = results["negative_split"].get("selection")
    if selection:  # screening: part of the calibration half chose queries and was scored nowhere
        screened = [m for m, r in results["methods"].items() if "screening" in r["fingerprint"]]
        chose = f"chose the queries of {', '.join(screened)}"
        if results["negative_split"].get("selection_from") == "references":
            title += f" ({len(selection)} of the owner's reference models {chose})"
        else:
            title += f" ({len(selection)} calibration negatives {chose} and fit nothing)"
    return ReportTable(title, header, formats, rows)


def budget_table(results: dict[str, Any]) -> ReportTable:
    rows = [
        [m, int(b), v["aruc"], v["auc"], v["uniqueness"], v["f1"]]
        for m, r in results["methods"].items()
        for b, v in r["budgets"].items()
    ]
    header = ["method", "b", "aruc", "auc", "uniqueness", "f1"]
    return ReportTable(
        "Query budget: metrics on the first b queries", header, [TEXT, "d", ".2f", ".2f", "+.2f", ".2f"], rows
    )


def fingerprints_table(results: dict[str, Any]) -> ReportTable:
    rows = []
    for m, g in results["timings"]["generation"].items():
        meta = results["methods"].get(m, {}).get("fingerprint", {})
        seconds = None if g["cached"] else g["seconds"]
        summary = str(meta.get("summary", "")).replace("\n", "; ")
        rows.append([m, seconds, bool(g["cached"]), meta.get("generation_seconds"), meta.get("queries"), summary])
    title = "Fingerprints: generation time, queries kept and what each method says of its fingerprint"
    header = ["method", "seconds", "cached", "made in (seconds)", "queries", "summary"]
    return ReportTable(title, header, [TEXT, ".1f", MARK, ".1f", TEXT, TEXT], rows)


def category_fpr_table(results: dict[str, Any]) -> ReportTable | None:
    rows = []
    for m, r in results["methods"].items():
        for c, v in (r.get("calibrated") or {}).get("by_category", {}).items():
            counts = [v["negatives"], v["threshold_false_positives"], v["null_false_positives"]]
            rows.append([m, c, *counts, *v["null_fpr_interval"], v["no_match"], v["inconclusive"]])
    if not rows:
        return None
    title = (
        f"Held-out false matches per category of the evaluation negatives at FPR {results['fpr']:g} "
        "(null: count and 95 % interval of its FPR), and the null's other verdicts"
    )
    header = ["method", "category", "negatives", "threshold FP", "null FP", "null FPR 95% low"]
    header += ["null FPR 95% high", "no-match", "inconclusive"]
    return ReportTable(title, header, [TEXT, TEXT, "d", "d", "d", ".2f", ".2f", "d", "d"], rows)


def ablation_table(results: dict[str, Any]) -> ReportTable | None:
    entries = {m: r for m, r in results["methods"].items() if r["fingerprint"].get("ablation")}
    if len(entries) <= 1:
        return None
    tricks = list(next(iter(entries.values()))["fingerprint"]["ablation"]["kept"])
    rows = []
    for m, r in entries.items():
        ab = r["fingerprint"]["ablation"]
        rows.append([m, *(bool(ab["kept"].get(t)) for t in tricks), r["metrics"]["aruc"], ab.get("paper_aruc")])
    title = "Ablation: the method's tricks kept (✓) or removed, ARUC here and in the paper"
    formats = [TEXT, *(MARK for _ in tricks), ".2f", ".2f"]
    return ReportTable(title, ["variant", *tricks, "aruc", "paper aruc"], formats, rows)


def stealth_table(results: dict[str, Any]) -> ReportTable | None:
    rates = {m: r["detection_rate"] for m, r in results["methods"].items() if r.get("detection_rate")}
    if not rates:
        return None
    seeds = max(len(rate["per_seed"]) for rate in rates.values())
    rows = [
        [m, rate["mean"], *rate["per_seed"], *([None] * (seeds - len(rate["per_seed"])))] for m, rate in rates.items()
    ]
    alarm = (results.get("stealth") or {}).get("false_alarm")
    note = f"; the detectors flag {alarm['mean']:.3f} of clean test images" if alarm else ""
    title = "Stealthiness: share of the queries a detector trained on clean vs noise/FGSM images flags" + note
    header = ["method", "detection rate (mean)", *(f"seed {i}" for i in range(seeds))]
    return ReportTable(title, header, [TEXT] + [".3f"] * (seeds + 1), rows)


def combined_tables(results: dict[str, Any]) -> list[ReportTable]:
    """The combined verdict (Holm over several families): TPR per category, then its held-out FPR."""
    c = results.get("combined")
    if not c:
        return []
    fpr, h, families = c["fpr"], c["held_out"], list(c["methods"])
    rows = [
        [cat, v["positives"], v["tpr"], v["tpr_at_0.001"], *(v["families_alone"].get(m) for m in families)]
        for cat, v in c["by_category"].items()
    ]
    total = sum(v["positives"] for v in c["by_category"].values())
    rows.append(["all positives", total, c["tpr"], c["tpr_at_0.001"], *([None] * len(families))])
    title = (
        f"Combined verdict: {', '.join(families)} by {c['rule'].capitalize()}'s procedure, each null fitted on the "
        f"calibration negatives (ROC AUC of -log10 p: {c['auc']:.2f})"
    )
    header = ["category", "models", f"match at {fpr:g}", "match at 0.001", *(f"{m} alone at {fpr:g}" for m in families)]
    by_category = ReportTable(title, header, [TEXT, "d", ".2f", ".2f", *(".2f" for _ in families)], rows)
    negatives = [
        h["evaluation_negatives"],
        h["false_matches"],
        h["fpr"],
        *h["fpr_interval"],
        h["false_matches_at_0.001"],
    ]
    held_out = ReportTable(
        f"Combined verdict on the evaluation negatives: false matches at {fpr:g} and at 0.001",
        ["evaluation negatives", "false matches", "FPR", "95% low", "95% high", "false matches at 0.001"],
        ["d", "d", ".3f", ".3f", ".3f", "d"],
        [negatives],
    )
    return [by_category, held_out]


def report_tables(results: dict[str, Any]) -> list[ReportTable]:
    """Every table of the report, in reading order: the leaderboard first."""
    builders = (leaderboard, metrics_table, category_table, held_out_table, budget_table, fingerprints_table)
    extra = [category_fpr_table(results), *combined_tables(results), stealth_table(results), ablation_table(results)]
    return [build(results) for build in builders] + [t for t in extra if t is not None]
