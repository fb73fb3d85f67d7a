"""Loops that find the cells of a stencil whose network outputs are equal (numba).

Imported on first use only, by :mod:`~neurosolve.solvers.mgpc.classes`.

A per-cell network with message passing along the stencil (the MGPC network) gives, after
``k`` layers, a value at cell ``x`` that depends only on the stencil rows within ``k`` steps
of ``x``. Two cells whose ``k``-neighbourhoods hold the same rows get the same value, so it
needs computing once. On a constant-coefficient matrix with obstacles most cells repeat a
neighbour's neighbourhood: on the finest level of a 64^3 closed box with obstacles, 0.3% of
the cells need the first layer and 3% the last. These loops find them:

- :func:`row_equal`: per cell a 3-bit mask, bit ``b`` set where the row of ``x`` equals the
  row of ``x + e_b`` (both in the grid);
- one more layer of the same is numpy's (``classes._erode``: bit ``b`` kept where it is
  set at ``x`` and at every stencil neighbour of ``x``);
- :func:`representatives`: in lexicographic order, each cell takes the value slot of a
  predecessor ``x - e_b`` it equals, or opens a new slot (a "head" to compute);
- :func:`gather_neighbours`: a layer's message passing on the heads only, reading the
  previous layer's values through its slots; :func:`expand`: the last layer's values back
  on every cell.

Grids are 3D ``(n0, n1, n2)`` (a 2D level as ``(n0, 1, n1)``), cells flattened in C order.
The per-cell passes have a ``*_parallel`` form that splits them in chunks on numba's
threads (the caller holds the threading layer: :mod:`neurosolve.solvers.native`); the
results are the same bit for bit. :func:`representatives` is serial by nature (each cell
may take its predecessor's slot).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from neurosolve.solvers._numba import jit, parallel

__all__ = [
    "expand",
    "expand_parallel",
    "gather_neighbours",
    "representatives",
    "row_equal",
    "row_equal_parallel",
]


@jit
def _same2(d, c, fl, x, y):  # noqa: ANN001, ANN202
    """Whether cells ``x`` and ``y`` of a 2D stencil hold the same row (branch-free)."""
    same = (d[x] == d[y]) & (fl[x] == fl[y]) & (c[0, x] == c[0, y]) & (c[1, x] == c[1, y])
    return np.uint8(same & (c[2, x] == c[2, y]) & (c[3, x] == c[3, y]))


@jit
def _same3(d, c, fl, x, y):  # noqa: ANN001, ANN202
    """The same for a 3D stencil (two more couplings)."""
    return _same2(d, c, fl, x, y) & np.uint8((c[4, x] == c[4, y]) & (c[5, x] == c[5, y]))


@jit
def _successors2(d, c, fl, start, stop, s0, n2, out):  # noqa: ANN001
    for x in range(start, stop):  # a loop per stencil size: each vectorises
        out[x] = (
            _same2(d, c, fl, x, x + s0)
            | (_same2(d, c, fl, x, x + n2) << 1)
            | (_same2(d, c, fl, x, x + 1) << 2)
        )


@jit
def _successors3(d, c, fl, start, stop, s0, n2, out):  # noqa: ANN001
    for x in range(start, stop):
        out[x] = (
            _same3(d, c, fl, x, x + s0)
            | (_same3(d, c, fl, x, x + n2) << 1)
            | (_same3(d, c, fl, x, x + 1) << 2)
        )


@jit
def _successors(d, c, fl, start, stop, s0, n2, out):  # noqa: ANN001
    if c.shape[0] == 6:
        _successors3(d, c, fl, start, stop, s0, n2, out)
    else:
        _successors2(d, c, fl, start, stop, s0, n2, out)


@jit
def row_equal(d, c, fl, n0, n1, n2, out):  # noqa: ANN001 - numba arrays
    """``out[x]`` bit ``b``: the row (diagonal, couplings, fluid) of ``x`` equals ``x + e_b``'s.

    One pass over the flat arrays comparing each cell with its three successors (``x + e_0``
    last plane apart), then the bits of the cells whose ``x + e_b`` is outside the grid
    (wrapped around to the next row or plane) cleared.
    """
    _successors(d, c, fl, 0, max(n0 * n1 * n2 - n1 * n2, 0), n1 * n2, n2, out)
    _row_equal_edges(d, c, fl, n0, n1, n2, out)


@parallel
def row_equal_parallel(d, c, fl, n0, n1, n2, out, chunks):  # noqa: ANN001
    """:func:`row_equal` with its pass over the cells in ``chunks`` parts on the threads."""
    body = max(n0 * n1 * n2 - n1 * n2, 0)
    for k in prange(chunks):
        _successors(d, c, fl, k * body // chunks, (k + 1) * body // chunks, n1 * n2, n2, out)
    _row_equal_edges(d, c, fl, n0, n1, n2, out)


@jit
def _row_equal_edges(d, c, fl, n0, n1, n2, out):  # noqa: ANN001
    """The last plane's bits, then those of ``x + e_b`` wrapped around the grid cleared."""
    cells, s0 = n0 * n1 * n2, n1 * n2
    body = max(cells - s0, 0)
    for x in range(body, cells):  # the last plane: no x + e_0
        bits = np.uint8(0)
        for bit, y in ((1, x + n2), (2, x + 1)):
            if y < cells:
                same = _same3(d, c, fl, x, y) if c.shape[0] == 6 else _same2(d, c, fl, x, y)
                bits |= same << bit
        out[x] = bits
    keep2, keep1 = np.uint8(3), np.uint8(5)  # all bits but 2 (last axis), but 1
    for p in range(n0 * n1):  # the last cell of each row: x + e_2 is the next row's first
        out[p * n2 + n2 - 1] &= keep2
    for i in range(n0):  # the last row of each plane: x + e_1 is in the next plane
        for m in range(n2):
            out[(i * n1 + n1 - 1) * n2 + m] &= keep1


