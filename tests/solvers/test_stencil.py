"""StencilOperator and SparseOperator reproduce the CSR matrix they were built from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurosolve.data import LinearSystem, obstacle_flags, poisson
from neurosolve.data.grids import AIR, FLUID, SOLID, Grid
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.stencil import (
    SparseOperator,
    StencilOperator,
    apply_stencil,
    stencil_from_csr,
    stencil_residual,
)


def _coefficient(shape, seed=5):
    return np.exp(np.random.default_rng(seed).uniform(-3.0, 3.0, size=shape))


def _foreign_matrix(shape, seed=0):
    """A 5/7-point matrix with arbitrary (non-Poisson) symmetric values on a masked grid,
    as another code might export it."""
    rng = np.random.default_rng(seed)
    flags = np.where(rng.random(shape) < 0.75, FLUID, SOLID).astype(np.int8)
    grid = Grid(shape, flags=flags)
    cells = np.flatnonzero(grid.fluid.ravel())
    index = np.full(grid.num_cells, -1)
    index[cells] = np.arange(cells.size)
    coords = np.stack(np.unravel_index(cells, shape), axis=1)
    rows, cols, vals = [], [], []
    for axis in range(len(shape)):
        nb = coords.copy()
        nb[:, axis] += 1
        inside = nb[:, axis] < shape[axis]
        j = np.full(cells.size, -1)
        j[inside] = index[np.ravel_multi_index(tuple(nb[inside].T), shape)]
        ok = j >= 0
        w = -rng.uniform(0.1, 2.0, ok.sum())
        rows += [np.arange(cells.size)[ok], j[ok]]
        cols += [j[ok], np.arange(cells.size)[ok]]
        vals += [w, w]
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(cells.size, cells.size),
    )
    A = A + sp.diags(np.abs(A).sum(axis=1).A1 + rng.uniform(0.1, 1.0, cells.size))
    return LinearSystem(A.tocsr(), grid)


def _air_flags(shape):
    flags = obstacle_flags(shape, "boxes", 4, count=2)
    flags[-1] = AIR  # free surface on top
    return flags


CASES = {
    "poisson2d-9x13": lambda: poisson((9, 13)),
    "poisson2d-16-obstacles": lambda: poisson((16, 16), flags=obstacle_flags((16, 16), "mixed", 1)),
    "poisson2d-10-varcoef-neumann": lambda: poisson(
        (10, 10), coefficient=_coefficient((10, 10)), boundary="neumann"
    ),
    "poisson2d-12-air-surface": lambda: poisson((12, 12), flags=_air_flags((12, 12))),
    "poisson3d-6x7x8": lambda: poisson((6, 7, 8)),
    "poisson3d-10-obstacles-varcoef": lambda: poisson(
        (10, 10, 10),
        flags=obstacle_flags((10, 10, 10), "spheres", 2),
        coefficient=_coefficient((10, 10, 10)),
    ),
    "poisson3d-1x5x6-thin": lambda: poisson((1, 5, 6)),
    "foreign2d-11x9": lambda: _foreign_matrix((11, 9)),
    "foreign3d-5x6x7": lambda: _foreign_matrix((5, 6, 7), seed=1),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    system = CASES[request.param]()
    return system, StencilOperator.from_system(system)


def test_matvec_equals_csr(case):
    system, op = case
    x = np.random.default_rng(0).standard_normal((system.n, 3))
    scale = np.abs(system.A).max() * np.abs(x).max()
    got = op.matvec(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, system.A @ x, rtol=0, atol=1e-14 * scale)
    one = op.matvec(torch.from_numpy(x[:, 0])).numpy()
    np.testing.assert_allclose(one, system.A @ x[:, 0], rtol=0, atol=1e-14 * scale)


def test_stencil_arrays_rebuild_the_exact_matrix(case):
    """Every stored coefficient is an entry of A, bit for bit: rebuild A from the arrays."""
    system, op = case
    grid = system.grid
    n = system.n
    cells = np.flatnonzero(grid.fluid.ravel())
    index = np.full(grid.num_cells, -1)
    index[cells] = np.arange(n)
    coords = np.stack(np.unravel_index(cells, grid.shape))
    diag = op.diagonal.numpy()[tuple(coords)]
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [diag]
    for slot in range(2 * grid.ndim):
        axis, sign = divmod(slot, 2)
        nb = coords.copy()
        nb[axis] += 1 if sign else -1
        inside = (nb[axis] >= 0) & (nb[axis] < grid.shape[axis])
        coef = op.neighbours[slot].numpy()[tuple(coords)]
        nz = inside & (coef != 0)
        rows.append(np.arange(n)[nz])
        cols.append(index[np.ravel_multi_index(tuple(nb[:, nz]), grid.shape)])
        vals.append(coef[nz])
    rebuilt = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    diff = rebuilt - system.A
    assert diff.nnz == 0 or np.abs(diff.data).max() == 0.0


def test_forward_on_fields(case):
    system, op = case
    grid = system.grid
    x = np.random.default_rng(1).standard_normal((2, system.n))
    fields = torch.from_numpy(grid.to_field(x))
    out = op(fields)
    assert out.shape == fields.shape
    expected = grid.to_field((system.A @ x.T).T)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12 * np.abs(expected).max())
    out_c = op(fields.unsqueeze(1))
    assert out_c.shape == (2, 1, *grid.shape)
    np.testing.assert_allclose(out_c[:, 0].numpy(), out.numpy(), rtol=0, atol=0)
    assert not out.numpy()[:, ~grid.fluid].any()  # zero outside the fluid


def test_internal_layout_round_trip(case):
    system, op = case
    v = torch.randn(system.n, 2, dtype=torch.float64)
    internal = op.to_internal(v)
    assert internal.shape == (system.grid.num_cells, 2)
    assert torch.equal(op.from_internal(internal), v)
    assert torch.allclose(op.from_internal(op.apply_internal(internal)), op.matvec(v))


def test_sparse_operator_equals_csr(case):
    system, _ = case
    op = SparseOperator(system.A)
    x = np.random.default_rng(2).standard_normal((system.n, 2))
    np.testing.assert_allclose(
        op.matvec(torch.from_numpy(x)).numpy(),
        system.A @ x,
        rtol=1e-14,
        atol=1e-14 * np.abs(system.A @ x).max(),
    )
    assert "SparseOperator" in repr(op)


def test_float32_operator():
    system = poisson((8, 8, 8), coefficient=_coefficient((8, 8, 8)))
    op = StencilOperator.from_system(system, dtype=torch.float32)
    x = np.random.default_rng(3).standard_normal(system.n)
    y = op.matvec(torch.from_numpy(x))
    assert y.dtype == torch.float32
    ref = system.A @ x
    assert np.linalg.norm(y.double().numpy() - ref) <= 1e-6 * np.linalg.norm(ref)
    assert op.to(torch.float64).dtype == torch.float64  # buffers follow .to()


def test_rejects_nine_point_matrix():
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(6, 6))
    nine = sp.kron(T, T) + sp.kron(T, sp.eye(6)) + sp.kron(sp.eye(6), T)  # has corner terms
    with pytest.raises(InvalidInputError, match="off the 5-point stencil"):
        StencilOperator.from_matrix(nine.tocsr(), Grid((6, 6)))


def test_rejects_periodic_wraparound_and_wrong_grid():
    system = poisson((5, 5))
    A = system.A.tolil()
    A[0, 4] = A[4, 0] = -1.0  # wraps around the row end: not a face neighbour
    with pytest.raises(InvalidInputError, match="couples cells"):
        StencilOperator.from_matrix(A.tocsr(), system.grid)
    with pytest.raises(InvalidInputError, match="fluid cells"):
        StencilOperator.from_matrix(system.A, Grid((5, 6)))
    with pytest.raises(InvalidInputError, match="grid"):
        StencilOperator.from_system(LinearSystem(system.A, None))
    # the same unknowns seen as a (5, 5, 1) grid: a valid 7-point matrix there
    assert StencilOperator.from_matrix(system.A, Grid((5, 5, 1))).num_unknowns == 25


def test_rejects_27_point_matrix():
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4))
    A = sp.kron(sp.kron(T, T), T) + 30 * sp.eye(64)  # couples edge and corner neighbours
    with pytest.raises(InvalidInputError, match="off the 7-point stencil"):
        StencilOperator.from_matrix(A.tocsr(), Grid((4, 4, 4)))


def test_rejects_bad_shapes():
    op = StencilOperator.from_system(poisson((4, 4)))
    with pytest.raises(InvalidInputError, match="expected fields"):
        op(torch.zeros(2, 5, 4, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="n=16"):
        op.matvec(torch.zeros(15, dtype=torch.float64))
    with pytest.raises(InvalidInputError, match="dtype"):
        StencilOperator.from_system(poisson((4, 4)), dtype=torch.int64)


@pytest.mark.parametrize("shape", [(9, 7), (5, 6, 4)])
def test_kernel_is_batched_over_matrices_and_fields(shape):
    """One call applies G different matrices to K fields each, as G * K CSR products."""
    systems = [_foreign_matrix(shape, seed=3), poisson(shape, coefficient=_coefficient(shape))]
    arrays = [stencil_from_csr(system.A, system.grid) for system in systems]
    diagonal = torch.from_numpy(np.stack([d for d, _ in arrays]))[:, None]
    couplings = torch.from_numpy(np.stack([c for _, c in arrays]))
    rng = np.random.default_rng(4)
    x = [rng.standard_normal((3, system.n)) for system in systems]
    u = torch.from_numpy(
        np.stack([sys_.grid.to_field(v) for sys_, v in zip(systems, x, strict=True)])
    )
    out = apply_stencil(diagonal, couplings, u)
    f = torch.randn(u.shape, dtype=torch.float64)
    residual = stencil_residual(diagonal, couplings, u, f)
    for g, system in enumerate(systems):
        expected = (system.A @ x[g].T).T
        scale = np.abs(system.A).max() * np.abs(x[g]).max()
        got = system.grid.to_vector(out[g].numpy())
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14 * scale)
    torch.testing.assert_close(residual, f - out, rtol=0, atol=1e-14 * float(out.abs().max()))


def test_kernel_refuses_couplings_of_another_dimension():
    with pytest.raises(InvalidInputError, match="expected 4 channels"):
        apply_stencil(torch.ones(1, 1, 3, 3), torch.ones(1, 6, 3, 3), torch.ones(1, 1, 3, 3))
    with pytest.raises(InvalidInputError, match="sparse"):
        stencil_from_csr(np.eye(4), Grid((2, 2)))
