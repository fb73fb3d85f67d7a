"""PCG on the recurrence residual: one host transfer per iteration, the true residual only where
a decision rests on it, and the same iterates as the per-iteration true-residual history."""

import importlib

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.solvers import native, relative_residual, solve
from neurosolve.solvers.krylov import CGSolver, cg, condition_estimate
from neurosolve.solvers.result import Status
from neurosolve.solvers.stencil import SparseOperator

cg_module = importlib.import_module(
    "neurosolve.solvers.krylov.cg"
)  # the package's cg is a function


def _system():
    shape = (12, 12, 12)
    coefficient = np.exp(np.random.default_rng(3).uniform(-2.0, 2.0, shape))
    return poisson(
        shape, flags=obstacle_flags(shape, "spheres", 4, count=2), coefficient=coefficient
    )


@pytest.fixture(scope="module")
def system():
    return _system()


def test_recurrence_is_the_default_and_costs_one_product_per_iteration(system):
    b = np.random.default_rng(0).standard_normal(system.n)
    result = solve(system, b, method="pcg-jacobi", rtol=1e-8)
    assert CGSolver(system).history == "recurrence" and result.info["history"] == "recurrence"
    assert result.converged and relative_residual(system.A, result.x, b) <= 1e-8
    # zero guess: r0 = b without a product; one product per iteration; one float64 check
    assert result.matvecs == result.iterations + 1
    assert result.info["verification_matvecs"] == 1


@pytest.mark.parametrize("method", ["cg", "pcg-jacobi", "fcg"])
def test_true_history_takes_the_same_steps(system, method):
    b = np.random.default_rng(1).standard_normal(system.n)
    options = {"preconditioner": "jacobi"} if method == "fcg" else {}
    cheap = solve(system, b, method=method, rtol=1e-9, **options)
    true = solve(system, b, method=method, rtol=1e-9, history="true", **options)
    assert cheap.iterations == true.iterations and cheap.converged and true.converged
    np.testing.assert_allclose(cheap.x, true.x, rtol=0, atol=1e-12 * np.abs(true.x).max())
    assert true.matvecs == 2 * true.iterations
    # the recurrence residual tracks the true one until rounding separates them
    head = slice(1, min(20, true.iterations))
    np.testing.assert_allclose(cheap.residuals[head], true.residuals[head], rtol=1e-6)
    assert cheap.residuals[-1] == pytest.approx(relative_residual(system.A, cheap.x, b))


def test_one_host_transfer_per_iteration(system, monkeypatch):
    calls = []
    real = cg_module.host_values

    def counting(values):
        calls.append(len(values))
        return real(values)

    monkeypatch.setattr(cg_module, "host_values", counting)
    b = np.random.default_rng(2).standard_normal(system.n)
    result = solve(system, b, method="pcg-jacobi", rtol=1e-8)
    assert sum(result.info["residual_replacements"]) == 0
    assert len(calls) == result.iterations
    assert set(calls) == {3}  # p^T A p, r^T z and r^T r travel together


@pytest.mark.skipif(not native.available(), reason="numba is not installed")
def test_the_converged_iteration_skips_the_preconditioner(system):
    import scipy.sparse.linalg as spla

    applied = []
    diagonal = system.A.diagonal()

    def jacobi(r):  # counts its applications
        applied.append(1)
        return r.reshape(-1) / diagonal

    M = spla.LinearOperator(system.A.shape, matvec=jacobi, dtype=np.float64)
    b = np.random.default_rng(4).standard_normal(system.n)
    with native.kernel_threads(1):  # the step's native pass gives r^T r (as in MGPC)
        result = solve(system, b, method="pcg", preconditioner=M, rtol=1e-8)
    reference = solve(system, b, method="pcg-jacobi", rtol=1e-8)
    assert result.converged and result.iterations == reference.iterations
    assert len(applied) == result.iterations  # M r_0 .. M r_{k-1}: not the last residual
    applied.clear()
    outside = solve(system, b, method="pcg", preconditioner=M, rtol=1e-8)
    assert len(applied) == outside.iterations + 1  # elsewhere: the usual path, no extra pass
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=1e-10 * np.abs(result.x).max())
    est, ref = condition_estimate(result.info), condition_estimate(reference.info)
    assert est == pytest.approx(ref, rel=1e-8)


def test_breakdown_never_moves_x():
    A = sp.csr_matrix(np.diag([1.0, -1.0, 2.0]))
    b = np.array([1.0, 1.0, 0.0])  # p^T A p = 0 at the first step
    result = cg(A, b, rtol=1e-10, check_symmetry=False)
    assert result.status is Status.BREAKDOWN
    np.testing.assert_array_equal(result.x, np.zeros(3))
    B = np.stack([b, np.array([1.0, 0.0, 1.0])], axis=1)  # the second column is fine
    batch = cg(A, B, rtol=1e-10, check_symmetry=False)
    assert batch.info["column_status"] == ["breakdown", "converged"]
    np.testing.assert_array_equal(batch.x[:, 0], np.zeros(3))
    np.testing.assert_allclose(batch.x[:, 1], [1.0, 0.0, 0.5])


@pytest.mark.parametrize(
    "options",
    [{}, {"preconditioner": "jacobi", "restart": 7}, {"preconditioner": "jacobi", "truncation": 3}],
    ids=["cg", "fcg-restart", "fcg-m3"],
)
def test_single_column_matches_its_column_in_a_block(system, options):
    # a block goes through every check column by column; one column through the quiet path
    rng = np.random.default_rng(4)
    B = rng.standard_normal((system.n, 2))
    method = "fcg" if options else "cg"
    single = solve(system, B[:, 0], method=method, rtol=1e-9, **options)
    block = solve(system, B, method=method, rtol=1e-9, **options)
    assert block.info["column_iterations"][0] == single.iterations
    # the same iterates up to the summation order of the block's reductions (BLAS-dependent):
    # agreement far below the solve's tolerance, measured in norm rather than entry by entry
    gap = np.linalg.norm(block.x[:, 0] - single.x) / np.linalg.norm(single.x)
    assert gap < 1e-10
    if "alphas" in single.info:  # until rounding (another summation order) separates them
        head = slice(0, 20)
        np.testing.assert_allclose(block.info["alphas"][head, 0], single.info["alphas"][head])


def test_float32_iteration_still_confirms_in_float64(system):
    b = np.random.default_rng(5).standard_normal(system.n)
    result = solve(system, b, method="cg", rtol=1e-5, dtype=torch.float32)
    assert result.converged
    assert relative_residual(system.A, result.x.astype(np.float64), b) <= 1e-5


def test_sparse_operator_uses_int32_indices_and_matches_scipy():
    A = sp.random(40, 40, density=0.2, random_state=0, format="csr")
    A = (A + A.T).tocsr()
    op = SparseOperator(A)
    assert op.matrix.crow_indices().dtype == torch.int32
    X = np.random.default_rng(6).standard_normal((40, 3))
    for block in (X[:, :1], X):
        out = op.apply_internal(torch.from_numpy(block)).numpy()
        np.testing.assert_allclose(out, A @ block, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(op.matvec(torch.from_numpy(X[:, 0])).numpy(), A @ X[:, 0])
