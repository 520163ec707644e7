"""IPGuard: points at margin k from the source's boundary between two drawn classes."""

import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.ipguard import boundary_loss


def test_boundary_loss_is_zero_exactly_when_j_leads_i_by_k_and_i_is_second():
    logits = torch.tensor([[0.0, 2.0, 2.6, 1.0], [0.0, 2.0, 2.2, 1.0], [3.0, 2.0, 2.6, 1.0]])
    i, j = torch.tensor([1, 1, 1]), torch.tensor([2, 2, 2])
    loss = boundary_loss(logits, i, j, k=0.5)
    assert loss[0] == 0  # j = i + 0.6 >= i + k, i above the rest
    assert loss[1] == pytest.approx(0.3)  # j only 0.2 ahead
    assert loss[2] == pytest.approx(1.0)  # class 0 is above i


def test_ipguard_reaches_its_objective_and_is_deterministic(source, independent, splits, tmp_path):
    method = create_method("ipguard")
    fp = method.generate(source, splits.owner, n=40, seed=3, progress=False)
    with torch.no_grad():
        final = boundary_loss(source.eval()(fp.x), fp.extra["i"], fp.extra["j"], method.k)
    assert (final <= 1e-6).float().mean() >= 0.8 and fp.meta["objective_met"] >= 0.8
    assert fp.meta["target_hit_rate"] >= 0.8 and bool((fp.extra["i"] != fp.extra["j"]).all())
    assert fp.x.min() >= 0 and fp.x.max() <= 1
    again = method.generate(source, splits.owner, n=40, seed=3, progress=False)
    assert torch.equal(again.x, fp.x) and torch.equal(again.y, fp.y)
    rate = lambda m: method.statistic(method.evidence(fp, m).values)  # noqa: E731
    assert rate(source) == 1.0 and rate(independent) < 0.5
    fp.save(tmp_path / "ip.fp.safetensors")
    assert torch.equal(Fingerprint.load(tmp_path / "ip.fp.safetensors").x, fp.x)
    with pytest.raises(ParameterError):
        create_method("ipguard", k=-1)
