"""``report.md``, a self-contained ``report.html`` (plots inlined as PNG) and every table as
CSV (``DIR/tables/``) from a benchmark folder's ``results.json``; ``modelprint report DIR``
regenerates them. The report opens with a leaderboard; wide tables are split so each fits a
page (the CSV keeps every column); the plots are :mod:`modelprint.bench.plots`.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from .._io import atomic_write_text, html_with_code
from ..errors import ParameterError
from .plots import make_plots
from .runner import RESULTS

METHODS_PER_TABLE = 4  # the by-category table has three columns per method
METRIC_COLUMNS = ("robustness", "transferability", "uniqueness", "aruc", "auc", "f1", "threshold")


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _fpr_key(results: dict[str, Any]) -> str:
    metrics = next(iter(results["methods"].values()))["metrics"]
    return next(k for k in metrics if k.startswith("tpr_at_") and k.endswith("_fpr"))


def leaderboard(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """Methods by ARUC, with the numbers a reader compares first."""
    fpr_key = _fpr_key(results)
    rows = []
    for m, r in sorted(results["methods"].items(), key=lambda kv: -kv[1]["metrics"]["aruc"]):
        held = ((r.get("calibrated") or {}).get("threshold") or {}).get("tpr")
        rows.append([m, _cell(r["metrics"]["aruc"]), _cell(r["metrics"]["auc"]), _cell(r["metrics"][fpr_key]),
                     _cell(held), f"{r['metrics']['uniqueness']:+.2f}"])  # fmt: skip
    fpr = results.get("fpr", 0.01)
    head = ["method", "ARUC", "ROC AUC", f"TPR at {fpr:g} FPR", f"held-out TPR at {fpr:g}", "uniqueness"]
    return "Leaderboard: methods by ARUC", head, rows


def _category_rows(results: dict[str, Any]) -> list[list[str]]:
    methods = results["methods"].values()
    categories = list(dict.fromkeys(c for r in methods for c in r["by_category"]))
    keys = ("positive", "negative", "aruc")
    return [[c, *(_cell(r["by_category"].get(c, {}).get(k)) for r in methods for k in keys)] for c in categories]


def _held_out_rows(results: dict[str, Any], fpr_key: str) -> list[list[str]]:
    rows = []
    for m, r in results["methods"].items():
        cal = r.get("calibrated") or {}
        for rule in ("threshold", "null"):
            if rule not in cal:
                continue
            v = cal[rule]
            lo, hi = v["fpr_interval"]
            rows.append(
                [
                    m,
                    "empirical threshold" if rule == "threshold" else f"{v['family']} null, p < FPR",
                    f"{cal['calibration_negatives']} / {cal['evaluation_negatives']}",
                    f"{v['false_positives']}/{cal['evaluation_negatives']} = {v['fpr']:.3f}",
                    f"[{lo:.3f}, {hi:.3f}]",
                    "yes" if v["fpr_within"] else "NO",
                    f"{v['tpr']:.2f}",
                    f"{r['metrics'][fpr_key]:.2f}",
                ]
            )
    return rows


def _category_fpr_table(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]] | None:
    rows = []
    for m, r in results["methods"].items():
        for c, v in (r.get("calibrated") or {}).get("by_category", {}).items():
            lo, hi = v["null_fpr_interval"]
            rows.append([m, c, str(v["negatives"]), str(v["threshold_false_positives"]),
                         f"{v['null_false_positives']} [{lo:.2f}, {hi:.2f}]", str(v["no_match"]),
                         str(v["inconclusive"])])  # fmt: skip
    if not rows:
        return None
    title = (f"Held-out false matches per category of the evaluation negatives at FPR {results['fpr']:g} "
             "(null: count and 95 % interval of its FPR), and the null's other verdicts")  # fmt: skip
    return title, ["method", "category", "negatives", "threshold FP", "null FP", "no-match", "inconclusive"], rows


def _ablation_table(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]] | None:
    rows = []
    for m, r in results["methods"].items():
        ab = r["fingerprint"].get("ablation")
        if ab:
            paper = ab.get("paper_aruc")
            rows.append(
                [m, *("✓" if on else "–" for on in ab["kept"].values()), f"{r['metrics']['aruc']:.2f}",
                 "–" if paper is None else f"{paper:.2f}"]
            )  # fmt: skip
    if len(rows) <= 1:
        return None
    tricks = next(
        r["fingerprint"]["ablation"]["kept"] for r in results["methods"].values() if "ablation" in r["fingerprint"]
    )
    title = "Ablation: the method's tricks kept (✓) or removed, ARUC here and in the paper"
    return title, ["variant", *tricks, "aruc", "paper aruc"], rows


def _stealth_table(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]] | None:
    rows = [
        [m, f"{r['detection_rate']['mean']:.3f}", ", ".join(f"{v:.3f}" for v in r["detection_rate"]["per_seed"])]
        for m, r in results["methods"].items()
        if r.get("detection_rate")
    ]
    if not rows:
        return None
    alarm = (results.get("stealth") or {}).get("false_alarm")
    note = f"; the detectors flag {alarm['mean']:.3f} of clean test images" if alarm else ""
    title = "Stealthiness: share of the queries a detector trained on clean vs noise/FGSM images flags" + note
    return title, ["method", "detection rate (mean)", "per seed"], rows


def _tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    fpr_key = _fpr_key(results)
    main = [
        [
            m,
            *(f"{r['metrics'][c]:+.2f}" if c == "uniqueness" else f"{r['metrics'][c]:.2f}" for c in METRIC_COLUMNS),
            f"{r['metrics'][fpr_key]:.2f}",
        ]
        for m, r in results["methods"].items()
    ]
    budget_rows = [
        [m, str(b), f"{v['aruc']:.2f}", f"{v['auc']:.2f}", f"{v['uniqueness']:+.2f}", f"{v['f1']:.2f}"]
        for m, r in results["methods"].items()
        for b, v in r["budgets"].items()
    ]
    generation = results["timings"]["generation"]
    time_rows = []
    for m, g in generation.items():
        meta = results["methods"].get(m, {}).get("fingerprint", {})
        made = meta.get("generation_seconds")
        seconds = f"{g['seconds']:.1f}" if not g["cached"] else f"cached (made in {made:.1f})" if made else "cached"
        summary = str(meta.get("summary", "")).replace("\n", "; ")
        time_rows.append([m, seconds, str(meta.get("queries", "")), summary])
    held_out = ["method", "rule", "negatives calib / eval", "observed FPR", "95% interval", "nominal inside", "TPR",
                "in-sample TPR"]  # fmt: skip
    tables = [
        ("Metrics over the whole zoo", ["method", *METRIC_COLUMNS, fpr_key.replace("_", " ")], main),
        (
            "By category: mean statistic (pos / neg) and ARUC of the category's positives against every negative",
            ["category", *(f"{m} {r}" for m in results["methods"] for r in ("pos", "neg", "aruc"))],
            _category_rows(results),
        ),
        (
            f"Held-out false-positive rate at nominal FPR {results['fpr']:g}: fitted on the calibration half of "
            "the negatives, counted on the evaluation half",
            held_out,
            _held_out_rows(results, fpr_key),
        ),
        (
            "Query budget: metrics on the first b queries",
            ["method", "b", "aruc", "auc", "uniqueness", "f1"],
            budget_rows,
        ),  # fmt: skip
        (
            "Fingerprints: generation time, queries kept and what each method says of its fingerprint",
            ["method", "seconds", "queries", "summary"],
            time_rows,
        ),  # fmt: skip
    ]
    extra = (_category_fpr_table(results), _combined_table(results), _stealth_table(results), _ablation_table(results))
    return tables + [t for t in extra if t is not None]


def _combined_table(results: dict[str, Any]) -> tuple[str, list[str], list[list[str]]] | None:
    """The combined verdict (Holm over several families): TPR per category, then its held-out FPR."""
    c = results.get("combined")
    if not c:
        return None
    fpr, h = c["fpr"], c["held_out"]
    rows = [
        [cat, str(v["positives"]), f"{v['tpr']:.2f}", f"{v['tpr_at_0.001']:.2f}",
         ", ".join(f"{m} {t:.2f}" for m, t in v["families_alone"].items())]
        for cat, v in c["by_category"].items()
    ]  # fmt: skip
    rows.append(["all positives", str(sum(v["positives"] for v in c["by_category"].values())), f"{c['tpr']:.2f}",
                 f"{c['tpr_at_0.001']:.2f}", ""])  # fmt: skip
    rows.append([
        "evaluation negatives (false matches)", str(h["evaluation_negatives"]),
        f"{h['false_matches']} ({h['fpr']:.3f}, 95% [{h['fpr_interval'][0]:.3f}, {h['fpr_interval'][1]:.3f}])",
        str(h["false_matches_at_0.001"]), "",
    ])  # fmt: skip
    title = (
        f"Combined verdict: {', '.join(c['methods'])} by {c['rule'].capitalize()}'s procedure, each null fitted on the "
        f"calibration negatives (ROC AUC of -log10 p: {c['auc']:.2f})"
    )
    return title, ["category", "models", f"match at {fpr:g}", "match at 0.001", f"each family alone at {fpr:g}"], rows


def _split(header: list[str], rows: list[list[str]], per: int) -> list[tuple[list[str], list[list[str]]]]:
    """A wide table as several that fit a page: the first column repeated, ``per`` groups of
    three columns each (the by-category table: pos, neg, aruc per method)."""
    width = 3 * per
    if len(header) <= width + 1:
        return [(header, rows)]
    return [
        ([header[0], *header[i : i + width]], [[r[0], *r[i : i + width]] for r in rows])
        for i in range(1, len(header), width)
    ]


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _slug(title: str) -> str:
    """A file name from a table's title: its words before any colon, whole words up to 48 characters."""
    words = re.sub(r"[^a-z0-9]+", "-", title.lower().split(":")[0]).strip("-").split("-")
    kept = words[:1]
    for word in words[1:]:
        if len("-".join([*kept, word])) > 48:
            break
        kept.append(word)
    return "-".join(kept)[:80]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html_with_code(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html_with_code(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# Marks the page once every image has decoded (a browser test reads these attributes).
_IMAGE_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-ok', ok);
});
</script>"""


def write_report(root: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html``, ``tables/*.csv`` and ``plots/*.png`` in a benchmark folder."""
    root = Path(root)
    path = root / RESULTS
    if not path.is_file():
        raise ParameterError(f"{root} has no {RESULTS}; run `modelprint bench ZOO --out {root}` first")
    try:
        results = json.loads(path.read_text("utf-8"))
        results["methods"], results["suspects"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ParameterError(f"{path} is not a modelprint results file ({e})") from None
    made = make_plots(root, results)
    tables = [leaderboard(results), *_tables(results)]
    for i, (title, header, rows) in enumerate(tables):
        atomic_write_text(root / "tables" / f"{i:02d}-{_slug(title)}.csv", _csv(header, rows))
    intro = (
        f"Zoo `{Path(results['zoo']).name}`, source `{results['source']}`, mirror `{results['mirror']}`; "
        f"{len(results['suspects'])} suspects, {results['n']} queries per method, seed {results['seed']}, "
        f"modelprint {results['modelprint']}. Querying took {results['timings']['querying']:.1f} s "
        f"({results['timings']['suspects_per_second']:.1f} suspects/s). Every table is also a CSV in `tables/`."
        + ("" if made else " No plots: they need matplotlib (pip install 'modelprint[report]').")
    )
    pages = [(title, part) for title, header, rows in tables for part in _split(header, rows, METHODS_PER_TABLE)]
    md = ["# Fingerprint benchmark", "", intro, ""]
    shown = None
    for title, (header, rows) in pages:
        md += ([f"## {title}", ""] if title != shown else []) + [_md_table(header, rows), ""]
        shown = title
    for name, caption in made:
        md += [f"![{caption}](plots/{name})", "", f"*{caption}*", ""]
    md_path, html_path = root / "report.md", root / "report.html"
    atomic_write_text(md_path, "\n".join(md))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>modelprint benchmark</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"
        "code{background:#f3f3f3;padding:0 3px}</style>",
        f"{_IMAGE_CHECK}</head><body><h1>Fingerprint benchmark</h1><p>{html_with_code(intro)}</p>",
    ]
    previous = None
    for title, (header, rows) in pages:
        if title != previous:  # a split table's parts share its heading
            parts.append(f"<h2>{html_with_code(title)}</h2>")
        parts.append(_html_table(header, rows))
        previous = title
    for name, caption in made:
        data = base64.b64encode((root / "plots" / name).read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    atomic_write_text(html_path, "\n".join(parts) + "\n")
    return md_path, html_path
