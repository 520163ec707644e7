"""The benchmark report's plots (matplotlib, written to ``DIR/plots/``).

One palette for every plot: a method has the same colour in the ROC, the margins and the
stealth bars. Per-method panels go in a grid of at most four columns, so twelve methods make
a readable 3 x 4 page instead of one strip. ROC curves use a log-scale false-positive axis,
because the low-FPR end is where a verdict is decided.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from .._lazy import pyplot
from .._pages import save_png
from ..errors import ParameterError
from ..fingerprints import Fingerprint
from ..metrics import robustness_uniqueness_curve

ROLE_COLORS = {"positive": "#1f77b4", "negative": "#ff7f0e"}
# Distinct colours for up to 20 methods (tab10, then tab20's lighter shades); past 20, line styles differ.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip
LINESTYLES = ("-", "--", ":", "-.")
COLUMNS = 4


def method_style(methods: list[str]) -> dict[str, dict[str, str]]:
    """Colour and line style of each method, by its place in the results (stable across plots)."""
    return {
        m: {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[i // len(PALETTE) % 4]}
        for i, m in enumerate(methods)
    }


def _grid(n: int, width: float = 3.4, height: float = 3.0, columns: int = COLUMNS) -> tuple[Any, list[Any]]:
    cols = min(columns, max(1, n))
    rows = -(-n // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def _rates(results: dict[str, Any], method: str, role: str, category: str | None = None) -> np.ndarray:
    return np.array(
        [
            s["rates"][method]
            for s in results["suspects"]
            if s["role"] == role and s["id"] != results["source"] and (category is None or s["category"] == category)
        ]
    )


def plot_distributions(results: dict[str, Any], path: Path) -> None:
    methods = list(results["methods"])
    categories = list(dict.fromkeys(s["category"] for s in results["suspects"] if s["id"] != results["source"]))
    fig, axes = _grid(len(methods), width=max(4.0, 0.55 * len(categories)), height=3.0, columns=3)
    rng = np.random.default_rng(0)  # jitter only
    for ax, m in zip(axes, methods):
        low = -0.03
        for role, offset in (("positive", -0.15), ("negative", 0.15)):
            xs, ys = [], []
            for i, c in enumerate(categories):
                vals = list(_rates(results, m, role, c))
                xs += list(i + offset + rng.uniform(-0.08, 0.08, len(vals)))
                ys += vals
            ax.scatter(xs, ys, s=10, color=ROLE_COLORS[role], label=role, alpha=0.8)
            low = min([low, *(y - 0.03 for y in ys)])  # a cosine may be negative
        ax.set_xticks(range(len(categories)), categories, rotation=40, ha="right", fontsize=7)
        ax.set_ylim(low, 1.03)
        ax.set_ylabel(results["methods"][m].get("statistic", "matching_rate").replace("_", " "), fontsize=8)
        ax.set_title(m, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def plot_aruc(results: dict[str, Any], path: Path) -> None:
    methods = list(results["methods"])
    fig, axes = _grid(len(methods))
    for ax, m in zip(axes, methods):
        t, tpr, tnr = robustness_uniqueness_curve(_rates(results, m, "positive"), _rates(results, m, "negative"))
        # values hold on (t[i-1], t[i]]: draw as steps ending at each point
        ax.step(t, tpr, where="pre", color=ROLE_COLORS["positive"], label="robustness (TPR)")
        ax.step(t, tnr, where="pre", color=ROLE_COLORS["negative"], label="uniqueness (TNR)")
        ax.fill_between(t, np.minimum(tpr, tnr), step="pre", color="grey", alpha=0.3, label="min: ARUC area")
        ax.set_title(f"{m}: ARUC {results['methods'][m]['metrics']['aruc']:.2f}", loc="left", fontsize=10)
        ax.set_xlabel("threshold t")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _roc_panel(ax: Any, results: dict[str, Any], styles: dict[str, dict[str, str]], category: str | None) -> None:
    floor = 1.0
    for m in results["methods"]:
        pos, neg = _rates(results, m, "positive", category), _rates(results, m, "negative")
        if not pos.size or not neg.size:
            continue
        fpr, tpr, _ = roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg])
        floor = min(floor, 0.5 / neg.size)
        # log axis: an FPR of 0 is drawn at half of one negative's share
        ax.step(np.maximum(fpr, 0.5 / neg.size), tpr, where="post", label=m, linewidth=1.4, **styles[m])
    ax.axvline(results.get("fpr", 0.01), color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (log)")
    ax.set_ylabel("true-positive rate")


def plot_roc(results: dict[str, Any], path: Path) -> None:
    styles = method_style(list(results["methods"]))
    fig, (ax,) = _grid(1, width=6.0, height=4.6)
    _roc_panel(ax, results, styles, None)
    ax.set_title(
        f"all positives against all negatives; dotted: FPR {results.get('fpr', 0.01):g}", loc="left", fontsize=9
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    save_png(fig, path)


def plot_roc_by_category(results: dict[str, Any], path: Path) -> bool:
    categories = list(
        dict.fromkeys(
            s["category"] for s in results["suspects"] if s["role"] == "positive" and s["id"] != results["source"]
        )
    )
    if len(categories) < 2:
        return False
    styles = method_style(list(results["methods"]))
    fig, axes = _grid(len(categories), width=3.6, height=3.2)
    for ax, c in zip(axes, categories):
        _roc_panel(ax, results, styles, c)
        ax.set_title(f"{c} vs every negative", loc="left", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(7, len(labels)), fontsize=8, bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    save_png(fig, path)
    return True


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
    styles = method_style(list(results["methods"]))
    fig, axes = _grid(len(series), width=3.8, height=3.0)
    for ax, (key, per_method) in zip(axes, sorted(series.items())):
        for m, points in per_method.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=m, **styles[m])
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel(key)
        ax.set_ylabel("margin: positive - mirror", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(7, len(labels)), fontsize=8, bbox_to_anchor=(0.5, 1.06))
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_detection(results: dict[str, Any], path: Path) -> bool:
    rates = {m: r["detection_rate"] for m, r in results["methods"].items() if r.get("detection_rate")}
    if not rates:
        return False
    styles = method_style(list(results["methods"]))
    fig, (ax,) = _grid(1, width=max(4.0, 0.8 * len(rates)), height=3.0)
    names = list(rates)
    ax.bar(names, [rates[m]["mean"] for m in names], color=[styles[m]["color"] for m in names])
    for i, m in enumerate(names):
        ax.scatter([i] * len(rates[m]["per_seed"]), rates[m]["per_seed"], color="k", s=8, zorder=3)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection rate")
    ax.tick_params(axis="x", labelrotation=30)
    save_png(fig, path)
    return True


def plot_queries(root: Path, results: dict[str, Any], path: Path, per_method: int = 8) -> None:
    methods = list(results["methods"])
    fig, axes = pyplot().subplots(
        len(methods), per_method, figsize=(1.1 * per_method, 1.25 * len(methods)), squeeze=False
    )
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
    save_png(fig, path)


def make_plots(root: Path, results: dict[str, Any]) -> list[tuple[str, str]]:
    """Every plot the results allow, as (file name, caption); none when matplotlib is missing."""
    try:
        pyplot()
    except ParameterError:
        return []
    plots = root / "plots"
    made = []
    for name, caption, fn in (
        ("roc.png", "ROC curves, log-scale false-positive rate (each method's statistic as the score)", plot_roc),
        ("aruc.png", "Robustness and uniqueness against the threshold; the shaded minimum is the ARUC", plot_aruc),
        (
            "distributions.png",
            "Each method's statistic per zoo category: positives high, negatives low",
            plot_distributions,
        ),
    ):
        fn(results, plots / name)
        made.append((name, caption))
    optional = (
        ("roc-by-category.png", "ROC of each category's positives against every negative", plot_roc_by_category),
        ("margins.png", "Margin (positive minus its mirror negative) against attack strength", plot_margins),
        ("detection.png", "Detection rate of each method's queries (mean over detector seeds)", plot_detection),
    )
    for name, caption, fn in optional:
        if fn(results, plots / name):
            made.append((name, caption))
    # A copied results folder may come without its fingerprints: no query images then, the rest stands.
    caption = "The first query images of each fingerprint, with their expected labels"
    if all((root / r["fingerprint"]["file"]).is_file() for r in results["methods"].values()):
        plot_queries(root, results, plots / "queries.png")
        made.append(("queries.png", caption))
    elif (plots / "queries.png").is_file():  # drawn when the fingerprints were at hand
        made.append(("queries.png", caption + " (drawn by the run itself)"))
    return made
