"""The vector operations of the Krylov iterations on the native kernels' threads.

Inside a :func:`~neurosolve.solvers.native.kernel_threads` block (MGPC's setup and solve:
its cycle on the policy's threads, torch's own pool at one thread) a vector operation in
torch would use one core of several. These run the iteration's dot products (one or two
sharing a vector), its step ``x += a p``, ``r -= a q`` (which also returns the new
``r^T r``, so the iteration can see convergence before preconditioning), the next
direction ``y = x + a y`` and the casts between the iteration's and the preconditioner's
precision as numba loops (:mod:`neurosolve.solvers._vector_loops`): in chunks, one per
thread, above the threading layer's size threshold, else serially. Each returns ``None`` /
``False`` outside such a block or for tensors that are not flat contiguous CPU vectors of
one float dtype; the caller then runs torch's form. Dot products are summed in float64 with
interleaved partial sums, so their rounding differs from torch's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurosolve.solvers import native

__all__ = ["cast", "dot", "dot2", "step", "xpay"]


def _entry(name: str, count: int) -> Any:
    """The parallel entry of kernel ``name`` for ``count`` chunks, its serial one for 1."""
    return native.kernel(name if count > 1 else f"{name}_serial")


def _vector(op: int, a: float, x: torch.Tensor, y: torch.Tensor) -> float:
    """Vector operation ``op`` on the kernel threads; a dot product's value (else 0)."""
    with native.chunks(x.shape[0]) as count:
        partial = np.zeros(count)
        _entry("vector", count)(op, float(a), x.numpy(), y.numpy(), partial)
    return float(partial.sum()) if op == 0 else 0.0


def _flat_pair(x: torch.Tensor, y: torch.Tensor, same_dtype: bool = True) -> int:
    """Entries of two flat contiguous CPU vectors a vector kernel may take (0: it may not)."""
    if not native.in_kernel_block() or not native.available():
        return 0
    if x.dim() != 1 or y.shape != x.shape:
        return 0
    if same_dtype and y.dtype != x.dtype:
        return 0
    if not (x.is_contiguous() and y.is_contiguous()):
        return 0
    if not (native.plain([x], x.dtype) and native.plain([y], y.dtype)):
        return 0
    return x.shape[0]


def dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """``x^T y`` of flat float vectors on the kernel threads, as a (1,) tensor; or ``None``.

    ``None`` (the caller's torch form runs) where the module says. The sum is taken in
    chunks, one per thread, in float64.

    Examples
    --------
    >>> x = torch.ones(40000, dtype=torch.float64)
    >>> with native.kernel_threads(2):
    ...     out = dot(x, x)
    >>> out is None or out.tolist() == [40000.0]
    True
    """
    if not _flat_pair(x, y):
        return None
    return torch.tensor([_vector(0, 0.0, x, y)], dtype=x.dtype)


def dot2(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
    """``(x^T y, x^T z)`` in one pass on the kernel threads, as a (2,) tensor; or ``None``.

    As :func:`dot` (and where it applies), with ``x`` read once for both.

    Examples
    --------
    >>> x = torch.ones(40000, dtype=torch.float64)
    >>> with native.kernel_threads(2):
    ...     out = dot2(x, x, 2 * x)
    >>> out is None or out.tolist() == [40000.0, 80000.0]
    True
    """
    if not (_flat_pair(x, y) and _flat_pair(x, z)):
        return None
    with native.chunks(x.shape[0]) as count:
        partial = np.zeros((count, 2))
        _entry("dot2", count)(x.numpy(), y.numpy(), z.numpy(), partial)
    return torch.from_numpy(partial.sum(axis=0)).to(x.dtype)


def step(
    a: float, p: torch.Tensor, x: torch.Tensor, q: torch.Tensor, r: torch.Tensor
) -> float | None:
    """A CG step ``x += a p``, ``r -= a q`` in one pass on the kernel threads; its new ``r^T r``.

    ``None`` where it does not apply (nothing is changed then).

    Examples
    --------
    >>> p, q = torch.ones(40000, dtype=torch.float64), torch.ones(40000, dtype=torch.float64)
    >>> x, r = torch.zeros_like(p), torch.zeros_like(p)
    >>> with native.kernel_threads(2):
    ...     rr = step(2.0, p, x, q, r)
    >>> rr is None or (float(x[0]), float(r[0]), rr) == (2.0, -2.0, 160000.0)
    True
    """
    if not (_flat_pair(p, x) and _flat_pair(q, r) and q.dtype == p.dtype):
        return None
    with native.chunks(x.shape[0]) as count:
        partial = np.zeros(count)
        _entry("step", count)(float(a), p.numpy(), x.numpy(), q.numpy(), r.numpy(), partial)
    return float(partial.sum())


def xpay(x: torch.Tensor, y: torch.Tensor, a: float) -> bool:
    """``y = x + a y`` in place on the kernel threads; False where it does not apply.

    Examples
    --------
    >>> x, y = torch.ones(40000, dtype=torch.float64), torch.ones(40000, dtype=torch.float64)
    >>> with native.kernel_threads(2):
    ...     done = xpay(x, y, 3.0)
    >>> bool(y[0] == 4.0) if done else True
    True
    """
    if not _flat_pair(x, y):
        return False
    _vector(1, a, x, y)
    return True


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """``x`` (flat) converted to ``dtype`` on the kernel threads; ``None`` where it does not apply.

    Examples
    --------
    >>> with native.kernel_threads(2):
    ...     out = cast(torch.full((40000,), 0.1, dtype=torch.float64), torch.float32)
    >>> out is None or (out.dtype, float(out[0])) == (torch.float32, float(torch.tensor(0.1)))
    True
    """
    if dtype == x.dtype or dtype not in (torch.float32, torch.float64):
        return None
    out = torch.empty(x.shape, dtype=dtype)
    if not _flat_pair(x, out, same_dtype=False):
        return None
    _vector(2, 0.0, x, out)
    return out
