"""The command line: contract shapes, JSON output and one-line errors with exit code 2."""

import json
import re

import pytest
from cli_run import run

from modelprint.cli.main import _expand_multi_value
from modelprint.fingerprints import Fingerprint
from modelprint.models import save_model
from modelprint.reference import reference_models


@pytest.fixture()
def files(fresh, independent, tmp_path):
    src = save_model(fresh, tmp_path / "src")
    neg = save_model(independent, tmp_path / "neg")
    return tmp_path, src, neg


def test_help_lists_the_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for cmd in ("demo", "train", "fingerprint", "attack", "verify", "evaluate"):
        assert cmd in out


def test_owner_and_verifier_flow(files, capsys):
    tmp, src, neg = files
    code, out, _ = run(
        [
            "fingerprint",
            "create",
            str(src),
            "--method",
            "ltrc",
            "--param",
            "steps=100",
            "--n",
            "20",
            "--seed",
            "0",
            "--out",
            str(tmp / "fp.fp.safetensors"),
        ],
        capsys,
    )
    assert code == 0 and out.startswith("sha256 ")
    code, out, _ = run(
        ["attack", "prune", str(src), "--param", "rate=0.3", "--seed", "0", "--out", str(tmp / "pruned")], capsys
    )
    assert code == 0
    code, out, _ = run(["verify", str(tmp / "fp.fp.safetensors"), str(tmp / "pruned.safetensors"), "--json"], capsys)
    result = json.loads(out)
    # Not calibrated: however well the copy matches, no verdict without a null (exit code 3).
    assert code == 3 and result["verdict"] == "inconclusive" and result["matching_rate"] >= 0.9
    assert not result["calibrated"] and "calibrate" in result["reason"]
    assert {"matching_rate", "n", "p_value", "threshold", "verdict", "queries", "reason"} <= set(result)
    code, out, _ = run(["fingerprint", "show", str(tmp / "fp.fp.safetensors"), "--json"], capsys)
    assert code == 0 and json.loads(out)["method"] == "ltrc"


