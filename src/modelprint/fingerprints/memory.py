"""How many queries a gradient search can optimise at once in the memory at hand.

A search keeps, for every query it optimises, what autograd saves to take the input's
gradient: on a 224-pixel ResNet-50 about 90 MB a query, so a few hundred queries do not fit
a laptop, and the kernel would end the process without a word. :func:`query_batch` measures
that cost on a probe (the tensors the forward saves for two queries and for four) and returns
how many queries fit in :data:`MEMORY_SHARE` of the memory available. The searches optimise
their queries in batches of that size: each query's search is its own, so a batch changes
nothing but float rounding, and a fingerprint made in batches records their size
(``generation_batch``).

Example::

    batch = query_batch(model, 300, device="cpu")   # 300 where they fit, fewer where not
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# Of the memory available, what one batch of queries may take: the rest is the process, the
# model, the forward's transient buffers and whatever else runs on the machine.
MEMORY_SHARE = 0.5


def available_bytes(device: str = "cpu") -> int:
    """Free memory on ``device``: the GPU's, or the system's available memory within this
    process's cgroup limit (a container's), whichever is less."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if available is None:  # not Linux
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(available), 0)


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors the forward on ``x`` saves for the input's gradient."""
    storages: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        out = model(x.requires_grad_(True))
    return sum(storages.values()) + out.numel() * out.element_size()


def query_batch(
    model: nn.Module,
    n: int,
    *,
    device: str = "cpu",
    copies: int = 1,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> int:
    """How many of ``n`` queries one batch of a gradient search may hold on ``device``:
    ``copies`` forwards per query at once (weight-noise copies run side by side), each
    keeping what the probe (in the search's ``memory_format``) measured, plus the query, its
    gradient and its step."""
    shape = tuple(model.card.input_shape)
    # two batches of more than one query (a forward that squeezes would break on one), their difference per query
    probe = torch.zeros(4, *shape, device=device).contiguous(memory_format=memory_format)
    per_query = (_saved_bytes(model, probe.clone()) - _saved_bytes(model, probe[:2].clone())) // 2 * copies
    per_query += 3 * probe[0].numel() * probe.element_size()
    fits = int(MEMORY_SHARE * available_bytes(device) // max(per_query, 1))
    return max(1, min(n, fits))
