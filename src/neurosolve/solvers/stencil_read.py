"""Reading a 5/7-point CSR matrix into the stencil layout, and checking it there.

:func:`stencil_from_csr` turns any matrix of the pattern (variable coefficients, obstacles,
matrices exported by other codes) into the diagonal and couplings of
:func:`~neurosolve.solvers.stencil.apply_stencil`, bit for bit; :func:`check_stencil_spd`
checks such a read as an SPD system matrix in one pass over it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from neurosolve.data.grids import Grid
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native_matrix

__all__ = ["check_stencil_spd", "stencil_from_csr"]


def stencil_from_csr(
    matrix: Any, grid: Grid, *, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Extract the stencil arrays of a 5/7-point matrix over the FLUID cells of ``grid``.

    Every stored value is an entry of the matrix, bit for bit (duplicates summed, explicit
    zeros dropped), so the arrays reproduce *any* such matrix (variable coefficients,
    obstacles, matrices exported by other codes).

    The read is a few vectorized passes over the entries: the offset between the grid cells
    of an entry's column and row (``-+stride_a`` along axis ``a``, 0 on the diagonal) names
    its coupling through a lookup table, and every entry is scattered straight to its place
    in one array holding the couplings and the diagonal. An offset the table does not know
    is off the pattern; a face offset that wraps around the end of a grid line (e.g.
    ``c + 1`` from the last cell of a row) lands on a grid face where no coupling exists,
    which is checked on those faces alone.

    Parameters
    ----------
    matrix : scipy sparse matrix
        One row per fluid cell of ``grid``, in C order.
    grid : Grid
        The grid and its cell flags.
    check_finite : bool
        Refuse NaN/Inf entries (``False``: the caller checks the result instead; non-finite
        values are then read like any other).

    Returns
    -------
    diagonal : numpy.ndarray, shape ``grid.shape``
    couplings : numpy.ndarray, shape ``(2 * grid.ndim, *grid.shape)``
        float64, zero outside the fluid (the layout of :func:`apply_stencil`, unbatched).

    Raises
    ------
    InvalidInputError
        Not a sparse matrix, NaN/Inf entries, not one row per fluid cell, or an entry that
        is not the diagonal or a face neighbour (e.g. a 9-point matrix or a wrong grid).

    Examples
    --------
    >>> A = sp.csr_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]]))
    >>> diagonal, couplings = stencil_from_csr(A, Grid((1, 2)))
    >>> diagonal.tolist(), couplings[:, 0].tolist()
    ([[2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
    >>> stencil_from_csr(sp.eye(5).tocsr(), Grid((2, 2)))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: matrix is 5x5 but the grid has 4 fluid cells...
    """
    csr = _csr_entries(matrix, grid, check_finite)
    shape, ndim = tuple(grid.shape), grid.ndim
    out = _scatter_entries(csr, grid)
    if out is None:
        raise _off_pattern_error(csr, grid)
    out = out.reshape(2 * ndim + 1, *shape)
    couplings = out[: 2 * ndim]
    for a in range(ndim):  # a coupling on the outer face of its own direction wrapped around
        if couplings[2 * a].take(0, axis=a).any() or couplings[2 * a + 1].take(-1, axis=a).any():
            raise _off_pattern_error(csr, grid)
    return out[2 * ndim], couplings


_CHUNK_ROWS = 1 << 14  # rows per pass: the temporaries stay in cache (3x faster at 64^3)


def _scatter_entries(csr: sp.csr_matrix, grid: Grid) -> np.ndarray | None:
    """The non-zero entries scattered to ``(2 d + 1) * N`` slots; None if one is off the table.

    Slots ``0 .. 2 d - 1`` hold the couplings, slot ``2 d`` the diagonal, of every cell.
    Rows are read in chunks of :data:`_CHUNK_ROWS`: per chunk, the grid cell of every
    entry's row (a repeat), the cell offset of its column (one gather), its slot (one table
    lookup) and the scatter, every temporary small enough to stay in cache.
    """
    cells_total = grid.num_cells
    cells = np.flatnonzero(grid.fluid.ravel())
    shifted = cells + (cells_total - 1)  # table index = column cell - row cell + N - 1
    table = _slot_table(tuple(grid.shape))
    out = np.empty((2 * grid.ndim + 1) * cells_total)
    indptr, indices, data = csr.indptr, csr.indices, csr.data
    done = native_matrix.scatter_entries(indptr, indices, data, cells, table, out)  # one pass
    if done is not None:
        return out if done else None
    out[:] = 0.0
    for start in range(0, csr.shape[0], _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, csr.shape[0])
        lo, hi = indptr[start], indptr[stop]
        rcell = np.repeat(cells[start:stop], np.diff(indptr[start : stop + 1]))
        place = np.take(shifted, indices[lo:hi])
        place -= rcell
        place = np.take(table, place)
        place += rcell  # slot * N + row cell; negative off the stencil
        values = data[lo:hi]
        if np.count_nonzero(values) < values.size:  # explicit zeros: dropped, as A's zeros
            keep = values != 0
            place, values = place[keep], values[keep]
        if place.size and place.min() < 0:
            return None
        out[place] = values
    return out


