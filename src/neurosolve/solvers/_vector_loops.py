"""The vector operations of the Krylov iterations as numba loops (dot products, updates).

Part of :mod:`neurosolve.solvers.native`'s kernels, used through
:mod:`neurosolve.solvers.native_vectors` by :mod:`neurosolve.solvers.krylov` where the
iteration's native kernels run on several threads. Chunks of entries, one per thread.
"""

from __future__ import annotations

from numba import prange

from neurosolve.solvers._numba import jit, parallel


@jit
def _vector_rows(op, a, x, y, first, last):  # noqa: ANN001, ANN201
    """Entries ``first:last`` of the vector operation ``op`` on flat arrays.

    0: returns ``sum x * y`` (four interleaved partial sums); 1: ``y = x + a y``; 2: ``y =
    x`` (a cast where ``y`` has another dtype).
    """
    acc = 0.0
    if op == 0:  # four partial sums: one chain of dependent adds would bound the speed
        a0, a1, a2, a3 = 0.0, 0.0, 0.0, 0.0
        stop = first + (last - first) // 4 * 4
        for i in range(first, stop, 4):
            a0 += x[i] * y[i]
            a1 += x[i + 1] * y[i + 1]
            a2 += x[i + 2] * y[i + 2]
            a3 += x[i + 3] * y[i + 3]
        for i in range(stop, last):
            a0 += x[i] * y[i]
        acc = (a0 + a1) + (a2 + a3)
    elif op == 1:
        for i in range(first, last):
            y[i] = x[i] + a * y[i]
    else:
        for i in range(first, last):
            y[i] = x[i]
    return acc


@jit
def vector_serial(op, a, x, y, partial):  # noqa: ANN001
    """The operation over every entry; ``partial (1,)`` receives a dot product."""
    partial[0] = _vector_rows(op, a, x, y, 0, x.shape[0])


@parallel
def vector(op, a, x, y, partial):  # noqa: ANN001
    """The same in ``len(partial)`` chunks (a dot product: one partial sum per chunk)."""
    chunks, n = partial.shape[0], x.shape[0]
    for k in prange(chunks):
        partial[k] = _vector_rows(op, a, x, y, k * n // chunks, (k + 1) * n // chunks)


@jit
def _dot2_rows(x, y, z, first, last):  # noqa: ANN001, ANN201
    """``(x^T y, x^T z)`` over entries ``first:last``: two dot products, ``x`` read once."""
    a0, a1, b0, b1 = 0.0, 0.0, 0.0, 0.0
    stop = first + (last - first) // 2 * 2
    for i in range(first, stop, 2):
        a0 += x[i] * y[i]
        b0 += x[i] * z[i]
        a1 += x[i + 1] * y[i + 1]
        b1 += x[i + 1] * z[i + 1]
    for i in range(stop, last):
        a0 += x[i] * y[i]
        b0 += x[i] * z[i]
    return a0 + a1, b0 + b1


@jit
def dot2_serial(x, y, z, partial):  # noqa: ANN001
    """Both dot products over every entry into ``partial (1, 2)``."""
    partial[0, 0], partial[0, 1] = _dot2_rows(x, y, z, 0, x.shape[0])


@parallel
def dot2(x, y, z, partial):  # noqa: ANN001
    """The same in ``len(partial)`` chunks, one row of partial sums each."""
    chunks, n = partial.shape[0], x.shape[0]
    for k in prange(chunks):
        first, last = k * n // chunks, (k + 1) * n // chunks
        partial[k, 0], partial[k, 1] = _dot2_rows(x, y, z, first, last)


@jit
def _step_rows(a, p, x, q, r, first, last):  # noqa: ANN001, ANN201
    """``x += a p``, ``r -= a q`` over entries ``first:last``; returns the new ``r^T r`` there."""
    rr0, rr1 = 0.0, 0.0
    stop = first + (last - first) // 2 * 2
    for i in range(first, stop, 2):
        x[i] += a * p[i]
        x[i + 1] += a * p[i + 1]
        u = r[i] - a * q[i]
        v = r[i + 1] - a * q[i + 1]
        r[i], r[i + 1] = u, v
        rr0 += u * u
        rr1 += v * v
    for i in range(stop, last):
        x[i] += a * p[i]
        r[i] -= a * q[i]
        rr0 += r[i] * r[i]
    return rr0 + rr1


@jit
def step_serial(a, p, x, q, r, partial):  # noqa: ANN001
    """A CG step in one pass: ``x += a p`` and ``r -= a q``; ``partial[0]``: the new r^T r."""
    partial[0] = _step_rows(a, p, x, q, r, 0, x.shape[0])


@parallel
def step(a, p, x, q, r, partial):  # noqa: ANN001
    """The same in ``len(partial)`` chunks on the threads, a partial ``r^T r`` each."""
    chunks, n = partial.shape[0], x.shape[0]
    for k in prange(chunks):
        partial[k] = _step_rows(a, p, x, q, r, k * n // chunks, (k + 1) * n // chunks)
