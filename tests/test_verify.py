"""Verification: the calibrated null, the three verdicts, sequential stopping, broken suspects."""

import copy

import numpy as np
import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.calibrate import calibrate
from modelprint.errors import ParameterError, SuspectError
from modelprint.fingerprints import create_method
from modelprint.models import create_model
from modelprint.verify import verify


@pytest.fixture(scope="module")
def ltrc_fp(source):
    return create_method("ltrc", steps=200).generate(source, n=50, seed=0, progress=False)


@pytest.fixture(scope="module")
def calibrated(ltrc_fp, negatives):
    return calibrate(ltrc_fp, negatives[:5], origin="test negatives")


def test_uncalibrated_fingerprint_warns_and_tests_against_chance(source, ltrc_fp, negatives):
    res = verify(ltrc_fp, negatives[5])
    assert not res.calibrated and "chance" in res.warning
    assert res.null["family"] == "chance" and res.null["mean"] == pytest.approx(0.1)


def test_calibrated_null_is_stored_and_used(calibrated, negatives):
    null = calibrated.meta["null"]
    assert null["family"] == "beta-binomial" and null["n_models"] == 5 and len(null["sha256"]) == 5
    assert null["source"] == "test negatives"
    res = verify(calibrated, negatives[5], fpr=1e-2)
    assert res.calibrated and res.warning is None and res.null["n_models"] == 5


def test_verdicts_pruned_copy_matches_independent_model_does_not(source, calibrated, negatives):
    pruned = create_attack("prune", rate=0.3).apply(source)
    pos = verify(calibrated, pruned, fpr=1e-2)
    assert pos.verdict == "match" and pos.p_value < 1e-2 and pos.matching_rate >= 0.9
    neg = verify(calibrated, negatives[5], fpr=1e-2)
    assert neg.verdict == "no-match" and neg.p_value > 0.1
    assert neg.decided_by == "p-value" and neg.queries == neg.n == 50


def test_an_independent_model_the_chance_null_calls_a_match_is_not_one_once_calibrated(ltrc_fp, calibrated, negatives):
    """The bug the fitted null fixes: against chance (0.1 per query) a model agreeing at 0.3 is
    'significant'. Uncalibrated, verify reports that p-value but never calls a match."""
    naive = [verify(ltrc_fp, m, fpr=1e-3) for m in negatives]
    fooled = [m for m, r in zip(negatives, naive) if r.p_value < 1e-3]
    assert fooled, "expected at least one independent model above chance"
    assert all(r.verdict == "inconclusive" and not r.calibrated and "calibrate" in r.reason for r in naive)
    assert all(verify(calibrated, m, fpr=1e-3).verdict != "match" for m in fooled)


def test_no_verdict_without_a_null_even_for_the_source_itself(ltrc_fp, source):
    for kwargs in ({}, {"threshold": 0.5}, {"max_queries": 100, "batch": 10}):
        res = verify(ltrc_fp, source, fpr=1e-3, **kwargs)
        assert res.statistic == 1.0 and res.verdict == "inconclusive", kwargs
        assert res.reason == res.warning and "not calibrated" in res.reason and res.to_dict()["reason"]


def test_inconclusive_between(calibrated, source):
    """A suspect agreeing on about 80 % of the queries: above every reference model, not enough for 1e-3."""
    half = create_attack("prune", rate=0.3).apply(source)
    res = verify(calibrated, half, fpr=1e-3)
    assert res.verdict in ("match", "inconclusive")
    # With only a few of its queries answered, nothing can be decided: said before any is sent.
    with pytest.raises(ParameterError, match="cannot decide within 5 queries"):
        verify(calibrated, half, fpr=1e-3, max_queries=5, batch=5)


def test_threshold_overrides_the_p_value(calibrated, negatives):
    res = verify(calibrated, negatives[5], threshold=0.0)
    assert res.verdict == "match" and res.decided_by == "threshold" and res.p_value is not None


