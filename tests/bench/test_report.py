import base64
import csv
import json
import re
import shutil

import pytest
from browser import assert_screenshot_has_content, render

from modelprint.bench import run_bench
from modelprint.bench.plots import PALETTE, method_style
from modelprint.bench.report import write_report
from modelprint.cli import main

PARAMS = {"c": {"steps": 30}, "ltrc": {"steps": 30, "k": 2}}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report_dir(reference_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    run_bench(reference_zoo, ["c", "ltrc"], out, n=20, budgets=(5, 10), method_params=PARAMS, workers=0, progress=False)
    write_report(out)
    return out


def test_report_files_tables_and_plots(report_dir):
    plots = {p.name for p in (report_dir / "plots").iterdir()}
    assert plots == {"distributions.png", "aruc.png", "roc.png", "roc-by-category.png", "margins.png", "queries.png"}
    for name in plots:
        assert (report_dir / "plots" / name).read_bytes().startswith(PNG)
    md = (report_dir / "report.md").read_text()
    assert "## Metrics over the whole zoo" in md and "| ltrc |" in md and "(plots/aruc.png)" in md
    assert md.index("## Leaderboard") < md.index("## Metrics over the whole zoo")
    page = (report_dir / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 6 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert page.count("<table>") == 7 and "<td>finetune</td>" in page and "Held-out false-positive rate" in page
    assert "Held-out false matches per category" in page
    assert "`" not in re.sub(r"<[^>]+>", "", page.split("<body>")[-1]), "literal backticks in the HTML"


def test_every_table_is_also_a_csv_of_raw_values(report_dir):
    """CSVs held display strings (+0.43, –, 0/8 = 0.000, cached (made in 1.3)); now one raw
    value per cell, the page showing the same values formatted."""
    tables = sorted((report_dir / "tables").glob("*.csv"))
    assert len(tables) == 7 and tables[0].name == "00-leaderboard.csv"
    rows = list(csv.reader(tables[0].open()))
    assert rows[0][:3] == ["method", "ARUC", "ROC AUC"] and {r[0] for r in rows[1:]} == {"c", "ltrc"}
    text_columns = {"method", "rule", "category", "summary", "variant"}
    for table in tables:
        header, *body = list(csv.reader(table.open()))
        assert body, table.name
        for row in body:
            for name, cell in zip(header, row):
                if name in text_columns or cell in ("", "true", "false"):
                    continue
                float(cell)  # a number, not a display string
            assert not any(mark in cell for cell in row for mark in ("–", " = ", "cached (", "[")), row
    md = (report_dir / "report.md").read_text()
    results = json.loads((report_dir / "results.json").read_text())
    board = list(csv.reader(tables[0].open()))[1:]
    for method, aruc, *_ in board:  # full precision in the CSV, two places on the page
        assert float(aruc) == results["methods"][method]["metrics"]["aruc"]
        assert f"| {method} | {float(aruc):.2f} |" in md


def test_wide_tables_are_split_and_colours_are_distinct(report_dir):
    from modelprint.bench.report import _split

    header = ["category", *(f"m{i} {k}" for i in range(12) for k in ("pos", "neg", "aruc"))]
    parts = _split(header, [["finetune", *map(str, range(36))]], 4)
    assert len(parts) == 3 and all(len(h) == 13 and h[0] == "category" for h, _ in parts)
    styles = method_style([f"m{i}" for i in range(len(PALETTE))])
    assert len({s["color"] for s in styles.values()}) == len(PALETTE)


def test_a_copied_results_folder_without_fingerprints_still_reports(report_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(report_dir / "results.json", copy / "results.json")
    md, page = write_report(copy)
    assert page.is_file() and not (copy / "plots" / "queries.png").exists() and (copy / "plots" / "roc.png").is_file()
    assert "queries.png" not in md.read_text()


def test_report_command_regenerates_and_rejects_other_folders(report_dir, tmp_path, capsys):
    (report_dir / "report.html").unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(report_dir)])
    assert exit_info.value.code == 0 and (report_dir / "report.html").is_file()
    # two lines, the page then the Markdown (a literal "\n" was printed between them)
    assert capsys.readouterr().out == f"{report_dir / 'report.html'}\n{report_dir / 'report.md'}\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2 and "no results.json" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(report_dir):
    dom, attrs = render(report_dir / "report.html")
    assert attrs == {"data-images": "6", "data-images-ok": "6"}  # every image decoded
    assert dom.count("<table>") == 7 and "Metrics over the whole zoo" in dom
    # the check can fail: a page with one broken image reports it
    broken = report_dir / "broken.html"
    broken.write_text(re.sub(r"base64,[^']{40}", "base64,AAAA", (report_dir / "report.html").read_text(), count=1))
    assert render(broken)[1] == {"data-images": "6", "data-images-ok": "5"}
    assert_screenshot_has_content(report_dir / "report.html", "report.png")


def test_report_names_the_chosen_false_positive_rate(reference_zoo, tmp_path):
    run_bench(reference_zoo, ["c"], tmp_path, n=10, fpr=1.0, method_params={"c": {"steps": 20}}, progress=False)
    md_path, _ = write_report(tmp_path)
    assert "tpr at 1 fpr" in md_path.read_text()


def test_table_file_names_end_on_whole_words():
    from modelprint.bench.report import _slug

    title = "Held-out false-positive rate at nominal FPR 0.01: fitted on the calibration half"
    assert _slug(title) == "held-out-false-positive-rate-at-nominal-fpr-0-01"
    long = _slug("Held-out false matches per category of the evaluation negatives at every threshold")
    assert len(long) <= 48 and not long.endswith(("-t", "-th")) and long.endswith("-of-the")
