r"""MGPC: a learned multigrid preconditioner for CG, SPD by construction on every geometry.

The preconditioner ``M`` is one symmetric multigrid cycle (a W-cycle by default) over the
structured grid of a 5-point (2D) or 7-point (3D) SPD matrix ``A``. A small network reads
the matrix (and through it the geometry: fluid / solid / air cells, Dirichlet contact,
coefficient jumps) and produces the smoother weights of every cell on every level, next to
a learned over-correction factor per level; that one forward pass per new matrix is the
whole setup. The network never sees the right-hand side, so ``M`` is
a fixed linear map and plain PCG applies.

The cycle (level ``l``, residual ``r``, fine to coarse)
------------------------------------------------------
- **Smoother**: ``nu`` steps of the diagonal (pointwise) smoother ``W_k = diag(w_k)`` with
  ``w_k = theta_k / sum_j |a_ij|`` (an l1-Jacobi smoother with learned local weights
  ``theta_k`` in ``[0.05, 1.95]``, bounded by a sigmoid). Pre-smoothing applies
  ``W_1 .. W_nu``, post-smoothing ``W_nu .. W_1`` (the adjoint order).
- **Restriction** ``R``: sum over the fine fluid cells of each coarse cell (piecewise-
  constant aggregation of ``2^d`` cells; odd sizes are padded with non-fluid cells);
  **prolongation** ``P = R^T`` exactly (injection of the coarse value into its fluid cells).
  Axes whose share of the couplings (averaged over cells) is below half the largest are
  not coarsened (:func:`coarsening_axes`): on stretched grids and anisotropic
  coefficients the hierarchy semi-coarsens along the strong axes until the Galerkin
  couplings even out, which a pointwise smoother needs.
- **Coarse operator**: Galerkin ``A_c = R A P``, computed per matrix from the stencil
  arrays; with this ``R`` it is again a 5/7-point stencil on the coarse grid, so every
  level uses the same matrix-free code.
- **Coarse correction**: ``x += s^2 P Bt_c R r'`` with a learned over-correction factor
  ``s`` per level in ``[0.5, 1.4]`` (the classical remedy for aggregation's weak
  interpolation, whose Galerkin coarse operator is too stiff). ``Bt_c`` is the coarse
  level's cycle ``B_c`` applied once (a V-step) or twice (a W-step,
  ``Bt_c = tau (2 B_c - tau B_c A_c B_c)``) as a stationary iteration. The W-cycle (the
  default) takes W-steps wherever the grid has shrunk at least 3x since the last one: at
  every level under full coarsening, at every other level under semi-coarsening, so the
  cost stays bounded. In 3D a W-cycle costs about 4/3 of a V-cycle (each level has 1/8 of
  the cells and is visited twice as often) and removes most of the degradation of
  aggregation V-cycles with depth. ``tau = 1`` except where the bound below requires less.
- **Coarsest level** (at most ``max_coarse`` cells): exact solve, by the dense inverse
  (from a Cholesky factor, symmetrized); the pseudo-inverse for singular (e.g. unpinned
  pure-Neumann) matrices, which makes the coarsest ``B A`` a projector (``mu = 1`` below
  still holds) and leaves ``M`` SPD as long as there is a smoothed level above it (a grid
  of at most ``max_coarse`` cells gets ``M = A^+``, and PCG one step).

Why ``M`` is SPD for every geometry and every weight value
----------------------------------------------------------
Write one level as ``B = Wbar + (I - W^T A) Q (I - A W)`` with ``Q = s^2 P Bt_c P^T``,
``W`` the combined pre-smoother (``I - W A = (I - W_nu A) ... (I - W_1 A)``) and
``Wbar = W + W^T - W^T A W``. Each ``W_k`` is a positive diagonal with
``lambda_max(W_k A) <= ||W_k A||_inf = max_i theta_i < 2`` (the eigenvalues of ``W_k A``
are real and positive since it is similar to ``W_k^{1/2} A W_k^{1/2}``), so ``I - W_k A``
has ``A``-norm below 1, hence so has their product ``I - W A``. In the ``A`` inner product
``I - B A = (I - W A)^* (I - Q A) (I - W A)``, so with ``y = (I - W A) x``:

- ``<(I - B A) x, x>_A = ||y||_A^2 - <Q A y, y>_A < ||x||_A^2`` when ``Q`` is positive
  semi-definite, so ``B A`` has positive eigenvalues: ``B`` is SPD when ``Bt_c`` is;
- ``lambda_max(B A) <= max(1, lambda_max(Q A)) = max(1, s^2 lambda_max(Bt_c A_c))``.

By induction from the exact coarsest solve (``B A = I``, bound ``mu = 1``), with a bound
``mu_c >= lambda_max(B_c A_c)`` known on every level (:attr:`Level.bound`):

- a V-step (``Bt_c = B_c``) is SPD by the first point, and ``mu = max(1, s^2 mu_c)``;
- a W-step takes ``tau = min(1, 1.96 / mu_c)``. ``Bt_c A_c = I - (I - tau B_c A_c)^2`` has
  the eigenvalues ``1 - (1 - tau lambda)^2``, which lie in ``(0, 1]`` because
  ``0 < tau lambda <= 1.96 < 2``; so ``Bt_c`` is SPD and ``mu = max(1, s^2)``.

So ``M`` is SPD on every level, whatever the network outputs, because the sigmoids keep
``theta`` in ``[0.05, 1.95]`` and ``s`` in ``[0.5, 1.4]``, and the eigenvalues of ``M A``
lie in ``(0, mu_0]`` (:attr:`Hierarchy.lambda_bound`; ``max(1, s_1^2)`` for a full W-cycle,
where every ``tau`` is 1 since ``s^2 <= 1.96``). The tests check symmetry, positivity and
this bound to float64 rounding on random geometries, stretched grids (``tau < 1``) and
coefficient jumps, with untrained, saturated and trained weights. (A per-cell
over-correction field would break the bound: ``||S||_A`` of a varying diagonal ``S`` is
not bounded by ``max s``. Measured on an earlier model, a per-cell field had learned an
almost constant value anyway.)

Training (:func:`train_mgpc`) is unsupervised on random obstacle geometries (3D) and
variable-coefficient problems (2D); the loss is the error left by one optimally scaled
preconditioned Richardson step, in the ``A``-norm, on random and smooth vectors
(:func:`mgpc_loss`): scale-invariant, like CG, which ignores the scale of ``M``.
Method ``"mgpc-pcg"`` of :func:`neurosolve.solve` runs the torch PCG of
:mod:`neurosolve.solvers.krylov` with it; the harness reports the condition-number
estimate of ``M A`` from the CG Lanczos coefficients.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.devices import resolve_device
from neurosolve.errors import FileFormatError, InvalidInputError
from neurosolve.solvers.result import SolveResult

__all__ = [
    "Hierarchy",
    "Level",
    "MGPCNet",
    "MGPCSolver",
    "apply_stencil",
    "coarsening_axes",
    "coarsest_inverse",
    "galerkin_coarsen",
    "load_mgpc_model",
    "mgpc_loss",
    "mgpc_samples",
    "shipped_model_path",
    "stencil_residual",
    "train_mgpc",
]

logger = logging.getLogger(__name__)

SHIPPED_MODEL = "mgpc3d.pt"
THETA_MIN, THETA_MAX = 0.05, 1.95
SCALE_MIN, SCALE_MAX = 0.5, 1.4  # s^2 < 2 keeps the W-cycle SPD
CYCLES = {"V": 1, "W": 2}
W_BOUND = 1.96  # a W-step damps its coarse iteration so that tau * lambda_max <= 1.96 < 2


# ---------------------------------------------------------------------------------------------
# Stencil algebra on batched fields: coefficients (G, 1 or 2d, *S), fields (G, K, *S)
# ---------------------------------------------------------------------------------------------
def apply_stencil(
    diagonal: torch.Tensor, neighbours: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Apply per-geometry 5/7-point stencils to batches of full fields.

    Parameters
    ----------
    diagonal : torch.Tensor, shape ``(G, 1, *S)``
        Diagonal of ``A`` (zero outside the fluid).
    neighbours : torch.Tensor, shape ``(G, 2 d, *S)``
        Channel ``2 a`` couples a cell to its neighbour at ``-e_a``, ``2 a + 1`` to
        ``+e_a`` (the layout of :class:`~neurosolve.solvers.stencil.StencilOperator`).
    u : torch.Tensor, shape ``(G, K, *S)``
        ``K`` fields per geometry.

    Returns
    -------
    torch.Tensor, shape ``(G, K, *S)``

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> nb = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> apply_stencil(d, nb, torch.ones(1, 1, 3))
    tensor([[[1., 0., 1.]]])
    """
    return _add_couplings(diagonal * u, neighbours, u, 1.0)


