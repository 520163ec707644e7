import base64
import json

import numpy as np
import pytest
from cli_run import run

from modelprint._io import sha256_file
from modelprint.calibrate import calibrate
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

    def garbled_probabilities(r):
        r["entries"][4]["probs"] = "not base64!"

    def short_probabilities(r):
        r["entries"][6]["probs"] = base64.b64encode(np.ones(3, dtype="<f4").tobytes()).decode()

    def wrong_commitment(r):
        r["commitment"] = "f" * 64

    expected = {
        changed_answer: "entry 3 was changed after it was recorded",
        changed_query_hash: "entry 5 was changed after it was recorded",
        deleted_entry: "entry 7 says it is entry 8",
        garbled_probabilities: "entry 4's probabilities are not base64",
        short_probabilities: "entry 6 holds 3 probabilities, not 10",
        wrong_commitment: "the record's commitment 'ffff",
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
            e["probs"] = base64.b64encode(np.eye(10, dtype="<f4")[e["label"]].tobytes()).decode()
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


@pytest.mark.parametrize("labels_only", [False, True])
def test_the_recorders_direct_encoding_is_the_canonical_one(labels_only):
    """The recorder writes each entry's JSON itself (for speed): it must be exactly what the
    audit's canonical encoder hashes, or every record would fail its own chain."""
    from modelprint.record import ChainRecorder, canonical_entry, chain_breaks, entry_hash

    rng = np.random.default_rng(0)
    recorder = ChainRecorder()
    for seconds in (0.0, 0.00012345, 1.5, 12345.678):
        x = rng.random((3, 1, 4, 4), dtype=np.float32)
        probs = None if labels_only else rng.dirichlet(np.ones(10), 3).astype(np.float32)
        recorder.answered(x, rng.integers(0, 10, 3), probs, seconds)
    for entry in recorder.entries:
        body = {k: v for k, v in entry.items() if k != "hash"}
        assert canonical_entry(**body) == json.dumps(body, sort_keys=True, separators=(",", ":"))
        assert entry_hash(entry) == entry["hash"]
    assert len(recorder.entries) == 12 and chain_breaks(recorder.entries, recorder.head) == []


@pytest.fixture(scope="module")
def second_family(source, negatives, tmp_path_factory):
    """A C fingerprint of the same source, calibrated, to combine with the LTRC one."""
    path = tmp_path_factory.mktemp("combined") / "c.fp.safetensors"
    fp = create_method("c", steps=100).generate(source, n=30, seed=1, progress=False)
    calibrate(fp, negatives[:5], origin="test negatives").save(path)
    return path


def test_a_combined_verdict_is_one_record_that_audits_with_both_fingerprints(
    committed, second_family, tmp_path, capsys
):
    from modelprint.dispute import write_dispute_report

    ltrc = committed / "ltrc.fp.safetensors"
    record = tmp_path / "combined.json"
    suspect = str(committed / "pruned.safetensors")
    commitments = ["--commitment", sha256_file(ltrc), "--commitment", sha256_file(second_family)]
    code, out, _ = run(
        ["verify", str(ltrc), str(second_family), suspect, "--record", str(record), *commitments], capsys
    )
    assert code == 0 and out.startswith("match: 2 fingerprints combined")
    saved = read_record(record)
    assert saved["fingerprint_sha256"] == [sha256_file(ltrc), sha256_file(second_family)]
    assert len(saved["entries"]) == 40 + 30 == saved["verification"]["queries"]
    code, out, _ = run(["audit", str(record), str(ltrc), str(second_family)], capsys)
    assert code == 0 and out == "reproduced: match, 2 fingerprints combined by Holm at FPR 0.001 (70 queries)\n"
    # the fingerprints in the other order: each is named, and the replay's queries no longer hash as recorded
    result = audit(record, [second_family, ltrc])
    assert (
        f"fingerprint 1 has sha256 {sha256_file(second_family)}, the record {sha256_file(ltrc)}" in result.differences
    )
    assert not result.reproduced and any("does not hash to the recorded one" in d for d in result.differences)
    code, _, err = run(["audit", str(record), str(ltrc)], capsys)
    assert code == 2 and "the record names 2 fingerprint(s); 1 given" in err
    with pytest.raises(ParameterError, match="records a combined verdict"):
        write_dispute_report([record], ltrc, tmp_path / "report")
