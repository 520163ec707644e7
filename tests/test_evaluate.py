from modelprint.evaluate import evaluate


def test_evaluate_reports_the_paper_metrics(source, independent):
    params = {"c": {"steps": 80}, "ltrc": {"steps": 80, "k": 3}}
    res = evaluate(
        source, ["c", "ltrc"], [], [independent], prune_rates=(0.2, 0.4), n=20, method_params=params, progress=False
    )
    for r in res.values():
        assert set(r.robustness_by_rate) == {"0.2", "0.4"}
        assert r.uniqueness == r.robustness - r.transferability
        assert 0 <= r.auc <= 1 and 0 <= r.f1 <= 1
        assert len(r.positive_rates) == 2 and len(r.negative_rates) == 1
        assert r.source_rate == 1.0
