"""The MGPC cycle as native CPU passes on arrays allocated once.

:meth:`Hierarchy.apply <neurosolve.solvers.mgpc.hierarchy.Hierarchy.apply>` in torch
costs, per level and visit, a dozen small tensor operations, each with its dispatch,
checks and allocation; on the coarse levels of a W-cycle these fixed costs are most of
the time, and at 64^3 they were about half of a PCG iteration. :class:`NativeCycle` runs
the same cycle with the same operations in the same order, so with bit-identical results,
as one native loop per smoothing step, residual, restriction and prolongation, on
numpy views of the level tensors and on work arrays kept between calls; only the
coarsest level's dense product stays a torch ``bmm``.

It serves the CPU without autograd only; :meth:`NativeCycle.build` returns ``None``
elsewhere and the hierarchy then runs its torch form.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neurosolve.solvers import compiled, native

__all__ = ["NativeCycle"]


@dataclass
class _Level:
    """Numpy views of one level's arrays and its work arrays (by number of fields)."""

    diagonal: np.ndarray
    couplings: np.ndarray
    fluid: np.ndarray
    symmetric: bool
    steps: list[np.ndarray] = field(default_factory=list)  # w_k, (G, 1, *S) each
    factors: np.ndarray | None = None  # to the next level, int64 per axis
    gamma: int = 1
    tau: float = 1.0
    scale2: np.ndarray | None = None  # s^2 of the correction from this level, 0-d
    inverse: torch.Tensor | None = None  # coarsest level
    work: dict[tuple[int, ...], list[np.ndarray]] = field(default_factory=dict)  # by shape


