"""Recorded verifications through every kind of suspect, audited without it."""

import hashlib
import json
import os
import shutil
import ssl
import subprocess

import pytest
from cli_run import run

from modelprint.dispute import write_dispute_report
from modelprint.errors import SuspectError
from modelprint.models import weights_digest
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
    # the dispute report puts the two side by side, each with its own time and verdict
    made = write_dispute_report([r for r, _ in records], fp, tmp_path / "report")
    rows = [line for line in made.markdown.read_text().splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    for row, (record, verdict) in zip(rows, records):
        when = read_record(record)["created"].replace("T", " ").replace("+00:00", " UTC")
        assert when in row and f"**{verdict}**" in row and "reproduced" in row, row


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl is one of the test's system packages)."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("CI has no openssl: scripts/system-deps.sh should have installed it")
        pytest.skip("no openssl on this machine (apt-get install -y openssl)")
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_an_https_record_names_the_server_by_its_certificate(zoo_source, label_fp, certificate, tmp_path, capsys):
    cert, key = certificate
    fp = tmp_path / "c.fp.safetensors"
    label_fp.save(fp)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    with serve_background(create_app(zoo_source, disclose_sha256=True), tls=(str(cert), str(key))) as url:
        assert url.startswith("https://")
        with pytest.raises(SuspectError, match="CERTIFICATE_VERIFY_FAILED"):  # never trusted unless told
            open_suspect(url, retries=0)
        recorded_verify(fp, open_suspect(url, ca_file=str(cert)), tmp_path / "https.json")
        code, out, _ = run(["verify", str(fp), url, "--ca-file", str(cert), "--json"], capsys)  # the same from the CLI
        assert code == 0 and json.loads(out)["suspect"]["tls_certificate_sha256"] == hashlib.sha256(der).hexdigest()
    suspect = read_record(tmp_path / "https.json")["suspect"]
    assert suspect["tls_certificate_sha256"] == hashlib.sha256(der).hexdigest()
    assert suspect["tls_version"].startswith("TLSv1.") and suspect["server_headers"] == {"server": "uvicorn"}
    assert suspect["disclosed_model_sha256"] == weights_digest(zoo_source) and "identities_seen" not in suspect
    assert audit(tmp_path / "https.json", fp).reproduced
