import pytest
from scipy.stats import binomtest

from modelprint.errors import ParameterError
from modelprint.metrics import (
    best_f1,
    binomial_p_value,
    f1_at_threshold,
    matching_rate,
    roc_auc,
    uniqueness_score,
)


def test_matching_rate_by_hand():
    assert matching_rate([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    with pytest.raises(ParameterError):
        matching_rate([1, 2], [1])


def test_binomial_p_value_matches_scipy_binomtest():
    for k, n, p in [(0, 10, 0.1), (3, 10, 0.1), (10, 10, 0.1), (55, 100, 0.5)]:
        assert binomial_p_value(k, n, p) == pytest.approx(binomtest(k, n, p, alternative="greater").pvalue)
    assert binomial_p_value(0, 10, 0.1) == pytest.approx(1.0)
    assert binomial_p_value(10, 10, 0.1) == pytest.approx(1e-10)


def test_auc_f1_uniqueness_by_hand():
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.5], [0.5]) == 0.5  # all scores equal: ties count one half
    assert roc_auc([0.9, 0.3], [0.5, 0.1]) == 0.75
    # threshold 0.5: TP=1 (0.9), FN=1 (0.3), FP=1 (0.5) -> 2/(2+1+1)
    assert f1_at_threshold([0.9, 0.3], [0.5, 0.1], 0.5) == 0.5
    f1, t = best_f1([0.9, 0.8], [0.1, 0.2])
    assert f1 == 1.0 and 0.2 < t <= 0.8
    assert uniqueness_score(0.9, 0.3) == pytest.approx(0.6)


def test_empty_negatives_is_a_clear_error():
    with pytest.raises(ParameterError, match="negative scores is empty"):
        roc_auc([0.9], [])