def test_positives_say_how_typical_the_suspect_is(ltrc_fp, negatives, source):
    copies = [create_attack("prune", rate=r).apply(source) for r in (0.2, 0.4)]
    fp = calibrate(ltrc_fp, negatives[:5], copies)
    res = verify(fp, copies[0], fpr=1e-2)
    assert res.positives["n_models"] == 2 and res.positives["fraction_at_or_below"] == 1.0


def test_sequential_says_before_querying_when_the_budget_cannot_decide(calibrated, negatives):
    """Five reference models spread widely: even a perfect suspect needs more queries than the
    fingerprint holds, and verify says so (with the number) instead of spending any."""
    queried = []
    suspect = negatives[5]
    forward = suspect.net.forward
    suspect.net.forward = lambda x: queried.append(len(x)) or forward(x)
    try:
        with pytest.raises(ParameterError, match=r"cannot decide within 50 queries.*needs (more than )?\d+"):
            verify(calibrated, suspect, fpr=1e-3, max_queries=50, batch=10)
    finally:
        suspect.net.forward = forward
    assert not queried


def test_sequential_matches_once_the_null_is_tight(ltrc_fp, negatives, source):
    """With a null fitted on many tightly clustered models, a perfect copy is a match within a few batches."""
    fp = copy.copy(ltrc_fp)
    counts = [10, 11, 12, 13, 11, 12, 10, 13, 12, 11] * 4
    from modelprint.null import fit_count_null

    fp.meta = {**ltrc_fp.meta, "null": {**fit_count_null(counts, 50), "n_models": 40, "source": "synthetic"}}
    res = verify(fp, source, fpr=1e-3, max_queries=50, batch=10)
    assert res.verdict == "match" and res.queries < 50 and res.decided_by == "sequential"
    assert res.sequential["steps"][-1]["queries"] == res.queries and res.sequential["queries_to_match"] <= 10


def test_sequential_spends_the_rest_of_the_fpr_on_a_fixed_test_over_the_whole_budget(ltrc_fp, source):
    """A stored prior far from where this suspect agrees keeps the anytime test from deciding in
    one batch; the budget is then spent, and the fixed test over it decides at alpha/2."""
    from modelprint.null import fit_count_null, sequence_log_evidence

    counts = [3, 4, 3, 4, 3, 4, 3, 4, 4, 3] * 4
    null = {**fit_count_null(counts, 10), "n_models": 40, "source": "synthetic", "statistics": [c / 10 for c in counts]}
    fp = copy.copy(ltrc_fp)
    fp.meta = {**ltrc_fp.meta, "null": null, "positives": {"sha256": ["x"], "statistics": [0.3]}}
    assert sequence_log_evidence(null, 10, 10, [0.3])[0] < np.log(2 / 1e-3)  # the anytime test cannot decide
    res = verify(fp, source, fpr=1e-3, max_queries=10, batch=10)
    last = res.sequential["final_test"]
    assert res.verdict == "match" and res.queries == 10 and res.sequential["anytime_fpr"] == pytest.approx(5e-4)
    assert last["verdict"] == "match" and last["fpr"] == pytest.approx(5e-4) and last["p_value"] < 5e-4
    decided_early = verify(fp, source, fpr=1e-3, max_queries=20, batch=10)  # not spent yet at 10: no final test
    assert decided_early.sequential["steps"][0]["queries"] == 10


def test_sequential_no_match_comes_early_for_a_typical_model(ltrc_fp, negatives):
    """A null fitted on many copies of the real negatives' counts: the one that agrees least is
    typical by construction, below the highest reference, and is called a no-match early."""
    from modelprint.null import fit_count_null

    counts = [round(verify(ltrc_fp, m).statistic * 50) for m in negatives[:5]]
    fp = copy.copy(ltrc_fp)
    fp.meta = {**ltrc_fp.meta, "null": {**fit_count_null(counts * 8, 50), "n_models": 40, "source": "synthetic",
                                         "statistics": [c / 50 for c in counts * 8]}}  # fmt: skip
    typical = negatives[min(range(5), key=lambda i: counts[i])]  # well inside the references
    res = verify(fp, typical, fpr=1e-2, max_queries=50, batch=10)
    assert res.verdict == "no-match" and res.queries < 50 and res.sequential["steps"][-1]["log_e_no_match"] > 4.6


