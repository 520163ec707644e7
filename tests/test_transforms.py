import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.fft import dctn

from modelprint.transforms import dct2, dct_highpass, default_k, highpass_mask


def test_dct_matches_scipy_orthonormal_dct():
    x = torch.rand(2, 3, 8, 12, dtype=torch.float64)
    ours = dct2(x).numpy()
    ref = dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    torch.testing.assert_close(dct_highpass(x, 0), x)  # no band: nothing removed


@settings(max_examples=25, deadline=None)
@given(size=st.integers(4, 20), k=st.integers(0, 12), seed=st.integers(0, 1000))
def test_highpass_removes_exactly_the_masked_coefficients(size, k, seed):
    x = torch.rand(2, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = dct_highpass(x, k)
    before = dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    after = dctn(y.numpy(), type=2, norm="ortho", axes=(-2, -1))
    mask = highpass_mask(size, size, k).numpy()
    np.testing.assert_allclose(after[:, ~mask], 0, atol=1e-10)
    np.testing.assert_allclose(after[:, mask], before[:, mask], atol=1e-10)
    assert mask[0, 0], "the DC term is kept"
    assert (~mask).sum() == sum(1 for i in range(size) for j in range(size) if 1 <= i + j <= k)


def test_highpass_in_float32_and_default_k():
    x = torch.rand(4, 3, 16, 16)
    y = dct_highpass(x, 3)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(dct_highpass(x, 0), x)
    assert default_k(224) == 20 and default_k(32) == 3 and default_k(8) == 1


@pytest.mark.parametrize("k", [1, 5])
def test_highpass_is_idempotent(k):
    x = torch.rand(3, 10, 10, dtype=torch.float64)
    torch.testing.assert_close(dct_highpass(dct_highpass(x, k), k), dct_highpass(x, k))
