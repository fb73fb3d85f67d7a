"""scipy / IC(0) / pyamg baselines, driven to the true-residual stopping rule."""

from __future__ import annotations

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import make_solver, solve
from neurosolve.solvers.baselines import IncompleteCholesky
from neurosolve.solvers.result import Status, relative_residual

BASELINES = [
    "scipy-cg",
    "scipy-cg-jacobi",
    "ic-pcg",
    "amg-sa",
    "amg-rs",
    "amg-sa-pcg",
    "amg-rs-pcg",
]


def _coefficient(shape, seed=7):
    return np.exp(np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape))


PROBLEMS = {
    "poisson2d-24": lambda: poisson((24, 24)),
    "poisson2d-20-obstacles-varcoef": lambda: poisson(
        (20, 20),
        flags=obstacle_flags((20, 20), "boxes", 3, count=3),
        coefficient=_coefficient((20, 20)),
    ),
    "poisson3d-10-obstacles": lambda: poisson(
        (10, 10, 10), flags=obstacle_flags((10, 10, 10), "spheres", 4, count=2)
    ),
    "poisson3d-8-varcoef-neumann": lambda: poisson(
        (8, 8, 8), coefficient=_coefficient((8, 8, 8)), boundary="neumann"
    ),
}


@pytest.fixture(scope="module")
def systems():
    return {name: build() for name, build in PROBLEMS.items()}


