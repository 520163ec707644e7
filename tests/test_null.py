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
    queries_to_match,
    score_p_value,
    sequence_log_evidence,
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
        k = np.cumsum(rng.random(200) < theta)
        crossed += any(mixture_log_evidence(int(k[n - 1]), n, theta, side) >= math.log(1 / delta)
                       for n in range(10, 201, 10) for side in ("above", "below"))  # fmt: skip
    assert crossed / 2000 <= 2 * delta  # two one-sided tests, each at most delta


def test_sequential_test_is_anytime_valid_for_a_random_independent_model():
    """Models drawn from the reference population (theta ~ Beta, answers Bernoulli(theta)),
    looked at after every batch of 10 up to 200 queries: the share ever called a match stays
    under alpha (Ville), on 1000 simulated models; copies at the prior's rate are never called
    no-match."""
    rng = np.random.default_rng(3)
    alpha = 0.05
    null = fit_count_null(_draw_counts(rng, 4.0, 6.0, 40, 100), 100)
    crossed = 0
    for theta in rng.beta(4.0, 6.0, size=1000):
        k = np.cumsum(rng.random(200) < theta)
        crossed += any(sequence_log_evidence(null, int(k[n - 1]), n, None)[0] >= math.log(1 / alpha)
                       for n in range(10, 201, 10))  # fmt: skip
    assert crossed / 1000 <= alpha, crossed
    for theta in (0.97, 0.99):
        k = np.cumsum(rng.random(200) < theta)
        assert all(sequence_log_evidence(null, int(k[n - 1]), n, None)[1] < 0 for n in range(10, 201, 10))


def test_sequential_test_decides_fast_where_the_null_allows_and_says_when_it_cannot():
    tight = fit_count_null([10, 11, 12, 13, 11, 12, 10, 13, 12, 11] * 4, 50)  # rates 0.20-0.26
    assert queries_to_match(tight, 1e-3, None) <= 10
    assert sequence_log_evidence(tight, 3, 10, None)[1] > math.log(1000)  # a typical model: no-match at once
    # reference positives at 0.9: a suspect agreeing like them is a match about as fast as a perfect one
    assert queries_to_match(tight, 1e-3, [0.9], rate=0.9) <= 2 * queries_to_match(tight, 1e-3, [0.9])
    wide = fit_count_null([20, 35, 50, 65, 80], 100)  # five models, spread over 0.2-0.8
    slow = queries_to_match(wide, 1e-3, None)
    assert slow is None or slow > 100


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


def test_probability_null_controls_the_fpr_on_scores_piled_at_0_and_1():
    """A meta-classifier's scores of independent models: most near 0, a few near 1 (U-shaped).
    Fitted on 10, the Beta null's p < alpha on fresh models of the same population at most alpha
    of the time, where a normal null would be too wide to call anything."""
    from modelprint.null import fit_probability_null, probability_p_value

    rng = np.random.default_rng(4)
    for alpha in (0.05, 0.01):
        rejected = []
        for _ in range(20):
            null = fit_probability_null(rng.beta(0.3, 3.0, size=10))
            rejected += [probability_p_value(null, s) < alpha for s in rng.beta(0.3, 3.0, size=200)]
        assert np.mean(rejected) <= alpha
    # references near 0 only: a suspect at 0.9999 is rare; one reference near 1 makes it much less so
    low = fit_probability_null([0.001, 0.004, 0.02, 0.0003, 0.01, 0.002, 0.05, 0.008, 0.001, 0.003])
    with_one_high = fit_probability_null([0.001, 0.004, 0.02, 0.0003, 0.01, 0.002, 0.05, 0.008, 0.001, 0.99])
    assert probability_p_value(low, 0.9999) < 1e-3 < probability_p_value(with_one_high, 0.9999)
    assert probability_p_value(low, 1.0) == probability_p_value(low, 1 - 1e-4)  # the stated smallest p
    with pytest.raises(ParameterError, match="in \\[0, 1\\]"):
        fit_probability_null([0.1, 0.2, 1.5])


def test_key_null_is_the_binomial_tail_over_components_and_states_its_smallest_p():
    from modelprint.null import KeyNull

    rng = np.random.default_rng(5)
    sims = rng.uniform(-1, 1, size=(2000, 16))  # a component clears 0.98 with chance 0.01
    null = KeyNull.fit([np.zeros(16)] * 3, [0.0] * 3, simulated=sims, tau=0.98)
    d = null.data
    assert d["q_hat"] == pytest.approx(0.01, abs=0.002) and d["q_upper"] > d["q_hat"]
    assert null.smallest_p() == pytest.approx(d["q_upper"] ** 16)
    # fresh independent keys: p < alpha at most alpha of the time
    fresh = rng.uniform(-1, 1, size=(5000, 16))
    for alpha in (0.05, 0.01):
        p = [null.p_value(row, float(np.mean(row > 0.98))) for row in fresh]
        assert np.mean(np.asarray(p) < alpha) <= alpha
    assert null.decide(np.ones(16), 1.0, 1e-3)[0] == "match"
    assert null.decide(np.zeros(16), 0.0, 1e-3)[0] == "no-match"
    with pytest.raises(ParameterError, match="simulated"):
        KeyNull.fit([np.zeros(16)] * 3, [0.0] * 3)


