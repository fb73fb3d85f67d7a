"""Value classes of the MGPC network: the cells whose outputs repeat a neighbour's.

:class:`~neurosolve.solvers.mgpc.network.MGPCNet` is a per-cell network with message
passing along the stencil, so after ``k`` layers a cell's value depends only on the stencil
rows within ``k`` steps of it. :func:`value_classes` numbers the distinct values of every
layer (cells whose ``k``-neighbourhoods hold equal rows share one, exactly: rows are
compared bit for bit), :func:`gather_neighbours` runs a layer's message passing on one cell
per value, and :func:`expand_slots` writes the values back on every cell. The loops are
numba's (:mod:`~neurosolve.solvers.mgpc._class_loops`, serial: each is one light pass); every
function returns ``None`` where they do not apply (numba absent or switched off, a tensor
off the CPU or under autograd, another dtype), and the caller runs the dense form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from neurosolve.solvers import native

__all__ = ["cells_of", "expand_slots", "gather_neighbours", "value_classes"]

_FLOATS = (torch.float32, torch.float64)


def _loops() -> Any | None:
    """The compiled loops module, or ``None`` where the native kernels are off."""
    if not native.available():
        return None
    from neurosolve.solvers.mgpc import _class_loops

    return _class_loops


def _plain(*tensors: torch.Tensor, dtypes: Sequence[torch.dtype]) -> bool:
    """CPU tensors of the given dtypes with no gradient to record."""
    grad = torch.is_grad_enabled()
    return all(
        t.device.type == "cpu" and t.dtype in dtypes and not (grad and t.requires_grad)
        for t in tensors
    )


def _grid3(shape: Sequence[int]) -> tuple[int, int, int]:
    """A 2D or 3D grid as the 3D one of the loops: ``(n0, n1)`` is ``(n0, 1, n1)``."""
    if len(shape) == 2:
        return int(shape[0]), 1, int(shape[1])
    return int(shape[0]), int(shape[1]), int(shape[2])


def value_classes(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor, layers: int
) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The distinct values of ``0 .. layers`` message-passing layers on a stencil.

    For a stencil ``(1, 1, *S)``, ``(1, 2 d, *S)``, ``(1, 1, *S)`` (one float dtype, 2D or
    3D), returns for ``k = 0 .. layers`` the pair ``(slot, heads)``: ``slot`` (int32, one
    per cell, C order) numbers the distinct values after ``k`` layers, ``heads`` (int32)
    holds the cell that computes each. Two cells share a slot only where their rows
    (diagonal, couplings, fluid) within ``k`` stencil steps are equal bit for bit, cell
    for cell; a cell takes the slot of its predecessor along the last, middle or first
    axis where it can. ``None`` where the loops do not apply.

    Examples
    --------
    >>> d, c = torch.full((1, 1, 6, 1), 2.0), torch.zeros(1, 4, 6, 1)
    >>> c[0, 0, 1:, 0], c[0, 1, :5, 0] = -1.0, -1.0  # a 1D Laplacian as a 6 x 1 grid
    >>> out = value_classes(d, c, torch.ones(1, 1, 6, 1), 1)
    >>> out is None or [heads.tolist() for _, heads in out] == [[0, 1, 5], [0, 1, 2, 4, 5]]
    True
    """
    ndim = diagonal.dim() - 2
    loops = _loops()
    if loops is None or not 2 <= ndim <= 3 or layers < 0:
        return None
    S = tuple(diagonal.shape[2:])
    if (
        tuple(diagonal.shape) != (1, 1, *S)
        or tuple(couplings.shape) != (1, 2 * ndim, *S)
        or tuple(fluid.shape) != (1, 1, *S)
        or not _plain(diagonal, couplings, fluid, dtypes=(diagonal.dtype,))
        or diagonal.dtype not in _FLOATS
    ):
        return None
    grid = _grid3(S)
    d, c, fl = (native._array(t).reshape(t.shape[1], -1) for t in (diagonal, couplings, fluid))
    cells = d.shape[1]
    src = np.empty(cells, dtype=np.uint8)
    with native.chunks(cells) as chunks:
        if chunks > 1:
            loops.row_equal_parallel(d[0], c, fl[0], *grid, src, chunks)
        else:
            loops.row_equal(d[0], c, fl[0], *grid, src)
    out = []
    for k in range(layers + 1):
        if k:
            src = _erode(src, grid)
        slot, heads = np.empty(cells, dtype=np.int32), np.empty(cells, dtype=np.int32)
        count = loops.representatives(src, *grid, slot, heads)
        out.append((torch.from_numpy(slot), torch.from_numpy(heads[:count].copy())))
    return out


