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

from typing import Any

import numba
from numba import prange

_JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}
jit = numba.njit(**_JIT)
parallel = numba.njit(parallel=True, **_JIT)


@jit
def _finish(mode: int, acc: Any, x: Any, f: Any, w: Any) -> Any:
    """The value written for a cell: ``A u`` (0), ``f - A u`` (1), ``u + w (f - A u)`` (2)."""
    if mode == 0:
        return acc
    if mode == 1:
        return f - acc
    return x + w * (f - acc)


@jit
def _stencil3_rows(mode, d, c, u, f, w, out, first, last):  # noqa: ANN001 - numba arrays
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
                    acc += c[s, 1, i, j, m] * u[g, k, i + 1, j, m]
                if lo1:
                    acc += c[s, 2, i, j, m] * u[g, k, i, j - 1, m]
                if hi1:
                    acc += c[s, 3, i, j, m] * u[g, k, i, j + 1, m]
                if m > 0:
                    acc += c[s, 4, i, j, m] * u[g, k, i, j, m - 1]
                if m < n2 - 1:
                    acc += c[s, 5, i, j, m] * u[g, k, i, j, m + 1]
                out[g, k, i, j, m] = _finish(mode, acc, x, f[g, k, i, j, m], w[s, 0, i, j, m])


@jit
def _stencil2_rows(mode, d, c, u, f, w, out, first, last):  # noqa: ANN001
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
                acc += c[s, 1, i, m] * u[g, k, i + 1, m]
            if m > 0:
                acc += c[s, 2, i, m] * u[g, k, i, m - 1]
            if m < n1 - 1:
                acc += c[s, 3, i, m] * u[g, k, i, m + 1]
            out[g, k, i, m] = _finish(mode, acc, x, f[g, k, i, m], w[s, 0, i, m])


@jit
def stencil3_serial(mode, d, c, u, f, w, out):  # noqa: ANN001
    _stencil3_rows(mode, d, c, u, f, w, out, 0, u.shape[0] * u.shape[1] * u.shape[2])


@parallel
def stencil3(mode, d, c, u, f, w, out):  # noqa: ANN001
    for p in prange(u.shape[0] * u.shape[1] * u.shape[2]):
        _stencil3_rows(mode, d, c, u, f, w, out, p, p + 1)


@jit
def stencil2_serial(mode, d, c, u, f, w, out):  # noqa: ANN001
    _stencil2_rows(mode, d, c, u, f, w, out, 0, u.shape[0] * u.shape[1] * u.shape[2])


@parallel
def stencil2(mode, d, c, u, f, w, out):  # noqa: ANN001
    for p in prange(u.shape[0] * u.shape[1] * u.shape[2]):
        _stencil2_rows(mode, d, c, u, f, w, out, p, p + 1)


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
def _inject3_rows(uc, fluid, factors, out, first, last):  # noqa: ANN001
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
                out[g, k, i, j, m] = uc[g, k, a, b, m >> s2] * fluid[s, 0, i, j, m]


@jit
def _inject2_rows(uc, fluid, factors, out, first, last):  # noqa: ANN001
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
            out[g, k, i, m] = uc[g, k, a, m >> s1] * fluid[s, 0, i, m]


@jit
def inject3_serial(uc, fluid, factors, out):  # noqa: ANN001
    _inject3_rows(uc, fluid, factors, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def inject3(uc, fluid, factors, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _inject3_rows(uc, fluid, factors, out, p, p + 1)


@jit
def inject2_serial(uc, fluid, factors, out):  # noqa: ANN001
    _inject2_rows(uc, fluid, factors, out, 0, out.shape[0] * out.shape[1] * out.shape[2])


@parallel
def inject2(uc, fluid, factors, out):  # noqa: ANN001
    for p in prange(out.shape[0] * out.shape[1] * out.shape[2]):
        _inject2_rows(uc, fluid, factors, out, p, p + 1)


def dispatchers() -> dict[str, Any]:
    """The entry points by name (``stencil3``, ``stencil3_serial``, ``block_sum2``, ...).

    Touching numba's threading layer here makes a broken numba fail at load, once, rather
    than inside a solve.
    """
    numba.get_num_threads()
    names = ("stencil", "block_sum", "inject")
    table = {}
    for name in names:
        for ndim in (2, 3):
            for suffix in ("", "_serial"):
                key = f"{name}{ndim}{suffix}"
                table[key] = globals()[key]
    return table