def _add_couplings(
    out: torch.Tensor, neighbours: torch.Tensor, u: torch.Tensor, value: float
) -> torch.Tensor:
    """``out += value * (off-diagonal part of A) u``, in place; returns ``out``."""
    for a in range(u.dim() - 2):
        ax = 2 + a
        size = u.shape[ax]
        if size < 2:
            continue
        lo = neighbours[:, 2 * a : 2 * a + 1].narrow(ax, 1, size - 1)
        hi = neighbours[:, 2 * a + 1 : 2 * a + 2].narrow(ax, 0, size - 1)
        out.narrow(ax, 1, size - 1).addcmul_(lo, u.narrow(ax, 0, size - 1), value=value)
        out.narrow(ax, 0, size - 1).addcmul_(hi, u.narrow(ax, 1, size - 1), value=value)
    return out


def stencil_residual(
    diagonal: torch.Tensor, neighbours: torch.Tensor, u: torch.Tensor, f: torch.Tensor
) -> torch.Tensor:
    """``f - A u`` for the stencils of :func:`apply_stencil`, in one pass per coefficient.

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> nb = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> stencil_residual(d, nb, torch.ones(1, 1, 3), torch.ones(1, 1, 3))
    tensor([[[0., 1., 0.]]])
    """
    return _add_couplings(torch.addcmul(f, diagonal, u, value=-1.0), neighbours, u, -1.0)


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
    return _block_sum(_pad_even(u, factors), factors)


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
    neighbours: torch.Tensor,
    fluid: torch.Tensor,
    axes: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Galerkin coarse stencil ``R A R^T`` of the aggregation restriction.

    A fine coupling inside a block adds (twice, both directions) to the coarse diagonal; a
    coupling across a block face adds to the coarse coupling of the two blocks. The result
    is again a 5/7-point stencil, exactly equal to ``R A R^T``.

    Parameters
    ----------
    diagonal, neighbours : torch.Tensor
        Fine stencil, shapes ``(G, 1, *S)`` and ``(G, 2 d, *S)``.
    fluid : torch.Tensor
        Fine fluid mask ``(G, 1, *S)`` (float or bool).
    axes : sequence of bool, optional
        Which axes to coarsen by 2 (blocks of 2 cells along them, 1 along the others);
        default all (``2^d`` blocks). See :func:`coarsening_axes`.

    Returns
    -------
    diagonal, neighbours, fluid : torch.Tensor
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
    d = _pad_even(diagonal, factors)
    nb = _pad_even(neighbours, factors)
    coarse_diag = _block_sum(d, factors)
    coarse_hi = []
    for a in range(ndim):
        hi = nb[:, 2 * a + 1 : 2 * a + 2]
        ax = 2 + a
        if factors[a] == 1:  # every coupling along an uncoarsened axis joins two blocks
            coarse_hi.append(_block_sum(hi, factors))
            continue
        size = hi.shape[ax]
        parity = torch.arange(size, device=hi.device) % 2
        shape = [1] * hi.dim()
        shape[ax] = size
        parity = parity.reshape(shape).to(hi.dtype)
        coarse_diag = coarse_diag + 2.0 * _block_sum(hi * (1.0 - parity), factors)  # inside
        coarse_hi.append(_block_sum(hi * parity, factors))  # to the next block along +e_a
    parts = []
    for a in range(ndim):
        ax = 2 + a
        hi = coarse_hi[a]
        size = hi.shape[ax]
        lo = torch.zeros_like(hi)
        if size > 1:
            lo.narrow(ax, 1, size - 1).copy_(hi.narrow(ax, 0, size - 1))
        parts.extend((lo, hi))
    fl = _pad_even(fluid.to(diagonal.dtype), factors)
    coarse_fluid = (_block_sum(fl, factors) > 0).to(diagonal.dtype)
    return coarse_diag, torch.cat(parts, dim=1), coarse_fluid


