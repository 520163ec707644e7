"""Frequency-domain transforms as precomputed matrices (pure functions, cached per size)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): ``X = D @ x`` and ``x = D.T @ X``.

    D[u, m] = sqrt(2/n) * c(u) * cos(pi * (2m + 1) * u / (2n)),  c(0) = 1/sqrt(2), c(u>0) = 1.
    """
    m = torch.arange(n, dtype=torch.float64)
    u = m[:, None]
    d = math.sqrt(2.0 / n) * torch.cos(math.pi * (2 * m[None] + 1) * u / (2 * n))
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


def highpass_mask(h: int, w: int, k: int) -> torch.Tensor:
    """1 where a DCT coefficient is kept, 0 where 1 <= i + j <= k (the DC term (0, 0) is kept)."""
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    s = i + j
    return ~((s >= 1) & (s <= k))


@lru_cache(maxsize=32)
def _operators(h: int, w: int, k: int, device: str, dtype: torch.dtype):
    dh, dw = dct_matrix(h).to(device, dtype), dct_matrix(w).to(device, dtype)
    mask = highpass_mask(h, w, k).to(device, dtype)
    return dh, dw, mask


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D orthonormal DCT-II over the last two dimensions (per channel)."""
    dh, dw, _ = _operators(x.shape[-2], x.shape[-1], 0, str(x.device), x.dtype)
    return dh @ x @ dw.T


def dct_highpass(x: torch.Tensor, k: int) -> torch.Tensor:
    """IDCT(mask * DCT(x)) per channel: removes the frequencies with 1 <= i + j <= k.

    ``x`` is (..., H, W); ``k = 0`` returns ``x`` unchanged.
    """
    if k <= 0:
        return x
    dh, dw, mask = _operators(x.shape[-2], x.shape[-1], k, str(x.device), x.dtype)
    return dh.T @ ((dh @ x @ dw.T) * mask) @ dw


def default_k(size: int) -> int:
    """High-pass band size scaled from the paper's k = 20 at 224 px, at least 1."""
    return max(1, round(20 * size / 224))
