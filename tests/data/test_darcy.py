"""Tests of neurosolve.data.darcy: coefficients, discretization accuracy, solver accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from neurosolve.data.darcy import (
    COEFFICIENT_KINDS,
    darcy_coefficient,
    darcy_samples,
    darcy_system,
    solve_darcy,
)
from neurosolve.errors import InvalidInputError


def centres(n):
    x = (np.arange(n) + 0.5) / n
    return np.meshgrid(x, x, indexing="ij")


def manufactured(n):
    """u = sin(pi x) sin(2 pi y) with a = 2 + cos(2 pi x) sin(pi y) (smooth, positive)."""
    x, y = centres(n)
    u = np.sin(np.pi * x) * np.sin(2 * np.pi * y)
    ux = np.pi * np.cos(np.pi * x) * np.sin(2 * np.pi * y)
    uy = 2 * np.pi * np.sin(np.pi * x) * np.cos(2 * np.pi * y)
    lap = -5 * np.pi**2 * u
    a = 2.0 + np.cos(2 * np.pi * x) * np.sin(np.pi * y)
    ax = -2 * np.pi * np.sin(2 * np.pi * x) * np.sin(np.pi * y)
    ay = np.pi * np.cos(2 * np.pi * x) * np.cos(np.pi * y)
    return u, a, -(ax * ux + ay * uy + a * lap)


@pytest.mark.parametrize("variable", [False, True], ids=["constant-a", "smooth-a"])
def test_darcy_second_order(variable):
    errors = []
    for n in (20, 40, 80):
        u, a, f = manufactured(n)
        if not variable:
            a = np.ones_like(a)
            f = 5 * np.pi**2 * u
        uh = solve_darcy(a, f)
        errors.append(float(np.abs(uh - u).max()))
    orders = np.log2(np.asarray(errors[:-1]) / np.asarray(errors[1:]))
    print(f"darcy ({'smooth' if variable else 'constant'} a): errors {errors}, orders {orders}")
    assert np.all(orders > 1.8)


@pytest.mark.parametrize("kind", COEFFICIENT_KINDS)
@pytest.mark.parametrize("n", [32, 150])  # 150^2 > direct limit: the pyamg path
def test_solve_darcy_residual(kind, n):
    a = darcy_coefficient(n, kind, np.random.default_rng(n))
    u = solve_darcy(a)
    s = darcy_system(a)
    res = np.linalg.norm(s.b - s.A @ u.ravel()) / np.linalg.norm(s.b)
    assert res <= 1e-10
    assert u.min() > 0  # discrete maximum principle for f = 1 > 0 (M-matrix)


def test_coefficient_kinds():
    rng = np.random.default_rng(0)
    pw = darcy_coefficient((64, 64), "piecewise", rng)
    assert set(np.unique(pw)) == {3.0, 12.0}
    logs = np.concatenate(
        [np.log(darcy_coefficient(64, "lognormal", rng)).ravel() for _ in range(8)]
    )
    assert abs(logs.std() - 1.0) < 0.25 and abs(logs.mean()) < 0.25
    rough = darcy_coefficient((64, 64), "rough", rng)
    assert rough.min() >= 1e-2 * (1 - 1e-12) and rough.max() <= 1e2 * (1 + 1e-12)
    assert rough.max() / rough.min() > 1e3  # high contrast

    # rough fields vary on finer scales than lognormal ones
    def roughness(field):
        g = np.log(field)
        return np.abs(np.diff(g, axis=0)).mean() / g.std()

    assert roughness(rough) > 1.5 * roughness(darcy_coefficient(64, "lognormal", rng))
    a3 = darcy_coefficient((8, 8, 8), "lognormal", rng)
    assert a3.shape == (8, 8, 8) and (a3 > 0).all()


def test_same_seed_same_arrays_and_per_sample_rngs():
    x, y = darcy_samples([np.random.default_rng([3, i]) for i in range(3)], resolution=16)
    x2, y2 = darcy_samples([np.random.default_rng([3, i]) for i in range(3)], resolution=16)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (3, 1, 16, 16) and y.shape == (3, 1, 16, 16)
    x1, y1 = darcy_samples([np.random.default_rng([3, 2])], resolution=16)
    assert np.array_equal(x1[0], x[2]) and np.array_equal(y1[0], y[2])
    assert not np.array_equal(x[0], x[1])
    np.testing.assert_array_equal(y[1, 0], solve_darcy(x[1, 0]))


def test_darcy_samples_3d_and_kinds():
    x, y = darcy_samples([np.random.default_rng(1)], resolution=6, dim=3, kind="rough", f=2.0)
    assert x.shape == (1, 1, 6, 6, 6)
    s = darcy_system(x[0, 0], 2.0)
    assert np.linalg.norm(s.b - s.A @ y[0, 0].ravel()) <= 1e-10 * np.linalg.norm(s.b)


def test_darcy_system_layout():
    a = np.ones((4, 6))
    s = darcy_system(a, f=np.arange(24.0).reshape(4, 6))
    assert s.name == "darcy-4x6" and s.grid.boundary == "dirichlet"
    np.testing.assert_array_equal(s.b, np.arange(24.0))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: darcy_coefficient(16, "smooth", 0), "unknown Darcy coefficient"),
        (lambda: darcy_coefficient(1, "piecewise", 0), ">= 2"),
        (lambda: darcy_system(-np.ones((4, 4))), "> 0"),
        (lambda: darcy_system(np.full((4, 4), np.nan)), "NaN"),
        (lambda: darcy_system(np.ones(4)), "2-D or 3-D"),
        (lambda: darcy_system(np.ones((4, 4)), f=np.ones((3, 3))), "forcing f shape"),
        (lambda: darcy_system(np.ones((4, 4)), f=np.inf), "forcing f contains"),
        (lambda: solve_darcy(np.ones((4, 4)), rtol=0.0), "rtol"),
        (lambda: darcy_samples([np.random.default_rng(0)], resolution=1), "resolution"),
        (lambda: darcy_samples([np.random.default_rng(0)], kind="x"), "unknown Darcy"),
        (lambda: darcy_samples([np.random.default_rng(0)], f=float("nan")), "finite"),
        (lambda: darcy_samples([np.random.default_rng(0)], dim=1), "dim"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(InvalidInputError, match=message):
        call()
