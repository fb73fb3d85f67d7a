import math

import numpy as np
import pytest
import torch

from neurosolve.data.random_fields import (
    as_generators,
    default_sigma,
    gaussian_random_field,
    grf_eigenvalues,
    threshold_field,
)
from neurosolve.errors import InvalidInputError


def _power(u: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of |c_k|^2, c_k the normalized Fourier coefficients (rfftn layout)."""
    dims = tuple(range(1, u.ndim))
    c = torch.fft.rfftn(u.double(), dim=dims, norm="forward")
    return (c.abs() ** 2).mean(0)


def _shell_spectrum(power: torch.Tensor, shape) -> tuple[np.ndarray, np.ndarray]:
    axes = []
    for i, n in enumerate(shape):
        k = np.fft.rfftfreq(n, 1 / n) if i == len(shape) - 1 else np.fft.fftfreq(n, 1 / n)
        axes.append(k)
    kk = np.sqrt(sum(a**2 for a in np.meshgrid(*axes, indexing="ij")))
    shells = np.rint(kk).astype(int)
    p = power.numpy()
    ks = np.arange(1, min(shape) // 2)
    mean_power = np.array([p[shells == k].mean() for k in ks])
    return ks, mean_power


@pytest.mark.parametrize(
    ("shape", "batch", "alpha", "kmin", "kmax"),
    [((64, 64), 64, 2.5, 8, 24), ((64, 64), 64, 2.0, 8, 24), ((24, 24, 24), 8, 2.5, 5, 10)],
    ids=["2d-alpha2.5", "2d-alpha2", "3d-alpha2.5"],
)
def test_grf_loglog_slope_is_minus_two_alpha(shape, batch, alpha, kmin, kmax):
    u = gaussian_random_field(
        shape, batch, alpha=alpha, tau=3.0, rng=np.random.default_rng(0), dtype=torch.float64
    )
    ks, p = _shell_spectrum(_power(u), shape)
    sel = (ks >= kmin) & (ks <= kmax)
    slope = np.polyfit(np.log(ks[sel]), np.log(p[sel]), 1)[0]
    # exact local slope of (4 pi^2 k^2 + tau^2)^-alpha is -2 alpha * (1 - O(tau^2 / (4 pi^2 k^2)))
    print(f"{shape} alpha={alpha}: fitted slope {slope:.3f}, expected ~{-2 * alpha}")
    assert abs(slope - (-2 * alpha)) < 0.15


def test_grf_mode_variances_match_eigenvalues():
    shape = (32, 32)
    u = gaussian_random_field(shape, 200, rng=np.random.default_rng(1), dtype=torch.float64)
    lam = grf_eigenvalues(shape)
    ratio = (_power(u).flatten()[1:] / lam.flatten()[1:]).mean()
    # 200 samples x ~500 modes: the mean ratio has a standard error of about 0.3 %
    assert abs(float(ratio) - 1.0) < 0.02
    # pointwise variance equals the sum of the variances of all complex modes
    full = lam.clone()
    full[:, 1 : shape[1] // 2] *= 2  # rfft layout: each interior column stands for +-k_y
    expected_var = float(full.sum())
    assert abs(float(u.var()) / expected_var - 1.0) < 0.05


def test_grf_zero_mean_and_dtype_device():
    u = gaussian_random_field((16, 20), 3, rng=np.random.default_rng(2))
    assert u.shape == (3, 16, 20) and u.dtype == torch.float32 and u.device.type == "cpu"
    assert torch.all(u.double().mean(dim=(1, 2)).abs() < 1e-6)
    v = gaussian_random_field((8, 8, 12), rng=np.random.default_rng(2), dtype=torch.float64)
    assert v.shape == (1, 8, 8, 12)
    assert float(v.mean().abs()) < 1e-14


def test_grf_same_seed_same_values_and_per_sample_seeding():
    rngs = [np.random.default_rng([5, i]) for i in range(4)]
    batch = gaussian_random_field((32, 32), rng=rngs, dtype=torch.float64)
    again = gaussian_random_field(
        (32, 32), rng=[np.random.default_rng([5, i]) for i in range(4)], dtype=torch.float64
    )
    assert torch.equal(batch, again)
    for i in (0, 3):
        alone = gaussian_random_field(
            (32, 32), rng=[np.random.default_rng([5, i])], dtype=torch.float64
        )
        assert torch.equal(alone[0], batch[i])
    # one Generator: the samples are drawn one after the other from it
    one = gaussian_random_field((32, 32), 2, rng=np.random.default_rng(9), dtype=torch.float64)
    g = np.random.default_rng(9)
    first = gaussian_random_field((32, 32), rng=g, dtype=torch.float64)
    second = gaussian_random_field((32, 32), rng=g, dtype=torch.float64)
    assert torch.equal(one, torch.cat([first, second]))
    assert not torch.allclose(one[0], one[1])


def test_grf_default_sigma_matches_fno_convention():
    assert default_sigma(2.5, 7.0, 2) == pytest.approx(7.0 ** (0.5 * (2 * 2.5 - 2)))
    assert default_sigma(2.5, 7.0, 3) == pytest.approx(7.0**1.0)
    lam = grf_eigenvalues((8, 8))
    assert float(lam[0, 1]) == pytest.approx(7.0**3 * (4 * math.pi**2 + 49.0) ** -2.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (16,)}, "axes"),
        ({"shape": (16, -2)}, ">= 2"),
        ({"shape": (16, 16), "alpha": float("nan")}, "alpha"),
        ({"shape": (16, 16), "alpha": -1.0}, "alpha"),
        ({"shape": (16, 16), "tau": -1.0}, "tau"),
        ({"shape": (16, 16), "sigma": 0.0}, "sigma"),
        ({"shape": (16, 16), "batch": 0}, "batch"),
        ({"shape": (16, 16), "rng": "seed"}, "rng"),
        ({"shape": (16, 16), "rng": []}, "empty"),
        ({"shape": (16, 16), "dtype": torch.int32}, "dtype"),
    ],
)
def test_grf_bad_input(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        gaussian_random_field(**kwargs)


def test_as_generators_mismatched_batch():
    with pytest.raises(InvalidInputError, match="does not match"):
        as_generators([np.random.default_rng(0)], 2)


def test_threshold_field_values_and_types():
    u = gaussian_random_field((32, 32), 4, rng=np.random.default_rng(3))
    a = threshold_field(u)
    assert a.dtype == u.dtype and a.shape == u.shape
    assert set(torch.unique(a).tolist()) == {3.0, 12.0}
    assert torch.equal(a == 12.0, u >= 0)
    arr = threshold_field(np.array([[-2, 1], [0, 5]]), high=1.0, low=1e-4, level=1)
    np.testing.assert_array_equal(arr, [[1e-4, 1.0], [1e-4, 1.0]])
    assert arr.dtype == np.float64
    with pytest.raises(InvalidInputError, match="NaN"):
        threshold_field(torch.tensor([0.0, float("nan")]))
    with pytest.raises(InvalidInputError, match="high"):
        threshold_field(np.zeros(3), high=float("inf"))
