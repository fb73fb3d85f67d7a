"""The loops of :mod:`neurosolve.solvers.native`, compiled by numba (imported on first use only).

Each operation is a serial loop over a range of "planes" (the leading axes flattened: batch,
channel, first grid axis), and two entry points call it: ``*_serial`` over every plane, and a
parallel one that hands single planes to numba's threads (``prange``). Distinct functions,
not one function compiled twice, because numba's disk cache is keyed by the function's name.
Per coarse cell the block sums add the fine cells in lexicographic order, as torch's
pooling does. Boundary tests on the outer grid axes are loop-invariant (once per row); those
along the last axis are per cell. Loops are written for clarity over cleverness: at 64^3 in
float32 a smoothing step so written costs about 0.2 scipy CSR products (one thread).
"""

from __future__ import annotations

import sys
from typing import Any

import numba
import numpy as np
from numba import prange

from neurosolve.solvers import _matrix_loops, _vector_loops
from neurosolve.solvers._numba import entries, jit, parallel, reduction


@jit
def _finish(mode: int, acc: Any, x: Any, f: Any, w: Any) -> Any:
    """The value written for a cell: ``A u`` (0), ``f - A u`` (1), ``u + w (f - A u)`` (2)."""
    if mode == 0:
        return acc
    if mode == 1:
        return f - acc
    return x + w * (f - acc)


