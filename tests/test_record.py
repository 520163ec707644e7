import json

import pytest
from cli_run import run

from modelprint._io import sha256_file
from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.record import RecordError, audit, read_record, recorded_verify
from modelprint.suspects import open_suspect


def _record(committed, tmp_path, suspect="pruned.safetensors", **settings):
    path = tmp_path / "record.json"
    suspect = open_suspect(str(committed / suspect))
    verdict = recorded_verify(committed / "ltrc.fp.safetensors", suspect, path, **settings)
    return verdict, path


def _edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_a_recorded_verification_audits_as_reproduced_without_the_suspect(committed, tmp_path):
    verdict, path = _record(committed, tmp_path)
    assert verdict.verdict == "match"
    record = read_record(path)
    assert len(record["entries"]) == verdict.queries == 40
    assert record["verification"]["verdict"] == "match" and record["entries"][0]["probs"] is not None
    result = audit(path, committed / "ltrc.fp.safetensors")
    assert result.reproduced and result.differences == [] and result.recomputed["p_value"] == verdict.p_value
    # an independent model's no-match reproduces as well; a sequential record stops where the test stopped
    verdict, path = _record(committed, tmp_path, suspect="independent.safetensors", max_queries=40, batch=10)
    assert len(read_record(path)["entries"]) == verdict.queries
    assert audit(path, committed / "ltrc.fp.safetensors").reproduced


def test_an_edit_anywhere_is_named(committed, tmp_path):
    fp = committed / "ltrc.fp.safetensors"
    _, path = _record(committed, tmp_path)
    original = path.read_text()

    def changed_answer(r):
        r["entries"][3]["label"] = (r["entries"][3]["label"] + 1) % 10

    def changed_query_hash(r):
        r["entries"][5]["input_sha256"] = "0" * 64

    def deleted_entry(r):
        del r["entries"][7]

    expected = {
        changed_answer: "entry 3 was changed after it was recorded",
        changed_query_hash: "entry 5 was changed after it was recorded",
        deleted_entry: "entry 7 says it is entry 8",
    }
    for change, message in expected.items():
        path.write_text(original)
        _edit(path, change)
        result = audit(path, fp)
        assert not result.reproduced and any(message in d for d in result.differences), (change, result.differences)
    # another fingerprint file than the one recorded, though its queries are the same
    path.write_text(original)
    other = Fingerprint.load(fp)
    other.meta["created"] = "1970-01-01T00:00:00"
    digest = other.save(tmp_path / "other.fp.safetensors")
    result = audit(path, tmp_path / "other.fp.safetensors")
    assert result.differences == [f"the fingerprint has sha256 {digest}, the record {sha256_file(fp)}"]


def test_a_rehashed_forgery_is_caught_by_the_replay(committed, tmp_path):
    """A forger who edits an answer and recomputes every hash keeps the chain whole, but the
    verdict recorded no longer follows from the answers."""
    from modelprint.record import GENESIS, entry_hash

    _, path = _record(committed, tmp_path)

    def forge(r):
        for e in r["entries"]:
            e["label"] = (e["label"] + 1) % 10
            e["probs"] = [1.0 if i == e["label"] else 0.0 for i in range(10)]
        prev = GENESIS
        for e in r["entries"]:
            e["prev"] = prev
            e["hash"] = prev = entry_hash(e)
        r["head"] = prev

    _edit(path, forge)
    result = audit(path, committed / "ltrc.fp.safetensors")
    assert not result.reproduced and any(d.startswith("verdict: recorded 'match'") for d in result.differences)


def test_a_record_that_is_not_one_is_refused(committed, tmp_path):
    _, path = _record(committed, tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RecordError, match="not JSON"):
        audit(path, committed / "ltrc.fp.safetensors")
    path.write_text("[" * 100_000 + "]" * 100_000)  # nesting deeper than the parser's recursion
    with pytest.raises(RecordError, match="not JSON"):
        read_record(path)
    path.write_text(json.dumps({"format": "modelprint-verification-record/1", "entries": "x"}))
    with pytest.raises(RecordError, match="not a verification record"):
        read_record(path)
    pruned = open_suspect(str(committed / "pruned.safetensors"))
    create_method("weight-cosine").generate(pruned.model, n=1).save(tmp_path / "wc.fp.safetensors")
    with pytest.raises(ParameterError, match="reads the suspect's weights"):
        recorded_verify(tmp_path / "wc.fp.safetensors", pruned, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()
    loaded = Fingerprint.load(committed / "ltrc.fp.safetensors")
    with pytest.raises(ParameterError, match="needs fingerprint_sha256"):
        recorded_verify(loaded, pruned, tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_the_cli_records_and_audits_with_its_exit_codes(committed, tmp_path, capsys):
    def run_cli(*args):
        return run(list(args), capsys)

    fp, record = committed / "ltrc.fp.safetensors", tmp_path / "cli-record.json"
    code, out, _ = run_cli("verify", str(fp), str(committed / "pruned.safetensors"), "--record", str(record))
    assert code == 0 and "match" in out and record.is_file()
    code, out, _ = run_cli("audit", str(record), str(fp))
    assert code == 0 and out.startswith("reproduced: match, p = ")
    _edit(record, lambda r: r["entries"][0].update(label=(r["entries"][0]["label"] + 1) % 10))
    code, out, _ = run_cli("audit", str(record), str(fp))
    assert code == 1 and "entry 0 was changed after it was recorded" in out
    record.write_text(record.read_text()[:100])
    code, _, err = run_cli("audit", str(record), str(fp))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not JSON" in err
