"""The vectorized MGPC setup (issue 13) against reference computations, on small random grids.

Every fast setup function is checked against a direct, obviously correct computation: the
CSR-to-stencil read against dense-matrix lookups (and its refusals, message for message),
the channels-last network against the channels-first formulation it replaced, the Galerkin
coarse stencils against ``R A R^T`` formed with explicit matrices, the coarsest dense matrix
against the stencil applied to the identity, and the coarsest inverse against
``numpy.linalg``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from neurosolve.data import poisson
from neurosolve.data.grids import FLUID, SOLID, Grid
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.stencil import stencil_from_csr

SHAPES = [(1, 1), (1, 5), (6, 1), (5, 7), (4, 1, 3), (1, 4, 4), (3, 4, 5), (6, 5, 4)]


def random_grid(shape, rng, solid=0.25):
    flags = np.where(rng.random(shape) < solid, SOLID, FLUID).astype(np.int8)
    flags.flat[int(rng.integers(flags.size))] = FLUID  # at least one unknown
    return Grid(shape, flags=flags)


def neighbour(cell, a, sign, shape):
    """The face neighbour of ``cell`` along ``a`` (``sign`` -1 or +1), or None outside."""
    other = list(cell)
    other[a] += sign
    return tuple(other) if 0 <= other[a] < shape[a] else None


def random_stencil_matrix(grid, rng):
    """A random symmetric matrix on the 5/7-point pattern of ``grid`` (no structure assumed)."""
    cells = np.flatnonzero(grid.fluid.ravel())
    index = -np.ones(grid.num_cells, dtype=np.int64)
    index[cells] = np.arange(cells.size)
    rows, cols, vals = [], [], []
    for i, c in enumerate(cells):
        cell = np.unravel_index(c, grid.shape)
        rows.append(i), cols.append(i), vals.append(4.0 + rng.random())
        for a in range(grid.ndim):
            other = neighbour(cell, a, 1, grid.shape)
            if other is None or index[np.ravel_multi_index(other, grid.shape)] < 0:
                continue
            j = int(index[np.ravel_multi_index(other, grid.shape)])
            v = -rng.random() - 0.1
            rows += [i, j]
            cols += [j, i]
            vals += [v, v]
    n = cells.size
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def reference_stencil(A, grid):
    """Diagonal and couplings by dense lookups, or None if ``A`` has an entry off the pattern."""
    dense = A.toarray()
    cells = np.flatnonzero(grid.fluid.ravel())
    index = -np.ones(grid.num_cells, dtype=np.int64)
    index[cells] = np.arange(cells.size)
    diagonal = np.zeros(grid.shape)
    couplings = np.zeros((2 * grid.ndim, *grid.shape))
    used = np.zeros(dense.shape, dtype=bool)
    for i, c in enumerate(cells):
        cell = np.unravel_index(c, grid.shape)
        diagonal[cell] = dense[i, i]
        used[i, i] = True
        for a in range(grid.ndim):
            for side, sign in ((0, -1), (1, 1)):
                other = neighbour(cell, a, sign, grid.shape)
                if other is None:
                    continue
                j = int(index[np.ravel_multi_index(other, grid.shape)])
                if j >= 0:
                    couplings[(2 * a + side, *cell)] = dense[i, j]
                    used[i, j] = True
    if np.any(dense[~used] != 0):
        return None
    return diagonal, couplings


def assert_bitwise(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float64 and g.shape == e.shape
        np.testing.assert_array_equal(g, e)
        assert not np.signbit(g[g == 0]).any()  # no negative zeros from explicit -0.0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_stencil_read_matches_dense_lookup(shape, seed):
    rng = np.random.default_rng(seed)
    grid = random_grid(shape, rng)
    A = random_stencil_matrix(grid, rng)
    assert_bitwise(stencil_from_csr(A, grid), reference_stencil(A, grid))


def test_stencil_read_of_assembled_systems():
    rng = np.random.default_rng(3)
    for shape in [(9, 8), (6, 5, 7)]:
        grid = random_grid(shape, rng)
        system = poisson(grid.shape, flags=grid.flags, boundary="neumann")
        assert_bitwise(stencil_from_csr(system.A, system.grid), reference_stencil(system.A, grid))


def test_stencil_read_sums_duplicates_and_drops_explicit_zeros():
    rng = np.random.default_rng(4)
    grid = random_grid((4, 5, 3), rng)
    A = random_stencil_matrix(grid, rng).tocoo()
    n = A.shape[0]
    half = rng.random(A.nnz) < 0.5  # every entry split into two summands, some of them
    rows = np.concatenate([A.row, A.row[half]])
    cols = np.concatenate([A.col, A.col[half]])
    vals = np.concatenate([np.where(half, 0.5 * A.data, A.data), 0.5 * A.data[half]])
    far = (np.arange(n), (np.arange(n) + n // 2 + 1) % n)  # off the pattern, but zero
    rows = np.concatenate([rows, far[0], far[0]])
    cols = np.concatenate([cols, far[1], far[1]])
    vals = np.concatenate([vals, np.full(n, -0.0), np.zeros(n)])
    messy = sp.coo_matrix((vals, (rows, cols)), shape=A.shape)
    expected = reference_stencil(messy.tocsr(), grid)
    assert expected is not None
    assert_bitwise(stencil_from_csr(messy, grid), expected)
    assert_bitwise(stencil_from_csr(messy.tocsr(), grid), expected)


def test_stencil_read_keeps_explicit_negative_zero_on_the_pattern_positive():
    system = poisson((3, 4))
    A = system.A.tocsr(copy=True)
    first = int(np.flatnonzero(A.data < 0)[0])
    A.data[first] = -0.0
    expected = reference_stencil(A, system.grid)
    assert_bitwise(stencil_from_csr(A, system.grid), expected)


OFF_PATTERN = [
    # (shape, entries set symmetrically, message)
    (
        (5, 5),
        [(0, 4)],
        "matrix has 2 entries off the 5-point stencil of grid (5, 5), "
        "e.g. A[0, 4] couples cells (0, 0) and (0, 4)",
    ),
    (
        (5, 5),
        [(3, 9), (4, 5)],
        "matrix has 4 entries off the 5-point stencil of grid (5, 5), "
        "e.g. A[3, 9] couples cells (0, 3) and (1, 4)",
    ),
    (
        (3, 4, 5),
        [(4, 5)],
        "matrix has 2 entries off the 7-point stencil of grid (3, 4, 5), "
        "e.g. A[4, 5] couples cells (0, 0, 4) and (0, 1, 0)",
    ),
    (
        (3, 4, 5),
        [(15, 20)],
        "matrix has 2 entries off the 7-point stencil of grid "
        "(3, 4, 5), e.g. A[15, 20] couples cells (0, 3, 0) and (1, 0, 0)",
    ),
    (
        (3, 4, 5),
        [(0, 59)],
        "matrix has 2 entries off the 7-point stencil of grid (3, 4, 5), "
        "e.g. A[0, 59] couples cells (0, 0, 0) and (2, 3, 4)",
    ),
]


@pytest.mark.parametrize(("shape", "entries", "message"), OFF_PATTERN)
def test_stencil_read_refuses_entries_off_the_pattern(shape, entries, message):
    """Wrap-around along every axis and far couplings: the count and the first entry."""
    system = poisson(shape)
    A = system.A.tolil()
    for i, j in entries:
        A[i, j] = A[j, i] = -1.0
    with pytest.raises(InvalidInputError) as err:
        stencil_from_csr(A.tocsr(), system.grid)
    assert str(err.value) == message


@pytest.mark.parametrize("seed", range(6))
def test_stencil_read_refuses_random_stray_entries(seed):
    rng = np.random.default_rng(10 + seed)
    grid = random_grid([(6, 7), (4, 5, 3), (1, 6, 5)][seed % 3], rng)
    A = random_stencil_matrix(grid, rng).tolil()
    n = A.shape[0]
    for _ in range(1 + seed % 2):
        i, j = (int(v) for v in rng.integers(n, size=2))
        A[i, j] = A[j, i] = 1.5
    A = A.tocsr()
    if reference_stencil(A, grid) is not None:  # landed on the pattern: read exactly
        assert_bitwise(stencil_from_csr(A, grid), reference_stencil(A, grid))
        return
    with pytest.raises(InvalidInputError, match="entries off the"):
        stencil_from_csr(A, grid)


def test_stencil_read_refusals_before_the_pattern():
    system = poisson((4, 4))
    bad = system.A.tocsr(copy=True)
    bad.data[3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN/Inf"):
        stencil_from_csr(bad, system.grid)
    with pytest.raises(InvalidInputError, match="16x16 but the grid has 20 fluid cells"):
        stencil_from_csr(system.A, Grid((4, 5)))
    with pytest.raises(InvalidInputError, match="scipy sparse"):
        stencil_from_csr(system.A.toarray(), system.grid)
