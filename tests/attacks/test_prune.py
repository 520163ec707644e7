import pytest
import torch

from modelprint.attacks import ATTACKS, create_attack
from modelprint.attacks.prune import prunable_weights
from modelprint.errors import ParameterError
from modelprint.models import weights_digest
from modelprint.train import accuracy


def sparsity(model) -> float:
    """Fraction of prunable weights that are exactly zero."""
    weights = prunable_weights(model)
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75, 1.0])
def test_pruning_hits_the_rate(source, scope, rate):
    pruned = create_attack("prune", rate=rate, scope=scope).apply(source)
    assert sparsity(pruned) == pytest.approx(rate, abs=0.01)
    if scope == "layer":
        for w in prunable_weights(pruned):
            assert (w == 0).float().mean().item() == pytest.approx(rate, abs=1.0 / w.numel() + 1e-9)


def test_magnitude_pruning_removes_the_smallest_weights_and_keeps_the_source(source):
    before = {k: v.clone() for k, v in source.state_dict().items()}
    pruned = create_attack("prune", rate=0.5).apply(source)
    kept = torch.cat([w[w != 0].abs() for w in prunable_weights(pruned)])
    removed_src = torch.cat([ws[wp == 0].abs() for ws, wp in zip(prunable_weights(source), prunable_weights(pruned))])
    assert kept.min() >= removed_src.max()
    for k, v in source.state_dict().items():
        assert torch.equal(v, before[k])


def test_lineage_and_accuracy_bound(source, splits):
    pruned = create_attack("prune", rate=0.3).apply(source, seed=4)
    step = pruned.card.lineage[-1]
    assert step["parent_sha256"] == weights_digest(source) != ""
    assert step["recipe"] == {"attack": "prune", "rate": 0.3, "scope": "global", "criterion": "magnitude", "seed": 4}
    assert accuracy(pruned, splits.test) >= accuracy(source, splits.test) - 0.1


def test_random_pruning_depends_on_the_seed(source):
    a = create_attack("prune", rate=0.5, criterion="random").apply(source, seed=0)
    b = create_attack("prune", rate=0.5, criterion="random").apply(source, seed=1)
    assert sparsity(a) == pytest.approx(0.5, abs=0.01)
    assert not torch.equal(prunable_weights(a)[0], prunable_weights(b)[0])


def test_bad_parameters():
    assert "prune" in ATTACKS.names()
    with pytest.raises(ParameterError):
        create_attack("prune", rate=1.5)
    with pytest.raises(ParameterError, match="no parameter"):
        create_attack("prune", ratio=0.5)