def _slot_table(shape: tuple[int, ...]) -> np.ndarray:
    """``table[delta + N - 1]``: ``slot * N`` for the cell offsets of the stencil, else < -N.

    Slot ``2 a`` is the coupling to ``-e_a``, ``2 a + 1`` to ``+e_a``, ``2 d`` the diagonal.
    Axes of one cell have no neighbours (and their strides would alias another axis').
    """
    ndim, cells = len(shape), int(np.prod(shape))
    table = np.full(2 * cells - 1, -(2 * ndim + 2) * cells, dtype=np.int64)
    table[cells - 1] = 2 * ndim * cells
    for a in range(ndim):
        stride = int(np.prod(shape[a + 1 :]))
        if shape[a] > 1:
            table[cells - 1 - stride] = 2 * a * cells
            table[cells - 1 + stride] = (2 * a + 1) * cells
    return table


def _off_pattern_error(csr: sp.csr_matrix, grid: Grid) -> InvalidInputError:
    """The refusal of a matrix with entries off the stencil: how many, and the first one.

    Entry by entry (the error path only): the non-zero entries in CSR order, each one
    either the diagonal or a face neighbour that does not wrap around a grid line.
    """
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    keep = csr.data != 0
    rows, cols = rows[keep], csr.indices[keep].astype(np.int64)
    cells = np.flatnonzero(grid.fluid.ravel())
    rcell = cells[rows]
    delta = cells[cols] - rcell
    good = delta == 0
    for a, size in enumerate(grid.shape):
        stride = int(np.prod(grid.shape[a + 1 :]))
        coord = (rcell // stride) % size
        good |= (delta == -stride) & (coord > 0)
        good |= (delta == stride) & (coord < size - 1)
    bad = np.flatnonzero(~good)
    i = int(bad[0])
    rc = tuple(int(c) for c in np.unravel_index(rcell[i], grid.shape))
    cc = tuple(int(c) for c in np.unravel_index(rcell[i] + delta[i], grid.shape))
    return InvalidInputError(
        f"matrix has {bad.size} entries off the {2 * grid.ndim + 1}-point stencil "
        f"of grid {grid.shape}, e.g. A[{rows[i]}, {cols[i]}] couples cells {rc} and {cc}"
    )


def _csr_entries(matrix: Any, grid: Grid, check_finite: bool = True) -> sp.csr_matrix:
    """The float64 CSR matrix, canonical (duplicates summed), after the shape/finite checks."""
    if not sp.issparse(matrix):
        raise InvalidInputError(f"A must be a scipy sparse matrix, got {type(matrix).__name__}")
    n = grid.num_unknowns
    if matrix.shape != (n, n):
        raise InvalidInputError(
            f"matrix is {matrix.shape[0]}x{matrix.shape[1]} but the grid has {n} fluid cells "
            f"(shape {grid.shape}); the grid does not match this matrix"
        )
    csr = matrix  # a canonical float64 CSR as it is: scipy keeps that verdict, no pass
    if not (matrix.format == "csr" and matrix.dtype == np.float64 and matrix.has_canonical_format):
        csr = sp.csr_matrix(matrix, dtype=np.float64)
        csr.sum_duplicates()
    if check_finite and not np.isfinite(csr.data).all():
        raise InvalidInputError("matrix has NaN/Inf entries")
    return csr


def check_stencil_spd(
    diagonal: np.ndarray, couplings: np.ndarray, A: Any, grid: Grid, name: str
) -> bool:
    """Check the matrix read into ``diagonal``/``couplings`` as SPD; whether it is symmetric.

    The stencil's statistics in one native pass where the kernels run, else the CSR
    matrix's (numpy); the verdict and messages of :func:`~neurosolve.data.check_spd_matrix`,
    with the first bad diagonal entry named by its row (its fluid cell's rank).
    """
    from neurosolve.data.io import check_entry_statistics, entry_statistics

    stats = native_matrix.stencil_statistics(diagonal, couplings, grid.fluid)
    if stats is None:
        stats = entry_statistics(_csr_entries(A, grid))
    elif stats[4] >= 0:  # a flat cell index -> its row
        cell = stats[4]
        stats = (*stats[:4], int(np.count_nonzero(grid.fluid.reshape(-1)[:cell])), stats[5])
    check_entry_statistics(stats, name)
    return stats[2] == 0.0
