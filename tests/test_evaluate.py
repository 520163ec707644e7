import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modelprint.attacks import create_attack
from modelprint.evaluate import evaluate
from modelprint.fingerprints import create_method
from modelprint.verify import verify


def test_evaluate_reports_the_paper_metrics(source, independent):
    params = {"c": {"steps": 80}, "ltrc": {"steps": 80, "k": 3}}
    res = evaluate(
        source, ["c", "ltrc"], [], [independent], prune_rates=(0.2, 0.4), n=20, method_params=params, progress=False
    )
    for name, r in res.items():
        assert set(r.robustness_by_rate) == {"0.2", "0.4"}
        assert len(r.positive_rates) == 2 and len(r.negative_rates) == 1
        # Each number recomputed from the fingerprint itself, not from the other fields of the result.
        fp = create_method(name, **params[name]).generate(source, n=20, seed=0, progress=False)
        pruned = [create_attack("prune", rate=rate).apply(source) for rate in (0.2, 0.4)]
        direct_pos = [verify(fp, m).statistic for m in pruned]
        direct_neg = verify(fp, independent).statistic
        assert r.positive_rates == pytest.approx(direct_pos) and r.negative_rates == pytest.approx([direct_neg])
        assert r.robustness == pytest.approx(np.mean(direct_pos)) and r.transferability == pytest.approx(direct_neg)
        assert r.uniqueness == pytest.approx(np.mean(direct_pos) - direct_neg)
        assert r.auc == pytest.approx(roc_auc_score([1, 1, 0], [*direct_pos, direct_neg])) and 0 <= r.f1 <= 1
        assert r.source_rate == 1.0  # the source labels every query as recorded
