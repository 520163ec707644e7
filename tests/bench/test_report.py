import base64
import re
import shutil
import subprocess

import pytest

from modelprint.bench import run_bench
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
    assert plots == {"distributions.png", "aruc.png", "roc.png", "margins.png", "queries.png"}
    for name in plots:
        assert (report_dir / "plots" / name).read_bytes().startswith(PNG)
    md = (report_dir / "report.md").read_text()
    assert "## Metrics over the whole zoo" in md and "| ltrc |" in md and "(plots/aruc.png)" in md
    page = (report_dir / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 5 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert page.count("<table>") == 6 and "<td>finetune</td>" in page and "Held-out false-positive rate" in page
    assert "Held-out false matches per category" in page


def test_report_command_regenerates_and_rejects_other_folders(report_dir, tmp_path, capsys):
    (report_dir / "report.html").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(report_dir)])
    assert exit_info.value.code == 0 and (report_dir / "report.html").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2 and "no results.json" in capsys.readouterr().err


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_report_renders_in_headless_chromium(report_dir):
    browser = _chromium()
    if browser is None:  # .ci/run installs Debian's chromium; only a machine without it gets here
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")

    def render(path):
        dom = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
                "--dump-dom",
                path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        body = re.search(r"<body([^>]*)>", dom)
        assert body, "chromium returned no page"
        return dom, dict(re.findall(r'(data-[\w-]+)="(\d+)"', body.group(1)))

    dom, attrs = render(report_dir / "report.html")
    assert attrs == {"data-images": "5", "data-images-ok": "5"}  # every image decoded
    assert dom.count("<table>") == 6 and "Metrics over the whole zoo" in dom
    # the check can fail: a page with one broken image reports it
    broken = report_dir / "broken.html"
    broken.write_text(re.sub(r"base64,[^']{40}", "base64,AAAA", (report_dir / "report.html").read_text(), count=1))
    assert render(broken)[1] == {"data-images": "5", "data-images-ok": "4"}


def test_report_names_the_chosen_false_positive_rate(reference_zoo, tmp_path):
    run_bench(reference_zoo, ["c"], tmp_path, n=10, fpr=1.0, method_params={"c": {"steps": 20}}, progress=False)
    md_path, _ = write_report(tmp_path)
    assert "tpr at 1 fpr" in md_path.read_text()
