import json

import pytest
from browser import assert_screenshot_has_content, render
from cli_run import run

from modelprint._io import sha256_file
from modelprint.dispute import shown, write_dispute_report
from modelprint.errors import ParameterError
from modelprint.record import RecordError, recorded_verify
from modelprint.suspects import open_suspect

PNG = b"\x89PNG\r\n\x1a\n"


def _record(committed, path, suspect="pruned.safetensors", **settings):
    fp = committed / "ltrc.fp.safetensors"
    recorded_verify(fp, open_suspect(str(committed / suspect)), path, commitment=sha256_file(fp), **settings)
    return path


@pytest.fixture(scope="module")
def two_records(committed, tmp_path_factory):
    """The pruned copy verified, and later an independent model behind the same name."""
    root = tmp_path_factory.mktemp("dispute")
    first = _record(committed, root / "monday.json")
    second = _record(committed, root / "friday.json", suspect="independent.safetensors")
    return root, first, second


def test_a_dispute_report_states_the_claim_verdicts_and_how_to_reproduce(committed, two_records):
    root, first, second = two_records
    fp = committed / "ltrc.fp.safetensors"
    made = write_dispute_report([first, second], fp, root / "report")
    assert made.reproduced and made.differences == {}
    md = made.markdown.read_text()
    assert "claims that the suspect" in md and "was derived from the owner's model" in md
    assert "Verification 1 (`monday.json`" in md and "**match**" in md and "**no-match**" in md
    assert md.count("audit: reproduced") == 2
    assert f"`{sha256_file(fp)}`" in md and "given at verification, and it is this file's sha256" in md
    assert "Characteristic Examples: High-Robustness" in md  # the method's paper
    assert f"modelprint audit monday.json {fp.name}" in md and "modelprint fingerprint commit" in md
    # the verifications table: one row per record with its own times
    rows = [line for line in md.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and "monday.json" in rows[0] and "friday.json" in rows[1]
    created = [
        json.loads(p.read_text())["created"].replace("T", " ").replace("+00:00", " UTC") for p in (first, second)
    ]
    assert created[0] in rows[0] and created[1] in rows[1]
    # the last verdict is explained, with what it does not show
    assert "**no-match** (verification 2): The suspect answered as the independent models do" in md
    assert "What it does not show: independence: a copy changed enough" in md
    for name in ("statistic.png", "queries.png"):
        assert (root / "report" / name).read_bytes().startswith(PNG)
    assert "data:image/png;base64," in made.html.read_text()


def test_the_dispute_report_renders_in_headless_chromium(committed, two_records):
    root, first, second = two_records
    made = write_dispute_report([first, second], committed / "ltrc.fp.safetensors", root / "browser")
    dom, attrs = render(made.html)
    assert attrs == {"data-images": "2", "data-images-ok": "2"}
    assert dom.count("<table>") == 3 and "<b>match</b>" in dom and "What the verdict means" in dom
    assert_screenshot_has_content(made.html, "dispute-report.png")


def test_a_record_that_does_not_reproduce_is_named_and_the_cli_exits_1(committed, two_records, tmp_path, capsys):
    _, first, _ = two_records
    edited = json.loads(first.read_text())
    edited["entries"][2]["label"] = (edited["entries"][2]["label"] + 1) % 10
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(edited))
    fp = committed / "ltrc.fp.safetensors"
    code, out, _ = run(
        ["report", "--record", str(forged), "--fingerprint", str(fp), "--out", str(tmp_path / "r")], capsys
    )
    assert code == 1 and "forged.json does not reproduce:" in out and "entry 2 was changed" in out
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Verification 1 does not reproduce" in md and "audit: **does not reproduce**" in md
    # a good record through the CLI: exit 0, the page then the Markdown; the default folder sits beside the record
    code, out, _ = run(["report", "--record", str(first), "--fingerprint", str(fp)], capsys)
    assert code == 0 and out.splitlines() == [
        str(first.parent / "monday-report" / n) for n in ("report.html", "report.md")
    ]


def test_bad_input_is_one_line_and_exit_2(committed, two_records, tmp_path, capsys):
    _, first, _ = two_records
    fp = committed / "ltrc.fp.safetensors"
    truncated = tmp_path / "truncated.json"
    truncated.write_text(first.read_text()[:500])
    for args, message in [
        (["report", "--record", str(truncated), "--fingerprint", str(fp)], "not JSON"),
        (["report", "--record", str(first)], "add --fingerprint FP"),
        (["report", str(tmp_path), "--record", str(first), "--fingerprint", str(fp)], "goes to --out"),
        (["report", "--fingerprint", str(fp)], "give a benchmark folder DIR, or --record"),
    ]:
        code, out, err = run(args, capsys)
        assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, (args, err)
    with pytest.raises(RecordError):
        write_dispute_report([truncated], fp, tmp_path / "x")
    with pytest.raises(ParameterError, match="at least one"):
        write_dispute_report([], fp, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_strings_from_a_record_cannot_inject_markup(committed, two_records, tmp_path):
    _, first, _ = two_records
    record = json.loads(first.read_text())
    record["suspect"]["location"] = "<script>alert(1)</script>`](javascript:x)|\x1b[31m"
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(record))  # the suspect's description is outside the hash chain
    made = write_dispute_report([hostile], committed / "ltrc.fp.safetensors", tmp_path / "r")
    page = made.html.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x1b" not in made.markdown.read_text() and "\\x1b[31m" in made.markdown.read_text()
    assert shown("a`b|c" + "x" * 500) == "a'b/c" + "x" * 154 + "…"
