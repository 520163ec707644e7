import json

import numpy as np
import pytest

from modelprint.bench import run_bench
from modelprint.bench.report import write_report
from modelprint.errors import ModelprintError, ParameterError, UnknownNameError
from modelprint.metrics import aruc
from modelprint.stealth import StealthConfig
from modelprint.zoo import ZooManifest

PARAMS = {"c": {"steps": 30}, "ltrc": {"steps": 30, "k": 2}}


@pytest.fixture(scope="module")
def bench_dir(reference_zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run_bench(reference_zoo, ["c", "ltrc"], out, n=20, budgets=(5, 10), method_params=PARAMS, workers=0, progress=False)
    return out


def test_results_hold_every_suspect_and_metric(bench_dir, reference_zoo):
    results = json.loads((bench_dir / "results.json").read_text())
    rows = ZooManifest.read(reference_zoo).rows
    assert [s["id"] for s in results["suspects"]] == [r["id"] for r in rows]
    assert results["budgets"] == [5, 10, 20] and results["modelprint"]
    for m in ("c", "ltrc"):
        res = results["methods"][m]
        assert res["fingerprint"]["params"]["steps"] == 30 and res["fingerprint"]["n"] == 20
        rates = {s["id"]: s["rates"][m] for s in results["suspects"]}
        assert rates[results["source"]] == 1.0  # the expected labels are the source's own answers
        pos = [rates[r["id"]] for r in rows if r["role"] == "positive" and r["id"] != results["source"]]
        neg = [rates[r["id"]] for r in rows if r["role"] == "negative"]
        metrics = res["metrics"]
        assert metrics["robustness"] == pytest.approx(np.mean(pos))
        assert metrics["transferability"] == pytest.approx(np.mean(neg))
        assert metrics["aruc"] == pytest.approx(aruc(pos, neg))
        assert res["budgets"]["20"] == metrics
        assert set(res["by_category"]) == {"source", "finetune", "prune", "distill"}
        assert res["by_category"]["source"]["positive"] is None  # the source is not its own positive
        # each positive is paired with its mirror negative: same attack, the other source
        m_by_id = {x["id"]: x for x in res["margins"]}
        item = m_by_id["cnn[width=8](owner,s0)-prune(0.5)-finetune(ftal)"]
        assert item["mirror"] == "cnn[width=8](attacker,s1)-prune(0.5)-finetune(ftal)"
        assert item["margin"] == pytest.approx(rates[item["id"]] - rates[item["mirror"]])
        assert item["strength"] == ["prune.rate", 0.5]
    timings = results["timings"]
    assert set(timings["generation"]) == {"c", "ltrc"} and timings["querying"] > 0


def test_budget_metrics_use_the_first_queries(bench_dir):
    results = json.loads((bench_dir / "results.json").read_text())
    small, full = results["methods"]["c"]["budgets"]["5"], results["methods"]["c"]["budgets"]["20"]
    # each rate at 5 queries is a multiple of 1/5, so 4 positive (5 negative) rates sum to one too
    assert all(abs(v * 5 - round(v * 5)) < 1e-9 for v in (small["robustness"] * 4, small["transferability"] * 5))
    assert small != full


def test_fingerprints_are_cached_and_parallel_querying_agrees(bench_dir, reference_zoo):
    before = json.loads((bench_dir / "results.json").read_text())
    again = run_bench(
        reference_zoo, ["c", "ltrc"], bench_dir, n=20, budgets=(5, 10), method_params=PARAMS, workers=2, progress=False
    )
    assert all(g["cached"] for g in again["timings"]["generation"].values())
    assert [s["rates"] for s in again["suspects"]] == [s["rates"] for s in before["suspects"]]
    made = again["methods"]["c"]["fingerprint"]
    assert made["queries"] == 20 and made["summary"] == "20 queries"
    md, _ = write_report(bench_dir)
    row = next(line for line in md.read_text().splitlines() if line.startswith("| c | – | ✓ | "))
    assert row.endswith("| 20 | 20 queries |")  # no seconds this run, cached, then when it was made


def test_bad_requests_fail_clearly(reference_zoo, tmp_path):
    with pytest.raises(UnknownNameError, match="unknown fingerprint method"):
        run_bench(reference_zoo, ["nope"], tmp_path / "b", progress=False)
    with pytest.raises(ParameterError, match="not among `methods`"):
        run_bench(reference_zoo, ["c"], tmp_path / "b", method_params={"ltrc": {"k": 2}}, progress=False)
    with pytest.raises(ModelprintError, match="not a zoo"):
        run_bench(tmp_path, ["c"], tmp_path / "b", progress=False)


def test_every_methods_inputs_are_checked_before_any_fingerprint_is_made(reference_zoo, tmp_path):
    """metav without a training zoo failed only after c and ipguard were made, with a hint in
    another command's syntax; now nothing is made and the hint is bench's own."""
    out = tmp_path / "b"
    with pytest.raises(ParameterError, match=r"metav needs `method_params` metav\.trained=\.\.\. \(a training zoo"):
        run_bench(reference_zoo, ["c", "ipguard", "metav"], out, progress=False)
    assert not (out / "fingerprints").exists() or not any((out / "fingerprints").iterdir())
    with pytest.raises(
        ParameterError, match=r"naturalfinger needs `method_params` naturalfinger\.gan=.*; .*no/such/zoo does not exist"
    ):
        run_bench(
            reference_zoo,
            ["naturalfinger"],
            out,
            method_params={"naturalfinger": {"trained": "no/such/zoo"}},
            progress=False,
        )


def test_ray_backend_queries_the_same(bench_dir, reference_zoo, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional dependency: pip install 'modelprint[ray]'")
    before = json.loads((bench_dir / "results.json").read_text())
    again = run_bench(
        reference_zoo,
        ["c", "ltrc"],
        bench_dir,
        n=20,
        budgets=(5, 10),
        method_params=PARAMS,
        workers=2,
        backend="ray",
        progress=False,
    )
    assert [s["rates"] for s in again["suspects"]] == [s["rates"] for s in before["suspects"]]


WHITEBOX_SPEC = """
name = "tiny-whitebox"
data = "digits"
[train]
epochs = 3
[[models]]
name = "source"
role = "positive"
category = "source"
arch = "cnn"
args = { width = 8 }
seed = 0
mark = { host = "features.0", key = 7, aux_class = false, epochs = 2 }
[[models]]
name = "mirror"
role = "negative"
category = "source"
arch = "cnn"
args = { width = 8 }
split = "attacker"
seed = 1
mark = { host = "features.0", key = 8, aux_class = false, epochs = 2 }
[[models]]
from = ["source", "mirror"]
category = "finetune"
steps = [{ attack = "finetune", mode = "ftal", epochs = 2 }]
[[models]]
from = ["source", "mirror"]
category = "spectral-reset"
steps = [{ attack = "spectral-reset" }]
[[models]]
role = "negative"
category = "other-arch"
arch = "vgg11"
args = { width = 4 }
split = "attacker"
seed = 3
"""


def test_bench_reports_the_white_box_family_beside_black_box_ones(tmp_path):
    from modelprint.zoo.build import build_zoo

    spec = tmp_path / "wb.toml"
    spec.write_text(WHITEBOX_SPEC)
    build_zoo(spec, tmp_path / "zoo", workers=0, progress=False)
    params = {"c": {"steps": 30}}
    zoo, out = tmp_path / "zoo", tmp_path / "bench"
    detectors = StealthConfig(epochs=2, seeds=(0,))
    report = run_bench(zoo, ["c", "frequency"], out, n=20, method_params=params, stealth=detectors, progress=False)
    freq = report["methods"]["frequency"]
    assert freq["evidence"] == "components" and list(freq["budgets"]) == ["20"] and "c" in report["methods"]
    stat = {(r["role"], r["category"]): r["rates"]["frequency"] for r in report["suspects"]}
    assert stat["positive", "finetune"] == 1.0  # SGD fine-tuning leaves the mark
    assert stat["positive", "spectral-reset"] == 0.0  # the adaptive attack erases it
    assert all(r["rates"]["frequency"] == 0.0 for r in report["suspects"] if r["role"] == "negative")
    assert freq["by_category"]["finetune"]
    # --stealth: a white-box fingerprint sends no queries, so it has no detection rate (and the report still renders)
    assert freq["detection_rate"] is None and 0 <= report["methods"]["c"]["detection_rate"]["mean"] <= 1
    from modelprint.bench.report import write_report

    assert write_report(out)[1].is_file()


def test_held_out_fpr_is_reported_per_category_and_every_group_is_in_both_halves(bench_dir, reference_zoo):
    from modelprint.bench.heldout import split_negatives

    rows = ZooManifest.read(reference_zoo).rows
    calib, evaluation = split_negatives(rows, 0)
    groups = {}
    for r in rows:
        if r["role"] == "negative":
            groups.setdefault((r["category"], r["arch"]), []).append(r["id"])
    for ids in groups.values():
        if len(ids) >= 2:
            assert set(ids) & set(calib) and set(ids) & set(evaluation)
    results = json.loads((bench_dir / "results.json").read_text())
    category = {r["id"]: r["category"] for r in rows}
    for m in ("c", "ltrc"):
        null = results["methods"][m]["calibrated"]["null"]
        per = results["methods"][m]["calibrated"]["by_category"]
        assert set(per) == {category[i] for i in evaluation}
        assert sum(v["negatives"] for v in per.values()) == len(evaluation)
        assert sum(v["null_false_positives"] for v in per.values()) == null["false_positives"]
        for v in per.values():
            assert v["null_false_positives"] + v["no_match"] + v["inconclusive"] == v["negatives"]
        assert 0 < null["smallest_p"] < 1


def test_the_combined_verdict_is_holm_over_nulls_fitted_on_the_calibration_half(bench_dir, reference_zoo, tmp_path):
    from modelprint.bench.report import write_report
    from modelprint.fingerprints import Fingerprint, method_of

    results = run_bench(reference_zoo, ["c", "ltrc"], bench_dir, n=20, budgets=(5, 10), method_params=PARAMS,
                        combine=["c", "ltrc"], progress=False)  # fmt: skip
    c = results["combined"]
    assert c["methods"] == ["c", "ltrc"] and c["rule"] == "holm" and 0 <= c["auc"] <= 1
    calib, evaluation = results["negative_split"]["calibration"], results["negative_split"]["evaluation"]
    rates = {s["id"]: s["rates"] for s in results["suspects"]}
    # recompute one evaluation negative's combined p by hand: each family's null on the calibration half
    p = {}
    for m in ("c", "ltrc"):
        fp = Fingerprint.load(bench_dir / results["methods"][m]["fingerprint"]["file"])
        method, items = method_of(fp), 20
        ones = {i: round(r[m] * items) for i, r in rates.items()}  # counts nulls read only how many agree
        evidence = {i: np.r_[np.ones(k), np.zeros(items - k)] for i, k in ones.items()}
        null = method.fit_null(fp, [evidence[i] for i in calib], [rates[i][m] for i in calib])
        p[m] = {i: null.p_value(evidence[i], rates[i][m]) for i in evaluation}
    combined = {i: min(1.0, 2 * min(p["c"][i], p["ltrc"][i])) for i in evaluation}
    assert c["held_out"]["false_matches"] == sum(v < c["fpr"] for v in combined.values())
    assert c["held_out"]["evaluation_negatives"] == len(evaluation)
    assert sum(v["positives"] for v in c["by_category"].values()) == sum(
        1 for s in results["suspects"] if s["role"] == "positive" and s["id"] != results["source"]
    )
    md, _ = write_report(bench_dir)
    assert "## Combined verdict: c, ltrc by Holm's procedure" in md.read_text()
    with pytest.raises(ParameterError, match="`combine` takes two or more of `methods`"):
        run_bench(reference_zoo, ["c", "ltrc"], tmp_path / "b", method_params=PARAMS, combine=["c"], progress=False)


def test_a_worker_process_queries_a_users_own_architecture_the_driver_trusted(source, user_module):
    from modelprint.bench.runner import query_suspect
    from modelprint.fingerprints import create_method
    from modelprint.models import create_model, model_to_bytes, trust_arch
    from modelprint.models.custom import trusted_archs
    from modelprint.parallel import task_backend

    trust_arch(f"{user_module}:Net")
    suspect = create_model(f"{user_module}:Net", num_classes=10, input_shape=(1, 8, 8), seed=1)
    fp = create_method("c", steps=2).generate(source, n=5, seed=0, progress=False)
    with task_backend("local", 1) as pool:  # a spawned process: nothing of this one's state but what it is sent
        answers = pool.result(pool.submit(query_suspect, model_to_bytes(suspect), {"c": fp}, trusted_archs()))
    assert len(answers["c"]) == 5
