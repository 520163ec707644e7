"""The null statistics: beta-binomial fit and its conservative p-values, the score null, the
confidence bounds and the anytime-valid mixture test."""

import math

import numpy as np
import pytest
from scipy import stats

from modelprint.errors import ParameterError
from modelprint.null import (
    chance_null,
    clopper_pearson,
    count_p_value,
    critical_rate,
    fit_count_null,
    fit_score_null,
    mixture_log_evidence,
    score_p_value,
    upper_bound,
)


def _draw_counts(rng, a, b, models, n):
    return rng.binomial(n, rng.beta(a, b, size=models))


def test_fit_recovers_an_overdispersed_null():
    rng = np.random.default_rng(0)
    counts = _draw_counts(rng, 6.0, 12.0, 400, 100)  # mean 1/3, rho = 1/19
    null = fit_count_null(counts, 100)
    assert null["mean"] == pytest.approx(1 / 3, abs=0.03)
    assert null["rho"] == pytest.approx(1 / 19, rel=0.35)
    assert null["n_queries"] == 100 and null["region"]


def test_binomial_is_wrong_for_correlated_models_and_the_fit_is_not():
    """Independent models at mean 0.35 but spread 0.2-0.55: the binomial at the pooled rate
    calls a model at 0.6 'significant'; the beta-binomial does not."""
    rng = np.random.default_rng(1)
    counts = _draw_counts(rng, 3.5, 6.5, 30, 100)
    null = fit_count_null(counts, 100)
    pooled = counts.sum() / counts.size / 100
    assert stats.binom.sf(59, 100, pooled) < 1e-4
    assert count_p_value(null, 60, 100) > 1e-2


def test_p_values_control_the_false_positive_rate_on_fresh_models():
    """Fit on 20 models, score 4000 fresh ones from the same population: the share with
    p < alpha stays under alpha (the region makes it conservative)."""
    rng = np.random.default_rng(2)
    for alpha in (0.05, 0.01):
        rejected = []
        for _ in range(10):
            null = fit_count_null(_draw_counts(rng, 4.0, 8.0, 20, 100), 100)
            fresh = _draw_counts(rng, 4.0, 8.0, 400, 100)
            rejected += [count_p_value(null, int(k), 100) < alpha for k in fresh]
        assert np.mean(rejected) <= alpha


def test_conservative_p_value_is_at_least_the_estimates():
    counts = [30, 35, 40, 45, 33, 38]
    null = fit_count_null(counts, 100)
    at_estimate = {**null, "region": None}
    for k in (40, 60, 80, 100):
        assert count_p_value(null, k, 100) >= count_p_value(at_estimate, k, 100) - 1e-15
    # more reference models from the same spread: a tighter region, smaller p-values far out
    many = fit_count_null(counts * 5, 100)
    assert count_p_value(many, 80, 100) < count_p_value(null, 80, 100)


def test_critical_rate_and_chance():
    null = chance_null(10)
    assert critical_rate(null, 1e-3) == pytest.approx(0.1)
    assert count_p_value(null, 37, 100) == pytest.approx(stats.binom.sf(36, 100, 0.1))
    fitted = fit_count_null([30, 35, 40, 45, 33, 38, 36, 41], 100)
    assert 0.45 < critical_rate(fitted, 1e-2) < critical_rate(fitted, 1e-3) <= 1.0


def test_fit_rejects_too_few_or_bad_counts():
    with pytest.raises(ParameterError, match="at least 3"):
        fit_count_null([3, 4], 10)
    with pytest.raises(ParameterError, match="integers"):
        fit_count_null([3, 4, 11], 10)
    with pytest.raises(ParameterError, match="at least 3"):
        fit_score_null([0.1, 0.2])


