"""The loops that read a CSR matrix: into the stencil layout, and its entry statistics (numba).

Part of :mod:`neurosolve.solvers.native`'s kernels (its dispatch table lists them), used by
:func:`~neurosolve.solvers.stencil.stencil_from_csr` and the SPD checks of
:mod:`neurosolve.solvers.system` and :meth:`StencilOperator.from_matrix
<neurosolve.solvers.stencil.StencilOperator.from_matrix>`. Each is a loop over a range of
rows (or planes) with a ``*_serial`` entry over all of them and a parallel one over chunks;
the chunks' results are combined by the caller.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from neurosolve.solvers._numba import jit, parallel


@jit
def _scatter_rows(indptr, indices, data, cells, table, out, first, last):  # noqa: ANN001
    """Rows ``first:last`` of :func:`scatter_entries_serial`; False at an entry off the table."""
    total = table.shape[0] // 2 + 1  # N
    for r in range(first, last):
        rc = cells[r]
        for e in range(indptr[r], indptr[r + 1]):
            value = data[e]
            if value == 0:  # explicit zeros are dropped, as the matrix's zeros
                continue
            slot = table[cells[indices[e]] - rc + total - 1]
            if slot < 0:
                return False
            out[slot + rc] = value
    return True


@jit
def scatter_entries_serial(indptr, indices, data, cells, table, out, ok):  # noqa: ANN001
    """Scatter the non-zero entries to ``out[slot * N + cell]``; ``ok[0]`` False at one off.

    ``cells``: grid cell of each row (and column), ``table[delta + N - 1]``: ``slot * N`` of
    the cell offset ``delta``, negative off the stencil (see ``stencil_read._slot_table``). Rows
    write distinct cells, so chunks of rows are independent: ``ok`` has one flag per chunk.
    """
    ok[0] = _scatter_rows(indptr, indices, data, cells, table, out, 0, indptr.shape[0] - 1)


@parallel
def scatter_entries(indptr, indices, data, cells, table, out, ok):  # noqa: ANN001
    chunks, rows = ok.shape[0], indptr.shape[0] - 1
    for k in prange(chunks):
        first, last = k * rows // chunks, (k + 1) * rows // chunks
        ok[k] = _scatter_rows(indptr, indices, data, cells, table, out, first, last)


@jit
def _chunk_cursors(indptr, indices, first):  # noqa: ANN001, ANN201
    """Per row ``c >= first``, its first entry with an index ``>= first`` (indptr's dtype).

    A loop of its own: inlined into :func:`_statistics_rows` it ran ten times slower.
    """
    if first == 0:
        return indptr[:-1].copy()
    rows = indptr.shape[0] - 1
    cursor = np.empty(rows - first, indptr.dtype)
    for c in range(first, rows):
        q, end = indptr[c], indptr[c + 1]
        while q < end and indices[q] < first:  # earlier chunks' (one test, mostly)
            q += 1
        cursor[c - first] = q
    return cursor


@jit
def _statistics_rows(indptr, indices, data, first, last, out):  # noqa: ANN001
    """The statistics of rows ``first:last`` into ``out`` (6 values, see below).

    Each entry above the diagonal, ``(r, c)`` with ``r`` in the chunk, is compared with its
    partner ``(c, r)`` below (a missing partner is a zero) through a cursor per row ``c``
    over its entries with an index in the chunk: those come in increasing ``r`` as the
    chunk's rows are read in order, so the cursor only moves forward, and a lower entry it
    passes had no partner above. One read of every entry and no search (a binary search per
    entry cost about five matrix-vector products at 64^3, mostly cache misses in the row
    far away); a chunk after the first starts each row's cursor past the entries below it.
    Every lower entry ``(c, j)`` belongs to the chunk of row ``j``, so chunks are
    independent. ``out``: finite (1/0), largest ``|a_ij|``, largest ``|a_ij - a_ji|``,
    count of rows whose diagonal is not > 0, the first such row (-1: none), its diagonal.
    """
    rows = indptr.shape[0] - 1
    scale, err = 0.0, 0.0
    bad, first_bad, value = 0, -1, 0.0
    cursor = _chunk_cursors(indptr, indices, first)
    for r in range(first, last):
        diagonal = 0.0
        for e in range(indptr[r], indptr[r + 1]):
            v = data[e]
            if not np.isfinite(v):
                out[0], out[1], out[2], out[3], out[4], out[5] = 0, np.nan, np.nan, 0, -1, 0
                return
            scale = max(scale, abs(v))
            col = indices[e]
            if col == r:
                diagonal = v
            elif col > r:
                q, end = cursor[col - first], indptr[col + 1]
                while q < end and indices[q] < r:  # below, no partner above
                    err = max(err, abs(data[q]))
                    q += 1
                if q < end and indices[q] == r:
                    err = max(err, abs(v - data[q]))
                    q += 1
                else:
                    err = max(err, abs(v))
                cursor[col - first] = q
        if not diagonal > 0:
            if first_bad < 0:
                first_bad, value = r, diagonal
            bad += 1
    for c in range(first, rows):  # the chunk's lower entries no entry above reached
        q, end, limit = cursor[c - first], indptr[c + 1], min(c, last)
        while q < end and indices[q] < limit:
            err = max(err, abs(data[q]))
            q += 1
    out[0], out[1], out[2], out[3], out[4], out[5] = 1, scale, err, bad, first_bad, value


@jit
def csr_statistics_serial(indptr, indices, data, out):  # noqa: ANN001
    """:func:`~neurosolve.data.io.entry_statistics` of a canonical CSR matrix, one pass.

    ``out (1, 6)``: the values of :func:`_statistics_rows` for all rows.
    """
    _statistics_rows(indptr, indices, data, 0, indptr.shape[0] - 1, out[0])


@parallel
def csr_statistics(indptr, indices, data, out):  # noqa: ANN001
    """The same in ``len(out)`` chunks of rows, one per thread's turn (``out (chunks, 6)``)."""
    chunks, rows = out.shape[0], indptr.shape[0] - 1
    for k in prange(chunks):
        first, last = k * rows // chunks, (k + 1) * rows // chunks
        _statistics_rows(indptr, indices, data, first, last, out[k])


@jit
def _stencil_statistics_planes(d, c, fl, axis_of, first, last, out):  # noqa: ANN001
    """The entry statistics of a stencil's planes ``first:last`` (first grid axis) in ``out``.

    ``d (n0, n1, n2)``, ``c (2 k, n0, n1, n2)`` (pair ``a`` along grid axis
    ``axis_of[a]``), ``fl`` the fluid mask. Every stored value is a matrix entry: each
    coupling to ``+e`` is compared with the neighbour's coupling back (a coupling out of the
    grid with zero), and a diagonal on a fluid cell must be > 0. ``out``: finite (1/0),
    largest ``|a_ij|``, largest ``|a_ij - a_ji|``, count of fluid cells whose diagonal is
    not > 0, the flat index of the first (-1: none), its diagonal.
    """
    n0, n1, n2 = d.shape
    sizes = (n0, n1, n2)
    scale, err = 0.0, 0.0
    bad, first_bad, value = 0, -1, 0.0
    for i in range(first, last):
        for j in range(n1):
            for m in range(n2):
                v = d[i, j, m]
                if not np.isfinite(v):
                    out[0], out[1], out[2], out[3], out[4], out[5] = 0, np.nan, np.nan, 0, -1, 0
                    return
                scale = max(scale, abs(v))
                if fl[i, j, m] and not v > 0:
                    if first_bad < 0:
                        first_bad, value = (i * n1 + j) * n2 + m, v
                    bad += 1
                coord = (i, j, m)
                for a in range(axis_of.shape[0]):
                    axis = axis_of[a]
                    down, up = c[2 * a, i, j, m], c[2 * a + 1, i, j, m]
                    if not (np.isfinite(down) and np.isfinite(up)):
                        out[0], out[1], out[2], out[3], out[4], out[5] = 0, np.nan, np.nan, 0, -1, 0
                        return
                    scale = max(scale, abs(down), abs(up))
                    if coord[axis] == 0:  # a coupling out of the grid has no partner
                        err = max(err, abs(down))
                    if coord[axis] == sizes[axis] - 1:
                        err = max(err, abs(up))
                    elif axis == 0:
                        err = max(err, abs(up - c[2 * a, i + 1, j, m]))
                    elif axis == 1:
                        err = max(err, abs(up - c[2 * a, i, j + 1, m]))
                    else:
                        err = max(err, abs(up - c[2 * a, i, j, m + 1]))
    out[0], out[1], out[2], out[3], out[4], out[5] = 1, scale, err, bad, first_bad, value


@jit
def stencil_statistics_serial(d, c, fl, axis_of, out):  # noqa: ANN001
    """Every plane as one chunk, into ``out (1, 6)``."""
    _stencil_statistics_planes(d, c, fl, axis_of, 0, d.shape[0], out[0])


@parallel
def stencil_statistics(d, c, fl, axis_of, out):  # noqa: ANN001
    """Planes in ``len(out)`` chunks, one row of ``out`` each."""
    chunks, n0 = out.shape[0], d.shape[0]
    for k in prange(chunks):
        first, last = k * n0 // chunks, (k + 1) * n0 // chunks
        _stencil_statistics_planes(d, c, fl, axis_of, first, last, out[k])