@jit
def _stencil3_rows(mode, sym, d, c, u, f, w, out, first, last):  # noqa: ANN001 - numba arrays
    """Planes ``first:last`` of a 3D stencil pass (``mode``: see :func:`_finish`).

    ``sym``: the couplings are exactly symmetric, so the one to ``+e_a`` is read as the
    ``-e_a`` coupling of the neighbour (channels 0, 2, 4 only: 4 coefficient arrays read
    instead of 7, the same values).
    """
    G, K, n0, n1, n2 = u.shape
    shared = d.shape[0] == 1
    for p in range(first, last):
        g = p // (K * n0)
        k = (p // n0) % K
        i = p % n0
        s = 0 if shared else g
        lo0, hi0 = i > 0, i < n0 - 1
        for j in range(n1):
            lo1, hi1 = j > 0, j < n1 - 1
            for m in range(n2):
                x = u[g, k, i, j, m]
                acc = d[s, 0, i, j, m] * x
                if lo0:
                    acc += c[s, 0, i, j, m] * u[g, k, i - 1, j, m]
                if hi0:
                    up = c[s, 0, i + 1, j, m] if sym else c[s, 1, i, j, m]
                    acc += up * u[g, k, i + 1, j, m]
                if lo1:
                    acc += c[s, 2, i, j, m] * u[g, k, i, j - 1, m]
                if hi1:
                    up = c[s, 2, i, j + 1, m] if sym else c[s, 3, i, j, m]
                    acc += up * u[g, k, i, j + 1, m]
                if m > 0:
                    acc += c[s, 4, i, j, m] * u[g, k, i, j, m - 1]
                if m < n2 - 1:
                    up = c[s, 4, i, j, m + 1] if sym else c[s, 5, i, j, m]
                    acc += up * u[g, k, i, j, m + 1]
                out[g, k, i, j, m] = _finish(mode, acc, x, f[g, k, i, j, m], w[s, 0, i, j, m])


@jit
def _stencil2_rows(mode, sym, d, c, u, f, w, out, first, last):  # noqa: ANN001
    G, K, n0, n1 = u.shape
    shared = d.shape[0] == 1
    for p in range(first, last):
        g = p // (K * n0)
        k = (p // n0) % K
        i = p % n0
        s = 0 if shared else g
        lo0, hi0 = i > 0, i < n0 - 1
        for m in range(n1):
            x = u[g, k, i, m]
            acc = d[s, 0, i, m] * x
            if lo0:
                acc += c[s, 0, i, m] * u[g, k, i - 1, m]
            if hi0:
                acc += (c[s, 0, i + 1, m] if sym else c[s, 1, i, m]) * u[g, k, i + 1, m]
            if m > 0:
                acc += c[s, 2, i, m] * u[g, k, i, m - 1]
            if m < n1 - 1:
                acc += (c[s, 2, i, m + 1] if sym else c[s, 3, i, m]) * u[g, k, i, m + 1]
            out[g, k, i, m] = _finish(mode, acc, x, f[g, k, i, m], w[s, 0, i, m])


@jit
def stencil3_serial(mode, sym, d, c, u, f, w, out):  # noqa: ANN001
    _stencil3_rows(mode, sym, d, c, u, f, w, out, 0, u.shape[0] * u.shape[1] * u.shape[2])


@parallel
def stencil3(mode, sym, d, c, u, f, w, out):  # noqa: ANN001
    for p in prange(u.shape[0] * u.shape[1] * u.shape[2]):
        _stencil3_rows(mode, sym, d, c, u, f, w, out, p, p + 1)


@jit
def stencil2_serial(mode, sym, d, c, u, f, w, out):  # noqa: ANN001
    _stencil2_rows(mode, sym, d, c, u, f, w, out, 0, u.shape[0] * u.shape[1] * u.shape[2])


@parallel
def stencil2(mode, sym, d, c, u, f, w, out):  # noqa: ANN001
    for p in prange(u.shape[0] * u.shape[1] * u.shape[2]):
        _stencil2_rows(mode, sym, d, c, u, f, w, out, p, p + 1)


@jit
def _block_sum3_rows(x, factors, out, first, last):  # noqa: ANN001
    G, C, m0, m1, m2 = out.shape
    n0, n1, n2 = x.shape[2], x.shape[3], x.shape[4]
    s1, s2 = factors[1] - 1, factors[2] - 1  # factors 1 or 2: shifts
    for p in range(first, last):  # coarse plane p accumulates its fine planes, in order
        g = p // (C * m0)
        ch = (p // m0) % C
        a = p % m0
        out[g, ch, a] = 0
        for i in range(a * factors[0], min((a + 1) * factors[0], n0)):
            for j in range(n1):
                b = j >> s1
                for m in range(n2):
                    out[g, ch, a, b, m >> s2] += x[g, ch, i, j, m]


@jit
def _block_sum2_rows(x, factors, out, first, last):  # noqa: ANN001
    G, C, m0, m1 = out.shape
    n0, n1 = x.shape[2], x.shape[3]
    s1 = factors[1] - 1
    for p in range(first, last):
        g = p // (C * m0)
        ch = (p // m0) % C
        a = p % m0
        out[g, ch, a] = 0
        for i in range(a * factors[0], min((a + 1) * factors[0], n0)):
            for m in range(n1):
                out[g, ch, a, m >> s1] += x[g, ch, i, m]


@jit
def block_sum3_serial(x, factors, out):  # noqa: ANN001
    _block_sum3_rows(x, factors, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def block_sum3(x, factors, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _block_sum3_rows(x, factors, out, p, p + 1)


@jit
def block_sum2_serial(x, factors, out):  # noqa: ANN001
    _block_sum2_rows(x, factors, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def block_sum2(x, factors, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _block_sum2_rows(x, factors, out, p, p + 1)


@jit
def _inject3_rows(uc, fluid, factors, add, out, first, last):  # noqa: ANN001
    """``out = P uc`` (``add`` False) or ``out += P uc`` (True), planes ``first:last``."""
    G, K, n0, n1, n2 = out.shape
    shared = fluid.shape[0] == 1
    s0, s1, s2 = factors[0] - 1, factors[1] - 1, factors[2] - 1  # factors 1 or 2: shifts
    for p in range(first, last):
        g = p // (K * n0)
        k = (p // n0) % K
        i = p % n0
        s = 0 if shared else g
        a = i >> s0
        for j in range(n1):
            b = j >> s1
            for m in range(n2):
                value = uc[g, k, a, b, m >> s2] * fluid[s, 0, i, j, m]
                out[g, k, i, j, m] = out[g, k, i, j, m] + value if add else value


@jit
def _inject2_rows(uc, fluid, factors, add, out, first, last):  # noqa: ANN001
    G, K, n0, n1 = out.shape
    shared = fluid.shape[0] == 1
    s0, s1 = factors[0] - 1, factors[1] - 1
    for p in range(first, last):
        g = p // (K * n0)
        k = (p // n0) % K
        i = p % n0
        s = 0 if shared else g
        a = i >> s0
        for m in range(n1):
            value = uc[g, k, a, m >> s1] * fluid[s, 0, i, m]
            out[g, k, i, m] = out[g, k, i, m] + value if add else value


@jit
def inject3_serial(uc, fluid, factors, add, out):  # noqa: ANN001
    _inject3_rows(uc, fluid, factors, add, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def inject3(uc, fluid, factors, add, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _inject3_rows(uc, fluid, factors, add, out, p, p + 1)


@jit
def inject2_serial(uc, fluid, factors, add, out):  # noqa: ANN001
    _inject2_rows(uc, fluid, factors, add, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def inject2(uc, fluid, factors, add, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _inject2_rows(uc, fluid, factors, add, out, p, p + 1)


# ---------------------------------------------------------------------------------------------
# The MGPC network's per-cell passes (network.py): features, and neighbour sums
# ---------------------------------------------------------------------------------------------
@jit
def _features_rows(d, c, fl, first, feats, weights, start, stop):  # noqa: ANN001
    """Features ``(G, 6, cells)`` and averaging weights of planes ``first + t``, in float32.

    3D arrays (a 2D level comes as ``(G, C, n0, 1, n1)``: the features do not depend on the
    order of the couplings). Values are rounded to float32, the network's precision, before
    any arithmetic, as the torch form does.
    """
    G, nch, T, n1, n2 = weights.shape
    half = np.float32(nch)
    for p in range(start, stop):  # plane t of the chunk, of matrix g
        g, t = p // T, p % T
        i = first + t
        for j in range(n1):
            for m in range(n2):
                fluid = np.float32(fl[g, 0, i, j, m])
                diag = np.float32(d[g, 0, i, j, m]) if fluid > 0 else np.float32(1.0)
                total = np.float32(0.0)
                largest = np.float32(0.0)
                count = np.float32(0.0)
                for ch in range(nch):
                    ratio = abs(np.float32(c[g, ch, i, j, m])) / diag
                    if ratio != 0:
                        count += np.float32(1.0)
                    total += ratio
                    largest = max(largest, ratio)
                    weights[g, ch, t, j, m] = ratio
                cell = (t * n1 + j) * n2 + m
                feats[g, 0, cell] = fluid * fluid
                feats[g, 1, cell] = total * fluid
                feats[g, 2, cell] = largest * fluid
                feats[g, 3, cell] = total / max(count, np.float32(1.0)) * fluid
                feats[g, 4, cell] = count / half * fluid
                feats[g, 5, cell] = fluid / half * fluid
                norm = max(total, np.float32(1.1754944e-38))  # float32's finfo.tiny
                for ch in range(nch):
                    weights[g, ch, t, j, m] = weights[g, ch, t, j, m] / norm


@jit
def features_serial(d, c, fl, first, feats, weights):  # noqa: ANN001
    _features_rows(d, c, fl, first, feats, weights, 0, weights.shape[0] * weights.shape[2])


@parallel
def features(d, c, fl, first, feats, weights):  # noqa: ANN001
    for p in prange(weights.shape[0] * weights.shape[2]):
        _features_rows(d, c, fl, first, feats, weights, p, p + 1)


@jit
def _neighbours3_rows(out, w, padded, start, stop):  # noqa: ANN001
    G, C, T, n1, n2 = out.shape
    for p in range(start, stop):  # (matrix, channel, plane)
        g = p // (C * T)
        k = (p // T) % C
        t = p % T
        for j in range(n1):
            for m in range(n2):
                acc = out[g, k, t, j, m]  # the torch form's order: -e_0, +e_0, -e_1, ...
                acc += w[g, 0, t, j, m] * padded[g, k, t, j + 1, m + 1]
                acc += w[g, 1, t, j, m] * padded[g, k, t + 2, j + 1, m + 1]
                acc += w[g, 2, t, j, m] * padded[g, k, t + 1, j, m + 1]
                acc += w[g, 3, t, j, m] * padded[g, k, t + 1, j + 2, m + 1]
                acc += w[g, 4, t, j, m] * padded[g, k, t + 1, j + 1, m]
                acc += w[g, 5, t, j, m] * padded[g, k, t + 1, j + 1, m + 2]
                out[g, k, t, j, m] = acc


@jit
def _neighbours2_rows(out, w, padded, start, stop):  # noqa: ANN001
    G, C, T, n1 = out.shape
    for p in range(start, stop):
        g = p // (C * T)
        k = (p // T) % C
        t = p % T
        for m in range(n1):
            acc = out[g, k, t, m]
            acc += w[g, 0, t, m] * padded[g, k, t, m + 1]
            acc += w[g, 1, t, m] * padded[g, k, t + 2, m + 1]
            acc += w[g, 2, t, m] * padded[g, k, t + 1, m]
            acc += w[g, 3, t, m] * padded[g, k, t + 1, m + 2]
            out[g, k, t, m] = acc


@jit
def neighbours3_serial(out, w, padded):  # noqa: ANN001
    _neighbours3_rows(out, w, padded, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def neighbours3(out, w, padded):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _neighbours3_rows(out, w, padded, p, p + 1)


@jit
def neighbours2_serial(out, w, padded):  # noqa: ANN001
    _neighbours2_rows(out, w, padded, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def neighbours2(out, w, padded):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _neighbours2_rows(out, w, padded, p, p + 1)


@jit
def _smoother_rows(theta, d, c, fl, out, start, stop):  # noqa: ANN001
    """``out = theta / (|d| + sum_j |c_j|)`` on the fluid, 0 elsewhere, planes ``start:stop``."""
    G, K, T, n1, n2 = out.shape
    for p in range(start, stop):  # plane i of matrix g
        g, i = p // T, p % T
        for j in range(n1):
            for m in range(n2):
                if fl[g, 0, i, j, m] > 0:
                    total = 0.0
                    for ch in range(c.shape[1]):  # the couplings' sum, then the diagonal
                        total += abs(c[g, ch, i, j, m])
                    inv = 1.0 / max(total + abs(d[g, 0, i, j, m]), 1e-300)
                else:
                    inv = 0.0
                for k in range(K):
                    out[g, k, i, j, m] = theta[g, k, i, j, m] * inv


@jit
def smoother_serial(theta, d, c, fl, out):  # noqa: ANN001
    _smoother_rows(theta, d, c, fl, out, 0, out.shape[0] * out.shape[2])


@parallel
def smoother(theta, d, c, fl, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[2]):
        _smoother_rows(theta, d, c, fl, out, p, p + 1)


@reduction
def _axis_shares_rows(c, sums, first, last):  # noqa: ANN001, ANN201
    """Per axis ``a``, the sum over coupled cells of ``(|c_2a| + |c_2a+1|) / sum_j |c_j|``.

    ``c (G, 2 d, cells)``, cells ``first:last`` of every batch entry, ``d`` 2 or 3; adds
    into ``sums (d,)`` and returns the number of coupled cells (those with a non-zero
    coupling), as ``coarsening_axes`` counts them. Branch-free, in registers, with the sums
    reassociated: it vectorises (3x faster at 64^3 than a sum in order); the shares are
    compared with a threshold, so their last bits do not matter.
    """
    G, nch = c.shape[0], c.shape[1]
    s0, s1, s2 = 0.0, 0.0, 0.0
    count = 0
    for g in range(G):
        for x in range(first, last):
            p0 = abs(c[g, 0, x]) + abs(c[g, 1, x])
            p1 = abs(c[g, 2, x]) + abs(c[g, 3, x])
            p2 = abs(c[g, 4, x]) + abs(c[g, 5, x]) if nch == 6 else 0.0 * p0
            total = p0 + p1 + p2
            coupled = total > 0
            inv = 1.0 / total if coupled else 0.0
            count += coupled
            s0 += p0 * inv
            s1 += p1 * inv
            s2 += p2 * inv
    sums[0] += s0
    sums[1] += s1
    if nch == 6:
        sums[2] += s2
    return count


@jit
def axis_shares_serial(c, sums, counts):  # noqa: ANN001
    """Every cell as one chunk: ``sums (1, d)``, ``counts (1,)``."""
    counts[0] = _axis_shares_rows(c, sums[0], 0, c.shape[2])


@parallel
def axis_shares(c, sums, counts):  # noqa: ANN001
    """Cells in ``len(counts)`` chunks (``sums (chunks, d)``), one per thread's turn."""
    chunks, cells = counts.shape[0], c.shape[2]
    for k in prange(chunks):
        counts[k] = _axis_shares_rows(c, sums[k], k * cells // chunks, (k + 1) * cells // chunks)


# ---------------------------------------------------------------------------------------------
# The Galerkin coarse stencil of the aggregation (hierarchy.py)
# ---------------------------------------------------------------------------------------------
@jit
def _galerkin_rows(d, c, fl, factors, axis_of, cd, cc, cf, start, stop):  # noqa: ANN001
    """Coarse diagonal, ``+e`` couplings and fluid of coarse planes ``start:stop``.

    3D arrays; a 2D level comes with a unit middle axis, ``axis_of[k]`` the coupling axis of
    3D axis ``k`` (-1: the unit axis). Per coarse cell the block's fine cells are summed in
    lexicographic order, each sum as the torch form groups it: the diagonal, then per axis
    twice the couplings inside the block, and the couplings across its ``+e`` face.
    """
    G, _, m0, m1, m2 = cd.shape
    n0, n1, n2 = d.shape[2], d.shape[3], d.shape[4]
    f0, f1, f2 = factors[0], factors[1], factors[2]
    inside = np.zeros(3, cd.dtype)
    across = np.zeros(3, cd.dtype)
    for p in range(start, stop):
        g, A = p // m0, p % m0
        for B in range(m1):
            for E in range(m2):
                diag = d[g, 0, 0, 0, 0] * 0  # zero, of the stencil's dtype
                fluid = 0.0
                inside[:] = 0
                across[:] = 0
                for i in range(A * f0, min(A * f0 + f0, n0)):
                    for j in range(B * f1, min(B * f1 + f1, n1)):
                        for m in range(E * f2, min(E * f2 + f2, n2)):
                            diag += d[g, 0, i, j, m]
                            fluid += fl[g, 0, i, j, m]
                            local = (i - A * f0, j - B * f1, m - E * f2)
                            for k in range(3):
                                ax = axis_of[k]
                                if ax < 0:
                                    continue
                                hi = c[g, 2 * ax + 1, i, j, m]
                                if factors[k] == 2 and local[k] == 0:
                                    inside[k] += hi
                                elif local[k] == factors[k] - 1:
                                    across[k] += hi
                for k in range(3):
                    ax = axis_of[k]
                    if ax >= 0:
                        if factors[k] == 2:
                            diag = diag + 2.0 * inside[k]
                        cc[g, 2 * ax + 1, A, B, E] = across[k]
                cd[g, 0, A, B, E] = diag
                cf[g, 0, A, B, E] = 1.0 if fluid > 0 else 0.0


@jit
def galerkin_serial(d, c, fl, factors, axis_of, cd, cc, cf):  # noqa: ANN001
    _galerkin_rows(d, c, fl, factors, axis_of, cd, cc, cf, 0, cd.shape[0] * cd.shape[2])


@parallel
def galerkin(d, c, fl, factors, axis_of, cd, cc, cf):  # noqa: ANN001
    for p in prange(cd.shape[0] * cd.shape[2]):
        _galerkin_rows(d, c, fl, factors, axis_of, cd, cc, cf, p, p + 1)


def dispatchers() -> dict[str, Any]:
    """The entry points by name (``stencil3``, ``stencil3_serial``, ``block_sum2``, ...).

    Touching numba's threading layer here makes a broken numba fail at load, once, rather
    than inside a solve.
    """
    numba.get_num_threads()
    per_dimension = [
        f"{op}{nd}" for op in ("stencil", "block_sum", "inject", "neighbours") for nd in (2, 3)
    ]
    # each with a parallel and a serial form
    names = [*per_dimension, "features", "galerkin", "smoother", "axis_shares"]
    table = entries(sys.modules[__name__], names)
    matrix = ("scatter_entries", "csr_statistics", "stencil_statistics")
    table.update(entries(_matrix_loops, matrix))
    table.update(entries(_vector_loops, ("vector", "dot2", "step")))
    return table
