"""One verdict from several fingerprints: Holm's procedure, the Python call and the CLI."""

import json

import numpy as np
import pytest
from cli_run import run
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from modelprint.calibrate import calibrate
from modelprint.combine import holm, verify_combined
from modelprint.errors import ParameterError
from modelprint.fingerprints import create_method
from modelprint.models import save_model


def test_holm_adjusts_in_step_down_order():
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005], 0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected == [True, False, False, True]
    assert holm([None, 0.001], 0.01) == ([1.0, 0.002], [False, True])  # no p-value counts as p = 1


@settings(max_examples=50, deadline=None)
@given(p=st.lists(st.floats(0, 1), min_size=1, max_size=8), alpha=st.floats(1e-4, 0.5))
def test_holm_never_adjusts_below_the_raw_p_and_rejects_the_smallest_first(p, alpha):
    adjusted, rejected = holm(p, alpha)
    assert all(a >= v - 1e-12 and a <= 1 for a, v in zip(adjusted, p))
    if any(rejected):  # whatever is rejected, every smaller p is rejected too
        largest = max(v for v, r in zip(p, rejected) if r)
        assert all(r for v, r in zip(p, rejected) if v < largest)
    assert any(rejected) == (min(p) * len(p) < alpha)  # globally, Holm is Bonferroni


def test_holm_holds_the_family_wise_error_under_dependence():
    """Five families reading the same suspect (strongly correlated p-values) under the null."""
    rng = np.random.default_rng(0)
    alpha, trials, false = 0.05, 4000, 0
    scale = np.sqrt(1 + 0.5**2)
    for _ in range(trials):
        shared = rng.normal()
        p = norm.sf((shared + 0.5 * rng.normal(size=5)) / scale)  # each family's p is uniform under the null
        false += any(holm(list(p), alpha)[1])
    assert false / trials <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)


@pytest.fixture(scope="module")
def calibrated(source, negatives):
    fps = [create_method(m, steps=20).generate(source, n=30, seed=0, progress=False) for m in ("c", "ltrc")]
    return [calibrate(fp, negatives) for fp in fps]


def test_a_source_matches_and_an_independent_model_does_not(calibrated, source, independent, negatives):
    result = verify_combined(calibrated, source, fpr=0.05)
    assert result.verdict == "match" and any(result.rejected) and result.queries == 60
    assert [f.method for f in result.families] == ["c", "ltrc"]
    assert result.adjusted_p == pytest.approx(holm([f.p_value for f in result.families], 0.05)[0])
    other = verify_combined(calibrated, independent, fpr=0.05)
    assert other.verdict != "match" and not any(other.rejected)
    assert other.to_dict()["families"][0]["adjusted_p"] == other.adjusted_p[0]


def test_combining_refuses_one_fingerprint_mixed_sources_and_a_short_budget(calibrated, independent, negatives):
    with pytest.raises(ParameterError, match="at least two"):
        verify_combined(calibrated[:1], independent)
    stranger = create_method("c", steps=5).generate(independent, n=5, seed=0, progress=False)
    with pytest.raises(ParameterError, match="different source"):
        verify_combined([calibrated[0], stranger], independent)
    with pytest.raises(ParameterError, match="need at least 60 queries together .* `max_queries` 50"):
        verify_combined(calibrated, independent, max_queries=50)


def test_cli_verifies_several_fingerprints_at_once(calibrated, fresh, tmp_path, capsys):
    paths = []
    for i, fp in enumerate(calibrated):
        paths.append(str(tmp_path / f"fp{i}.safetensors"))
        fp.save(paths[-1])
    suspect = str(save_model(fresh, tmp_path / "suspect"))
    code, out, err = run(["verify", *paths, suspect, "--fpr", "0.05", "--json"], capsys)
    record = json.loads(out)
    assert code == 0 and record["verdict"] == "match" and record["rule"] == "holm"
    assert [f["method"] for f in record["families"]] == ["c", "ltrc"] and record["families"][0]["fingerprint_sha256"]
    code, out, _ = run(["verify", *paths, suspect, "--fpr", "0.05"], capsys)
    assert code == 0 and out.startswith("match: 2 fingerprints combined by Holm's procedure")
    code, _, err = run(["verify", *paths, suspect, "--commitment", "abc"], capsys)
    assert code == 2 and "one --commitment per fingerprint" in err
    code, _, err = run(["verify", *paths, suspect, "--threshold", "0.5"], capsys)
    assert code == 2 and "--threshold applies to one fingerprint" in err
