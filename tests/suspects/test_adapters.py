"""The same suspect through every adapter gives the same evidence and the same verdict."""

import json

import numpy as np
import pytest
import torch

from modelprint.cli import main
from modelprint.errors import ParameterError, SuspectError
from modelprint.fingerprints import method_of
from modelprint.serve import create_app, serve_background
from modelprint.suspects import (
    SUSPECTS,
    HttpSuspect,
    ModelFileSuspect,
    OnnxSuspect,
    TorchScriptSuspect,
    TorchSuspect,
    as_suspect,
    open_suspect,
    suspect_type,
)
from modelprint.verify import verify


def test_every_adapter_is_registered_and_chosen_by_suffix_or_scheme(tmp_path):
    assert set(SUSPECTS.names()) == {"torch", "model", "onnx", "torchscript", "http"}
    assert suspect_type("a.onnx") == "onnx" and suspect_type("a.pt") == "torchscript"
    assert suspect_type("a.safetensors") == "model" and suspect_type("zoo/models/m") == "model"
    assert suspect_type("https://api.example.com/v1") == "http"
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ParameterError, match="pass `kind`"):
        suspect_type(tmp_path / "m.tflite")
    with pytest.raises(ParameterError, match="http"):
        HttpSuspect("ftp://example.com")


def _all_suspects(forms, zoo_source, url, url_labels):
    return {
        "torch": TorchSuspect(zoo_source),
        "model": open_suspect(forms["model"]),
        "onnx": open_suspect(forms["onnx"]),
        "torchscript": open_suspect(forms["torchscript"]),
        "http": open_suspect(url),
        "http-labels": open_suspect(url_labels),
    }


def test_same_evidence_and_verdict_through_every_adapter(forms, zoo_source, label_fp, score_fp, negatives):
    with (
        serve_background(create_app(zoo_source)) as url,
        serve_background(create_app(zoo_source, labels_only=True)) as url_labels,
    ):
        suspects = _all_suspects(forms, zoo_source, url, url_labels)
        # the contract covers every registered adapter: a new one must be added to _all_suspects
        assert {kind.split("-")[0] for kind in suspects} == set(SUSPECTS.names())
        assert type(suspects["model"]) is ModelFileSuspect and type(suspects["onnx"]) is OnnxSuspect
        assert type(suspects["torchscript"]) is TorchScriptSuspect and suspects["http-labels"].labels_only
        # the exported files carry the card: shape and classes are known before any query
        assert suspects["onnx"].input_shape == suspects["torchscript"].input_shape == zoo_source.card.input_shape
        # labels: bit-identical evidence, the same p-value and verdict, queries counted
        results = {k: verify(label_fp, s) for k, s in suspects.items()}
        reference = results["model"]
        assert reference.verdict == "match" and reference.statistic > 0.9
        for kind, r in results.items():
            assert r.evidence == reference.evidence, kind
            assert (r.verdict, r.p_value, r.queries) == (reference.verdict, reference.p_value, 40), kind
            assert r.suspect["type"] == kind.split("-")[0] and r.suspect["queries"] == 40
        assert results["http"].suspect["requests"] == 2  # /v1/info + one batch of 40
        # an independent model through the API: no match there either
        with serve_background(create_app(negatives[0])) as neg_url:
            assert verify(label_fp, open_suspect(neg_url)).verdict == verify(label_fp, negatives[0]).verdict
        # scores (MetaV): the same score to float precision and the same verdict; label-only refused
        scored = {k: verify(score_fp, s) for k, s in suspects.items() if k != "http-labels"}
        for kind, r in scored.items():
            assert r.statistic == pytest.approx(scored["model"].statistic, abs=1e-5), kind
            assert r.verdict == scored["model"].verdict, kind
        assert scored["http"].statistic == scored["torch"].statistic  # JSON carries float32 exactly
        with pytest.raises(SuspectError, match="labels only"):
            verify(score_fp, suspects["http-labels"])


def test_sequential_budget_over_http_spends_fewer_queries(zoo_source, label_fp, negatives):
    # With 6 reference models theta* is near 1: an independent model's no-match decides early.
    with serve_background(create_app(negatives[5])) as url:
        api = HttpSuspect(url, max_queries=40)
        r = verify(label_fp, api, fpr=0.01, max_queries=40, batch=5)
        assert r.verdict == "no-match" and r.queries < 40 and r.suspect["queries_sent"] == r.queries
        assert r.suspect["requests"] == 1 + r.queries // 5  # /v1/info, then one request per batch
        assert r.evidence == verify(label_fp, negatives[5], fpr=0.01, max_queries=40, batch=5).evidence
    with serve_background(create_app(zoo_source)) as url:
        # the adapter's own budget holds even if a caller asks for more
        with pytest.raises(SuspectError, match="budget"):
            HttpSuspect(url, max_queries=10).predict(label_fp.x[:20])