@jit
def _expand_cells(values, slot, out, first, last):  # noqa: ANN001
    for x in range(first, last):
        s = slot[x]
        for k in range(out.shape[0]):
            out[k, x] = values[s, k]


@jit
def expand(values, slot, out):  # noqa: ANN001
    """``out[k, x] = values[slot[x], k]``: every cell's value from its slot, channels first."""
    _expand_cells(values, slot, out, 0, slot.shape[0])


@parallel
def expand_parallel(values, slot, out, chunks):  # noqa: ANN001
    """:func:`expand` in ``chunks`` parts on the threads."""
    n = slot.shape[0]
    for k in prange(chunks):
        _expand_cells(values, slot, out, k * n // chunks, (k + 1) * n // chunks)


@jit
def representatives(bits, n0, n1, n2, slot, heads):  # noqa: ANN001, ANN201
    """Value slot of every cell (``slot``), the cell of every slot (``heads``); returns the count.

    A cell equal to its predecessor along the last axis takes its slot (the nearest in
    memory), else along the middle axis, else along the first; else it opens a slot. The
    predecessor's slot along the last axis is kept in a register (read back from memory, it
    made a chain of store-to-load latencies: 1.7x the time at 64^3).
    """
    s0 = n1 * n2
    count = 0
    for i in range(n0):
        for j in range(n1):
            base = (i * n1 + j) * n2
            last = 0
            for m in range(n2):
                x = base + m
                if m > 0 and bits[x - 1] & 4:
                    value = last
                elif j > 0 and bits[x - n2] & 2:
                    value = slot[x - n2]
                elif i > 0 and bits[x - s0] & 1:
                    value = slot[x - s0]
                else:
                    value = count
                    heads[count] = x
                    count += 1
                slot[x] = value
                last = value
    return count


@jit
def gather_neighbours(both, slot, heads, weights, n0, n1, n2, axis_of, out):  # noqa: ANN001
    """``out[i] = self(h) + sum_j w_ij nbr(h)(x_i + e_j)`` for the heads ``x_i`` of a layer.

    ``both (slots, 2 C)``: the previous layer's self and neighbour maps per value slot,
    ``slot``: every cell's slot in it; ``weights (heads, 2 d)``: the heads' averaging
    weights, channel ``2 a`` to ``-e_a`` and ``2 a + 1`` to ``+e_a`` of grid axis
    ``axis_of[a]``; neighbours outside the grid contribute nothing (zero padding). Terms are
    added in the channel order of the weights, as the dense form does.
    """
    strides = (n1 * n2, n2, 1)
    sizes = (n0, n1, n2)
    C = out.shape[1]
    for i in range(heads.shape[0]):
        x = heads[i]
        coord = (x // strides[0], (x // n2) % n1, x % n2)
        s = slot[x]
        for k in range(C):
            out[i, k] = both[s, k]
        for j in range(weights.shape[1]):
            a = axis_of[j // 2]
            if j % 2 == 0:
                if coord[a] == 0:
                    continue
                y = x - strides[a]
            else:
                if coord[a] + 1 >= sizes[a]:
                    continue
                y = x + strides[a]
            w = weights[i, j]
            t = slot[y]
            for k in range(C):
                out[i, k] += w * both[t, C + k]