def _view(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def signature(hierarchy: Any) -> tuple:
    """Identity and version of every tensor the cycle reads: a changed one is seen."""
    out: list[Any] = [hierarchy.gamma]
    for lvl in hierarchy.levels:
        for t in (lvl.diagonal, lvl.couplings, lvl.fluid, lvl.weights, lvl.scale, lvl.inverse):
            out.append(None if t is None else (id(t), t._version))
        out.extend((lvl.axes, lvl.gamma, lvl.tau, lvl.symmetric))
    return tuple(out)


class NativeCycle:
    """``M r`` of a :class:`~neurosolve.solvers.mgpc.hierarchy.Hierarchy` in native passes.

    Built by :meth:`build` from the hierarchy's levels as they are (a later change of a
    level tensor is detected by :func:`signature`, and the hierarchy rebuilds it).

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> from neurosolve.solvers.mgpc import MGPCNet
    >>> from neurosolve.solvers.mgpc.hierarchy import Hierarchy
    >>> from neurosolve.solvers.stencil import StencilOperator
    >>> op = StencilOperator.from_system(poisson((16, 16, 16)))
    >>> with torch.no_grad():
    ...     h = Hierarchy.build(MGPCNet(), op.diagonal[None, None], op.neighbours[None],
    ...                         op.fluid_mask[None, None].double())
    ...     cycle = NativeCycle.build(h)
    ...     r = torch.randn(1, 1, 16, 16, 16, dtype=torch.float64) * h.levels[0].fluid
    ...     cycle is None or torch.equal(cycle.apply(r), h.apply(r, native_cycle=False))
    True
    """

    def __init__(self, levels: list[_Level], dtype: torch.dtype, ndim: int) -> None:
        self.levels = levels
        self.dtype = dtype
        self.ndim = ndim
        self.stencil = f"stencil{ndim}"
        self.block_sum = f"block_sum{ndim}"
        self.inject = f"inject{ndim}"
        self._lock = threading.Lock()

    @classmethod
    def build(cls, hierarchy: Any) -> NativeCycle | None:
        """The native cycle of ``hierarchy``, or ``None`` where it does not apply."""
        first = hierarchy.levels[0].diagonal
        ndim = first.dim() - 2
        if (
            not native.available()
            or compiled.compile_enabled()  # the user asked for inductor's kernels
            or first.device.type != "cpu"
            or first.dtype not in (torch.float32, torch.float64)
            or ndim not in (2, 3)
            or len(hierarchy.levels) < 2
        ):
            return None
        levels = [_level(lvl, first.dtype) for lvl in hierarchy.levels]
        if any(x is None for x in levels):
            return None
        for lvl, nxt in zip(levels[:-1], hierarchy.levels[1:], strict=True):
            lvl.scale2 = np.asarray(_view(nxt.scale.square()), dtype=lvl.diagonal.dtype)
        return cls(levels, first.dtype, ndim)  # type: ignore[arg-type]

    def apply(self, r: torch.Tensor) -> torch.Tensor | None:
        """``M r`` for fields ``(G, K, *S)`` of the finest level; ``None`` if not its form.

        ``None`` also while another thread runs this cycle (its work arrays are shared):
        the caller's torch form then runs, with the same result.
        """
        fine = self.levels[0]
        G = r.shape[0]
        if (
            r.dtype != self.dtype
            or r.device.type != "cpu"
            or r.dim() != self.ndim + 2
            or tuple(r.shape[2:]) != fine.diagonal.shape[2:]
            or fine.diagonal.shape[0] not in (1, G)
            or (r.requires_grad and torch.is_grad_enabled())
        ):
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            out = torch.empty(r.shape, dtype=r.dtype)
            self._apply(0, _view(r), out.numpy(), self._calls(r.shape[1]))
        finally:
            self._lock.release()
        return out

    def _calls(self, fields: int) -> list[tuple[Any, Any, Any]]:
        """Per level, its stencil, restriction and prolongation calls as of now.

        :func:`~neurosolve.solvers.native.caller` once per level and application: the
        coarse levels' many small passes then call their serial loops directly.
        """
        out = []
        for lvl in self.levels:
            cells = fields * lvl.fluid.size
            coarse = cells if lvl.factors is None else cells // int(np.prod(lvl.factors))
            out.append(
                (
                    native.caller(self.stencil, cells),
                    native.caller(self.block_sum, coarse),
                    native.caller(self.inject, cells),
                )
            )
        return out

    def _work(self, level: int, shape: tuple[int, ...]) -> list[np.ndarray]:
        """Level ``level``'s work arrays for ``shape = (G, K, *S)`` fields, made once."""
        lvl = self.levels[level]
        arrays = lvl.work.get(shape)
        if arrays is None:
            nxt = self.levels[level + 1].diagonal.shape[2:]
            coarse = (*shape[:2], *nxt)
            dtype = lvl.diagonal.dtype
            arrays = [np.empty(shape, dtype) for _ in range(2)]  # x (ping-pong), residual
            arrays += [np.empty(coarse, dtype) for _ in range(4)]  # rc, ec, W residual, again
            lvl.work[shape] = arrays
        return arrays

    def _apply(self, level: int, r: np.ndarray, out: np.ndarray, calls: list) -> None:
        """``out = M_level r``: the steps of ``Hierarchy.apply``, in its order."""
        lvl = self.levels[level]
        if lvl.inverse is not None:  # the coarsest level: its dense inverse
            G, K = r.shape[:2]
            flat = torch.from_numpy(r).reshape(G, K, -1).transpose(1, 2)
            x = torch.bmm(lvl.inverse, flat).transpose(1, 2).reshape(r.shape)
            np.multiply(x.numpy(), lvl.fluid, out=out)
            return
        tmp, res, rc, ec, res2, again = self._work(level, r.shape)
        d, c, sym = lvl.diagonal, lvl.couplings, lvl.symmetric
        stencil, _, inject = calls[level]
        # 2 nu - 1 passes write x from here on, an odd number: start in tmp, end in out
        x, y = tmp, out
        np.multiply(lvl.steps[0], r, out=x)
        for w in lvl.steps[1:]:  # pre-smoothing W_1 .. W_nu
            stencil(native.SMOOTHING, sym, d, c, x, r, w, y)
            x, y = y, x
        stencil(native.RESIDUAL, sym, d, c, x, r, d, res)
        self._coarse_correction(level, res, rc, ec, res2, again, calls)
        inject(ec, lvl.fluid, lvl.factors, True, x)  # x += P (s^2 ec)
        for w in reversed(lvl.steps):  # post-smoothing W_nu .. W_1 (the adjoint order)
            stencil(native.SMOOTHING, sym, d, c, x, r, w, y)
            x, y = y, x

    def _coarse_correction(
        self,
        level: int,
        res: np.ndarray,
        rc: np.ndarray,
        ec: np.ndarray,
        res2: np.ndarray,
        again: np.ndarray,
        calls: list,
    ) -> None:
        """``ec = s^2 Bt_c R res``: one (V) or two (W, damped by ``tau``) coarse cycles."""
        lvl, nxt = self.levels[level], self.levels[level + 1]
        calls[level][1](res, lvl.factors, rc)
        self._apply(level + 1, rc, ec, calls)
        if lvl.gamma == 2:
            if lvl.tau != 1.0:
                np.multiply(ec, lvl.tau, out=ec)
            calls[level + 1][0](
                native.RESIDUAL, nxt.symmetric, nxt.diagonal, nxt.couplings, ec, rc,
                nxt.diagonal, res2,
            )  # fmt: skip
            self._apply(level + 1, res2, again, calls)
            if lvl.tau != 1.0:
                np.multiply(again, lvl.tau, out=again)
            np.add(ec, again, out=ec)
        np.multiply(ec, lvl.scale2, out=ec)


def _level(lvl: Any, dtype: torch.dtype) -> _Level | None:
    """The numpy form of ``lvl``, or ``None`` if a tensor is not of the cycle's form."""
    tensors = [lvl.diagonal, lvl.couplings, lvl.fluid]
    last = lvl.inverse is not None
    if not last:
        if lvl.weights is None:
            return None
        tensors.append(lvl.weights)
    if any(t.dtype != dtype or t.device.type != "cpu" for t in tensors):
        return None
    G, ndim = lvl.diagonal.shape[0], lvl.diagonal.dim() - 2
    shape = tuple(lvl.shape)
    if lvl.couplings.shape != (G, 2 * ndim, *shape) or lvl.fluid.shape != (G, 1, *shape):
        return None
    out = _Level(_view(lvl.diagonal), _view(lvl.couplings), _view(lvl.fluid), lvl.symmetric)
    if last:
        if lvl.inverse.dtype != dtype:
            return None
        out.inverse = lvl.inverse.detach()
        return out
    weights = lvl.weights.detach()
    out.steps = [_view(weights[:, k : k + 1]) for k in range(weights.shape[1])]
    axes = lvl.axes if lvl.axes is not None else (True,) * ndim
    out.factors = np.asarray([2 if a else 1 for a in axes], dtype=np.int64)
    out.gamma, out.tau = lvl.gamma, float(lvl.tau)
    return out
