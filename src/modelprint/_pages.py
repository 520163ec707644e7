"""What every report page shares: Markdown and HTML tables, the page's style, the script that
marks on the page whether its images decoded (the browser tests read it), and writing a plot."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from ._io import atomic_write, html_with_code
from ._lazy import pyplot

STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"
    "code{background:#f3f3f3;padding:0 3px}</style>"
)

# Marks the page once every image has decoded (a browser test reads these attributes).
IMAGE_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-ok', ok);
});
</script>"""


def save_png(fig: Any, path: Path) -> None:
    """A matplotlib figure written atomically as PNG, then closed. No Software metadata, so the
    same figure from the same matplotlib is the same bytes."""
    save = {"format": "png", "dpi": 100, "bbox_inches": "tight", "metadata": {"Software": None}}
    atomic_write(path, lambda tmp: fig.savefig(tmp, **save))
    pyplot().close(fig)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html_with_code(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html_with_code(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_head(title: str, extra_style: str = "") -> str:
    """The page up to and including ``<body>``: charset, title, style and the image check."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"{STYLE}{extra_style}\n{IMAGE_CHECK}</head><body>"
    )


def html_figure(png: Path, caption: str) -> str:
    """A PNG inlined as a figure, so the page is one self-contained file."""
    data = base64.b64encode(png.read_bytes()).decode()
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
