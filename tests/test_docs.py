"""The docs: generated pages match their sources, and every relative link resolves."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "BENCHMARKS.md"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"(?m)^#+ (.+)$", text)}


def test_generated_pages_are_up_to_date():
    script = ROOT / "scripts" / "make_docs.py"
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"`[^`]*`", "", re.sub(r"(?ms)^```.*?^```", "", page.read_text()))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_a_manual_not_a_notebook():
    assert len((ROOT / "README.md").read_text().splitlines()) < 400


def test_the_zoo_table_counts_what_each_spec_builds():
    """docs/zoos.md said mini-digits has 106 models and showed a build of 96: the table and the
    recorded build now come from the spec itself."""
    from modelprint.zoo.build import load_spec

    text = (ROOT / "docs" / "zoos.md").read_text()
    rows = re.findall(r"(?m)^\| ((?:`[^`]+`(?:, )?)+) \| (\d+) \|", text)
    assert len(rows) >= 8
    for names, count in rows:
        for name in re.findall(r"`([^`]+)`", names):
            assert len(load_spec(name).models) == int(count), name
    for spec, built in re.findall(r"zoo (\S+): (\d+) models in", text):
        assert len(load_spec(spec).models) == int(built), spec


def test_the_example_dispute_report_is_the_readme_flow_and_audits():
    """docs/dispute-example holds the README's flow by hand, its pruned copy's verification
    recorded: the record reproduces offline, and its verdict is the one the README prints."""
    from modelprint.record import audit

    example = ROOT / "docs" / "dispute-example"
    result = audit(example / "stolen.json", example / "owner.fp.safetensors")
    assert result.reproduced, result.differences
    readme = (ROOT / "README.md").read_text()
    printed = re.search(r"The\s+two verdicts, from one run:\n\n```\n(match: .*?)\n", readme).group(1)
    p_value = re.search(r"p = (\S+) at", printed).group(1)
    assert (
        f"p = {p_value} at false-positive rate 0.001, 100 queries; audit: reproduced"
        in (example / "report.md").read_text()
    )
