"""The facade: a plain nn.Module goes through fingerprint, calibrate and verify."""

import pytest
import torch
from torch import nn

import modelprint
from modelprint.errors import CalibrationError, ParameterError


class UserNet(nn.Module):
    """A user's network: no card, no modelprint base class; takes [0, 1] images."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))

    def forward(self, x):
        return self.body(x)


def _fit(seed, data, net=None, steps=150):
    torch.manual_seed(seed)
    net = net or UserNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        i = torch.randint(len(data), (64,))
        loss = nn.functional.cross_entropy(net(data.x[i]), data.y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def user_nets(splits):
    owner = _fit(0, splits.owner)
    independent = [_fit(s, splits.attacker) for s in range(1, 9)]
    copy = _fit(99, splits.tune, net=_fit(0, splits.owner), steps=20)  # fine-tuned from the owner's weights
    innocent = _fit(42, splits.attacker)
    return owner, independent, copy, innocent


def test_plain_module_from_fingerprint_to_verdict(user_nets, splits):
    owner, independent, copy, innocent = user_nets
    fp = modelprint.fingerprint(owner, data=(splits.owner.x, splits.owner.y), method="ipguard", n=60, seed=0)
    assert fp.meta["source_arch"].endswith(":UserNet") and fp.meta["input_shape"] == [1, 8, 8]
    assert modelprint.verify(fp, copy).verdict == "inconclusive"  # no null yet: never a match
    fp = modelprint.calibrate(fp, references=independent)
    assert fp.meta["null"]["n_models"] == 8
    stolen, other = modelprint.verify(fp, copy, fpr=0.01), modelprint.verify(fp, innocent, fpr=0.01)
    assert stolen.verdict == "match", stolen.statistic
    # an innocent model is never a match, and sits inside the null
    assert other.verdict != "match" and other.p_value > 0.05, (other.statistic, other.p_value)


def test_the_seed_is_drawn_and_recorded_when_omitted(user_nets, splits):
    owner = user_nets[0]
    a = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5)
    b = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=a.meta["seed"])
    assert isinstance(a.meta["seed"], int) and torch.equal(a.x, b.x)


def test_clear_errors_at_the_boundary(user_nets, splits):
    owner, independent, _, _ = user_nets
    with pytest.raises(ParameterError, match="input_shape"):
        modelprint.fingerprint(owner, method="c")
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        modelprint.fingerprint(owner, data=(splits.owner.x * 255, splits.owner.y))
    fp = modelprint.fingerprint(owner, data=splits.owner, method="c", n=5, steps=5, seed=0)
    with pytest.raises(ParameterError, match="list of independent models"):
        modelprint.calibrate(fp, references=independent[0])
    with pytest.raises(CalibrationError, match="source or derived"):
        modelprint.calibrate(fp, references=[owner, *independent])