def coarsening_axes(neighbours: torch.Tensor, threshold: float = 0.5) -> tuple[bool, ...]:
    """Axes to coarsen: those whose mean share of the couplings is ``>= threshold`` x the top.

    ``neighbours`` has shape ``(G, 2 d, *S)``; every cell's couplings count once, as shares.
    Isotropic problems (equal spacing, obstacles, coefficient jumps) coarsen every axis;
    on stretched grids or anisotropic coefficients only the strongly coupled axes are
    coarsened (semi-coarsening), until the Galerkin couplings even out: each aggregation
    along an axis halves its coupling relative to the others. Axes of one cell are never
    coarsened.

    Examples
    --------
    >>> from neurosolve.data.systems import poisson
    >>> from neurosolve.solvers.stencil import StencilOperator
    >>> op = StencilOperator.from_system(poisson((16, 16), spacing=(1.0, 4.0)))
    >>> coarsening_axes(op.neighbours[None])
    (True, False)
    """
    shape = neighbours.shape[2:]
    ndim = len(shape)
    nb = neighbours.abs()
    pair = nb[:, 0::2] + nb[:, 1::2]  # (G, d, *S): coupling of each cell along each axis
    total = pair.sum(dim=1, keepdim=True)
    coupled = total > 0
    share = torch.where(coupled, pair / torch.where(coupled, total, 1.0), 0.0)
    cells = max(float(coupled.sum()), 1.0)
    # every cell counts once (scale-free: a high-coefficient region does not dominate)
    per_axis = [float(share[:, a].sum()) / cells for a in range(ndim)]
    top = max(per_axis)
    return tuple(
        int(shape[a]) > 1 and (top == 0.0 or per_axis[a] >= threshold * top) for a in range(ndim)
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
    factor, info = torch.linalg.cholesky_ex(dense)
    pivots = torch.diagonal(factor, dim1=-2, dim2=-1).square()
    # a singular matrix may still factor, with a rounding-sized last pivot: not usable
    tiny = pivots.amin(dim=-1) <= 1e-12 * pivots.amax(dim=-1)
    if bool((info == 0).all()) and not bool(tiny.any()):
        inverse = torch.cholesky_inverse(factor)
    else:
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
    inverse = inverse.to(out_dtype)
    return 0.5 * (inverse + inverse.transpose(-1, -2))  # exactly symmetric; one GEMM per visit


def _dense_matrix(diagonal: torch.Tensor, neighbours: torch.Tensor, fluid: torch.Tensor):
    """Dense ``(G, N, N)`` matrix of a stencil on N cells; identity rows off the fluid."""
    G = diagonal.shape[0]
    S = diagonal.shape[2:]
    n = int(math.prod(S))
    eye = torch.eye(n, dtype=diagonal.dtype, device=diagonal.device)
    basis = eye.reshape(n, *S).unsqueeze(0).expand(G, n, *S)
    cols = apply_stencil(diagonal, neighbours, basis).reshape(G, n, n)  # column j = A e_j
    mat = cols.transpose(1, 2)
    off = 1.0 - fluid.reshape(G, n)
    return mat + torch.diag_embed(off)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
def level_features(
    diagonal: torch.Tensor, neighbours: torch.Tensor, fluid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant cell features of a stencil and the neighbour-averaging weights.

    Features (6 channels, the same in 2D and 3D): fluid mask; off-diagonal row sum,
    largest and mean coupling relative to the diagonal (``< 1`` sums reveal Dirichlet/air
    contact, uneven couplings reveal coefficient jumps); fraction of fluid neighbours;
    ``1 / (2 d)``. Dividing by the diagonal makes them independent of the grid spacing
    and of the coefficient's overall scale.

    Returns
    -------
    features : torch.Tensor, shape ``(G, 6, *S)``
    weights : torch.Tensor, shape ``(G, 2 d, *S)``
        ``|a_ij| / sum_j |a_ij|`` (rows summing to one), used to average neighbours.
    """
    ndim = diagonal.dim() - 2
    safe = torch.where(fluid > 0, diagonal, torch.ones_like(diagonal))
    ratio = neighbours.abs() / safe
    total = ratio.sum(dim=1, keepdim=True)
    present = (neighbours != 0).to(diagonal.dtype)
    count = present.sum(dim=1, keepdim=True)
    largest = ratio.amax(dim=1, keepdim=True)
    mean = total / count.clamp(min=1.0)
    inv = torch.full_like(total, 1.0 / (2 * ndim))
    feats = torch.cat([fluid, total, largest, mean, count / (2 * ndim), inv], dim=1) * fluid
    weights = ratio / total.clamp(min=torch.finfo(ratio.dtype).tiny)
    return feats, weights


class MGPCNet(nn.Module):
    """Geometry network of MGPC: smoother weights from a stencil, and the cycle's settings.

    A per-cell network with neighbour averaging (message passing along the stencil's
    couplings), so the same weights serve 2D and 3D grids of any size. Input: the
    features of :func:`level_features`; output per cell: ``smoothing_steps`` smoother
    weights ``theta`` in ``[0.05, 1.95]``. A learned bias per level (levels beyond
    ``level_buckets - 1`` share the last one) lets the weights differ between fine and
    coarse grids, and a learned over-correction factor ``s`` in ``[0.5, 1.4]`` per level
    bucket scales the coarse correction. The cycle type is part of the model because
    the weights are trained for it.

    Parameters
    ----------
    width : int
        Hidden channels.
    layers : int
        Message-passing layers.
    smoothing_steps : int
        Pre-smoothing steps (the same number of post-smoothing steps, adjoint order).
    level_buckets : int
        Number of distinct level biases and over-correction factors.
    cycle : {"W", "V"}
        Multigrid cycle: the coarse level's cycle is applied twice (W) or once (V) per
        coarse correction.

    Examples
    --------
    >>> net = MGPCNet(width=8, layers=2)
    >>> d = torch.full((1, 1, 4, 4), 4.0)
    >>> nb = -torch.ones(1, 4, 4, 4)
    >>> theta, s = net(d, nb, torch.ones(1, 1, 4, 4), level=0)
    >>> tuple(theta.shape), bool(((theta >= 0.05) & (theta <= 1.95)).all())
    ((1, 3, 4, 4), True)
    >>> round(float(s.detach()), 2)
    1.3
    """

    in_features = 6

    def __init__(
        self,
        width: int = 8,
        layers: int = 2,
        smoothing_steps: int = 3,
        level_buckets: int = 4,
        cycle: str = "W",
    ) -> None:
        super().__init__()
        for name, value in (
            ("width", width),
            ("layers", layers),
            ("smoothing_steps", smoothing_steps),
            ("level_buckets", level_buckets),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if cycle not in CYCLES:
            raise InvalidInputError(f"cycle must be one of {sorted(CYCLES)}, got {cycle!r}")
        self.width, self.layers = int(width), int(layers)
        self.smoothing_steps, self.level_buckets = int(smoothing_steps), int(level_buckets)
        self.cycle = str(cycle)
        self.lift = nn.Linear(self.in_features, self.width)
        self.self_maps = nn.ModuleList(nn.Linear(self.width, self.width) for _ in range(layers))
        self.nbr_maps = nn.ModuleList(
            nn.Linear(self.width, self.width, bias=False) for _ in range(layers)
        )
        self.head = nn.Linear(self.width, self.smoothing_steps)
        self.level_bias = nn.Parameter(torch.zeros(self.level_buckets, self.smoothing_steps))
        self.level_scale = nn.Parameter(torch.zeros(self.level_buckets))
        with torch.no_grad():  # start at theta ~ 1.7 (Jacobi omega ~ 0.85), s = 1.3
            self.head.weight.mul_(0.1)
            self.head.bias.fill_(_logit(1.7, THETA_MIN, THETA_MAX))
            self.level_scale.fill_(_logit(1.3, SCALE_MIN, SCALE_MAX))

    def config(self) -> dict[str, Any]:
        """Constructor arguments (stored in checkpoints)."""
        return dict(
            width=self.width,
            layers=self.layers,
            smoothing_steps=self.smoothing_steps,
            level_buckets=self.level_buckets,
            cycle=self.cycle,
        )

    @staticmethod
    def _channels(lin: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        return lin(h.movedim(1, -1)).movedim(-1, 1)

    def forward(
        self, diagonal: torch.Tensor, neighbours: torch.Tensor, fluid: torch.Tensor, level: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smoother weights ``(G, nu, *S)`` and the over-correction factor (0-d) of a level."""
        dtype = self.lift.weight.dtype
        feats, weights = level_features(diagonal, neighbours, fluid)
        feats, weights = feats.to(dtype), weights.to(dtype)
        zero = torch.zeros_like(feats[:, :1])
        h = F.gelu(self._channels(self.lift, feats))
        for smap, nmap in zip(self.self_maps, self.nbr_maps, strict=True):
            avg = apply_stencil(zero, weights, h)  # neighbour average, all channels at once
            h = F.gelu(self._channels(smap, h) + self._channels(nmap, avg))
        out = self._channels(self.head, h)
        bucket = min(int(level), self.level_buckets - 1)
        out = out + self.level_bias[bucket].reshape(1, -1, *([1] * (out.dim() - 2)))
        theta = THETA_MIN + (THETA_MAX - THETA_MIN) * torch.sigmoid(out)
        return theta, self.over_correction(level)

    def over_correction(self, level: int) -> torch.Tensor:
        """The factor ``s`` (0-d, in ``[0.5, 1.4]``) of the correction from ``level``."""
        bucket = min(int(level), self.level_buckets - 1)
        return SCALE_MIN + (SCALE_MAX - SCALE_MIN) * torch.sigmoid(self.level_scale[bucket])


def _logit(value: float, low: float, high: float) -> float:
    """Inverse of ``low + (high - low) * sigmoid(t)``."""
    return math.log((value - low) / (high - value))


# ---------------------------------------------------------------------------------------------
# Hierarchy and cycle
# ---------------------------------------------------------------------------------------------
@dataclass
class Level:
    """One grid level: stencil, fluid mask, smoother weights, over-correction factor."""

    diagonal: torch.Tensor
    neighbours: torch.Tensor
    fluid: torch.Tensor
    weights: torch.Tensor | None = None  # (G, nu, *S): w_k = theta_k / sum_j |a_ij|
    scale: torch.Tensor | None = None  # 0-d: s of the correction from this (coarse) level
    axes: tuple[bool, ...] | None = None  # axes coarsened on the way to the next level
    gamma: int = 1  # cycle index of the step to the next level (2: W, 1: V)
    tau: float = 1.0  # damping of the W-step's coarse iteration (1 unless needed for SPD)
    bound: float = 1.0  # proven upper bound of lambda_max(B A) on this level
    inverse: torch.Tensor | None = None  # coarsest level only: (G, N, N), exactly symmetric

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
    >>> from neurosolve.data.systems import poisson
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

    @classmethod
    def build(
        cls,
        net: MGPCNet,
        diagonal: torch.Tensor,
        neighbours: torch.Tensor,
        fluid: torch.Tensor,
        *,
        max_coarse: int = 512,
        max_levels: int = 12,
    ) -> Hierarchy:
        """Coarsen by Galerkin products and evaluate the network on every level."""
        if max_coarse < 1 or max_levels < 1:
            raise InvalidInputError("max_coarse and max_levels must be positive")
        dtype = diagonal.dtype
        levels = [Level(diagonal, neighbours, fluid.to(dtype))]
        gamma = CYCLES[net.cycle]
        anchor = math.prod(levels[0].shape)  # cells of the level after the last W-step
        while len(levels) < max_levels and math.prod(levels[-1].shape) > max_coarse:
            prev = levels[-1]
            axes = coarsening_axes(prev.neighbours)
            if not any(axes):
                break
            coarse = galerkin_coarsen(prev.diagonal, prev.neighbours, prev.fluid, axes)
            prev.axes = axes
            cells = math.prod(coarse[0].shape[2:])
            # W-steps only where the grid has shrunk >= 3x since the last one: every step
            # under full coarsening, every other one under semi-coarsening (bounded cost)
            if gamma == 2 and 3 * cells <= anchor:
                prev.gamma, anchor = 2, cells
            levels.append(Level(*coarse))
        for i, lvl in enumerate(levels):
            if i < len(levels) - 1:
                theta, _ = net(lvl.diagonal, lvl.neighbours, lvl.fluid, level=i)
                rowsum = lvl.diagonal.abs() + lvl.neighbours.abs().sum(dim=1, keepdim=True)
                inv = torch.where(lvl.fluid > 0, 1.0 / rowsum.clamp(min=1e-300), 0.0)
                lvl.weights = theta.to(dtype) * inv * lvl.fluid
            if i > 0:
                lvl.scale = net.over_correction(i).to(dtype=dtype, device=diagonal.device)
        for i in range(len(levels) - 2, -1, -1):  # the SPD bounds, coarsest first
            lvl, child = levels[i], levels[i + 1]
            s2 = float(child.scale.detach()) ** 2
            if lvl.gamma == 2:
                lvl.tau = min(1.0, W_BOUND / child.bound)
                lvl.bound = max(1.0, s2)
            else:
                lvl.bound = max(1.0, s2 * child.bound)
        last = levels[-1]
        dense = _dense_matrix(last.diagonal, last.neighbours, last.fluid)
        last.inverse = coarsest_inverse(dense)
        return cls(levels, gamma)

    @property
    def num_levels(self) -> int:
        """Number of levels including the finest."""
        return len(self.levels)

    @property
    def lambda_bound(self) -> float:
        """Proven upper bound of the eigenvalues of ``M A`` (see the module docstring)."""
        return self.levels[0].bound

    def apply(self, r: torch.Tensor, level: int = 0) -> torch.Tensor:
        """``M r`` for residual fields ``r`` of shape ``(G, K, *S)`` (zero off-fluid)."""
        lvl = self.levels[level]
        if level == len(self.levels) - 1:
            G, K = r.shape[:2]
            flat = r.reshape(G, K, -1).transpose(1, 2)
            x = torch.bmm(lvl.inverse, flat).transpose(1, 2).reshape(r.shape)
            return x * lvl.fluid
        d, nb, w = lvl.diagonal, lvl.neighbours, lvl.weights
        steps = w.shape[1]
        x = w[:, 0:1] * r
        for k in range(1, steps):
            x = torch.addcmul(x, w[:, k : k + 1], stencil_residual(d, nb, x, r))
        res = stencil_residual(d, nb, x, r)
        nxt = self.levels[level + 1]
        rc = restrict(res, lvl.shape, lvl.axes)
        ec = self.apply(rc, level + 1)
        if lvl.gamma == 2:  # W-step: two (damped if tau < 1) stationary steps on the coarse level
            if lvl.tau != 1.0:
                ec = lvl.tau * ec
            again = self.apply(stencil_residual(nxt.diagonal, nxt.neighbours, ec, rc), level + 1)
            ec = ec + (again if lvl.tau == 1.0 else lvl.tau * again)
        x = x + prolong(ec * nxt.scale.square(), lvl.shape, lvl.fluid, lvl.axes)
        for k in reversed(range(steps)):
            x = torch.addcmul(x, w[:, k : k + 1], stencil_residual(d, nb, x, r))
        return x

    def matvec_equivalents(self) -> float:
        """Cost of one application of ``M`` in fine-grid products with ``A``.

        Counts stencil applications weighted by level size and by how often the cycle
        visits the level (``2^l`` times in a W-cycle with full coarsening): ``2 nu`` per
        visit of a smoothed level and one coarse residual per W-step. Diagonal scalings,
        restriction, prolongation and the coarsest (dense) solves are not counted.

        Examples
        --------
        >>> from neurosolve.data.systems import poisson
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


# ---------------------------------------------------------------------------------------------
# Model loading
# ---------------------------------------------------------------------------------------------
def shipped_model_path() -> Path:
    """Path of the trained model shipped with the package.

    Examples
    --------
    >>> shipped_model_path().name
    'mgpc3d.pt'
    """
    return Path(str(resources.files("neurosolve") / "models" / SHIPPED_MODEL))


def load_mgpc_model(
    path: str | Path | MGPCNet | None = None, *, device: torch.device | str | None = None
) -> MGPCNet:
    """Load an MGPC network (default: the shipped model), cached per file and device.

    Parameters
    ----------
    path : path-like or MGPCNet, optional
        A checkpoint of kind ``"mgpc"`` (``neurosolve train mgpc`` writes one), or a network
        (returned as is, moved to ``device``).
    device : torch.device or str, optional
        Where to put the network.

    Raises
    ------
    FileFormatError
        Missing file, not a neurosolve checkpoint, or another model kind.

    Examples
    --------
    >>> load_mgpc_model().smoothing_steps >= 1
    True
    """
    if isinstance(path, MGPCNet):
        return path.to(device) if device is not None else path
    path = shipped_model_path() if path is None else Path(path)
    if not path.is_file():
        raise FileFormatError(f"MGPC model {path} does not exist")
    device = str(resolve_device(device))
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns, device)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, device: str) -> MGPCNet:
    from neurosolve.checkpoint import load_model

    model, _ = load_model(path, kind="mgpc", map_location=device)
    return model


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------
class MGPCPreconditioner:
    """``M`` of one matrix as a callable on unknown vectors ``(n,)`` / ``(n, k)``.

    Scatters the unknowns to full grid fields, applies the cycle, gathers back.
    """

    def __init__(self, hierarchy: Hierarchy, cells: torch.Tensor, shape: tuple[int, ...]):
        self.hierarchy = hierarchy
        self.cells = cells
        self.shape = shape
        self.num_cells = int(math.prod(shape))

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``M u`` for ``u`` of shape ``(n,)`` or ``(n, k)``."""
        single = u.dim() == 1
        in_dtype = u.dtype
        cols = u.reshape(u.shape[0], -1).to(self.hierarchy.levels[0].diagonal.dtype)
        full = cols.new_zeros((self.num_cells, cols.shape[1]))
        full[self.cells] = cols
        fields = full.t().reshape(1, cols.shape[1], *self.shape)
        with torch.no_grad():
            out = self.hierarchy.apply(fields)
        out = out.reshape(cols.shape[1], -1).t()[self.cells].to(in_dtype)
        return out[:, 0] if single else out


class MGPCSolver:
    """PCG preconditioned by the learned multigrid cycle (method ``"mgpc-pcg"``).

    Setup (timed in ``setup_seconds``): the stencil of ``A`` is read from the matrix, the
    Galerkin coarse stencils are formed, the network runs once per level, and the coarsest
    matrix is factorized. The solve is the torch PCG of :mod:`neurosolve.solvers.krylov`
    (true-residual stopping rule; Lanczos coefficients in ``info`` give the condition
    estimate ``info["condition_estimate"]`` of ``M A``).

    Parameters
    ----------
    A : LinearSystem
        A 5/7-point SPD system with its grid (any size, 2D or 3D, any flags/coefficients).
    model : path-like or MGPCNet, optional
        Trained network (default: the shipped model).
    device, dtype
        Where and in which precision to run (default CPU, float64).
    max_coarse : int
        The coarsest grid has at most this many cells (solved exactly by a dense Cholesky
        factor; 512 cells, 8^3, costs less than visiting two more tiny levels, which the
        W-cycle would do many times).
    history : {"true", "recurrence", "cheap"}
        Residual history mode of the PCG (see :mod:`neurosolve.solvers.krylov`).

    Other Parameters
    ----------------
    **options
        Passed to :class:`~neurosolve.solvers.krylov.PCGSolver` (``max_replacements``,
        ``stagnation_window``, ...).

    Examples
    --------
    >>> from neurosolve.data.systems import obstacle_flags, poisson
    >>> system = poisson((16, 16, 16), flags=obstacle_flags((16,) * 3, "mixed", 1))
    >>> result = MGPCSolver(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.iterations < 30
    (True, True)
    """

    description = "PCG with the learned SPD multigrid (W-cycle) preconditioner (MGPC)."
    needs_grid = True

    def __init__(
        self,
        A: Any,
        *,
        model: str | Path | MGPCNet | None = None,
        device: Any = None,
        dtype: torch.dtype | str = torch.float64,
        max_coarse: int = 512,
        history: str = "true",
        **options: Any,
    ) -> None:
        from neurosolve.solvers.krylov import PCGSolver
        from neurosolve.solvers.stencil import StencilOperator
        from neurosolve.solvers.system import prepare_system

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        prepared = prepare_system(A)
        if prepared.grid is None or prepared.matrix is None:
            raise InvalidInputError(
                "mgpc-pcg needs a 5/7-point matrix with its grid (a LinearSystem from "
                "neurosolve.data.systems, or a file loaded with grid=...); for a bare matrix "
                "use cg, ic-pcg, amg-sa-pcg or amg-rs-pcg"
            )
        device = resolve_device(device)
        net = load_mgpc_model(model, device=device)
        t0 = time.perf_counter()
        op = StencilOperator.from_matrix(prepared.matrix, prepared.grid, device=device, dtype=dtype)
        with torch.no_grad():
            self.hierarchy = Hierarchy.build(
                net,
                op.diagonal[None, None],
                op.neighbours[None],
                op.fluid_mask[None, None].to(dtype),
                max_coarse=max_coarse,
            )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.model_setup_seconds = time.perf_counter() - t0
        self.preconditioner = MGPCPreconditioner(self.hierarchy, op.cells, tuple(op.grid.shape))
        self.pcg = PCGSolver(
            op,
            preconditioner=self.preconditioner,
            device=device,
            dtype=dtype,
            check_symmetry=False,
            history=history,
            **options,
        )
        self.setup_seconds = self.model_setup_seconds + self.pcg.setup_seconds
        self.n = op.num_unknowns

    def solve(
        self,
        b: Any,
        *,
        x0: Any = None,
        rtol: float = 1e-6,
        atol: float = 0.0,
        maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> SolveResult:
        """Solve ``A x = b`` (``(n,)`` or ``(n, k)``) by MGPC-preconditioned CG.

        Returns
        -------
        SolveResult
            ``info`` adds ``levels``, ``cycle``, ``cycle_matvec_equivalents`` and, for one
            right-hand side, ``condition_estimate`` (of ``M A``, from Lanczos).
        """
        from neurosolve.solvers.krylov import condition_estimate

        result = self.pcg.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
        result.setup_seconds = self.setup_seconds
        info = result.info
        info["method"] = "mgpc-pcg"
        info["levels"] = self.hierarchy.num_levels
        info["cycle"] = "V" if self.hierarchy.gamma == 1 else "W"
        info["cycle_matvec_equivalents"] = self.hierarchy.matvec_equivalents()
        try:
            info["condition_estimate"] = float(condition_estimate(info))
        except (InvalidInputError, ValueError, np.linalg.LinAlgError):
            pass
        return result

    def aspreconditioner(self):
        """``M`` as a scipy ``LinearOperator`` on the unknowns (host round trip per use).

        Examples
        --------
        >>> from neurosolve.data.systems import poisson
        >>> M = MGPCSolver(poisson((8, 8))).aspreconditioner()
        >>> M.shape
        (64, 64)
        """
        import scipy.sparse.linalg as spla

        dev = self.hierarchy.levels[0].diagonal.device
        dt = self.hierarchy.levels[0].diagonal.dtype

        def matmat(v: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev, dtype=dt)
            return self.preconditioner(t).cpu().double().numpy()

        return spla.LinearOperator((self.n, self.n), matvec=matmat, matmat=matmat, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"MGPCSolver(n={self.n}, levels={self.hierarchy.num_levels}, "
            f"setup={self.setup_seconds:.3g}s, {self.pcg!r})"
        )


# ---------------------------------------------------------------------------------------------
# Training data, loss, training
# ---------------------------------------------------------------------------------------------
def _stencil_arrays(system) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from neurosolve.solvers.stencil import StencilOperator

    op = StencilOperator.from_system(system)
    return (
        op.diagonal.numpy()[None],
        op.neighbours.numpy(),
        op.fluid_mask.numpy()[None].astype(np.float64),
    )


def mgpc_samples(
    rng: np.random.Generator,
    *,
    dim: int = 3,
    resolution: int = 16,
    group: int = 4,
    vectors: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training group: ``group`` random problems of one shape and test vectors.

    3D problems: random obstacle geometries (boxes, spheres, mixed; optional open top or
    free surface; Dirichlet or Neumann outer boundary). 2D problems: piecewise-constant
    coefficients of contrast ``10^U(0, 4)`` with some obstacles. Half of the vectors are
    white noise, half smooth (Gaussian-filtered noise), all zero off the fluid.

    Returns
    -------
    x : torch.Tensor, shape ``(group, 2 d + 2, *S)``
        Diagonal, ``2 d`` neighbour coefficients, fluid mask (float64).
    v : torch.Tensor, shape ``(group, vectors, *S)``

    Examples
    --------
    >>> x, v = mgpc_samples(np.random.default_rng(0), dim=2, resolution=8, group=2)
    >>> tuple(x.shape), tuple(v.shape)
    ((2, 6, 8, 8), (2, 4, 8, 8))
    """
    from scipy.ndimage import gaussian_filter

    from neurosolve.data.geometry import contrast_coefficient
    from neurosolve.data.systems import obstacle_flags, poisson

    shape = (int(resolution),) * int(dim)
    xs, vs = [], []
    for _ in range(int(group)):
        air = [None, None, "top", "free-surface"][int(rng.integers(4))]
        kind = (
            ["boxes", "spheres", "mixed", "none"][int(rng.integers(4))]
            if dim == 3
            else (["none", "boxes", "spheres"][int(rng.integers(3))])
        )
        flags = obstacle_flags(shape, kind, rng, boundary_air=air)
        coefficient = None
        if dim == 2 or rng.random() < 0.2:
            contrast = 10.0 ** rng.uniform(0.0, 4.0)
            coefficient = contrast_coefficient(shape, contrast, rng)
        boundary = "neumann" if rng.random() < 0.3 else "dirichlet"
        system = poisson(shape, flags=flags, coefficient=coefficient, boundary=boundary)
        d, nb, fl = _stencil_arrays(system)
        xs.append(np.concatenate([d, nb, fl], axis=0))
        vecs = []
        for k in range(int(vectors)):
            noise = rng.standard_normal(shape)
            if k % 2:
                noise = gaussian_filter(noise, sigma=rng.uniform(1.5, 4.0), mode="constant")
            noise = noise * fl[0]
            vecs.append(noise / max(float(np.linalg.norm(noise)), 1e-300))
        vs.append(np.stack(vecs))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(vs))


def _unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ndim = x.dim() - 2
    return x[:, :1], x[:, 1 : 1 + 2 * ndim], x[:, 1 + 2 * ndim : 2 + 2 * ndim]


def mgpc_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Error left by one optimally scaled step ``v - alpha M A v``, in the ``A``-norm.

    For each problem ``g`` of a group, with vectors ``v_k`` and ``z_k = M A v_k``,

    .. math::

        L_g = \min_\alpha \frac{1}{K} \sum_k
              \frac{\|v_k - \alpha z_k\|_A^2}{\|v_k\|_A^2},

    solved in closed form for ``alpha``; the loss is the mean over problems. It is 0 when
    ``M A`` is a multiple of the identity on the vectors, and, like the CG convergence
    rate, does not depend on the scale of ``M``.

    Parameters
    ----------
    model : MGPCNet
    batch : (x, v)
        One group as produced by :func:`mgpc_samples`.

    Examples
    --------
    >>> x, v = mgpc_samples(np.random.default_rng(0), dim=2, resolution=16, group=2)
    >>> with torch.no_grad():
    ...     loss = float(mgpc_loss(MGPCNet(width=4, layers=1), (x, v)))
    >>> 0.0 < loss < 1.0
    True
    """
    x, v = batch[0], batch[1]
    dtype = next(model.parameters()).dtype
    x, v = x.to(dtype), v.to(dtype)
    diagonal, neighbours, fluid = _unpack(x)
    hierarchy = Hierarchy.build(model, diagonal, neighbours, fluid, max_coarse=64)
    Av = apply_stencil(diagonal, neighbours, v)
    z = hierarchy.apply(Av)
    Az = apply_stencil(diagonal, neighbours, z)
    G, K = v.shape[:2]
    vAv = (v * Av).reshape(G, K, -1).sum(-1)
    vAz = (v * Az).reshape(G, K, -1).sum(-1)
    zAz = (z * Az).reshape(G, K, -1).sum(-1)
    tiny = torch.finfo(dtype).tiny
    wgt = 1.0 / vAv.clamp(min=tiny)
    alpha = (vAz * wgt).sum(1) / (zAz * wgt).sum(1).clamp(min=tiny)
    a = alpha[:, None]
    err = (vAv - 2 * a * vAz + a * a * zAz) * wgt
    return err.mean()


def _group_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`mgpc_loss` on a DataLoader batch holding one group (leading axis 1)."""
    return mgpc_loss(model, (batch[0][0], batch[1][0]))


class _GroupDataset(torch.utils.data.Dataset):
    """Training groups drawn once from ``default_rng([seed, i])`` (one group per item)."""

    def __init__(self, specs: list[tuple[int, int]], seed: int, group: int, vectors: int):
        self.items = [
            mgpc_samples(
                np.random.default_rng([seed, i]), dim=d, resolution=r, group=group, vectors=vectors
            )
            for i, (d, r) in enumerate(specs)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, v = self.items[i]
        return x.float(), v.float()


def _specs(count: int, resolutions: Sequence[int], dims: Sequence[int]) -> list[tuple[int, int]]:
    out = []
    for i in range(count):
        d = int(dims[i % len(dims)])
        r = int(resolutions[(i // len(dims)) % len(resolutions)])
        out.append((d, r if d == 3 else 2 * r))
    return out


def train_mgpc(
    out: str | Path,
    *,
    groups: int = 64,
    val_groups: int = 8,
    group_size: int = 4,
    vectors: int = 4,
    resolutions: Sequence[int] = (16,),
    dims: Sequence[int] = (3, 2),
    width: int = 8,
    layers: int = 2,
    smoothing_steps: int = 3,
    cycle: str = "W",
    epochs: int = 8,
    lr: float = 3e-3,
    schedule: str = "cosine",
    seed: int = 0,
    device: str | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train an MGPC network with the shared :class:`~neurosolve.operators.training.Trainer`.

    Every training item is a group of ``group_size`` random problems of one shape (3D at
    ``resolutions``, 2D at twice those) with ``vectors`` test vectors each; validation
    groups use another seed (unseen geometries). Checkpoints, ``metrics.json`` and
    ``learning_curve.png`` go to ``run_dir`` (default ``<out>.run``); rerunning resumes.
    The best-on-validation model is copied to ``out``.

    Returns
    -------
    dict
        ``{"model": Path, "run_dir": Path, "history": ...}``.

    Examples
    --------
    Training a real model takes minutes (``scripts/train_mgpc_model.py``); a tiny run is
    ``train_mgpc(path, groups=2, val_groups=1, group_size=1, resolutions=(8,), dims=(2,),
    width=4, layers=1, epochs=1)``. Settings are checked before any work starts:

    >>> train_mgpc("model.pt", dims=(4,))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: dims must be 2 and/or 3, got (4,)
    """
    import os
    import shutil

    from neurosolve.operators.training import TrainConfig, Trainer

    for name, value in (("groups", groups), ("val_groups", val_groups)):
        if int(value) < 1:
            raise InvalidInputError(f"{name} must be >= 1, got {value}")
    if not resolutions or any(int(r) < 4 for r in resolutions):
        raise InvalidInputError(f"resolutions must be integers >= 4, got {resolutions}")
    if not dims or any(int(d) not in (2, 3) for d in dims):
        raise InvalidInputError(f"dims must be 2 and/or 3, got {dims}")
    if cycle not in CYCLES:
        raise InvalidInputError(f"cycle must be one of {sorted(CYCLES)}, got {cycle!r}")
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    train = _GroupDataset(_specs(groups, resolutions, dims), seed, group_size, vectors)
    val = _GroupDataset(
        _specs(val_groups, resolutions, dims), seed + 1_000_003, group_size, vectors
    )
    torch.manual_seed(seed)
    model = MGPCNet(width=width, layers=layers, smoothing_steps=smoothing_steps, cycle=cycle)
    config = TrainConfig(
        epochs=int(epochs),
        batch_size=1,
        lr=float(lr),
        optimizer="adam",
        schedule=schedule,
        seed=int(seed),
        device=str(device) if device is not None else "cpu",
        progress=progress,
        plot=True,
    )
    trainer = Trainer(
        model, _group_loss, config, run_dir, model_spec=dict(kind="mgpc", kwargs=model.config())
    )
    history = trainer.fit(train, val)
    best = run_dir / "model.pt"
    if not best.is_file():
        raise InvalidInputError(f"training finished without writing {best}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if best.resolve() != out.resolve():
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.copyfile(best, tmp)
        os.replace(tmp, out)
    return {"model": out, "run_dir": run_dir, "history": history}