def _erode(src: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """One more layer of the row-equality bits: ``src[x]`` and-ed with its neighbours'.

    Outside the grid a cell's value is the zero padding, so the bit of axis ``b`` holds
    there unless the cell is ``x - e_b`` with ``x`` inside (bits ``7 ^ (1 << b)``): the
    first plane of axis ``b`` loses bit ``b``. numpy's whole-array passes (numba widens
    ``uint8`` operations to 64 bits and ran this four times slower at 64^3).
    """
    n0, n1, n2 = grid
    s = src.reshape(grid)
    out = s.copy()
    if n2 > 1:
        out[:, :, :-1] &= s[:, :, 1:]
        out[:, :, 1:] &= s[:, :, :-1]
        out[:, :, 0] &= 3
    if n1 > 1:
        out[:, :-1] &= s[:, 1:]
        out[:, 1:] &= s[:, :-1]
        out[:, 0] &= 5
    if n0 > 1:
        out[:-1] &= s[1:]
        out[1:] &= s[:-1]
        out[0] &= 6
    return out.reshape(-1)


def gather_neighbours(
    both: torch.Tensor,
    slot: torch.Tensor,
    heads: torch.Tensor,
    weights: torch.Tensor,
    grid: Sequence[int],
) -> torch.Tensor | None:
    """A message-passing layer on the heads of :func:`value_classes` (float32).

    ``both (slots, 2 C)``: the previous layer's self part (with its bias) and neighbour
    part per value slot, ``slot``: each cell's slot among them, ``heads (m,)``: the cells
    to compute, ``weights (m, 2 d)``: their averaging weights (channel ``2 a`` to
    ``-e_a``). Returns ``(m, C)``: ``self + sum_j w_j nbr(x + e_j)`` (neighbours outside
    the grid add nothing), or ``None``.

    Examples
    --------
    >>> both = torch.tensor([[1.0, 10.0], [2.0, 20.0]])  # two slots, C = 1
    >>> slot = torch.tensor([0, 1, 1], dtype=torch.int32)  # a 3 x 1 grid
    >>> w = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    >>> heads = torch.tensor([0, 1], dtype=torch.int32)
    >>> out = gather_neighbours(both, slot, heads, w, (3, 1))
    >>> out is None or out.flatten().tolist() == [21.0, 17.0]
    True
    """
    ndim = len(grid)
    loops = _loops()
    if loops is None or not 2 <= ndim <= 3:
        return None
    m, width2 = heads.shape[0], both.shape[1]
    if (
        both.dim() != 2
        or width2 % 2
        or tuple(weights.shape) != (m, 2 * ndim)
        or not _plain(both, weights, dtypes=(torch.float32,))
        or slot.dtype != torch.int32
        or heads.dtype != torch.int32
    ):
        return None
    out = torch.empty((m, width2 // 2), dtype=torch.float32)
    axis_of = np.array([0, 2] if ndim == 2 else [0, 1, 2], dtype=np.int64)
    arrays = [native._array(t) for t in (both, slot, heads, weights)]
    loops.gather_neighbours(*arrays, *_grid3(grid), axis_of, out.numpy())
    return out


def expand_slots(values: torch.Tensor, slot: torch.Tensor) -> torch.Tensor | None:
    """``out[k, x] = values[slot[x], k]``: per-slot values ``(m, K)`` on every cell, ``(K, N)``.

    ``values`` float32 or float64 (the result's dtype), ``slot`` int32; ``None`` where the
    loops do not apply.

    Examples
    --------
    >>> slot = torch.tensor([0, 1, 1], dtype=torch.int32)
    >>> out = expand_slots(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), slot)
    >>> out is None or out.tolist() == [[1.0, 3.0, 3.0], [2.0, 4.0, 4.0]]
    True
    """
    loops = _loops()
    if (
        loops is None
        or values.dim() != 2
        or not _plain(values, dtypes=_FLOATS)
        or slot.dtype != torch.int32
    ):
        return None
    out = torch.empty((values.shape[1], slot.numel()), dtype=values.dtype)
    arrays = native._array(values), native._array(slot), out.numpy()
    with native.chunks(slot.numel()) as chunks:
        if chunks > 1:
            loops.expand_parallel(*arrays, chunks)
        else:
            loops.expand(*arrays)
    return out


def cells_of(heads: torch.Tensor, *fields: torch.Tensor) -> list[torch.Tensor]:
    """The cells ``heads`` (flat, C order) of fields ``(1, C, *S)``, as fields on a line.

    Each result is ``(1, C, m, 1, ...)``: a grid of the same dimension, one cell wide, so
    the per-cell passes (features, smoother weights) run on those cells alone.

    Examples
    --------
    >>> field = torch.arange(6.0).reshape(1, 1, 2, 3)
    >>> cells_of(torch.tensor([1, 5], dtype=torch.int32), field)[0].flatten().tolist()
    [1.0, 5.0]
    """
    index = heads.numpy().astype(np.intp)  # numpy's own index type: the fastest take
    shape = (heads.numel(), *[1] * (fields[0].dim() - 3))
    out = []
    for t in fields:
        flat = t.detach().reshape(t.shape[1], -1).numpy()
        out.append(torch.from_numpy(np.take(flat, index, axis=1).reshape(1, t.shape[1], *shape)))
    return out
