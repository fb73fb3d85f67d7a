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
    """Rows ``first:last`` of :func:`scatter_entries_serial`; False at an entry off the table.

    Every slot of the cells from the one after row ``first - 1``'s (the first cell for the
    first row) to row ``last - 1``'s (the last cell for the last row) is written, zero where
    no entry lands, so ``out`` need not be zeroed first (``np.zeros`` of 7 N values cost
    half a matrix-vector product at 64^3). A row of seven entries without a zero (every
    interior row of a 7-point matrix) fills all its slots, as straight-line code: its seven
    lookups are independent, where a loop over them ran 1.3x slower.
    """
    shift = table.shape[0] // 2  # N - 1: table index = column cell - row cell + N - 1
    total, rows = shift + 1, indptr.shape[0] - 1
    slots = out.shape[0] // total
    gap = cells[first - 1] + 1 if first > 0 else 0  # the first cell after the last row's
    for r in range(first, last + (last == rows)):  # one more turn for the cells after all
        rc = cells[r] if r < rows else total
        for g in range(gap, rc):  # cells of no row (solid, air) between two rows' cells
            for q in range(slots):
                out[q * total + g] = 0.0
        if r == rows:
            break
        gap = rc + 1
        start, stop = indptr[r], indptr[r + 1]
        if stop - start == 7:
            e, k = start, shift - rc
            v0, v1, v2, v3 = data[e], data[e + 1], data[e + 2], data[e + 3]
            v4, v5, v6 = data[e + 4], data[e + 5], data[e + 6]
            if (v0 != 0) & (v1 != 0) & (v2 != 0) & (v3 != 0) & (v4 != 0) & (v5 != 0) & (v6 != 0):
                s0, s1 = table[cells[indices[e]] + k], table[cells[indices[e + 1]] + k]
                s2, s3 = table[cells[indices[e + 2]] + k], table[cells[indices[e + 3]] + k]
                s4, s5 = table[cells[indices[e + 4]] + k], table[cells[indices[e + 5]] + k]
                s6 = table[cells[indices[e + 6]] + k]
                if (s0 | s1 | s2 | s3 | s4 | s5 | s6) < 0:
                    return False
                out[s0 + rc], out[s1 + rc], out[s2 + rc], out[s3 + rc] = v0, v1, v2, v3
                out[s4 + rc], out[s5 + rc], out[s6 + rc] = v4, v5, v6
                continue
        for q in range(slots):  # the slots no entry of the row writes stay zero
            out[q * total + rc] = 0.0
        for e in range(start, stop):
            value = data[e]
            if value == 0:  # explicit zeros are dropped, as the matrix's zeros
                continue
            slot = table[cells[indices[e]] - rc + shift]
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


_MAGNITUDE = np.int64(0x7FFFFFFFFFFFFFFF)  # a float64's bits but the sign
_NOT_FINITE = np.int64(0x7FF0000000000000)  # the magnitude bits of inf (NaN's are above)


@jit
def _top_bits(row, top):  # noqa: ANN001, ANN202
    """The largest magnitude bits of ``row`` (float64 bits as int64) and ``top``.

    For floats the order of the magnitude bits is that of ``|x|``, with inf above every
    finite value and NaN above inf, so one integer maximum (it vectorises, where a float
    maximum does not without fast-math) gives both ``max |x|`` and whether all are finite.
    """
    for m in range(row.shape[0]):
        b = row[m] & _MAGNITUDE
        top = b if b > top else top
    return top


@jit
def _largest_difference(up, down, err):  # noqa: ANN001, ANN202
    """``max(err, max |up - down|)``, in four partial maxima (no chain of selects)."""
    n = up.shape[0]
    e0 = e1 = e2 = e3 = err
    q = n - n % 4
    for m in range(0, q, 4):
        a0, a1 = abs(up[m] - down[m]), abs(up[m + 1] - down[m + 1])
        a2, a3 = abs(up[m + 2] - down[m + 2]), abs(up[m + 3] - down[m + 3])
        e0 = a0 if a0 > e0 else e0
        e1 = a1 if a1 > e1 else e1
        e2 = a2 if a2 > e2 else e2
        e3 = a3 if a3 > e3 else e3
    for m in range(q, n):
        a0 = abs(up[m] - down[m])
        e0 = a0 if a0 > e0 else e0
    return max(max(e0, e1), max(e2, e3))


@jit
def _largest(row, err):  # noqa: ANN001, ANN202
    """``max(err, max |row|)`` (a coupling out of the grid: its partner is a zero)."""
    for m in range(row.shape[0]):
        a = abs(row[m])
        err = a if a > err else err
    return err


@jit
def _stencil_statistics_planes(d, c, fl, axis_of, first, last, out):  # noqa: ANN001
    """The entry statistics of a stencil's planes ``first:last`` (first grid axis) in ``out``.

    ``d (n0, n1, n2)``, ``c (2 k, n0, n1, n2)`` (pair ``a`` along grid axis
    ``axis_of[a]``; both C-contiguous), ``fl`` the fluid mask. Every stored value is a
    matrix entry: each coupling to ``+e`` is compared with the neighbour's coupling back (a
    coupling out of the grid with zero), and a diagonal on a fluid cell must be > 0.
    ``out``: finite (1/0), largest ``|a_ij|``, largest ``|a_ij - a_ji|``, count of fluid
    cells whose diagonal is not > 0, the flat index of the first (-1: none), its diagonal.
    Row by row along the last axis, each reduction a loop of its own that vectorises.
    """
    n0, n1, n2 = d.shape
    d_bits, c_bits = d.view(np.int64), c.view(np.int64)
    top, err = np.int64(0), 0.0
    bad, first_bad, value = 0, -1, 0.0
    for i in range(first, last):
        for j in range(n1):
            row, fluid = d[i, j], fl[i, j]
            top = _top_bits(d_bits[i, j], top)
            count = 0
            for m in range(n2):
                count += fluid[m] & (not row[m] > 0)
            if count:
                for m in range(n2 if first_bad < 0 else 0):
                    if fluid[m] and not row[m] > 0:
                        first_bad, value = (i * n1 + j) * n2 + m, row[m]
                        break
                bad += count
            for a in range(axis_of.shape[0]):
                down, up = c[2 * a, i, j], c[2 * a + 1, i, j]
                top = _top_bits(c_bits[2 * a + 1, i, j], _top_bits(c_bits[2 * a, i, j], top))
                axis = axis_of[a]
                if axis == 2:
                    err = _largest_difference(up[: n2 - 1], down[1:], err)
                    err = max(err, abs(down[0]), abs(up[n2 - 1]))
                    continue
                if (j if axis == 1 else i) == 0:
                    err = _largest(down, err)
                if axis == 1 and j + 1 < n1:
                    err = _largest_difference(up, c[2 * a, i, j + 1], err)
                elif axis == 0 and i + 1 < n0:
                    err = _largest_difference(up, c[2 * a, i + 1, j], err)
                else:
                    err = _largest(up, err)
            if top >= _NOT_FINITE:
                out[0], out[1], out[2], out[3], out[4], out[5] = 0, np.nan, np.nan, 0, -1, 0
                return
    scale = np.array([top]).view(np.float64)[0]
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