def test_nan_model_is_an_error_not_a_verdict(calibrated, source):
    broken = copy.deepcopy(source)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(SuspectError, match="not finite"):
        verify(calibrated, broken)


def test_wrong_input_shape_is_a_clear_error(ltrc_fp):
    other = create_model("cnn", num_classes=10, input_shape=(3, 32, 32), width=4)
    with pytest.raises(SuspectError, match="input shape"):
        verify(ltrc_fp, other)


def test_calibration_refuses_the_source_and_its_copies(ltrc_fp, negatives, source):
    from modelprint.errors import CalibrationError

    pruned = create_attack("prune", rate=0.3).apply(source)
    with pytest.raises(CalibrationError, match="derived from it"):
        calibrate(ltrc_fp, [*negatives[:3], pruned])
    with pytest.raises(CalibrationError, match="twice"):
        calibrate(ltrc_fp, [negatives[0], negatives[0], negatives[1]])


def test_calibration_and_verification_state_the_same_threshold(calibrated, negatives):
    """One advice: what `fingerprint calibrate` says a match needs at an FPR is what `verify`
    says at that FPR (verify stated the Beta quantile theta*, a different number)."""
    from modelprint.calibrate import null_description
    from modelprint.verify import format_verification

    for fpr in (1e-2, 1e-3):
        needed = null_description(calibrated, (fpr,))[f"needed_at_{fpr:g}"]
        text = format_verification(verify(calibrated, negatives[5], fpr=fpr))
        n = calibrated.meta["null"]["n_queries"]
        if needed is None:
            assert f"no rate out of {n} queries is a match at FPR {fpr:g}" in text, text
        else:
            assert f"a match needs {round(needed * n)} of {n} ({needed:.2f}) at FPR {fpr:g}" in text, text


def test_a_verdict_repeats_exactly_across_thread_counts_and_cpu_kernels(calibrated, negatives, source, tmp_path):
    """Training depends on threads and CPU kernels (float sums in another order), so a
    retrained model differs in its last bits; verifying a given fingerprint file against a
    given model file must not: the evidence is per-query agreement and the null is stored."""
    import json
    import os
    import subprocess
    import sys

    from modelprint.models import save_model

    fp_path = tmp_path / "fp.safetensors"
    calibrated.save(fp_path)
    suspects = {"source": save_model(source, tmp_path / "source"), "other": save_model(negatives[5], tmp_path / "n5")}
    script = (
        "import json, sys, torch\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "from modelprint.fingerprints import Fingerprint\n"
        "from modelprint.models import load_model\n"
        "from modelprint.verify import verify\n"
        f"fp = Fingerprint.load({str(fp_path)!r})\n"
        f"files = {json.dumps({k: str(v) for k, v in suspects.items()})}\n"
        "out = {k: verify(fp, load_model(p), fpr=1e-2) for k, p in files.items()}\n"
        "print(json.dumps({k: [v.verdict, v.p_value, v.evidence] for k, v in out.items()}))\n"
    )
    runs = []
    for threads, kernels in (("1", None), ("2", None), ("2", "default")):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if kernels:
            env["ATEN_CPU_CAPABILITY"] = kernels  # the portable kernels instead of this CPU's widest
        run = subprocess.run(
            [sys.executable, "-c", script, threads], capture_output=True, text=True, env=env, timeout=300
        )
        assert run.returncode == 0, run.stderr[-2000:]
        runs.append(json.loads(run.stdout))
    assert runs[0] == runs[1] == runs[2]
    assert runs[0]["source"][0] == "match" and runs[0]["other"][0] == "no-match"
