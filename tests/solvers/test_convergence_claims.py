"""Convergence claims that must hold for hostile inputs (issue 14).

Right-hand sides of extreme magnitude, float32 runs checked against the float64 matrix,
non-finite residuals, indefinite matrices under the baselines, CPU-only methods asked for a
GPU, and corrupt CSR structure given through the API.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurosolve.data import LinearSystem, poisson
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import (
    SolveResult,
    Status,
    available,
    make_solver,
    relative_residual,
    solve,
)
from neurosolve.solvers.baselines import ScipyCG
from neurosolve.solvers.result import safe_norm
from neurosolve.solvers.system import prepare_system, rhs_scales

SCALES = (1e155, 1e200, 1e-162, 1e-300)
BASELINES = ("scipy-cg", "scipy-cg-jacobi", "ic-pcg", "amg-sa-pcg", "amg-rs-pcg")


def _system(method):
    # the shipped DCDM network is 3D; everything else gets a small 2D grid
    return poisson((6, 6, 6)) if method == "dcdm" else poisson((8, 8))


def _options(method):
    return {"preconditioner": "jacobi"} if method == "pcg" else {}


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:.0e}")
@pytest.mark.parametrize("method", available())
def test_extreme_right_hand_sides_converge_truly(method, scale):
    system = _system(method)
    b = np.random.default_rng(3).standard_normal(system.n) * scale
    result = solve(system, b, method=method, rtol=1e-6, **_options(method))
    assert result.converged, result.reason
    assert np.isfinite(result.final_residual) and result.final_residual <= 1e-6
    assert relative_residual(system.A, result.x, b) <= 1e-6
    # x is of the size of A^{-1} b, not zero
    assert safe_norm(result.x) > 0


@pytest.mark.parametrize("scale", (1e155, 1e-162))
@pytest.mark.parametrize("method", ["cg", "fcg", "pcg-jacobi", "scipy-cg", "amg-sa"])
def test_extreme_blocks_and_atol_in_the_users_units(method, scale):
    system = poisson((8, 8))
    rng = np.random.default_rng(4)
    b = np.stack([rng.standard_normal(system.n) * scale, rng.standard_normal(system.n)], 1)
    result = solve(system, b, method=method, rtol=0.0, atol=1e-8 * scale * 10)
    assert result.status is not Status.CONVERGED or (
        safe_norm(b[:, 0] - system.A @ result.x[:, 0]) <= 1e-8 * scale * 10
    )
    assert np.isfinite(result.x).all()


def test_scaled_iterations_are_bit_for_bit_those_of_unit_size():
    system = poisson((8, 8))
    b = np.random.default_rng(5).standard_normal(system.n)
    plain = solve(system, b, method="cg", rtol=1e-8)
    big = solve(system, b * 2.0**600, method="cg", rtol=1e-8)
    assert big.iterations == plain.iterations
    np.testing.assert_array_equal(big.residuals, plain.residuals)
    np.testing.assert_array_equal(big.x, plain.x * 2.0**600)


def test_rhs_scales_are_exact_powers_of_two_only_where_needed():
    s = rhs_scales([1.0, 1e6, 1e155, 1e-300, 0.0])
    assert s[0] == s[1] == s[4] == 1.0
    for value, scale in zip([1e155, 1e-300], s[2:4], strict=True):
        assert np.log2(scale) == int(np.log2(scale)) and 0.5 <= value / scale < 1


def test_safe_norm_and_relative_residual_do_not_overflow():
    assert safe_norm(np.full(4, 1e200)) == pytest.approx(2e200)
    assert safe_norm(np.full(4, 1e-300)) == pytest.approx(2e-300)
    assert np.isnan(safe_norm(np.array([1.0, np.nan])))
    A = sp.eye(3).tocsr()
    assert relative_residual(A, np.full(3, 1e200), np.full(3, 2e200)) == pytest.approx(0.5)


@pytest.mark.parametrize("scale", [1e-162, 1e155])
@pytest.mark.parametrize("method", ["cg", "fcg", "mgpc-pcg", "dcdm"])
def test_float32_x_out_of_range_is_not_converged(method, scale):
    # x of 1e-162 rounds to zero in float32, x of 1e155 to Inf
    system = _system(method)
    b = np.ones(system.n) * scale
    result = solve(system, b, method=method, dtype=torch.float32, **_options(method))
    assert result.status is Status.NONFINITE
    assert "outside the range of float32" in result.reason or "NaN or Inf" in result.reason


@pytest.mark.parametrize("method", ["cg", "scipy-cg", "amg-sa", "ic-pcg", "dcdm"])
def test_subnormal_x_is_not_converged(method):
    # b of 1e-318 is subnormal: x scaled back keeps only a few bits (residual ~3e-4)
    system = _system(method)
    b = np.random.default_rng(0).standard_normal(system.n) * 1e-318
    result = solve(system, b, method=method, rtol=1e-6)
    assert not result.converged
    assert "outside the range of float64" in result.reason
    if not result.converged:
        assert relative_residual(system.A, result.x, b) > 1e-6


@pytest.mark.parametrize("method", ["fcg", "pcg-jacobi", "cg"])
@pytest.mark.parametrize("rtol", [1e-5, 1e-6])
def test_float32_stencil_runs_are_checked_against_the_float64_matrix(method, rtol):
    # the float32-rounded coefficients once let fcg and pcg-jacobi claim 1.07e-5 <= 1e-5
    rng = np.random.default_rng(11)
    failures = []
    for _ in range(6):
        g = (int(rng.integers(10, 19)),) * 2
        system = poisson(g, coefficient=np.exp(rng.uniform(-3, 3, g)))
        b = rng.standard_normal(system.n)
        kw = {"preconditioner": "jacobi"} if method == "fcg" else {}
        result = solve(system, b, method=method, dtype="float32", rtol=rtol, **kw)
        true = relative_residual(system.A, result.x, b)
        if result.converged and true > rtol:
            failures.append((g, true))
    assert not failures


def test_float32_mgpc_and_dcdm_check_against_the_float64_matrix():
    rng = np.random.default_rng(12)
    for method, g in (("mgpc-pcg", (12, 12)), ("dcdm", (6, 6, 6))):
        system = poisson(g, coefficient=np.exp(rng.uniform(-3, 3, g)))
        b = rng.standard_normal(system.n)
        result = solve(system, b, method=method, dtype="float32", rtol=1e-5)
        if result.converged:
            assert relative_residual(system.A, result.x, b) <= 1e-5


def test_a_nonfinite_residual_is_never_converged():
    # a preconditioner that returns NaN after a few products
    calls = {"n": 0}

    def poisoned(v):
        calls["n"] += 1
        return v * (np.nan if calls["n"] > 3 else 1.0)

    system = poisson((8, 8))
    result = solve(system, np.ones(system.n), method="fcg", preconditioner=poisoned)
    assert result.status is Status.NONFINITE


def test_result_reason_carries_the_detail():
    r = SolveResult(
        x=0.0,
        status=Status.BREAKDOWN,
        iterations=1,
        residuals=np.zeros(2),
        info={"detail": "p^T A p = -1 at iteration 1"},
    )
    assert r.reason.endswith("(p^T A p = -1 at iteration 1)")


def _indefinite():
    system = poisson((8, 8))
    lowest = np.linalg.eigvalsh(system.A.toarray())[0]
    A = (system.A - 1.5 * lowest * sp.eye(system.n)).tocsr()
    assert (A.diagonal() > 0).all() and np.linalg.eigvalsh(A.toarray())[0] < 0
    return LinearSystem(A=A, grid=system.grid)


@pytest.mark.parametrize("method", [*BASELINES, "amg-sa", "amg-rs"])
def test_baselines_report_a_broken_spd_premise(method):
    system = _indefinite()
    b = np.random.default_rng(2).standard_normal(system.n)
    result = solve(system, b, method=method)
    assert result.status in (Status.BREAKDOWN, Status.NONFINITE), result
    assert "not positive definite" in result.reason


def test_scipy_cg_curvature_check_names_the_iteration():
    system = _indefinite()
    result = ScipyCG(system, history="cheap").solve(np.ones(system.n))
    assert result.status is Status.BREAKDOWN
    assert "p^T A p" in result.info.detail and "iteration" in result.info.detail


@pytest.mark.parametrize("method", ["scipy-cg", "ic-pcg", "amg-sa", "amg-rs-pcg"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("meta")])
def test_cpu_only_methods_refuse_another_device(method, device):
    with pytest.raises(InvalidInputError, match=f"{method} runs on the CPU only"):
        make_solver(method, poisson((4, 4)), device=device)


def test_cpu_only_methods_accept_the_cpu_and_a_cpu_tensor():
    system = poisson((4, 4))
    assert make_solver("scipy-cg", system, device="cpu").solve(np.ones(16)).converged
    result = solve(system, torch.ones(16, dtype=torch.float64), method="amg-sa")
    assert result.converged and isinstance(result.x, torch.Tensor)


def _csr(indices, indptr, n=3):
    # built without scipy's checks, as a careless caller might
    A = sp.csr_matrix((n, n))
    A.data, A.indices, A.indptr = np.ones(len(indices)), np.asarray(indices), np.asarray(indptr)
    return A


@pytest.mark.parametrize(
    "matrix, message",
    [
        (_csr([0, 5, 10**9], [0, 1, 2, 3]), "column index 1000000000 is outside 0..2"),
        (_csr([0, -1, 2], [0, 1, 2, 3]), "column index -1 is outside 0..2"),
        (_csr([0, 1, 2], [0, 2, 1, 3]), "indptr is not monotone"),
        (_csr([0, 1, 2], [1, 2, 3, 3]), "indptr must start at 0"),
        (_csr([0, 1, 2], [0, 1, 2, 9]), "must start at 0 and end at the number of entries 3"),
        (_csr([0, 1, 2], [0, 1, 3]), "indptr has 3 entries, the shape .* needs 4"),
    ],
    ids=[
        "index-1e9",
        "negative-index",
        "indptr-decreasing",
        "indptr-start",
        "indptr-end",
        "indptr-short",
    ],
)
def test_corrupt_csr_structure_is_refused_before_arithmetic(matrix, message):
    with pytest.raises(InvalidInputError, match=message):
        prepare_system(matrix)
    with pytest.raises(InvalidInputError, match=message):
        solve(matrix, np.ones(3), method="cg")


def test_corrupt_csc_and_coo_are_refused():
    C = sp.csc_matrix(np.eye(3) * 2.0)
    C.indices = np.array([0, 7, 2], dtype=C.indices.dtype)
    with pytest.raises(InvalidInputError, match="row index 7 is outside 0..2"):
        prepare_system(C)
    O = sp.coo_matrix(np.eye(3) * 2.0)
    O.col = np.array([0, 1, 4], dtype=O.col.dtype)
    with pytest.raises(InvalidInputError, match="column index outside 0..2"):
        solve(O, np.ones(3), method="scipy-cg")


def test_dcdm_refuses_a_nonsymmetric_linear_system_and_takes_dtype_names():
    from neurosolve.solvers.dcdm import DCDMSolver

    system = poisson((4, 4, 4))
    A = system.A.tolil()
    A[0, 1] *= 1.5
    with pytest.raises(InvalidInputError, match="not symmetric"):
        DCDMSolver(LinearSystem(A=A.tocsr(), grid=system.grid))
    assert DCDMSolver(system, dtype="float32").dtype == torch.float32


def test_float64_twin_uses_the_original_coefficients():
    from neurosolve.solvers.krylov.operators import as_torch_operator, float64_twin

    system = poisson((6, 6), coefficient=np.exp(np.random.default_rng(1).uniform(-3, 3, (6, 6))))
    op32 = as_torch_operator(system, dtype=torch.float32)
    twin = float64_twin(op32, prepare_system(system))
    u = np.random.default_rng(2).standard_normal(system.n)
    v = torch.as_tensor(u).reshape(-1, 1)
    exact = torch.as_tensor(system.A @ u).reshape(-1, 1)
    got = twin.from_internal(twin.apply_internal(twin.to_internal(v)))
    rounded = op32.from_internal(op32.apply_internal(op32.to_internal(v.float()))).double()
    size = float(exact.abs().max())
    assert float((got - exact).abs().max()) <= 1e-13 * size
    assert float((rounded - exact).abs().max()) > 1e-9 * size  # what it used to check with
