import itertools

import pytest
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.operators.spectral import SpectralConv


def _dense_circular(x, kernel):
    """y[b, o, s] = sum_i sum_t x[b, i, s - t] kernel[i, o, t] (periodic), by brute force."""
    d = x.ndim - 2
    y = torch.zeros(x.shape[0], kernel.shape[1], *x.shape[2:], dtype=x.dtype)
    for shift in itertools.product(*(range(n) for n in x.shape[2:])):
        rolled = torch.roll(x, shifts=shift, dims=tuple(range(2, 2 + d)))
        y += torch.einsum("bi...,io->bo...", rolled, kernel[(slice(None), slice(None), *shift)])
    return y


def _weights_from_kernel(conv, kernel):
    """The SpectralConv weights (FFT layout, see complex_weight) of a real kernel."""
    d = kernel.ndim - 2
    shape = kernel.shape[2:]
    k_hat = torch.fft.rfftn(kernel, dim=tuple(range(2, 2 + d)))
    w = torch.zeros(conv.complex_weight().shape, dtype=torch.complex128)
    for idx in itertools.product(*(range(n) for n in shape[:-1])):
        pos = []
        for axis, k in enumerate(idx):
            n, m = shape[axis], conv.modes[axis]
            freq = k if k <= (n - 1) // 2 else k - n
            pos.append(freq if freq >= 0 else 2 * m + freq)
        w[(slice(None), slice(None), *pos, slice(0, k_hat.shape[-1]))] = k_hat[
            (slice(None), slice(None), *idx)
        ]
    return torch.view_as_real(w)


@pytest.mark.parametrize("shape", [(8, 8), (7, 6), (5, 9), (6,), (4, 5, 3)])
def test_all_modes_equals_dense_circular_convolution(shape):
    g = torch.Generator().manual_seed(3)
    cin, cout = 2, 3
    kernel = torch.randn(cin, cout, *shape, generator=g, dtype=torch.float64)
    conv = SpectralConv(cin, cout, None, shape=shape, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(_weights_from_kernel(conv, kernel))
    x = torch.randn(2, cin, *shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(conv(x), _dense_circular(x, kernel), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 17), (9, 20)])
def test_output_shapes_odd_even_nonsquare(shape):
    conv = SpectralConv(3, 4, (5, 4))
    assert conv(torch.randn(2, 3, *shape)).shape == (2, 4, *shape)
    assert conv(torch.randn(2, 3, *shape), out_shape=(11, 30)).shape == (2, 4, 11, 30)


def test_modes_larger_than_grid_are_clipped():
    conv = SpectralConv(1, 1, (12, 12))
    assert conv(torch.randn(1, 1, 5, 6)).shape == (1, 1, 5, 6)


def test_truncation_removes_high_frequencies():
    conv = SpectralConv(1, 1, (3, 3), dtype=torch.float64)
    n = 32
    xs = torch.arange(n, dtype=torch.float64) / n
    high = torch.cos(2 * torch.pi * 7 * xs)[:, None] * torch.ones(n, dtype=torch.float64)
    y = conv(high.reshape(1, 1, n, n))
    assert y.abs().max() < 1e-12


def test_resampling_preserves_a_band_limited_function():
    # with the identity multiplier on kept modes, upsampling interpolates exactly
    n, big = 16, 40
    conv = SpectralConv(1, 1, (4, 4), dtype=torch.float64)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[..., 0] = 1.0

    def f(m):
        s = torch.arange(m, dtype=torch.float64) / m
        return (
            torch.sin(2 * torch.pi * s)[:, None] + torch.cos(2 * torch.pi * 3 * s)[None, :]
        ).reshape(1, 1, m, m)

    torch.testing.assert_close(conv(f(n), out_shape=(big, big)), f(big), rtol=0, atol=1e-12)
    torch.testing.assert_close(conv(f(big), out_shape=(n, n)), f(n), rtol=0, atol=1e-12)


def test_untruncated_layer_reproduces_truncated_output():
    small = SpectralConv(2, 3, (3, 4), dtype=torch.float64)
    big = small.untruncated((10, 12))
    x = torch.randn(2, 2, 10, 12, dtype=torch.float64)
    torch.testing.assert_close(small(x), big(x))
    assert big.full_shape == (10, 12)


def test_gradients_reach_weights():
    conv = SpectralConv(2, 2, (3, 3))
    conv(torch.randn(1, 2, 8, 8)).pow(2).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [dict(modes=None), dict(modes=(0, 3)), dict(modes=(2.5, 3)), dict(modes=())],
)
def test_bad_construction_raises(kwargs):
    with pytest.raises(InvalidInputError):
        SpectralConv(1, 1, **kwargs)


def test_bad_input_shape_raises():
    with pytest.raises(InvalidInputError, match="expects"):
        SpectralConv(2, 2, (3, 3))(torch.randn(1, 3, 8, 8))