def test_white_box_methods_refuse_suspects_without_weights(forms, zoo_source):
    fp = create_weight_fp(zoo_source)
    assert method_of(fp).evidence(fp, open_suspect(forms["model"])).values[0] == pytest.approx(1.0)
    with pytest.raises(SuspectError, match="does not expose"):
        method_of(fp).evidence(fp, open_suspect(forms["onnx"]))


def create_weight_fp(model):
    from modelprint.fingerprints import create_method

    return create_method("weight-cosine").generate(model, n=1, seed=0, progress=False)


def test_a_plain_module_is_a_suspect_too(zoo_source, label_fp):
    net = torch.nn.Sequential(zoo_source)  # no card: shape and classes come from the fingerprint and answers
    plain = as_suspect(net)
    assert plain.input_shape is None and plain.model is None
    r = verify(label_fp, plain)
    assert r.evidence == verify(label_fp, zoo_source).evidence
    with pytest.raises(SuspectError, match="a model"):
        as_suspect("model.safetensors")


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, *capsys.readouterr()


def test_cli_verify_every_form(forms, zoo_source, label_fp, tmp_path, capsys):
    fp_path = tmp_path / "c.fp.safetensors"
    label_fp.save(fp_path)
    outs = {}
    with serve_background(create_app(zoo_source, labels_only=True, token="s3cret")) as url:
        for kind, target in {**{k: str(v) for k, v in forms.items()}, "http": url}.items():
            extra = ["--token", "s3cret"] if kind == "http" else []
            code, out, err = _run(["verify", str(fp_path), target, "--json", *extra], capsys)
            assert code == 0, err
            outs[kind] = json.loads(out)
        code, out, err = _run(["verify", str(fp_path), url], capsys)  # no token
        assert code == 2 and "token" in err and out == ""
        code, out, err = _run(["verify", str(fp_path), url, "--token", "s3cret"], capsys)
        assert code == 0 and "suspect: http" in out and "labels only" in out
    assert {o["verdict"] for o in outs.values()} == {"match"}
    assert len({o["matching_rate"] for o in outs.values()}) == 1
    assert outs["http"]["suspect"]["labels_only"] and outs["onnx"]["suspect"]["type"] == "onnx"
    # a file that is not what its suffix says: one line, exit 2
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    code, out, err = _run(["verify", str(fp_path), str(bad)], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_nested_list_requests_answer_like_base64(zoo_source, label_fp):
    with serve_background(create_app(zoo_source)) as url:
        a = HttpSuspect(url).predict(label_fp.x)
        b = HttpSuspect(url, nested=True, batch_size=7).predict(label_fp.x)
    assert torch.equal(a.labels, b.labels) and np.array_equal(a.probs.numpy(), b.probs.numpy())


def test_the_serve_command_answers_verify(forms, label_fp, tmp_path, capsys):
    """`modelprint serve` as a user starts it: its own process, a token from the environment."""
    from .conftest import start_serve

    proc, port = start_serve(forms["model"], "--labels-only", env={"MODELPRINT_SERVE_TOKEN": "s3cret"})
    try:
        fp_path = tmp_path / "c.fp.safetensors"
        label_fp.save(fp_path)
        url = f"http://127.0.0.1:{port}"
        code, out, err = _run(["verify", str(fp_path), url, "--token", "s3cret", "--json"], capsys)
        assert code == 0, err
        result = json.loads(out)
        assert result["verdict"] == "match" and result["suspect"]["labels_only"] and result["queries"] == 40
    finally:
        proc.terminate()
        banner = proc.communicate(timeout=30)[0].decode()
    assert "labels only, bearer token required" in banner and f":{port}/v1/predict" in banner
    code, out, err = _run(["serve", str(tmp_path / "missing.safetensors")], capsys)
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_a_graph_that_ends_in_softmax_is_read_as_probabilities(zoo_source, label_fp, score_fp, tmp_path):
    import copy

    from modelprint.export import export_model

    with_softmax = copy.deepcopy(zoo_source)
    with_softmax.net = torch.nn.Sequential(with_softmax.net, torch.nn.Softmax(dim=1))
    path = export_model(with_softmax, tmp_path / "softmax.onnx", "onnx")
    reference = verify(score_fp, zoo_source)
    as_probs = verify(score_fp, OnnxSuspect(path, outputs="probabilities"))
    assert as_probs.statistic == pytest.approx(reference.statistic, abs=1e-5)
    # read as logits, the softmax would be applied twice: labels survive, scores do not
    assert verify(label_fp, OnnxSuspect(path)).evidence == verify(label_fp, zoo_source).evidence
    twice = verify(score_fp, OnnxSuspect(path)).statistic
    assert abs(twice - reference.statistic) > 1e-3
    with pytest.raises(ParameterError, match="outputs"):
        OnnxSuspect(path, outputs="logprobs")
