"""Gradient searches hold as many queries at once as the memory at hand allows, and say so."""

import pytest
import torch
from torch import nn

import modelprint.fingerprints.memory as memory
from modelprint.fingerprints import create_method
from modelprint.fingerprints.memory import available_bytes, query_batch
from modelprint.models import create_model, wrap_model


def test_the_batch_is_what_fits_in_the_share_of_memory_and_grows_with_it(source, monkeypatch):
    big = create_model("cnn", num_classes=10, input_shape=(1, 32, 32), seed=0, width=8)
    big.requires_grad_(False)
    assert available_bytes() > 0
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 2**40)
    assert query_batch(big, 500) == 500  # plenty: one batch, as before
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 2**22)
    few = query_batch(big, 500)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 2**24)
    more = query_batch(big, 500)
    assert 1 <= few < more < 500 and more == pytest.approx(4 * few, rel=0.05)
    # a query keeps at least its activations: what the probe measured is more than the input
    per_query = memory.MEMORY_SHARE * 2**24 / more
    assert per_query > 8 * 32 * 32 * 4
    assert query_batch(big, 500, copies=4) == pytest.approx(more / 4, abs=1)
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 0)
    assert query_batch(big, 500) == 1


@pytest.mark.parametrize("name", ["c", "rc", "ltrc", "ipguard"])
def test_a_search_in_batches_records_them_and_finds_what_one_batch_finds(name, source, monkeypatch):
    method = create_method(name, steps=30)
    whole = method.generate(source, n=12, seed=3, progress=False)
    assert "generation_batch" not in whole.meta  # the common case: one batch, the file as before
    family = "ipguard" if name == "ipguard" else "characteristic"
    monkeypatch.setattr(f"modelprint.fingerprints.{family}.query_batch", lambda model, n, **kwargs: 5)
    batched = method.generate(source, n=12, seed=3, progress=False)
    assert batched.meta["generation_batch"] == 5
    # each query's search is its own, and each batch sees the weight noise the whole did
    assert torch.allclose(batched.x, whole.x, atol=1e-5) and torch.equal(batched.y, whole.y)


class Squeezing(nn.Module):
    """A user's forward that squeezes, then slices the classes: it breaks on a batch of one."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)).squeeze()[:, :10]


def test_the_probe_never_sends_a_single_query():
    model = wrap_model(Squeezing(), input_shape=(1, 8, 8), num_classes=10)
    fp = create_method("c", steps=3).generate(model, n=6, seed=0, progress=False)
    assert len(fp) == 6