def test_evaluate_json(files, capsys):
    tmp, src, neg = files
    code, out, _ = run(
        [
            "evaluate",
            str(src),
            "--methods",
            "c",
            "--param",
            "c.steps=50",
            "--n",
            "10",
            "--prune-rates",
            "0.2",
            "--negatives",
            str(neg),
            str(neg),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    res = json.loads(out)["c"]
    assert {"robustness", "transferability", "uniqueness", "auc", "f1"} <= set(res)
    assert len(res["negative_rates"]) == 2


def test_train_writes_a_model(tmp_path, capsys):
    code, _, _ = run(
        [
            "train",
            "--data",
            "digits",
            "--arch",
            "cnn",
            "--arch-arg",
            "width=4",
            "--epochs",
            "1",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
    )
    card = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and card["arch_args"] == {"width": 4} and card["split"] == "owner"
    assert card["train_seconds"] > 0 and card["training"]["optimizer"] == "sgd"


def test_train_takes_the_architectures_defaults_unless_told(tmp_path, capsys):
    common = ["train", "--data", "digits", "--arch", "vit-tiny", "--arch-arg", "width=8", "--arch-arg", "depth=1"]
    common += ["--epochs", "1", "--seed", "0", "--train-subset", "200"]
    code, _, err = run([*common, "--out", str(tmp_path / "v")], capsys)
    card = json.loads((tmp_path / "v.json").read_text())
    assert code == 0, err
    assert (card["training"]["optimizer"], card["training"]["epochs"], card["training"]["lr"]) == ("adam", 2, 0.002)
    code, _, err = run([*common, "--optimizer", "sgd", "--lr", "0.01", "--out", str(tmp_path / "s")], capsys)
    card = json.loads((tmp_path / "s.json").read_text())
    assert code == 0 and (card["training"]["optimizer"], card["training"]["lr"]) == ("sgd", 0.01)


def _one_line_error(code, err):
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    _one_line_error(*run(["verify", str(tmp_path / "no.fp"), str(tmp_path / "no.safetensors")], capsys)[::2])


def test_corrupt_safetensors(files, capsys):
    tmp, src, neg = files
    (tmp / "bad.fp.safetensors").write_bytes(b"\x00" * 40)
    _one_line_error(*run(["verify", str(tmp / "bad.fp.safetensors"), str(src)], capsys)[::2])
    src.write_bytes(b"garbage")
    _one_line_error(
        *run(["fingerprint", "create", str(src), "--method", "c", "--seed", "0", "--out", str(tmp / "x")], capsys)[::2]
    )


def test_wrong_shape(files, capsys, tmp_path):
    from modelprint.models import create_model

    tmp, src, neg = files
    assert (
        run(
            [
                "fingerprint",
                "create",
                str(src),
                "--method",
                "c",
                "--param",
                "steps=5",
                "--n",
                "4",
                "--seed",
                "0",
                "--out",
                str(tmp / "fp"),
            ],
            capsys,
        )[0]
        == 0
    )
    big = save_model(create_model("cnn", num_classes=10, input_shape=(3, 32, 32), width=4), tmp / "big")
    code, _, err = run(["verify", str(tmp / "fp"), str(big)], capsys)
    _one_line_error(code, err)
    assert "input shape" in err


def test_unknown_method_and_bad_param(files, capsys):
    tmp, src, neg = files
    code, _, err = run(
        ["fingerprint", "create", str(src), "--method", "nope", "--seed", "0", "--out", str(tmp / "x")], capsys
    )
    _one_line_error(code, err)
    assert "choose one of" in err
    code, _, err = run(
        ["fingerprint", "create", str(src), "--method", "c", "--param", "oops", "--seed", "0", "--out", str(tmp / "x")],
        capsys,
    )
    _one_line_error(code, err)
    assert not (tmp / "x").exists()


def test_multi_value_options_are_expanded():
    args = ["evaluate", "m", "--positives", "a", "b", "--negatives", "c", "--json"]
    assert _expand_multi_value(args) == [
        "evaluate",
        "m",
        "--positives",
        "a",
        "--positives",
        "b",
        "--negatives",
        "c",
        "--json",
    ]


def test_fast_demo_runs_end_to_end(tmp_path):
    from modelprint.demo import run_demo
    from modelprint.fingerprints import Fingerprint

    summary = run_demo(tmp_path / "demo", fast=True)
    assert set(summary["results"]) == {"c", "rc", "rcgm", "ltrc"}
    assert (tmp_path / "demo" / "results.json").exists()
    assert len(list((tmp_path / "demo" / "fingerprints").glob("*.fp.safetensors"))) == 5
    for r in summary["results"].values():
        assert r["source_rate"] == 1.0
    report = tmp_path / "demo" / "bench" / "report.html"
    assert summary["zoo"]["report"] == str(report) and report.is_file()
    assert set(summary["zoo"]["aruc"]) == {"c", "rc", "rcgm", "ltrc"}
    assert summary["tuned"]["ltrc"]["k"] in (2, 6)  # chosen on the owner's references, not hand-set
    fp = Fingerprint.load(tmp_path / "demo" / "fingerprints" / "ltrc.fp.safetensors")
    assert fp.meta["tuning"]["table"] and fp.meta["null"]["n_models"] == 3
    assert set(summary["verdicts"].values()) <= {"match", "no-match", "inconclusive"}
    white = summary["whitebox"]["suspects"]  # the white-box mark: kept by fine-tuning, erased by an overwrite
    assert white["the marked model"]["verdict"] == "match" and white["an SGD fine-tuned copy"]["verdict"] == "match"
    assert white["an independent model"]["verdict"] == "no-match"
    assert white["a copy after spectral-reset (the adaptive attack)"]["score"] == 0.0
    assert Fingerprint.load(tmp_path / "demo" / "fingerprints" / "frequency.fp.safetensors").meta["null"]


def test_attack_that_trains_uses_the_attack_split_and_records_accuracy(files, capsys):
    tmp, src, _ = files
    args = ["attack", "finetune", str(src), "--param", "mode=rtll", "--param", "epochs=2", "--data", "digits"]
    code, _, err = run([*args, "--seed", "1", "--out", str(tmp / "ft")], capsys)
    assert code == 0, err
    card = json.loads((tmp / "ft.json").read_text())
    assert card["lineage"][-1]["recipe"]["mode"] == "rtll" and card["accuracy"] is not None
    code, _, err = run(["attack", "finetune", str(src), "--out", str(tmp / "x")], capsys)
    assert code == 2 and "needs data" in err and not (tmp / "x.safetensors").exists()
    code, _, err = run(["attack", "distill", str(src), "--param", "arch=nope", "--out", str(tmp / "x")], capsys)
    assert code == 2 and "unknown architecture 'nope'" in err


def test_evaluate_on_a_zoo(tmp_path, capsys):
    from modelprint.zoo.build import build_zoo

    from .conftest import TINY_SPEC

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC)
    build_zoo(spec, tmp_path / "zoo", workers=0, progress=False)
    args = ["evaluate", "--zoo", str(tmp_path / "zoo"), "--methods", "c", "--param", "c.steps=30", "--n", "10"]
    code, out, err = run([*args, "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)["c"]
    assert len(res["positive_rates"]) == 4 and len(res["negative_rates"]) == 5  # no extra pruned copies
    by_category = res["by_category"]
    assert set(by_category) == {"source", "finetune", "prune", "distill"}
    assert by_category["finetune"]["positive"] == pytest.approx(sum(res["positive_rates"][:2]) / 2)
    assert by_category["source"]["positive"] is None  # the source is not its own positive
    code, _, err = run(["evaluate", "--methods", "c"], capsys)
    assert code == 2 and "--zoo" in err


@pytest.fixture()
def calibrated_flow(files, negatives, capsys):
    tmp, src, _ = files
    negs = [str(save_model(m, tmp / f"neg{i}")) for i, m in enumerate(negatives[:5])]
    fp = tmp / "fp.fp.safetensors"
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=100", "--n", "40"]
    assert run([*args, "--seed", "0", "--out", str(fp)], capsys)[0] == 0
    code, out, err = run(["fingerprint", "calibrate", str(fp), "--negatives", *negs, "--out", str(fp)], capsys)
    assert code == 0, err
    assert "null (beta-binomial) from 5 independent models" in err
    return tmp, src, fp, out.split()[1]


def test_calibrate_then_verify_json_and_commitment(calibrated_flow, negatives, capsys):
    tmp, src, fp, digest = calibrated_flow
    code, out, _ = run(["fingerprint", "commit", str(fp)], capsys)
    assert code == 0 and out.split()[0] == digest
    suspect = save_model(negatives[5], tmp / "suspect")
    code, out, err = run(["verify", str(fp), str(suspect), "--fpr", "0.01", "--commitment", digest, "--json"], capsys)
    assert code == 1, err  # no-match
    res = json.loads(out)
    assert {"statistic", "matching_rate", "n", "p_value", "fpr", "threshold", "verdict", "queries", "null"} <= set(res)
    assert res["verdict"] == "no-match" and res["fpr"] == 0.01 and res["null"]["n_models"] == 5
    assert res["null"]["calibrated"] and res["fingerprint_sha256"] == digest
    code, _, err = run(["verify", str(fp), str(suspect), "--commitment", "0" * 64], capsys)
    _one_line_error(code, err)
    assert "not the committed file" in err
    code, out, err = run(["verify", str(fp), str(suspect), "--fpr", "0.01", "--max-queries", "40"], capsys)
    assert code == 1 and out.startswith("no-match") and "sequential: stopped after" in out


def test_verify_human_output_explains_the_null(calibrated_flow, capsys):
    tmp, src, fp, _ = calibrated_flow
    code, out, err = run(["verify", str(fp), str(src), "--fpr", "0.01"], capsys)
    assert code == 0 and "null: beta-binomial fitted on 5 independent models" in out and "warning" not in err


def test_uncalibrated_verify_warns(files, capsys):
    tmp, src, _ = files
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=20", "--n", "10", "--seed", "0"]
    assert run([*args, "--out", str(tmp / "u.fp")], capsys)[0] == 0
    code, out, err = run(["verify", str(tmp / "u.fp"), str(src)], capsys)
    # The source itself agrees 10/10, far above chance: still no match without a fitted null.
    assert code == 3 and out.startswith("inconclusive: matching rate 1.00") and "not calibrated" in err
    assert "why: this fingerprint is not calibrated" in out and "chance" in out
    code, out, _ = run(["verify", str(tmp / "u.fp"), str(src), "--threshold", "0.5", "--json"], capsys)
    assert code == 3 and json.loads(out)["verdict"] == "inconclusive"  # a threshold is no null either


def test_nan_model_and_directory_are_clear_errors(files, capsys):
    import torch

    tmp, src, neg = files
    assert run(["fingerprint", "create", str(src), "--method", "c", "--param", "steps=5", "--n", "4", "--seed", "0",
         "--out", str(tmp / "fp")], capsys)[0] == 0  # fmt: skip
    from modelprint.models import load_model

    broken = load_model(neg)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    nan_path = save_model(broken, tmp / "nan")
    code, _, err = run(["verify", str(tmp / "fp"), str(nan_path)], capsys)
    _one_line_error(code, err)
    assert "not finite" in err
    for folder in (tmp, "."):
        code, _, err = run(["verify", str(tmp / "fp"), str(folder)], capsys)
        _one_line_error(code, err)
        assert "is a folder" in err


def test_calibrate_with_reference_models(files, capsys):
    tmp, src, _ = files
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=20", "--n", "10", "--seed", "0"]
    assert run([*args, "--out", str(tmp / "r.fp")], capsys)[0] == 0
    code, out, err = run(
        ["fingerprint", "calibrate", str(tmp / "r.fp"), "--reference-models", "3", "--reference-arch", "cnn:width=4",
         "--epochs", "1", "--out", str(tmp / "rc.fp")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    # Each FPR gets a number or a plain sentence: with 10 queries, 10/10 is rare at 1e-2 only if the
    # three references agree little; at 1e-3 the sentence says how many references would reach it.
    said = " ".join(err.split())  # the console wraps long lines
    for fpr in ("0.01", "0.001"):
        needs = re.search(rf"a match needs .*?(\d\.\d\d) at FPR {fpr}\b", said)
        cannot = re.search(
            rf"nothing can be called a match at FPR {fpr} with 3 reference models: .*?(\d+ reference|no number)", said
        )
        assert needs or cannot, (fpr, said)
    assert "- at FPR" not in said
    kept = sorted(p.name for p in (tmp / "rc-reference" / "models").glob("*.safetensors"))
    assert len(kept) == 3 and (tmp / "rc-reference" / "reference.json").is_file()
    code, out, _ = run(["fingerprint", "show", str(tmp / "rc.fp"), "--json"], capsys)
    null = json.loads(out)["null"]
    assert code == 0
    assert null["n_models"] == 3 and "reference" in null["source"] and len(set(null["sha256"])) == 3
    code, _, err = run(["fingerprint", "calibrate", str(tmp / "r.fp"), "--out", str(tmp / "x")], capsys)
    _one_line_error(code, err)
    assert not (tmp / "x").exists()
    # the folder --reference-models left is a reference set: the next fingerprint of this source
    # calibrates on it with --references (its models as --negatives too), with the same null
    folder = str(tmp / "rc-reference")
    for flag, path in (("--references", folder), ("--negatives", folder + "/models")):
        again = ["fingerprint", "calibrate", str(tmp / "r.fp"), flag, path, "--out", str(tmp / "again.fp")]
        code, _, err = run(again, capsys)
        assert code == 0, err
        code, out, _ = run(["fingerprint", "show", str(tmp / "again.fp"), "--json"], capsys)
        assert sorted(json.loads(out)["null"]["sha256"]) == sorted(null["sha256"])  # the same three models
    # near misses say which flag takes what, instead of "Input should be a valid integer"
    near_misses = [
        ("--reference-models", folder, "--references DIR"),
        ("--references", folder + "/models", "pass the folder as --negatives"),
    ]
    for flag, path, hint in near_misses:
        code, _, err = run(["fingerprint", "calibrate", str(tmp / "r.fp"), flag, path, "--out", str(tmp / "y")], capsys)
        _one_line_error(code, err)
        assert hint in err, err


def test_gan_train_writes_weights_card_and_grid_and_no_checkpoint(tmp_path, capsys):
    out = tmp_path / "gan"
    code, _, err = run(
        ["gan", "train", "--data", "digits", "--steps", "3", "--width", "16", "--batch-size", "8",
         "--seed", "0", "--out", str(out)], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"gan.safetensors", "gan.json", "gan.png"}
    card = json.loads((tmp_path / "gan.json").read_text())
    assert card["split"] == "owner" and card["config"]["steps"] == 3
    code, _, err = run(["gan", "train", "--split", "attacker", "--seed", "0", "--out", str(out)], capsys)
    assert code == 2 and "owner" in err


def test_stealth_reports_a_rate_per_fingerprint(files, capsys):
    tmp, src, _ = files
    fp = tmp / "c.fp.safetensors"
    assert run(["fingerprint", "create", str(src), "--method", "c", "--param", "steps=20", "--n", "10",
                "--seed", "0", "--out", str(fp)], capsys)[0] == 0  # fmt: skip
    code, out, err = run(["stealth", str(fp), "--model", str(src), "--clean", "100", "--seeds", "1", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result["methods"]) == {"c"} and 0 <= result["methods"]["c"]["mean"] <= 1
    code, _, err = run(["stealth", str(tmp), "--model", str(src)], capsys)
    assert code == 2 and "fingerprints" in err


def test_list_shows_the_layers_that_can_host_the_frequency_module(capsys):
    code, out, _ = run(["list", "--hosts", "cnn", "--input-shape", "1,16,16"], capsys)
    assert code == 0 and out.splitlines() == ["features.0\t1 -> 32 channels", "features.4\t32 -> 64 channels"]
    code, _, err = run(["list", "--hosts", "cnn", "--input-shape", "16"], capsys)
    assert code == 2 and "C,H,W" in err


def test_frequency_fingerprint_create_marks_the_model_and_verify_reads_it(files, capsys):
    tmp, src, _ = files
    fp = tmp / "owner.fq.fp.safetensors"
    code, _, err = run(["fingerprint", "create", str(src), "--method", "frequency", "--seed", "7", "--out", str(fp)],
                       capsys)  # fmt: skip
    assert code == 2 and "--host" in err
    code, out, err = run(
        ["fingerprint", "create", str(src), "--method", "frequency", "--host", "features.0", "--mark", "epochs=1",
         "--mark", "aux_class=false", "--n", "8", "--seed", "7", "--out", str(fp)], capsys,
    )  # fmt: skip
    assert code == 0, err
    marked = tmp / "owner.marked.safetensors"
    assert marked.is_file() and json.loads(marked.with_suffix(".json").read_text())["arch_args"]["frequency"]
    code, out, err = run(["verify", str(fp), str(marked), "--json"], capsys)
    assert code == 3, err  # uncalibrated: inconclusive, whatever the score
    result = json.loads(out)
    assert result["statistic"] == 1.0 and result["queries"] == 0 and result["verdict"] == "inconclusive"
    code, out, _ = run(["verify", str(fp), str(src), "--json"], capsys)
    assert code == 3 and json.loads(out)["statistic"] == 0.0
    # Calibration: reference models get their own owner's output-neutral mark (other keys), so the
    # null describes independent marked models; the marked model is then a match with a p-value.
    references = ["--reference-models", "3", "--reference-arch", "cnn:width=8", "--epochs", "1"]
    code, out, err = run(["fingerprint", "calibrate", str(fp), *references, "--out", str(fp)], capsys)
    assert code == 0, err
    refs = [m.card for m in reference_models(tmp / "owner-reference", Fingerprint.load(fp))]
    keys = [card.lineage[-1]["recipe"]["key"] for card in refs]
    assert len(refs) == 3 and len(set(keys)) == 3 and 7 not in keys
    assert all(card.arch_args["frequency"]["host"] == "features.0" for card in refs)
    code, out, err = run(["verify", str(fp), str(marked), "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["verdict"] == "match" and result["p_value"] < 1e-3 and result["null"]["calibrated"]
    code, out, _ = run(["verify", str(fp), str(src), "--json"], capsys)
    assert code == 1 and json.loads(out)["verdict"] == "no-match"


# -- bad input: one line and exit 2, never a traceback ---------------------------------------------


@pytest.fixture()
def small_fp(files, capsys):
    tmp, src, _ = files
    fp = tmp / "small.fp.safetensors"
    args = ["fingerprint", "create", str(src), "--method", "c", "--param", "steps=5", "--n", "10", "--seed", "0"]
    assert run([*args, "--out", str(fp)], capsys)[0] == 0
    return fp


def _one_line_error(code, err, *needles):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def test_an_output_path_under_a_regular_file_is_one_line_before_any_work(files, small_fp, capsys):
    tmp, src, neg = files
    (tmp / "afile").write_text("x")
    under = str(tmp / "afile" / "dir" / "f")
    cases = [
        ["fingerprint", "create", str(src), "--method", "c", "--n", "5", "--seed", "0", "--out", under],
        ["export", str(src), "--format", "onnx", "--out", under + ".onnx"],
        ["train", "--arch", "cnn", "--data", "digits:8", "--seed", "0", "--epochs", "1", "--out", under],
        ["attack", "prune", str(src), "--param", "rate=0.3", "--out", under],
        ["fingerprint", "calibrate", str(small_fp), "--reference-models", "3", "--reference-dir", under,
         "--out", str(tmp / "c.fp.safetensors")],
        ["zoo", "build", "smoke-digits", "--out", str(tmp / "afile"), "--workers", "0"],
    ]  # fmt: skip
    for args in cases:
        code, _, err = run(args, capsys)
        _one_line_error(code, err, "afile")
    assert not list(tmp.glob("*reference*")) and (tmp / "afile").read_text() == "x"


def test_numeric_options_must_be_finite_and_in_range(files, small_fp, capsys):
    tmp, src, neg = files
    for args, needle in [
        (["verify", str(small_fp), str(neg), "--threshold", "nan"], "threshold"),
        (["verify", str(small_fp), "http://127.0.0.1:9", "--timeout", "inf"], "timeout"),
        (["serve", str(src), "--max-request-mb", "nan"], "--max-request-mb"),
        (["serve", str(src), "--max-request-mb", "inf"], "--max-request-mb"),
        (["serve", str(src), "--read-timeout", "0"], "--read-timeout"),
        (
            ["train", "--arch", "cnn", "--data", "digits:8", "--seed", "0", "--epochs", "-1", "--out", str(tmp / "m")],
            "epochs",
        ),
    ]:
        code, _, err = run(args, capsys)
        _one_line_error(code, err, needle)
    assert not (tmp / "m.safetensors").exists()


def _rewrite_meta(fp_path, out_path, change):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(fp_path), framework="pt") as f:
        header = json.loads(f.metadata()["modelprint"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    header, tensors = change(header, tensors)
    save_file(tensors, str(out_path), metadata={"modelprint": json.dumps(header)})
    return out_path


def test_a_tampered_fingerprint_is_one_line_in_show_and_verify(files, small_fp, capsys):
    tmp, _, neg = files

    def meta(value):
        return lambda h, t: ({**h, "meta": value(h["meta"])}, t)

    def labels(h, t):
        t["y"][0] = 99
        return h, t

    cases = {
        "list": meta(lambda m: [1, 2]),
        "null-no-mean": meta(lambda m: {**m, "null": {"family": "beta-binomial", "rho": 0.1, "n_models": 5}}),
        "null-string": meta(lambda m: {**m, "null": "tight"}),
        "null-nan": meta(lambda m: {**m, "null": {"family": "normal", "mean": float("nan"), "sd": 1, "n_models": 5}}),
        "label-99": labels,
    }
    for name, change in cases.items():
        path = _rewrite_meta(small_fp, tmp / f"{name}.fp.safetensors", change)
        for args in (["fingerprint", "show", str(path)], ["verify", str(path), str(neg)]):
            code, _, err = run(args, capsys)
            _one_line_error(code, err, "damaged or was not written by modelprint")
    from modelprint.fingerprints import METHODS

    for method in METHODS.names():  # the header's method swapped for every other one
        path = _rewrite_meta(
            small_fp, tmp / f"swap-{method}.fp.safetensors", meta(lambda m, name=method: {**m, "method": name})
        )
        code, out, err = run(["verify", str(path), str(neg), "--json"], capsys)
        assert code in (0, 1, 3, 2), (method, err)  # a verdict or one line, never a crash (70)
        if code == 2:
            _one_line_error(code, err)


def test_control_characters_from_files_are_escaped_when_printed(files, small_fp, capsys):
    tmp, _, _ = files
    path = _rewrite_meta(small_fp, tmp / "esc.fp.safetensors", lambda h, t: ({**h, "meta": {**h["meta"],
                         "dataset": "digits\x1b[2J\x1b]0;owned\x07"}}, t))  # fmt: skip
    code, out, err = run(["fingerprint", "show", str(path)], capsys)
    shown = out + err  # the table goes to the console (stderr)
    assert code == 0 and "\x1b" not in shown and "\\x1b[2J" in shown
    spec = tmp / "esc.toml"
    spec.write_text('name = "evil\\u001b[2J"\n[[models]]\narch = "cnn"\nrole = "positive"\ncategory = "source"\n')
    code, _, err = run(["zoo", "build", str(spec), "--out", str(tmp / "z"), "--workers", "0"], capsys)
    _one_line_error(code, err, "control characters")
    assert "\x1b" not in err


def test_method_params_keep_hyphenated_method_names():
    from modelprint.cli.common import method_params as _method_params
    from modelprint.errors import ParameterError

    params = _method_params(["sac-m.output=logits", "weight-cosine.min-layers=2", "ltrc.k=8"])
    assert params == {"sac-m": {"output": "logits"}, "weight-cosine": {"min_layers": 2}, "ltrc": {"k": 8}}
    with pytest.raises(ParameterError, match="METHOD.K=V"):
        _method_params(["k=8"])


def test_a_sequential_step_below_one_names_the_flag(files, small_fp, capsys):
    _, _, neg = files
    code, _, err = run(["verify", str(small_fp), str(neg), "--max-queries", "10", "--sequential-step", "-1"], capsys)
    _one_line_error(code, err, "--sequential-step must be at least 1")


def test_when_independent_models_agree_like_copies_the_advice_is_another_method():
    """Every independent MLP agreed 1.00 with C's examples and the advice was "they spread too
    widely" / "calibrate on more reference models"; more models cannot help there."""
    from modelprint.cli.common import unreachable

    agreeing = {
        "n_models": 10,
        "reference_statistics": {"min": 0.97, "mean": 0.99, "max": 1.0},
        "references_at_0.001": 40,
    }
    said = unreachable(agreeing, 1e-3)
    assert "do not separate models here" in said and "use another method" in said and "--reference-models" not in said
    spread = {"n_models": 10, "reference_statistics": {"min": 0.2, "mean": 0.5, "max": 0.8}, "references_at_0.001": 40}
    assert "--reference-models 40" in unreachable(spread, 1e-3) and "--screen" not in unreachable(spread, 1e-3)
    # a query set not yet screened is told the cheaper way too: screening on the same models
    assert "create the fingerprint with --n 200, then calibrate with --screen 100" in unreachable(
        spread, 1e-3, "c", 100
    )
    assert "--screen" not in unreachable(agreeing, 1e-3, "c", 100)  # queries that do not separate stay so
    # the advice names the methods to try instead, never the one that failed
    said = unreachable(agreeing, 1e-3, "c")
    others = said.split("use another method (")[1].split(";")[0].split(", ")
    assert "ltrc" in others and "ipguard" in others and "c" not in others


def test_create_with_tuning_warns_when_the_tuning_references_agree_like_copies(files, capsys, monkeypatch):
    """The tuning's independent reference models are there before any calibration: when they
    agree with the source like copies, creation says so and names other methods."""
    import modelprint.api as workflow

    tmp, src, _ = files

    def agreeing_tuning(source, method, *, params, negatives, **settings):
        row = {"params": {"steps": 5}, "tpr": 0.0, "aruc": 0.5, "negative_mean": 0.97}
        return {**params, "steps": 5}, {"chosen": {"steps": 5}, "table": [row], "grid": {"steps": [5]}}

    monkeypatch.setattr(workflow, "tune_method", agreeing_tuning)
    args = ["fingerprint", "create", str(src), "--method", "c", "--tune", "--n", "10", "--seed", "0"]
    code, _, err = run([*args, "--out", str(tmp / "t.fp")], capsys)
    said = " ".join(err.split())
    assert code == 0 and "the independent models score 0.97 on average" in said, said
    assert "c's queries do not separate models here" in said and "ltrc" in said
