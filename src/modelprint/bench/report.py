"""``report.md``, a self-contained ``report.html`` (plots inlined as PNG) and every table as
CSV (``DIR/tables/``) from a benchmark folder's ``results.json``; ``modelprint report DIR``
regenerates them. The report opens with a leaderboard; wide tables are split so each fits a
page (the CSV keeps every column, one raw value per cell); the tables are
:mod:`modelprint.bench.tables`, the plots :mod:`modelprint.bench.plots`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .._io import atomic_write_text, html_with_code
from .._pages import html_figure, html_head, html_table, md_table
from ..errors import ParameterError
from .plots import make_plots
from .runner import RESULTS
from .tables import report_tables

METHODS_PER_TABLE = 4  # the by-category table has three columns per method


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


def _slug(title: str) -> str:
    """A file name from a table's title: its words before any colon, whole words up to 48 characters."""
    words = re.sub(r"[^a-z0-9]+", "-", title.lower().split(":")[0]).strip("-").split("-")
    kept = words[:1]
    for word in words[1:]:
        if len("-".join([*kept, word])) > 48:
            break
        kept.append(word)
    return "-".join(kept)[:80]


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
    tables = report_tables(results)
    for i, table in enumerate(tables):
        atomic_write_text(root / "tables" / f"{i:02d}-{_slug(table.title)}.csv", table.csv())
    intro = (
        f"Zoo `{Path(results['zoo']).name}`, source `{results['source']}`, mirror `{results['mirror']}`; "
        f"{len(results['suspects'])} suspects, {results['n']} queries per method, seed {results['seed']}, "
        f"modelprint {results['modelprint']}. Querying took {results['timings']['querying']:.1f} s "
        f"({results['timings']['suspects_per_second']:.1f} suspects/s). Every table is also a CSV in `tables/`."
        + ("" if made else " No plots: they need matplotlib (pip install 'modelprint[report]').")
    )
    pages = [(t.title, part) for t in tables for part in _split(t.header, t.shown(), METHODS_PER_TABLE)]
    md = ["# Fingerprint benchmark", "", intro, ""]
    shown = None
    for title, (header, rows) in pages:
        md += ([f"## {title}", ""] if title != shown else []) + [md_table(header, rows), ""]
        shown = title
    for name, caption in made:
        md += [f"![{caption}](plots/{name})", "", f"*{caption}*", ""]
    md_path, html_path = root / "report.md", root / "report.html"
    atomic_write_text(md_path, "\n".join(md))

    parts = [
        html_head("modelprint benchmark"),
        f"<h1>Fingerprint benchmark</h1><p>{html_with_code(intro)}</p>",
    ]
    previous = None
    for title, (header, rows) in pages:
        if title != previous:  # a split table's parts share its heading
            parts.append(f"<h2>{html_with_code(title)}</h2>")
        parts.append(html_table(header, rows))
        previous = title
    for name, caption in made:
        parts.append(html_figure(root / "plots" / name, caption))
    parts.append("</body></html>")
    atomic_write_text(html_path, "\n".join(parts) + "\n")
    return md_path, html_path
