"""The MGPC multigrid hierarchy: aggregation transfers, Galerkin coarse stencils, the cycle.

A plain :class:`Level` record per grid (as pyamg's ``MultilevelSolver.level``) holds a
level's stencil in the layout of :mod:`neurosolve.solvers.stencil`, its smoother weights
and the bounds that keep the cycle SPD; :class:`Hierarchy` builds the levels for one or
several matrices and applies the symmetric W- or V-cycle ``M``. Why ``M`` is SPD for every
geometry and every network output is proven in ``docs/mgpc.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native
from neurosolve.solvers.mgpc.classes import cells_of, expand_slots
from neurosolve.solvers.mgpc.native_cycle import NativeCycle, signature
from neurosolve.solvers.mgpc.network import CYCLES, MGPCNet, _chunks
from neurosolve.solvers.stencil import exactly_symmetric, smoothing_step, stencil_residual

__all__ = [
    "Hierarchy",
    "Level",
    "coarsening_axes",
    "coarsest_inverse",
    "galerkin_coarsen",
    "prolong",
    "restrict",
]

W_BOUND = 1.96  # a W-step damps its coarse iteration so that tau * lambda_max <= 1.96 < 2


def _factors(ndim: int, axes: Sequence[bool] | None) -> list[int]:
    """Coarsening factor (2 or 1) per spatial axis; ``axes=None`` coarsens every axis."""
    if axes is None:
        return [2] * ndim
    if len(axes) != ndim:
        raise InvalidInputError(f"axes must have one entry per grid axis ({ndim}), got {axes}")
    return [2 if c else 1 for c in axes]


def _pad_even(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Zero-pad the coarsened spatial axes (from axis 2) at their end to even sizes."""
    pads: list[int] = []
    for size, f in zip(reversed(x.shape[2:]), reversed(factors), strict=True):
        pads.extend((0, size % f))
    return F.pad(x, pads) if any(pads) else x


