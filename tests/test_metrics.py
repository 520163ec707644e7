import numpy as np
import pytest

from modelprint.errors import ParameterError
from modelprint.metrics import (
    aruc,
    best_f1,
    f1_at_threshold,
    margin,
    robustness_uniqueness_curve,
    roc_auc,
    threshold_at_fpr,
    tnr_at,
    tpr_at,
    tpr_at_fpr,
    uniqueness_score,
)


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


def test_tpr_tnr_at_threshold_by_hand():
    pos, neg = [1.0, 0.9, 0.6, 0.2], [0.1, 0.3, 0.5, 0.7]
    assert tpr_at(pos, 0.6) == 0.75  # 1.0, 0.9, 0.6 reach it
    assert tnr_at(neg, 0.6) == 0.75  # 0.1, 0.3, 0.5 stay below
    assert tpr_at(pos, 0.0) == 1.0 and tnr_at(neg, 0.0) == 0.0


@pytest.mark.parametrize(
    "pos, neg, expected",
    [
        ([0.8], [0.3], 0.5),  # min(TPR, TNR) = 1 exactly on (0.3, 0.8]
        ([1.0], [0.0], 1.0),  # perfect separation over all of (0, 1]
        ([0.5], [0.5], 0.0),  # TPR drops where TNR rises: never both
        ([0.2], [0.9], 0.0),  # inverted: no threshold works
        ([0.9, 0.7], [0.2, 0.4], 0.5 * 0.2 + 1.0 * 0.3 + 0.5 * 0.2),  # (.2,.4]: .5; (.4,.7]: 1; (.7,.9]: .5
        ([0.6, 0.6, 0.6], [0.6, 0.6], 0.0),  # all scores equal
    ],
)
def test_aruc_by_hand(pos, neg, expected):
    assert aruc(pos, neg) == pytest.approx(expected)


def test_aruc_matches_a_fine_grid():
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(0.3, 1.0, 40), rng.uniform(0.0, 0.6, 50)
    grid = (np.arange(200_000) + 0.5) / 200_000  # midpoints: the steps' edges carry no area
    approx = np.mean([min(tpr_at(pos, t), tnr_at(neg, t)) for t in grid[::50]])
    assert aruc(pos, neg) == pytest.approx(approx, abs=2e-3)


def test_margin_pairs_positives_with_their_mirrors():
    assert margin([1.0, 0.8], [0.3, 0.5]).tolist() == pytest.approx([0.7, 0.3])
    with pytest.raises(ParameterError, match="pair up"):
        margin([1.0, 0.8], [0.3])


def test_threshold_and_tpr_at_fixed_fpr():
    neg = [0.1, 0.2, 0.3, 0.9]
    t0 = threshold_at_fpr(neg, 0.0)
    assert 0.9 < t0 < 0.9 + 1e-12  # no negative may pass: just above the highest
    t25 = threshold_at_fpr(neg, 0.25)
    assert 0.3 < t25 < 0.3 + 1e-12  # one of four may pass: just above the second highest
    assert np.mean(np.array(neg) >= t25) == 0.25
    assert threshold_at_fpr(neg, 1.0) == 0.1
    assert tpr_at_fpr([0.95, 0.5], neg, 0.0) == 0.5
    assert tpr_at_fpr([0.95, 0.5], neg, 0.25) == 1.0
    with pytest.raises(ParameterError, match="fpr"):
        threshold_at_fpr(neg, 1.5)
    with pytest.raises(ParameterError, match="negative scores is empty"):
        tpr_at_fpr([0.9], [], 0.01)


def test_curve_edges():
    t, tpr, tnr = robustness_uniqueness_curve([0.8], [0.3])
    assert t.tolist() == [0.0, 0.3, 0.8, 1.0]
    assert tpr.tolist() == [1, 1, 1, 0] and tnr.tolist() == [0, 0, 1, 1]
