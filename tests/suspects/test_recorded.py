"""Recorded verifications through every kind of suspect, audited without it."""

from modelprint.record import audit, read_record, recorded_verify
from modelprint.serve import create_app, serve_background
from modelprint.suspects import open_suspect


def test_onnx_and_http_records_audit_as_reproduced(forms, zoo_source, label_fp, tmp_path):
    fp = tmp_path / "c.fp.safetensors"
    label_fp.save(fp)
    with (
        serve_background(create_app(zoo_source)) as url,
        serve_background(create_app(zoo_source, labels_only=True)) as url_labels,
    ):
        for kind, location in (("onnx", forms["onnx"]), ("http", url), ("http-labels", url_labels)):
            record = tmp_path / f"{kind}.json"
            verdict = recorded_verify(fp, open_suspect(str(location)), record)
            entries = read_record(record)["entries"]
            assert verdict.verdict == "match" and len(entries) == verdict.queries == len(label_fp), kind
            assert (entries[0]["probs"] is None) == (kind == "http-labels"), kind
            result = audit(record, fp)
            assert result.reproduced, (kind, result.differences)


def test_an_api_that_changes_its_answers_leaves_two_records_that_each_reproduce(
    zoo_source, negatives, label_fp, tmp_path
):
    fp = tmp_path / "c.fp.safetensors"
    label_fp.save(fp)
    records = []
    for model in (zoo_source, negatives[0]):  # the same API, its model swapped between two verifications
        with serve_background(create_app(model)) as url:
            record = tmp_path / f"{len(records)}.json"
            verdict = recorded_verify(fp, open_suspect(url), record)
            records.append((record, verdict.verdict))
    assert [v for _, v in records] == ["match", "no-match"]
    first, second = (read_record(r)["entries"] for r, _ in records)
    assert [e["label"] for e in first[:10]] != [e["label"] for e in second[:10]]
    for record, verdict in records:
        result = audit(record, fp)
        assert result.reproduced and result.recomputed["verdict"] == verdict, result.differences