def test_no_match_only_when_the_suspect_is_typical_of_independent_models():
    """A suspect above every reference model but short of a match is inconclusive, for every
    fitted family; one inside the references is no-match; every null states its smallest p."""
    from modelprint.null import BetaBinomialNull, BetaNull, NormalNull

    rng = np.random.default_rng(6)
    refs = [rng.binomial(1, p, size=100).astype(float) for p in (0.3, 0.35, 0.4, 0.45, 0.5, 0.38, 0.42, 0.33)]
    count = BetaBinomialNull.fit(refs, [float(v.mean()) for v in refs])
    high = np.r_[np.ones(62), np.zeros(38)]  # above every reference (max 0.5), nowhere near a match
    assert count.p_value(high, 0.62) > 1e-3 and count.decide(high, 0.62, 1e-3)[0] == "inconclusive"
    typical = np.r_[np.ones(40), np.zeros(60)]
    assert count.decide(typical, 0.40, 1e-3)[0] == "no-match"
    scores = [0.10, 0.12, 0.15, 0.11, 0.14, 0.13, 0.09, 0.16]
    normal = NormalNull.fit([np.array([s]) for s in scores], scores)
    assert normal.decide(np.array([0.17]), 0.17, 1e-3)[0] == "inconclusive"
    assert normal.decide(np.array([0.12]), 0.12, 1e-3)[0] == "no-match"
    probs = [0.01, 0.02, 0.005, 0.03, 0.002, 0.04, 0.01, 0.02]
    beta = BetaNull.fit([np.array([s]) for s in probs], probs)
    assert beta.decide(np.array([0.2]), 0.2, 1e-3)[0] == "inconclusive"
    assert beta.decide(np.array([0.01]), 0.01, 1e-3)[0] == "no-match"
    for null in (count, normal, beta):
        smallest = null.summary()["smallest_p"]
        assert 0 <= smallest < 1 and smallest == pytest.approx(null.decide(np.ones(100 if null is count else 1),
                                                                           1.0, 0.5)[1])  # fmt: skip


def test_vectorised_p_values_equal_the_one_at_a_time_ones():
    from modelprint.null import BetaBinomialNull, BetaNull, NormalNull

    rng = np.random.default_rng(7)
    evidence = [rng.binomial(1, p, size=50).astype(float) for p in rng.uniform(0.1, 0.9, size=12)]
    stats_ = [float(v.mean()) for v in evidence]
    for kind in (BetaBinomialNull, NormalNull):
        null = kind.fit(evidence[:6], stats_[:6])
        one = [null.p_value(v, s) for v, s in zip(evidence, stats_)]
        assert np.allclose(null.p_values(evidence, stats_), one)
    probs = list(rng.beta(0.4, 3, size=12))
    null = BetaNull.fit([np.array([s]) for s in probs[:6]], probs[:6])
    assert np.allclose(null.p_values([np.array([s]) for s in probs], probs), [null.p_value(None, s) for s in probs])


def test_beta_null_never_goes_below_the_references_rank_p_value():
    """Scores piled at 0 and 1: a Beta fitted on a few references that all sit at 0 would call
    the independent models at 1 a match; the rank floor keeps the FPR at most alpha."""
    from modelprint.null import BetaNull

    rng = np.random.default_rng(11)
    population = lambda k: np.where(rng.random(k) < 0.7, rng.uniform(0, 0.02, k), rng.uniform(0.98, 1, k))  # noqa: E731
    false, trials = {0.01: 0, 0.2: 0}, 1000
    for _ in range(trials):
        refs, suspect = list(population(5)), float(population(1)[0])
        null = BetaNull.fit([np.array([s]) for s in refs], refs)
        p = null.p_value(np.array([suspect]), suspect)
        assert p >= (1 + sum(r >= suspect for r in refs)) / 6 - 1e-12
        for a in false:
            false[a] += p < a
    assert false[0.01] == 0  # nothing is rarer than 1 in 6 among 5 references
    assert false[0.2] / trials <= 0.2 + 3 * np.sqrt(0.2 * 0.8 / trials)
    refs = [0.01, 0.02, 0.005, 0.03, 0.002]
    null = BetaNull.fit([np.array([s]) for s in refs], refs)
    needed = null.needed([1e-2])
    assert null.smallest_p() == pytest.approx(1 / 6) and needed["needed_at_0.01"] is None
    assert needed["references_at_0.01"] == 100


def test_every_family_declares_the_limits_its_stored_numbers_are_checked_against():
    """A family's module declares each number a stored null carries with its range; a stored
    null with a number outside it is refused, whatever the family."""
    from modelprint.null import BetaBinomialNull, BetaNull, KeyNull, NormalNull, Null

    rng = np.random.default_rng(0)
    fitted = {
        BetaBinomialNull: BetaBinomialNull.fit([rng.integers(0, 2, 20).astype(float) for _ in range(6)], [0.5] * 6),
        NormalNull: NormalNull.fit([], [0.1, 0.2, 0.3, 0.25]),
        BetaNull: BetaNull.fit([], [0.1, 0.2, 0.3, 0.25, 0.05]),
        KeyNull: KeyNull.fit([], [0.0] * 5, simulated=rng.uniform(-1, 1, (200, 16)), tau=0.9),
    }
    assert {kind.family for kind in fitted} == {kind.family for kind in Null.fitted_families()}
    for kind, null in fitted.items():
        assert kind.limits, kind.family
        for key, (low, high) in kind.limits.items():
            outside = high * 2 + 1 if np.isfinite(high) else low - 1
            if not np.isfinite(outside):
                continue  # a number with no limit either way (a normal null's mean)
            said = Null.problem({**null.to_json(), key: outside})
            assert said and key in said, (kind.family, key, said)