def test_score_null_is_the_t_prediction_interval():
    scores = [0.1, 0.15, 0.2, 0.12, 0.18]
    null = fit_score_null(scores)
    m, sd = np.mean(scores), np.std(scores, ddof=1)
    expected = stats.t.sf((0.5 - m) / (sd * math.sqrt(1 + 1 / 5)), 4)
    assert score_p_value(null, 0.5) == pytest.approx(expected)
    assert score_p_value(null, m) == pytest.approx(0.5)
    flat = fit_score_null([0.0, 0.0, 0.0])  # an sd floor: a constant null still has a spread
    assert 0 < score_p_value(flat, 0.05) < 0.05


def test_confidence_bounds():
    lo, hi = clopper_pearson(0, 26, 0.95)
    assert lo == 0 and hi == pytest.approx(0.1323, abs=1e-3)
    assert upper_bound(50, 50, 0.01) == 1.0
    assert upper_bound(10, 50, 0.01) == pytest.approx(stats.beta.isf(0.01, 11, 40))


@pytest.mark.parametrize("theta", [0.3, 0.7])
def test_mixture_test_is_anytime_valid(theta):
    """Under a rate exactly at theta, the chance that either e-process ever crosses 1/delta
    within 200 steps stays under delta (Ville), checked on 2000 simulated sequences."""
    rng = np.random.default_rng(3)
    delta = 0.05
    crossed = 0
    for _ in range(2000):
        x = rng.random(200) < theta
        k = np.cumsum(x)
        hit = False
        for n in range(10, 201, 10):
            for side in ("above", "below"):
                if mixture_log_evidence(int(k[n - 1]), n, theta, side) >= math.log(1 / delta):
                    hit = True
        crossed += hit
    assert crossed / 2000 <= 2 * delta  # two one-sided tests, each at most delta


def test_mixture_test_decides_far_from_theta():
    assert mixture_log_evidence(40, 40, 0.75, "above") > math.log(2000)
    assert mixture_log_evidence(6, 30, 0.75, "below") > math.log(1000)
    assert mixture_log_evidence(30, 40, 0.75, "above") < 1.0


def test_an_unreachable_fpr_says_how_many_references_would_reach_it():
    from modelprint.null import BetaBinomialNull, NormalNull, references_needed

    spread = [20, 35, 50, 65, 80, 30, 45, 60, 75, 40]  # ten models agreeing on 20-80 of 100 queries
    null = fit_count_null(spread, 100)
    assert count_p_value(null, 100, 100) > 1e-3  # even 100/100 is not rare enough at 1e-3
    needed = references_needed(spread, 100, 1e-3)
    assert needed is not None and needed > len(spread) and needed % len(spread) == 0
    # The claim checks out: that many models agreeing in the same proportions reach 1e-3, half as many do not.
    assert count_p_value(fit_count_null(spread * (needed // len(spread)), 100), 100, 100) < 1e-3
    if needed // len(spread) > 1:
        fewer = spread * (needed // len(spread) // 2)
        assert count_p_value(fit_count_null(fewer, 100), 100, 100) >= 1e-3
    described = BetaBinomialNull({**null, "n_models": 10, "statistics": [k / 100 for k in spread]}).needed([1e-3])
    assert described["needed_at_0.001"] is None and described["references_at_0.001"] == needed
    # Scores: a normal null too wide for a score of 1 to be rare at 1e-3, and one that is not.
    wide = NormalNull({"family": "normal", "mean": 0.5, "sd": 0.2, "n_models": 5}).needed([1e-3])
    assert wide["needed_at_0.001"] is None and wide["references_at_0.001"] is None  # z(1e-3) * 0.2 > 0.5
    narrow = NormalNull({"family": "normal", "mean": 0.2, "sd": 0.15, "n_models": 5}).needed([1e-3])
    more = narrow["references_at_0.001"]
    assert narrow["needed_at_0.001"] is None and more > 5  # t(1e-3, 4) is wide: more models narrow it
    enough = NormalNull({"family": "normal", "mean": 0.2, "sd": 0.15, "n_models": more}).needed([1e-3])
    assert enough["needed_at_0.001"] <= 1.0 and "references_at_0.001" not in enough
