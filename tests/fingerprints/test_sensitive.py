"""Sensitive samples: inputs whose top logit is most sensitive to the weights."""

import pytest
import torch

from modelprint.errors import ParameterError
from modelprint.fingerprints import create_method
from modelprint.fingerprints.sensitive import weight_sensitivity


def test_sensitive_samples_raise_weight_sensitivity_and_are_deterministic(source, splits):
    method = create_method("sensitive", steps=15)
    fp = method.generate(source, splits.owner, n=12, seed=1, progress=False)
    start_x = splits.owner.x[torch.randperm(len(splits.owner), generator=torch.Generator().manual_seed(1))[:12]]
    c = source.predict(start_x)
    before = weight_sensitivity(source, start_x, c)
    after = weight_sensitivity(source, fp.x, c)
    assert (after > before).float().mean() >= 0.9 and after.mean() > 1.2 * before.mean()
    assert fp.meta["sensitivity_final"] > fp.meta["sensitivity_start"]
    again = method.generate(source, splits.owner, n=12, seed=1, progress=False)
    assert torch.equal(again.x, fp.x)
    assert method.statistic(method.evidence(fp, source).values) == 1.0
    assert all(p.requires_grad for p in source.parameters())  # the source is left as it was
    with pytest.raises(ParameterError):
        create_method("sensitive", alpha=0)