def _block_sum(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor:
    """Sum over blocks of ``factors`` cells: ``(G, C, *S) -> (G, C, *S / factors)``."""
    G, C, *S = x.shape
    coarse = [s // f for s, f in zip(S, factors, strict=True)]
    if len(S) in (2, 3):  # pooling kernels with divisor 1: exact sums, much faster
        pool = F.avg_pool2d if len(S) == 2 else F.avg_pool3d
        k = tuple(factors)
        return pool(x.reshape(G * C, 1, *S), k, stride=k, divisor_override=1).reshape(G, C, *coarse)
    view = [G, C]
    for c, f in zip(coarse, factors, strict=True):
        view.extend((c, f))
    return x.reshape(view).sum(dim=tuple(range(3, 3 + 2 * len(S), 2)))


def restrict(
    u: torch.Tensor, fine_shape: Sequence[int], axes: Sequence[bool] | None = None
) -> torch.Tensor:
    """``R u``: sum of the fine values over each coarse cell (``u`` zero off-fluid).

    ``axes`` says which axes are coarsened (by 2); the default coarsens all of them.

    Examples
    --------
    >>> restrict(torch.ones(1, 1, 5), (5,))
    tensor([[[2., 2., 1.]]])
    >>> restrict(torch.ones(1, 1, 2, 4), (2, 4), axes=(False, True))
    tensor([[[[2., 2.],
              [2., 2.]]]])
    """
    factors = _factors(u.dim() - 2, axes)
    out = native.block_sum(u, factors)  # the CPU's one pass; None elsewhere
    return _block_sum(_pad_even(u, factors), factors) if out is None else out


def prolong(
    uc: torch.Tensor,
    fine_shape: Sequence[int],
    fine_fluid: torch.Tensor,
    axes: Sequence[bool] | None = None,
) -> torch.Tensor:
    """``P uc = R^T uc``: every fine fluid cell takes the value of its coarse cell.

    Examples
    --------
    >>> prolong(torch.tensor([[[1.0, 2.0, 3.0]]]), (5,), torch.ones(1, 1, 5))
    tensor([[[1., 1., 2., 2., 3.]]])
    """
    G, K, *S = uc.shape
    factors = _factors(len(S), axes)
    if tuple(fine_fluid.shape[2:]) == tuple(fine_shape):
        out = native.inject(uc, fine_fluid, factors)  # the CPU's one pass; None elsewhere
        if out is not None:
            return out
    expanded, full, view = [G, K], [G, K], [G, K]
    for s, f in zip(S, factors, strict=True):
        expanded.extend((s, f))
        full.append(f * s)
        view.extend((s, 1))
    out = uc.reshape(view).expand(expanded).reshape(full)  # one copy, every axis at once
    index = (slice(None), slice(None), *(slice(0, s) for s in fine_shape))
    return out[index] * fine_fluid


def galerkin_coarsen(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    fluid: torch.Tensor,
    axes: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Galerkin coarse stencil ``R A R^T`` of the aggregation restriction.

    A fine coupling inside a block adds (twice, both directions) to the coarse diagonal; a
    coupling across a block face adds to the coarse coupling of the two blocks. The result
    is again a 5/7-point stencil, exactly equal to ``R A R^T``.

    Parameters
    ----------
    diagonal, couplings : torch.Tensor
        Fine stencil, shapes ``(G, 1, *S)`` and ``(G, 2 d, *S)`` (the layout of
        :func:`~neurosolve.solvers.stencil.apply_stencil`).
    fluid : torch.Tensor
        Fine fluid mask ``(G, 1, *S)`` (float or bool).
    axes : sequence of bool, optional
        Which axes to coarsen by 2 (blocks of 2 cells along them, 1 along the others);
        default all (``2^d`` blocks). See :func:`coarsening_axes`.

    Returns
    -------
    diagonal, couplings, fluid : torch.Tensor
        Coarse stencil on the coarse grid (``ceil(S / 2)`` cells along coarsened axes) and
        its fluid mask (float).

    Examples
    --------
    >>> d = torch.full((1, 1, 4), 2.0)
    >>> nb = torch.tensor([[[0.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, 0.0]]])
    >>> dc, nc, fc = galerkin_coarsen(d, nb, torch.ones(1, 1, 4))
    >>> dc.flatten().tolist(), nc[0].tolist()
    ([2.0, 2.0], [[0.0, -1.0], [-1.0, 0.0]])
    """
    ndim = diagonal.dim() - 2
    factors = _factors(ndim, axes)
    fl = fluid.to(diagonal.dtype)
    done = native.galerkin(diagonal, couplings, fl, factors)  # the CPU's one pass
    if done is None:
        coarse_diag, out, coarse_fluid = _galerkin_sums(diagonal, couplings, fl, factors)
    else:
        coarse_diag, out, coarse_fluid = done
    coarse = out.shape[2:]
    for a in range(ndim):
        lo = out[:, 2 * a]  # the same couplings seen from the next block, towards -e_a
        lo.narrow(1 + a, 0, 1).zero_()
        if coarse[a] > 1:
            lo.narrow(1 + a, 1, coarse[a] - 1).copy_(
                out[:, 2 * a + 1].narrow(1 + a, 0, coarse[a] - 1)
            )
    return coarse_diag, out, coarse_fluid


def _galerkin_sums(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor, factors: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The torch form of :func:`~neurosolve.solvers.native.galerkin` (``+e_a`` channels)."""
    ndim = diagonal.dim() - 2
    nb = _pad_even(couplings, factors)
    coarse = [s // f for s, f in zip(nb.shape[2:], factors, strict=True)]
    out = couplings.new_empty((nb.shape[0], 2 * ndim, *coarse))
    coarse_diag = _block_sum(_pad_even(diagonal, factors), factors)
    for a in range(ndim):
        hi = nb[:, 2 * a + 1 : 2 * a + 2]  # couplings to +e_a
        if factors[a] == 2:  # from even cells along a: inside the block (twice: both ways)
            inner = list(factors)
            inner[a] = 1  # one cell of each pair along a
            inside = _block_sum(hi[_every_other(ndim, a, 0)], inner)
            coarse_diag = coarse_diag + 2.0 * inside
            out[:, 2 * a + 1 : 2 * a + 2] = _block_sum(hi[_every_other(ndim, a, 1)], inner)
        else:  # every coupling along an uncoarsened axis joins two blocks
            out[:, 2 * a + 1 : 2 * a + 2] = _block_sum(hi, factors)
    coarse_fluid = (_block_sum(_pad_even(fluid, factors), factors) > 0).to(diagonal.dtype)
    return coarse_diag, out, coarse_fluid


def _every_other(ndim: int, axis: int, start: int) -> tuple[slice, ...]:
    """Index of the cells ``start, start + 2, ...`` along spatial ``axis`` of ``(G, C, *S)``."""
    index = [slice(None)] * (2 + ndim)
    index[2 + axis] = slice(start, None, 2)
    return tuple(index)


def coarsening_axes(couplings: torch.Tensor, threshold: float = 0.5) -> tuple[bool, ...]:
    """Axes to coarsen: those whose mean share of the couplings is ``>= threshold`` x the top.

    ``couplings`` has shape ``(G, 2 d, *S)``; every cell's couplings count once, as shares.
    Isotropic problems (equal spacing, obstacles, coefficient jumps) coarsen every axis;
    on stretched grids or anisotropic coefficients only the strongly coupled axes are
    coarsened (semi-coarsening), until the Galerkin couplings even out: each aggregation
    along an axis halves its coupling relative to the others. Axes of one cell are never
    coarsened.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> from neurosolve.solvers.stencil import StencilOperator
    >>> op = StencilOperator.from_system(poisson((16, 16), spacing=(1.0, 4.0)))
    >>> coarsening_axes(op.neighbours[None])
    (True, False)
    """
    shape = tuple(couplings.shape[2:])
    ndim = len(shape)
    native_sums = native.axis_shares(couplings)  # the CPU's one pass
    if native_sums is not None:
        return _axes_to_coarsen(shape, *native_sums, threshold)
    sums = couplings.new_zeros(ndim)
    cells = 0
    # chunk by chunk of planes: the temporaries stay in cache
    for p0, p1 in _chunks(shape, couplings.device):
        nb = couplings[:, :, p0:p1].abs()
        pair = nb[:, 0::2] + nb[:, 1::2]  # (G, d, ...): coupling of each cell along each axis
        total = pair.sum(dim=1, keepdim=True)
        coupled = total > 0
        share = pair / torch.where(coupled, total, 1.0)  # zero where uncoupled (pair is zero)
        sums += share.sum(dim=(0, *range(2, share.dim())))
        cells += int(coupled.sum())
    return _axes_to_coarsen(shape, sums.tolist(), cells, threshold)


def _axes_to_coarsen(
    shape: tuple[int, ...], sums: list[float], cells: int, threshold: float
) -> tuple[bool, ...]:
    """The decision of :func:`coarsening_axes` from the per-axis share sums."""
    # every cell counts once (scale-free: a high-coefficient region does not dominate)
    per_axis = [x / max(float(cells), 1.0) for x in sums]
    top = max(per_axis)
    return tuple(
        int(shape[a]) > 1 and (top == 0.0 or per_axis[a] >= threshold * top)
        for a in range(len(shape))
    )


def coarsest_inverse(dense: torch.Tensor) -> torch.Tensor:
    """Exactly symmetric inverse of SPD matrices ``(G, N, N)``, pseudo-inverse if singular.

    Computed in float64 whatever the input precision, returned in the input's dtype.

    A pure-Neumann (or otherwise singular, positive semi-definite) matrix handed over
    without a pinned cell has singular Galerkin coarse matrices; their Cholesky factor
    does not exist, and the pseudo-inverse (eigenvalues below ``N eps`` times the largest
    treated as zero) keeps the cycle symmetric and ``M`` positive definite (the smoothers
    above the coarsest level are), so PCG converges for consistent right-hand sides as
    plain CG does.

    Raises
    ------
    InvalidInputError
        If a matrix is indefinite (then so is the fine matrix it was coarsened from).

    Examples
    --------
    >>> neumann = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
    >>> coarsest_inverse(neumann)  # pseudo-inverse of the 2-cell Neumann Laplacian
    tensor([[[ 0.2500, -0.2500],
             [-0.2500,  0.2500]]], dtype=torch.float64)
    >>> coarsest_inverse(torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: the matrix is not positive semi-definite: ...
    """
    out_dtype = dense.dtype
    dense = dense.to(torch.float64)  # at most max_coarse cells: float64 costs nothing here
    inverse = _cholesky_inverse(dense)
    if inverse is None:
        eig, vec = torch.linalg.eigh(dense)
        top = eig.abs().amax(dim=-1, keepdim=True)
        cutoff = dense.shape[-1] * torch.finfo(dense.dtype).eps * top
        if bool((eig < -cutoff * 1e3).any()):
            worst = float((eig / top).min())
            raise InvalidInputError(
                "the matrix is not positive semi-definite: its Galerkin coarse matrix has "
                f"the eigenvalue {worst:.3g} x its largest"
            )
        keep = eig > cutoff
        inv_eig = torch.where(keep, 1.0 / torch.where(keep, eig, 1.0), 0.0)
        inverse = (vec * inv_eig.unsqueeze(-2)) @ vec.transpose(-1, -2)
        inverse = 0.5 * (inverse + inverse.transpose(-1, -2))
    return inverse.to(out_dtype)  # exactly symmetric (rounding keeps it): one GEMM per visit


def _cholesky_inverse(dense: torch.Tensor, host: bool | None = None) -> torch.Tensor | None:
    """``A^{-1}`` of float64 SPD matrices ``(G, N, N)`` from their Cholesky factors.

    Exactly symmetric. None if a matrix does not factor, or factors with a rounding-sized
    pivot (a singular matrix may: its factor is not usable). On the CPU, LAPACK's
    ``potrf`` / ``potri`` through scipy (about twice as fast as torch's batched routines at
    N = 512, one thread); on other devices torch's (``host`` picks one explicitly).
    """
    if host is None:  # (a matrix under autograd stays with torch)
        host = dense.device.type == "cpu" and not dense.requires_grad
    if not host:
        factor, info = torch.linalg.cholesky_ex(dense)
        pivots = torch.diagonal(factor, dim1=-2, dim2=-1).square()
        if bool((info != 0).any()) or bool(_tiny_pivot(pivots).any()):
            return None
        inverse = torch.cholesky_inverse(factor)
        return 0.5 * (inverse + inverse.transpose(-1, -2))
    from scipy.linalg import lapack

    out = []
    for matrix in dense.numpy():
        # the transpose (the same symmetric matrix) is in LAPACK's column order: no copy
        factor, info = lapack.dpotrf(matrix.T, lower=1, clean=1)  # upper triangle zeroed
        if info != 0 or _tiny_pivot(torch.from_numpy(np.diag(factor) ** 2)):
            return None
        lower, info = lapack.dpotri(factor, lower=1)  # the inverse's lower triangle only
        if info != 0:
            return None
        lower = torch.from_numpy(lower)
        full = lower + lower.T  # exactly symmetric; the diagonal counted twice, so reset
        full.diagonal().copy_(lower.diagonal())
        out.append(full)
    return torch.stack(out)


def _tiny_pivot(pivots: torch.Tensor) -> torch.Tensor:
    """Whether the smallest squared Cholesky pivot is rounding-sized next to the largest."""
    return pivots.amin(dim=-1) <= 1e-12 * pivots.amax(dim=-1)


def _dense_matrix(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor
) -> torch.Tensor:
    """Dense ``(G, N, N)`` matrix of a stencil on N cells; identity rows off the fluid.

    Written directly: the diagonal, and each coupling direction on the matrix diagonal at
    the offset of its grid stride (entries whose neighbour is outside the grid skipped).
    """
    G = diagonal.shape[0]
    S = tuple(diagonal.shape[2:])
    n = int(math.prod(S))
    mat = diagonal.new_zeros((G, n, n))
    mat.diagonal(dim1=1, dim2=2).copy_(diagonal.reshape(G, n) + (1.0 - fluid.reshape(G, n)))
    coord = torch.arange(n, device=diagonal.device)
    for a, size in enumerate(S):
        if size == 1:  # no neighbours along a (and its stride would alias another axis')
            continue
        stride = int(math.prod(S[a + 1 :]))
        inside = ((coord // stride) % size < size - 1)[: n - stride]  # cell i has i + stride
        up = couplings[:, 2 * a + 1].reshape(G, n)[:, : n - stride]  # A[i, i + stride]
        down = couplings[:, 2 * a].reshape(G, n)[:, stride:]  # A[i + stride, i]
        mat.diagonal(stride, dim1=1, dim2=2).copy_(torch.where(inside, up, 0.0))
        mat.diagonal(-stride, dim1=1, dim2=2).copy_(torch.where(inside, down, 0.0))
    return mat


@dataclass
class Level:
    """One grid level: stencil, fluid mask, smoother weights, over-correction factor."""

    diagonal: torch.Tensor
    couplings: torch.Tensor
    fluid: torch.Tensor
    weights: torch.Tensor | None = None  # (G, nu, *S): w_k = theta_k / sum_j |a_ij|
    scale: torch.Tensor | None = None  # 0-d: s of the correction from this (coarse) level
    axes: tuple[bool, ...] | None = None  # axes coarsened on the way to the next level
    gamma: int = 1  # cycle index of the step to the next level (2: W, 1: V)
    tau: float = 1.0  # damping of the W-step's coarse iteration (1 unless needed for SPD)
    bound: float = 1.0  # proven upper bound of lambda_max(B A) on this level
    inverse: torch.Tensor | None = None  # coarsest level only: (G, N, N), exactly symmetric
    symmetric: bool = False  # couplings exactly symmetric: the native loops read half of them

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape."""
        return tuple(self.diagonal.shape[2:])


class Hierarchy:
    """The multigrid hierarchy of one or several (``G``) matrices and its cycle ``M``.

    Built by :meth:`build`; :meth:`apply` applies ``M`` to ``(G, K, *S)`` fields.

    Parameters
    ----------
    levels : list of Level
        Finest first; every level but the last has smoother weights, every level but the
        first an over-correction factor, the last its exact (dense, symmetric) inverse.
    gamma : int
        Cycle index: 1 for a V-cycle, 2 for a W-cycle.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> from neurosolve.solvers.stencil import StencilOperator
    >>> op = StencilOperator.from_system(poisson((32, 32)))
    >>> h = Hierarchy.build(MGPCNet(width=4, layers=1), op.diagonal[None, None],
    ...                     op.neighbours[None], op.fluid_mask[None, None].double())
    >>> [lvl.shape for lvl in h.levels], h.gamma
    ([(32, 32), (16, 16)], 2)
    >>> r = torch.ones(1, 1, 32, 32, dtype=torch.float64)
    >>> h.apply(r).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, levels: list[Level], gamma: int = 2) -> None:
        if gamma not in CYCLES.values():
            raise InvalidInputError(f"gamma must be 1 (V-cycle) or 2 (W-cycle), got {gamma!r}")
        self.levels = levels
        self.gamma = int(gamma)
        self._native: tuple[tuple, NativeCycle | None] | None = None  # (signature, cycle)

    @classmethod
    def build(
        cls,
        net: MGPCNet,
        diagonal: torch.Tensor,
        couplings: torch.Tensor,
        fluid: torch.Tensor,
        *,
        max_coarse: int = 512,
        max_levels: int = 12,
        symmetric: bool | None = None,
    ) -> Hierarchy:
        """Coarsen by Galerkin products and evaluate the network on every level.

        ``diagonal``, ``couplings`` and ``fluid`` are the fine stencils ``(G, 1, *S)``,
        ``(G, 2 d, *S)`` and their fluid masks ``(G, 1, *S)``; the coarsest level has at
        most ``max_coarse`` cells (or the hierarchy has ``max_levels`` levels).
        ``symmetric``: whether the fine couplings are exactly symmetric, where the caller
        knows (a :class:`~neurosolve.solvers.stencil.StencilOperator` does); else tested.
        """
        if max_coarse < 1 or max_levels < 1:
            raise InvalidInputError("max_coarse and max_levels must be positive")
        gamma = CYCLES[net.cycle]
        levels = _coarsen(
            Level(diagonal, couplings, fluid.to(diagonal.dtype)), gamma, max_coarse, max_levels
        )
        _set_smoothers(net, levels)
        _set_bounds(levels)
        # Galerkin levels are exactly symmetric by construction (galerkin_coarsen copies the
        # couplings to -e_a from those to +e_a); the finest is if A is
        if symmetric is None:
            symmetric = exactly_symmetric(levels[0].couplings)
        levels[0].symmetric = bool(symmetric)
        for lvl in levels[1:]:
            lvl.symmetric = True
        last = levels[-1]
        last.inverse = coarsest_inverse(_dense_matrix(last.diagonal, last.couplings, last.fluid))
        return cls(levels, gamma)

    @property
    def num_levels(self) -> int:
        """Number of levels including the finest."""
        return len(self.levels)

    @property
    def lambda_bound(self) -> float:
        """Proven upper bound of the eigenvalues of ``M A`` (see ``docs/mgpc.md``)."""
        return self.levels[0].bound

    def apply(self, r: torch.Tensor, level: int = 0, *, native_cycle: bool = True) -> torch.Tensor:
        """``M r`` for residual fields ``r`` of shape ``(G, K, *S)`` (zero off-fluid).

        On the CPU without autograd the whole cycle runs as native passes on work arrays
        kept between calls (:class:`~neurosolve.solvers.mgpc.native_cycle.NativeCycle`:
        the same operations, the same result); ``native_cycle=False`` runs the torch form.
        """
        if level == 0 and native_cycle:
            out = self._native_apply(r)
            if out is not None:
                return out
        lvl = self.levels[level]
        if level == len(self.levels) - 1:
            G, K = r.shape[:2]
            flat = r.reshape(G, K, -1).transpose(1, 2)
            x = torch.bmm(lvl.inverse, flat).transpose(1, 2).reshape(r.shape)
            return x * lvl.fluid
        d, c, w = lvl.diagonal, lvl.couplings, lvl.weights
        steps = w.shape[1]
        # each smoothing step x + w_k (r - A x) is one fused pass (smoothing_step)
        sym = lvl.symmetric
        x = w[:, 0:1] * r
        for k in range(1, steps):  # pre-smoothing W_1 .. W_nu
            x = smoothing_step(d, c, w[:, k : k + 1], x, r, symmetric=sym)
        x = x + self._coarse_correction(stencil_residual(d, c, x, r, symmetric=sym), level)
        for k in reversed(range(steps)):  # post-smoothing W_nu .. W_1 (the adjoint order)
            x = smoothing_step(d, c, w[:, k : k + 1], x, r, symmetric=sym)
        return x

    def _native_apply(self, r: torch.Tensor) -> torch.Tensor | None:
        """The native cycle's ``M r``, or ``None`` (autograd, not the CPU, no numba...)."""
        if torch.is_grad_enabled() and (r.requires_grad or _records_grad(self.levels[0])):
            return None
        key = signature(self)
        if self._native is None or self._native[0] != key:
            self._native = (key, NativeCycle.build(self))
        cycle = self._native[1]
        return None if cycle is None else cycle.apply(r)

    def _coarse_correction(self, res: torch.Tensor, level: int) -> torch.Tensor:
        """``s^2 P Bt_c R res``: one (V) or two (W, damped by ``tau``) coarse cycles."""
        lvl, nxt = self.levels[level], self.levels[level + 1]
        rc = restrict(res, lvl.shape, lvl.axes)
        ec = self.apply(rc, level + 1)
        if lvl.gamma == 2:  # W-step: two (damped if tau < 1) stationary steps on the coarse level
            if lvl.tau != 1.0:
                ec = lvl.tau * ec
            res = stencil_residual(nxt.diagonal, nxt.couplings, ec, rc, symmetric=nxt.symmetric)
            again = self.apply(res, level + 1)
            ec = ec + (again if lvl.tau == 1.0 else lvl.tau * again)
        return prolong(ec * nxt.scale.square(), lvl.shape, lvl.fluid, lvl.axes)

    def matvec_equivalents(self) -> float:
        """Cost of one application of ``M`` in fine-grid products with ``A``.

        Counts stencil applications weighted by level size and by how often the cycle
        visits the level (``2^l`` times in a W-cycle with full coarsening): ``2 nu`` per
        visit of a smoothed level and one coarse residual per W-step. Diagonal scalings,
        restriction, prolongation and the coarsest (dense) solves are not counted.

        Examples
        --------
        >>> from neurosolve.data import poisson
        >>> from neurosolve.solvers.stencil import StencilOperator
        >>> op = StencilOperator.from_system(poisson((32, 32, 32)))
        >>> h = Hierarchy.build(MGPCNet(), op.diagonal[None, None], op.neighbours[None],
        ...                     op.fluid_mask[None, None].double())
        >>> [lvl.shape for lvl in h.levels]
        [(32, 32, 32), (16, 16, 16), (8, 8, 8)]
        >>> h.matvec_equivalents()  # 6 * (1 + 2/8) + (1/8 + 2/64)
        7.65625
        """
        fine = math.prod(self.levels[0].shape)
        total, visits = 0.0, 1
        for i, lvl in enumerate(self.levels[:-1]):
            total += visits * 2 * lvl.weights.shape[1] * math.prod(lvl.shape) / fine
            coarse = math.prod(self.levels[i + 1].shape)
            total += visits * (lvl.gamma - 1) * coarse / fine
            visits *= lvl.gamma
        return total


def _records_grad(lvl: Level) -> bool:
    return any(t is not None and t.requires_grad for t in (lvl.weights, lvl.diagonal))


def _coarsen(finest: Level, gamma: int, max_coarse: int, max_levels: int) -> list[Level]:
    """The levels down to at most ``max_coarse`` cells; marks where the W-steps are."""
    levels = [finest]
    anchor = math.prod(finest.shape)  # cells of the level after the last W-step
    while len(levels) < max_levels and math.prod(levels[-1].shape) > max_coarse:
        prev = levels[-1]
        axes = coarsening_axes(prev.couplings)
        if not any(axes):
            break
        coarse = galerkin_coarsen(prev.diagonal, prev.couplings, prev.fluid, axes)
        prev.axes = axes
        cells = math.prod(coarse[0].shape[2:])
        # W-steps only where the grid has shrunk >= 3x since the last one: every step
        # under full coarsening, every other one under semi-coarsening (bounded cost)
        if gamma == 2 and 3 * cells <= anchor:
            prev.gamma, anchor = 2, cells
        levels.append(Level(*coarse))
    return levels


def _set_smoothers(net: MGPCNet, levels: list[Level]) -> None:
    """Smoother weights ``w_k = theta_k / sum_j |a_ij|`` and over-correction factors."""
    dtype, device = levels[0].diagonal.dtype, levels[0].diagonal.device
    for i, lvl in enumerate(levels):
        if i < len(levels) - 1:
            slots = net.slot_outputs(lvl.diagonal, lvl.couplings, lvl.fluid, level=i)
            if slots is not None:
                lvl.weights = _slot_smoother_weights(*slots, lvl, dtype)
            else:
                theta, _ = net(lvl.diagonal, lvl.couplings, lvl.fluid, level=i)
                lvl.weights = _smoother_weights(theta, lvl, dtype)
        if i > 0:
            lvl.scale = net.over_correction(i).to(dtype=dtype, device=device)


def _slot_smoother_weights(
    theta: torch.Tensor, slot: torch.Tensor, heads: torch.Tensor, lvl: Level, dtype: torch.dtype
) -> torch.Tensor:
    """:func:`_smoother_weights` from :meth:`MGPCNet.slot_outputs`: once per slot.

    The cells of a slot have equal stencil rows, so equal weights: they are computed on the
    slots' cells and copied to the others.
    """
    stencil = cells_of(heads, lvl.diagonal, lvl.couplings, lvl.fluid)
    one = Level(*stencil)
    values = _smoother_weights(theta.T.reshape(1, *theta.T.shape, *one.shape[1:]), one, dtype)
    out = expand_slots(values.reshape(values.shape[1], -1).T.contiguous(), slot)
    assert out is not None  # slot_outputs ran, so the loops are here; the dtype is a float
    return out.reshape(1, -1, *lvl.shape)


def _smoother_weights(theta: torch.Tensor, lvl: Level, dtype: torch.dtype) -> torch.Tensor:
    """``theta / sum_j |a_ij|`` (zero off the fluid), chunk by chunk of planes (in cache).

    On the CPU one native pass (:func:`~neurosolve.solvers.native.smoother_weights`).
    """
    if lvl.diagonal.dtype == dtype:
        out = native.smoother_weights(theta, lvl.diagonal, lvl.couplings, lvl.fluid)
        if out is not None:
            return out
    out = lvl.diagonal.new_empty(theta.shape, dtype=dtype)
    for p0, p1 in _chunks(lvl.shape, lvl.diagonal.device):
        couplings, fluid = lvl.couplings[:, :, p0:p1], lvl.fluid[:, :, p0:p1]
        rowsum = couplings.abs().sum(dim=1, keepdim=True).add_(lvl.diagonal[:, :, p0:p1].abs())
        # zero off the fluid (a 0/1 mask: the same as multiplying by it)
        inv = torch.where(fluid > 0, 1.0 / rowsum.clamp_(min=1e-300), 0.0)
        out[:, :, p0:p1] = theta[:, :, p0:p1] * inv  # the product in float64
    return out


def _set_bounds(levels: list[Level]) -> None:
    """The proven bounds of ``lambda_max(B A)`` per level and the W-step damping ``tau``."""
    for i in range(len(levels) - 2, -1, -1):  # coarsest first
        lvl, child = levels[i], levels[i + 1]
        s2 = float(child.scale.detach()) ** 2
        if lvl.gamma == 2:
            lvl.tau = min(1.0, W_BOUND / child.bound)
            lvl.bound = max(1.0, s2)
        else:
            lvl.bound = max(1.0, s2 * child.bound)