def _rhs(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_baseline_solves_to_1e8_and_agrees_with_spsolve(systems, problem, method):
    system = systems[problem]
    b = _rhs(system.n)
    result = solve(system, b, method=method, rtol=1e-8)
    assert result.converged, result.reason
    true = relative_residual(system.A, result.x, b)
    assert true <= 1e-8
    assert result.final_residual == pytest.approx(true, rel=1e-8)
    exact = spla.spsolve(system.A.tocsc(), b)
    assert np.linalg.norm(result.x - exact) <= 1e-5 * np.linalg.norm(exact)
    assert result.residuals.shape == (result.iterations + 1,)
    assert result.setup_seconds >= 0 and result.solve_seconds > 0


def test_scipy_cg_takes_scipys_iteration_count(systems):
    system = systems["poisson2d-20-obstacles-varcoef"]
    b = _rhs(system.n, 1)
    ours = solve(system, b, method="scipy-cg", rtol=1e-8)
    count = [0]

    def cb(_):
        count[0] += 1

    spla.cg(system.A, b, rtol=1e-8, callback=cb)
    assert abs(ours.iterations - count[0]) <= 1
    assert ours.info["restarts"] == 0


def test_true_history_of_scipy_cg(systems):
    system = systems["poisson2d-24"]
    b = _rhs(system.n, 2)
    iterates = []
    result = solve(system, b, method="scipy-cg-jacobi", rtol=1e-8, callback=iterates.append)
    recomputed = [relative_residual(system.A, x, b) for x in iterates]
    np.testing.assert_allclose(result.residuals[1:], recomputed, rtol=1e-10)
    cheap = solve(system, b, method="scipy-cg-jacobi", rtol=1e-8, history="cheap")
    assert np.isnan(cheap.residuals[1:-1]).all() and np.isfinite(cheap.residuals[[0, -1]]).all()
    assert cheap.iterations == result.iterations


@pytest.mark.parametrize("kind", ["amg-sa", "amg-rs"])
def test_amg_history_matches_pyamg_own(systems, kind):
    system = systems["poisson3d-10-obstacles"]
    b = _rhs(system.n, 3)
    solver = make_solver(kind, system)
    result = solver.solve(b, rtol=1e-8)
    expected_type = pyamg.MultilevelSolver
    assert isinstance(solver.ml, expected_type)
    residuals: list[float] = []  # pyamg's own loop on the same hierarchy
    solver.ml.solve(b, tol=1e-8, residuals=residuals, accel=None, maxiter=500)
    assert result.iterations == len(residuals) - 1
    np.testing.assert_allclose(result.residuals, np.array(residuals) / np.linalg.norm(b), rtol=1e-8)


def test_setup_is_measured_apart_and_solvers_are_reusable(systems):
    system = systems["poisson2d-24"]
    solver = make_solver("amg-sa-pcg", system)
    assert solver.setup_seconds > 0 and "levels" in repr(solver)
    for seed in range(3):
        result = solver.solve(_rhs(system.n, seed), rtol=1e-8)
        assert result.converged and result.setup_seconds == solver.setup_seconds


def test_block_rhs_is_solved_per_column(systems):
    system = systems["poisson2d-24"]
    B = np.stack([_rhs(system.n, 0), np.zeros(system.n), 1e-4 * _rhs(system.n, 1)], axis=1)
    result = solve(system, B, method="ic-pcg", rtol=1e-9)
    assert result.converged and result.x.shape == B.shape
    assert result.info["column_iterations"][1] == 0 and not result.x[:, 1].any()
    for j in (0, 2):
        assert relative_residual(system.A, result.x[:, j], B[:, j]) <= 1e-9


def test_torch_rhs_gives_torch_solution(systems):
    system = systems["poisson2d-24"]
    result = solve(system, torch.ones(system.n, dtype=torch.float64), method="amg-rs")
    assert isinstance(result.x, torch.Tensor) and result.converged


def test_maxiter_and_zero_rhs(systems):
    system = systems["poisson3d-8-varcoef-neumann"]
    b = _rhs(system.n)
    for method in ("scipy-cg", "amg-sa"):
        result = solve(system, b, method=method, rtol=1e-12, maxiter=2)
        assert result.status is Status.MAXITER and result.iterations == 2
        assert result.final_residual == pytest.approx(relative_residual(system.A, result.x, b))
        zero = solve(system, np.zeros(system.n), method=method)
        assert zero.converged and zero.iterations == 0 and not zero.x.any()


@pytest.mark.parametrize("method", BASELINES)
def test_baselines_reject_bad_input(systems, method):
    system = systems["poisson2d-24"]
    with pytest.raises(InvalidInputError, match="not symmetric"):
        solve(sp.triu(system.A).tocsr(), np.ones(system.n), method=method)
    with pytest.raises(InvalidInputError, match="NaN"):
        solve(system, np.full(system.n, np.nan), method=method)
    with pytest.raises(InvalidInputError, match="shape"):
        solve(system, np.ones(system.n + 1), method=method)


def test_scipy_cg_on_indefinite_matrix_is_not_converged():
    A = (poisson((10, 10)).A - 300.0 * sp.eye(100)).tocsr()
    b = _rhs(100)
    result = solve(A, b, method="scipy-cg", rtol=1e-8, maxiter=300)
    assert not result.converged or relative_residual(A, result.x, b) <= 1e-8


# ------------------------------------------------------------------------------------- IC(0)
def _dense_ic0(A):
    """Textbook row-by-row IC(0) on the pattern of A (reference)."""
    A = A.toarray()
    n = A.shape[0]
    L = np.zeros_like(A)
    for i in range(n):
        for j in range(i):
            if A[i, j] != 0:
                L[i, j] = (A[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
        L[i, i] = np.sqrt(A[i, i] - L[i, :i] @ L[i, :i])
    return L


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ic0_matches_reference_on_matrices_with_triangles(seed):
    rng = np.random.default_rng(seed)
    B = sp.random(50, 50, density=0.12, random_state=rng)
    A = (B + B.T).tocsr()
    A = (A + sp.diags(np.abs(A).sum(axis=1).A1 + 1.0)).tocsr()
    ic = IncompleteCholesky(A)
    np.testing.assert_allclose(ic.L.toarray(), _dense_ic0(A), atol=1e-13)
    r = rng.standard_normal((50, 2))
    np.testing.assert_allclose(ic.L @ (ic.L.T @ ic.solve(r)), r, atol=1e-12)


def test_ic0_reproduces_a_on_its_pattern():
    system = poisson((6, 7, 5), flags=obstacle_flags((6, 7, 5), "boxes", 2, count=2))
    ic = IncompleteCholesky(system.A)
    LLt = (ic.L @ ic.L.T).tocsr()
    lower = sp.tril(system.A).tocoo()
    np.testing.assert_allclose(
        np.asarray(LLt[lower.row, lower.col]).ravel(), lower.data, rtol=1e-12
    )
    assert ic.shift == 0.0 and len(ic.levels) == 6 + 7 + 5 - 2


def test_ic0_shifts_when_a_pivot_fails():
    # Kershaw's matrix: SPD, but zero-fill incomplete Cholesky meets a negative pivot.
    A = sp.csr_matrix(
        np.array(
            [
                [3.0, -2.0, 0.0, 2.0],
                [-2.0, 3.0, -2.0, 0.0],
                [0.0, -2.0, 3.0, -2.0],
                [2.0, 0.0, -2.0, 3.0],
            ]
        )
    )
    assert np.linalg.eigvalsh(A.toarray()).min() > 0
    ic = IncompleteCholesky(A)
    assert ic.shift > 0
    result = solve(A, np.ones(4), method="ic-pcg", rtol=1e-10)
    assert result.converged


@pytest.mark.parametrize("method", BASELINES)
def test_singular_inconsistent_system_is_not_converged(method):
    system = poisson((10, 10), boundary="neumann", pin="none")
    result = solve(system, _rhs(system.n), method=method, rtol=1e-8, maxiter=60)
    assert not result.converged and result.reason


def test_scipy_driver_stops_a_diverging_run():
    rng = np.random.default_rng(0)
    A = 2.0 * np.eye(30) + 3.0 * np.triu(rng.standard_normal((30, 30)), 1)  # not symmetric
    result = solve(A, np.ones(30), method="scipy-cg", check_symmetry=False, maxiter=1000)
    assert result.status in (Status.DIVERGED, Status.NONFINITE)
    assert result.iterations < 1000
