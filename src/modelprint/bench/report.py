"""``report.md`` and a self-contained ``report.html`` (plots inlined as PNG) from a
benchmark folder's ``results.json``; ``modelprint report DIR`` regenerates them.

Plots (matplotlib, in ``DIR/plots/``): matching-rate distributions per category,
robustness/uniqueness curves with the ARUC area shaded, ROC curves, margin against attack
strength (as in NaturalFinger's figures) and each method's first query images.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from .._io import atomic_write, atomic_write_text
from .._lazy import pyplot
from ..errors import ParameterError
from ..fingerprints import Fingerprint
from ..metrics import robustness_uniqueness_curve
from .runner import RESULTS

COLORS = {"positive": "#1f77b4", "negative": "#ff7f0e"}
METRIC_COLUMNS = ("robustness", "transferability", "uniqueness", "aruc", "auc", "f1", "threshold")


def _plt():  # noqa: ANN202 (matplotlib.pyplot)
    return pyplot()


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    _plt().close(fig)


def _rates(results: dict[str, Any], method: str, role: str) -> np.ndarray:
    return np.array(
        [s["rates"][method] for s in results["suspects"] if s["role"] == role and s["id"] != results["source"]]
    )


def plot_distributions(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    methods = list(results["methods"])
    categories = list(dict.fromkeys(s["category"] for s in results["suspects"] if s["id"] != results["source"]))
    fig, axes = plt.subplots(
        len(methods), 1, figsize=(max(6, 0.9 * len(categories)), 2.6 * len(methods)), squeeze=False
    )
    rng = np.random.default_rng(0)  # jitter only
    for ax, m in zip(axes[:, 0], methods):
        low = -0.03
        for role, offset in (("positive", -0.15), ("negative", 0.15)):
            xs, ys = [], []
            for i, c in enumerate(categories):
                vals = [
                    s["rates"][m]
                    for s in results["suspects"]
                    if s["category"] == c and s["role"] == role and s["id"] != results["source"]
                ]
                xs += list(i + offset + rng.uniform(-0.08, 0.08, len(vals)))
                ys += vals
            ax.scatter(xs, ys, s=14, color=COLORS[role], label=role, alpha=0.8)
            low = min([low, *(y - 0.03 for y in ys)])  # a cosine may be negative
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
        ax.set_ylim(low, 1.03)
        ax.set_ylabel(results["methods"][m].get("statistic", "matching_rate").replace("_", " "))
        ax.set_title(m, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_aruc(results: dict[str, Any], path: Path) -> None:
    plt = _plt()
    methods = list(results["methods"])
    fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 3.0), squeeze=False)
    for ax, m in zip(axes[0], methods):
        t, tpr, tnr = robustness_uniqueness_curve(_rates(results, m, "positive"), _rates(results, m, "negative"))
        # values hold on (t[i-1], t[i]]: draw as steps ending at each point
        ax.step(t, tpr, where="pre", color=COLORS["positive"], label="robustness (TPR)")
        ax.step(t, tnr, where="pre", color=COLORS["negative"], label="uniqueness (TNR)")
        ax.fill_between(t, np.minimum(tpr, tnr), step="pre", color="grey", alpha=0.3, label="min: ARUC area")
        ax.set_title(f"{m}: ARUC {results['methods'][m]['metrics']['aruc']:.2f}", loc="left")
        ax.set_xlabel("threshold t")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0, 0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_roc(results: dict[str, Any], path: Path) -> None:

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for m, res in results["methods"].items():
        pos, neg = _rates(results, m, "positive"), _rates(results, m, "negative")
        fpr, tpr, _ = roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])
        ax.plot(fpr, tpr, label=f"{m} (AUC {res['metrics']['auc']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _strength_series(results: dict[str, Any]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{strength key: {method: [(numeric strength, margin)]}} for numeric strengths only."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for m, res in results["methods"].items():
        for item in res["margins"]:
            if item["strength"] and isinstance(item["strength"][1], (int, float)):
                key, value = item["strength"]
                out.setdefault(key, {}).setdefault(m, []).append((float(value), item["margin"]))
    return out


def plot_margins(results: dict[str, Any], path: Path) -> bool:
    series = _strength_series(results)
    if not series:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 3.0), squeeze=False)
    for ax, (key, per_method) in zip(axes[0], sorted(series.items())):
        for m, points in per_method.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=m)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel(key)
        ax.set_title("margin: positive - mirror", loc="left", fontsize=9)
    axes[0, 0].set_ylabel("matching-rate margin")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_detection(results: dict[str, Any], path: Path) -> bool:
    rates = {m: r["detection_rate"] for m, r in results["methods"].items() if r.get("detection_rate")}
    if not rates:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(rates)), 3))
    names = list(rates)
    ax.bar(names, [rates[m]["mean"] for m in names], color="#7f7f7f")
    for i, m in enumerate(names):
        ax.scatter([i] * len(rates[m]["per_seed"]), rates[m]["per_seed"], color="k", s=8, zorder=3)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection rate")
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, path)
    return True


def plot_queries(root: Path, results: dict[str, Any], path: Path, per_method: int = 8) -> None:

    plt = _plt()
    methods = list(results["methods"])
    fig, axes = plt.subplots(len(methods), per_method, figsize=(1.1 * per_method, 1.25 * len(methods)), squeeze=False)
    for row, m in zip(axes, methods):
        fp = Fingerprint.load(root / results["methods"][m]["fingerprint"]["file"])
        for i, ax in enumerate(row):
            ax.axis("off")
            if i < len(fp):
                img = fp.x[i].clamp(0, 1).permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
                ax.set_title(f"y={int(fp.y[i])}", fontsize=7)
        row[0].text(-0.15, 0.5, m, transform=row[0].transAxes, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _fpr_key(results: dict[str, Any]) -> str:
    metrics = next(iter(results["methods"].values()))["metrics"]
    return next(k for k in metrics if k.startswith("tpr_at_") and k.endswith("_fpr"))


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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
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
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` in a benchmark folder."""
    root = Path(root)
    path = root / RESULTS
    if not path.is_file():
        raise ParameterError(f"{root} has no {RESULTS}; run `modelprint bench ZOO --out {root}` first")
    try:
        results = json.loads(path.read_text("utf-8"))
        results["methods"], results["suspects"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ParameterError(f"{path} is not a modelprint results file ({e})") from None
    made = _make_plots(root, results)
    plots = root / "plots"
    tables = _tables(results)
    intro = (
        f"Zoo `{results['zoo']}`, source `{results['source']}`, mirror `{results['mirror']}`; "
        f"{len(results['suspects'])} suspects, {results['n']} queries per method, seed {results['seed']}, "
        f"modelprint {results['modelprint']}. Querying took {results['timings']['querying']:.1f} s "
        f"({results['timings']['suspects_per_second']:.1f} suspects/s)."
        + ("" if made else " No plots: they need matplotlib (pip install 'modelprint[report]').")
    )
    md = ["# Fingerprint benchmark", "", intro, ""]
    for title, header, rows in tables:
        md += [f"## {title}", "", _md_table(header, rows), ""]
    for name, caption in made:
        md += [f"![{caption}](plots/{name})", "", f"*{caption}*", ""]
    md_path, html_path = root / "report.md", root / "report.html"
    atomic_write_text(md_path, "\n".join(md))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>modelprint benchmark</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}</style>",
        f"{_IMAGE_CHECK}</head><body><h1>Fingerprint benchmark</h1><p>{html.escape(intro)}</p>",
    ]
    for title, header, rows in tables:
        parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, rows)}")
    for name, caption in made:
        data = base64.b64encode((plots / name).read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    atomic_write_text(html_path, "\n".join(parts) + "\n")
    return md_path, html_path


def _make_plots(root: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
    """Every plot the results allow, as (file name, caption); none when matplotlib is missing."""
    try:
        pyplot()
    except ParameterError:
        return []
    plots = root / "plots"
    figures = [
        (
            "distributions.png",
            "Each method's statistic per zoo category: positives should sit high, negatives low",
            plot_distributions,
        ),
        ("aruc.png", "Robustness and uniqueness against the threshold; the shaded minimum is the ARUC", plot_aruc),
        ("roc.png", "ROC curves (each method's statistic as the score)", plot_roc),
    ]
    made = []
    for name, caption, fn in figures:
        fn(results, plots / name)
        made.append((name, caption))
    if plot_margins(results, plots / "margins.png"):
        made.append(("margins.png", "Margin (positive minus its mirror negative) against attack strength"))
    if plot_detection(results, plots / "detection.png"):
        made.append(("detection.png", "Detection rate of each method's queries (mean over detector seeds)"))
    plot_queries(root, results, plots / "queries.png")
    made.append(("queries.png", "The first query images of each fingerprint, with their expected labels"))

    return made
