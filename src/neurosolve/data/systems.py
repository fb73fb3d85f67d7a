"""Sparse SPD systems on structured grids: Poisson / variable-coefficient diffusion.

The discretization is the cell-centred finite-volume scheme of fluid pressure solves.
For every fluid cell ``i`` and every face it shares with a neighbour ``j`` (along axis
``d``, spacing ``h_d``), the row of ``A`` gets

- fluid neighbour: ``+c`` on the diagonal and ``-c`` at column ``j``, with
  ``c = harmonic_mean(a_i, a_j) / h_d**2`` (the two-point flux of a conductivity that jumps
  at the face; it keeps second order for smooth ``a`` and is exact for layered media);
- SOLID neighbour, or the domain boundary with ``boundary="neumann"``: nothing (zero flux);
- AIR neighbour, or the domain boundary with ``boundary="dirichlet"``: ``+2 a_i / h_d**2``
  on the diagonal. This is ``u = 0`` imposed *at the face*, half a cell away, through the
  linear ghost value ``u_ghost = -u_i`` (the conductivity of the half cell is ``a_i``).

So ``A`` is ``-div(a grad u)`` with physical ``1/h**2`` scaling: ``A u = f`` approximates the
continuous problem with ``f`` sampled at cell centres, and the error is ``O(h**2)``.

Singular components and pinning
-------------------------------
A connected set of fluid cells that touches no Dirichlet face (no AIR neighbour, no Dirichlet
domain boundary) has the constants in its null space, and the matrix is only positive
semi-definite. With ``pin="auto"`` (the default) one cell per such component, the one with
the lowest unknown index, is *pinned*: ``p_k = a_k * sum_d 2 / h_d**2`` (the diagonal an
interior cell of that coefficient would have) is added to its diagonal entry. The matrix is
then SPD and keeps its 5/7-point stencil structure. Summing the rows of the component
shows what the pinned system solves: for a right-hand side whose sum over the component is
zero (a *compatible* one, the only kind for which the singular system has a solution) the
unique solution has ``u_k = 0`` and satisfies the original singular equations exactly,
i.e. it is the solution of the Neumann problem normalised by ``u_k = 0``. The right-hand
side generators of this module return compatible vectors (see
:meth:`LinearSystem.make_compatible`); for an incompatible ``b`` the pinned system still has
a unique solution, of a slightly different problem.

Unknowns are the FLUID cells only, in C (lexicographic) order, as everywhere in neurosolve.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from neurosolve.data.grids import AIR, FLUID, SOLID, Grid, check_shape
from neurosolve.errors import FileFormatError, InvalidInputError, NeurosolveError

__all__ = [
    "LinearSystem",
    "poisson",
    "obstacle_flags",
    "random_rhs",
    "smooth_rhs",
    "divergence_rhs",
    "make_rhs",
    "RHS_KINDS",
    "GEOMETRIES",
    "check_spd_matrix",
    "load_system",
    "save_system",
    "reference_solve",
    "poisson_samples",
]

logger = logging.getLogger(__name__)

GEOMETRIES: tuple[str, ...] = ("none", "boxes", "spheres", "mixed")
BOUNDARY_AIR: tuple[str | None, ...] = (None, "top", "free-surface")


# ----------------------------------------------------------------------------------------
# The system container
# ----------------------------------------------------------------------------------------
@dataclass
class LinearSystem:
    """A sparse SPD system ``A x = b`` over the fluid cells of a structured grid.

    Parameters
    ----------
    A : scipy.sparse.csr_matrix
        SPD matrix, float64, sorted indices; rows are the fluid cells in C order.
    grid : Grid or None
        Grid metadata; ``None`` for matrices loaded from files without grid information.
    b : numpy.ndarray, optional
        A right-hand side, shape ``(n,)``.
    name : str
        Human-readable label (used in tables and test ids).
    coefficient : numpy.ndarray, optional
        Cell coefficients ``a`` (grid shape) for variable-coefficient systems.
    pinned : numpy.ndarray
        Unknown indices pinned to make singular (pure-Neumann) components definite.
    floating : numpy.ndarray, optional
        Per unknown, the index into ``pinned`` of its floating component, or ``-1`` for
        unknowns in components with Dirichlet contact. ``None`` when nothing is pinned.

    Examples
    --------
    >>> s = poisson((3, 4))
    >>> s.n, s.A.shape
    (12, (12, 12))
    >>> s
    LinearSystem(name='poisson2d-3x4', n=12, nnz=46, grid=3x4 dirichlet,
                 variable_coefficient=False, pinned=0, b=None)
    """

    A: sp.csr_matrix
    grid: Grid | None
    b: np.ndarray | None = None
    name: str = ""
    coefficient: np.ndarray | None = None
    pinned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    floating: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not sp.issparse(self.A):
            raise InvalidInputError(
                f"LinearSystem.A must be a scipy sparse matrix, got {type(self.A).__name__}"
            )
        if self.grid is not None and self.grid.num_unknowns != self.A.shape[0]:
            raise InvalidInputError(
                f"matrix has {self.A.shape[0]} rows but the grid has "
                f"{self.grid.num_unknowns} fluid cells"
            )
        if self.b is not None:
            self.b = _check_vector(self.b, self.A.shape[0], "right-hand side b")

    @property
    def n(self) -> int:
        """Number of unknowns."""
        return int(self.A.shape[0])

    def __repr__(self) -> str:
        grid = "None"
        if self.grid is not None:
            grid = f"{'x'.join(map(str, self.grid.shape))} {self.grid.boundary}"
        return (
            f"LinearSystem(name={self.name!r}, n={self.n}, nnz={self.A.nnz}, grid={grid}, "
            f"variable_coefficient={self.coefficient is not None}, "
            f"pinned={self.pinned.size}, b={'set' if self.b is not None else 'None'})"
        )

    def make_compatible(self, b: np.ndarray) -> np.ndarray:
        """Remove from ``b`` its mean over every pinned (pure-Neumann) component.

        A singular component only has a solution for a right-hand side that sums to zero
        over it; after this projection the pinned system solves the singular one exactly
        (see the module docstring). Unknowns with Dirichlet contact are unchanged.

        Examples
        --------
        >>> s = poisson((2, 2), boundary="neumann")
        >>> s.make_compatible(np.array([1.0, 2.0, 3.0, 6.0]))
        array([-2., -1.,  0.,  3.])
        """
        b = _check_vector(b, self.n, "right-hand side b").copy()
        if self.floating is None or self.pinned.size == 0:
            return b
        mask = self.floating >= 0
        lab = self.floating[mask]
        counts = np.bincount(lab, minlength=self.pinned.size)
        sums = np.bincount(lab, weights=b[mask], minlength=self.pinned.size)
        b[mask] -= (sums / counts)[lab]
        return b

    def to_field(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter a vector over the unknowns onto the grid (needs ``grid``)."""
        return _need_grid(self, "to_field").to_field(x, fill=fill)


def _need_grid(system: LinearSystem, what: str) -> Grid:
    if system.grid is None:
        raise InvalidInputError(f"{what} needs a system with grid information (grid is None)")
    return system.grid


def _check_vector(b, n: int, what: str) -> np.ndarray:
    b = np.asarray(b)
    if b.dtype.kind not in "biuf":
        raise InvalidInputError(f"{what} must be real-valued, got dtype {b.dtype}")
    b = b.astype(np.float64, copy=False)
    if b.shape != (n,):
        raise InvalidInputError(f"{what} has shape {b.shape}, expected ({n},)")
    if not np.isfinite(b).all():
        raise InvalidInputError(f"{what} contains NaN or Inf")
    return b


# ----------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------
def _axis_slices(ndim: int, axis: int) -> tuple[tuple, tuple, tuple, tuple]:
    """(lower, upper) neighbour slices along ``axis`` and the first / last slab."""
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    first = [slice(None)] * ndim
    last = [slice(None)] * ndim
    lo[axis] = slice(0, -1)
    hi[axis] = slice(1, None)
    first[axis] = slice(0, 1)
    last[axis] = slice(-1, None)
    return tuple(lo), tuple(hi), tuple(first), tuple(last)


def _check_coefficient(coefficient, grid: Grid) -> np.ndarray | None:
    if coefficient is None:
        return None
    a = np.asarray(coefficient)
    if a.dtype.kind not in "biuf":
        raise InvalidInputError(f"coefficient must be real-valued, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 0:
        a = np.full(grid.shape, float(a))
    if a.shape != grid.shape:
        raise InvalidInputError(f"coefficient shape {a.shape} != grid shape {grid.shape}")
    fluid = grid.fluid
    vals = a[fluid]
    if not np.isfinite(vals).all():
        raise InvalidInputError("coefficient contains NaN or Inf on fluid cells")
    if (vals <= 0).any():
        raise InvalidInputError(
            f"coefficient must be > 0 on fluid cells (min {vals.min():.3g}); "
            "-div(a grad u) is only SPD for positive a"
        )
    a[~fluid] = 1.0  # never used; keeps the arithmetic below free of NaN warnings
    return a


def poisson(
    shape: Sequence[int] | Grid,
    *,
    flags: np.ndarray | None = None,
    coefficient: np.ndarray | float | None = None,
    boundary: str = "dirichlet",
    spacing: Sequence[float] | None = None,
    pin: str | None = "auto",
    name: str | None = None,
) -> LinearSystem:
    """Assemble ``-div(a grad u)`` on a 2D (5-point) or 3D (7-point) cell-centred grid.

    See the module docstring for the exact discretization, the boundary treatment and
    the pinning of pure-Neumann components. Assembly is vectorized (one pass per axis);
    a 128^3 grid (2M unknowns) assembles in seconds.

    Parameters
    ----------
    shape : sequence of int, or Grid
        Cells per axis (2 or 3 axes, any size >= 1). A :class:`Grid` supplies shape,
        spacing, flags and boundary at once (the keyword arguments must then be left unset).
    flags : numpy.ndarray, optional
        Cell types ``FLUID`` / ``SOLID`` / ``AIR`` (see :mod:`neurosolve.data.grids`);
        default all fluid. Unknowns are the fluid cells.
    coefficient : numpy.ndarray or float, optional
        Cell coefficient ``a > 0`` (grid shape); default 1. Face values are harmonic means.
    boundary : {"dirichlet", "neumann"}
        Condition on the outer boundary: ``u = 0`` at the boundary face, or zero flux.
    spacing : sequence of float, optional
        Cell width per axis; default ``1 / shape`` (unit square / cube).
    pin : {"auto", "none"}
        ``"auto"`` pins one cell per fluid component without Dirichlet contact (result SPD);
        ``"none"`` (or ``None``) leaves such components singular (positive semi-definite).
    name : str, optional
        Label; default like ``"poisson2d-32x32"``.

    Returns
    -------
    LinearSystem
        ``A`` is float64 CSR with sorted indices, int32 indices when they fit.

    Examples
    --------
    >>> s = poisson((4, 4))
    >>> s.A.shape, float(s.A[5, 5])   # interior cell: 4 / h^2 with h = 1/4
    ((16, 16), 64.0)
    >>> float(s.A[0, 0])              # corner: 2 x (1 / h^2) + 2 Dirichlet faces x (2 / h^2)
    96.0
    >>> from neurosolve.data.grids import SOLID
    >>> flags = np.ones((3, 3), dtype=np.int8); flags[1, 1] = SOLID
    >>> poisson((3, 3), flags=flags, boundary="neumann").pinned   # one floating ring
    array([0])
    """
    if isinstance(shape, Grid):
        if flags is not None or spacing is not None or boundary != "dirichlet":
            raise InvalidInputError(
                "pass either a Grid or shape/flags/spacing/boundary to poisson(), not both"
            )
        grid = shape
    else:
        grid = Grid(check_shape(shape), spacing=spacing, flags=flags, boundary=boundary)
    if pin is None:
        pin = "none"
    if pin not in ("auto", "none"):
        raise InvalidInputError(f"pin must be 'auto' or 'none', got {pin!r}")

    a = _check_coefficient(coefficient, grid)
    n = grid.num_unknowns
    if n == 0:
        raise InvalidInputError("the grid has no fluid cells, so the system has no unknowns")
    A, pinned, floating = _assemble(grid, a, pin=pin == "auto")

    if name is None:
        name = f"poisson{grid.ndim}d-{'x'.join(map(str, grid.shape))}"
        if (grid.flags != FLUID).any():
            name += "-obstacles"
        if a is not None and np.ptp(a[grid.fluid]) > 0:
            name += "-varcoef"
    coef_out = None if a is None else np.where(grid.fluid, a, 0.0)
    return LinearSystem(
        A=A, grid=grid, name=name, coefficient=coef_out, pinned=pinned, floating=floating
    )


def _assemble(
    grid: Grid, a: np.ndarray | None, *, pin: bool
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]:
    """Vectorized assembly; returns ``(A, pinned, floating)`` (see :class:`LinearSystem`).

    CSR is built directly: every row has ``2 ndim + 1`` slots in increasing column order
    (lower neighbours along axis 0, 1, ..., the diagonal, upper neighbours along the last
    axis, ..., axis 0; fluid numbering is monotone in the lexicographic cell index), and
    the slots of missing neighbours are dropped. No sorting or duplicate summing is needed.
    """
    shape, ndim, flags = grid.shape, grid.ndim, grid.flags
    fluid = grid.fluid
    air = flags == AIR
    n = int(fluid.sum())
    idx_dtype = np.int32 if n < 2**31 - 1 else np.int64
    idx = np.full(shape, -1, dtype=idx_dtype)
    idx[fluid] = np.arange(n, dtype=idx_dtype)
    coef = np.ones(shape) if a is None else a

    nslots = 2 * ndim + 1
    # slot-major while filling (contiguous column writes), row-major for the CSR arrays
    vals = np.zeros((nslots, n))
    cols = np.zeros((nslots, n), dtype=idx_dtype)
    diag = np.zeros(shape)
    dirichlet = np.zeros(shape, dtype=bool)
    face_c = np.empty(shape)
    nbr_idx = np.empty(shape, dtype=idx_dtype)
    for d in range(ndim):
        inv_h2 = 1.0 / grid.spacing[d] ** 2
        lo, hi, first, last = _axis_slices(ndim, d)
        f_lo, f_hi = fluid[lo], fluid[hi]
        # fluid-fluid faces: harmonic mean 2 a_i a_j / (a_i + a_j); 0 on other faces
        a_lo, a_hi = coef[lo], coef[hi]
        c = np.where(f_lo & f_hi, (2.0 * inv_h2) * a_lo * a_hi / (a_lo + a_hi), 0.0)
        diag[lo] += c
        diag[hi] += c
        # lower-neighbour slot d of the upper cell, upper-neighbour slot of the lower cell;
        # a zero coefficient marks a missing neighbour (c > 0 on every fluid-fluid face)
        for cells, nbrs, slot in ((hi, lo, d), (lo, hi, nslots - 1 - d)):
            face_c.fill(0.0)
            face_c[cells] = c
            nbr_idx[cells] = idx[nbrs]
            vals[slot] = face_c[fluid]
            vals[slot] *= -1.0
            cols[slot] = nbr_idx[fluid]
        # fluid-AIR faces: u = 0 at the face, ghost value -u_i -> 2 a_i / h^2
        m = f_lo & air[hi]
        diag[lo] += np.where(m, 2.0 * inv_h2 * a_lo, 0.0)
        dirichlet[lo] |= m
        m = f_hi & air[lo]
        diag[hi] += np.where(m, 2.0 * inv_h2 * a_hi, 0.0)
        dirichlet[hi] |= m
        if grid.boundary == "dirichlet":
            for slab in (first, last):  # separate updates: a size-1 axis has both faces
                m = fluid[slab]
                diag[slab] += np.where(m, 2.0 * inv_h2 * coef[slab], 0.0)
                dirichlet[slab] |= m
    vals[ndim] = diag[fluid]
    pinned, floating = np.zeros(0, dtype=np.int64), None
    if pin:
        pinned, floating = _floating_components(grid, dirichlet)
        if pinned.size:
            pin_value = coef[fluid][pinned] * sum(2.0 / h**2 for h in grid.spacing)
            vals[ndim, pinned] += pin_value
            logger.debug("pinned %d floating component(s) at %s", pinned.size, pinned)
    cols[ndim] = np.arange(n, dtype=idx_dtype)
    present = vals != 0.0
    present[ndim] = True  # the diagonal is always stored (pinning writes into it)
    indptr = np.zeros(n + 1, dtype=idx_dtype)
    np.cumsum(np.count_nonzero(present, axis=0), out=indptr[1:])
    present = present.T
    vals = vals.T[present]
    cols = cols.T[present]
    A = sp.csr_matrix((vals, cols, indptr), shape=(n, n))
    A.has_sorted_indices = True
    A.has_canonical_format = True
    return A, pinned, floating


def _floating_components(grid: Grid, dirichlet: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Fluid components without Dirichlet contact: (pinned unknowns, per-unknown labels).

    Components are face-connected sets of fluid cells (every fluid-fluid face couples its
    cells), found with :func:`scipy.ndimage.label` on the grid. ``dirichlet`` marks cells
    (grid shape) with an AIR face or a Dirichlet boundary face.
    """
    from scipy import ndimage

    fluid = grid.fluid
    n = int(fluid.sum())
    empty = np.zeros(0, dtype=np.int64)
    if not (grid.flags == SOLID).any():
        # Without SOLID cells a component either fills the grid (then it floats iff the
        # boundary is Neumann) or borders an AIR cell: no search needed.
        if grid.boundary == "dirichlet" or (grid.flags == AIR).any():
            return empty, None
        return np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    structure = ndimage.generate_binary_structure(grid.ndim, 1)  # face neighbours only
    full_labels, ncomp = ndimage.label(fluid, structure=structure)
    labels = full_labels[fluid] - 1
    touches = np.bincount(labels, weights=dirichlet[fluid], minlength=ncomp) > 0
    if touches.all():
        return empty, None
    cells = np.flatnonzero(~touches[labels])  # unknowns of floating components
    comp_ids, first = np.unique(labels[cells], return_index=True)
    pinned = cells[first].astype(np.int64)  # lowest unknown index of each component
    remap = np.full(ncomp, -1, dtype=np.int64)
    remap[comp_ids] = np.arange(comp_ids.size)
    return pinned, remap[labels]


# ----------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------
def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise InvalidInputError(f"rng must be a numpy Generator or an int seed, got {type(rng)}")


def obstacle_flags(
    shape: Sequence[int],
    kind: str = "boxes",
    rng: np.random.Generator | int | None = None,
    *,
    count: int | None = None,
    size: tuple[float, float] = (0.1, 0.3),
    boundary_air: str | None = None,
    max_solid_fraction: float = 0.5,
) -> np.ndarray:
    """Random cell flags with SOLID obstacles (and optionally an AIR region).

    Obstacle geometry is drawn in unit-cube coordinates (cell centres ``(i + 1/2) / n``),
    so one seed gives the same shapes at every resolution. Obstacles that would push the
    solid fraction above ``max_solid_fraction`` are skipped, so fluid always remains.

    Parameters
    ----------
    shape : sequence of int
        Cells per axis (2 or 3 axes).
    kind : {"none", "boxes", "spheres", "mixed"}
        Axis-aligned boxes, balls (discs in 2D), or each obstacle a box or a ball at random.
    rng : numpy.random.Generator or int
        Source of randomness (an int is a seed).
    count : int, optional
        Number of obstacles; default drawn from 2..6.
    size : (float, float)
        Range of box edge lengths (fraction of the domain); balls get radii of half that.
    boundary_air : {None, "none", "top", "free-surface"}
        AIR region, with axis 0 taken as vertical: ``"top"`` makes the last layer along
        axis 0 AIR (an open top, as in smoke simulations); ``"free-surface"`` makes every
        cell above a random level (55-85 % of the height) AIR (liquid in a tank). Use these
        to make test geometries differ from training ones.
    max_solid_fraction : float
        Upper bound on the fraction of solid cells.

    Returns
    -------
    numpy.ndarray of int8
        ``FLUID`` (1), ``SOLID`` (2), ``AIR`` (0) per cell.

    Examples
    --------
    >>> f = obstacle_flags((16, 16), "spheres", np.random.default_rng(0), count=3)
    >>> f.shape, f.dtype, bool((f == FLUID).any())
    ((16, 16), dtype('int8'), True)
    >>> obstacle_flags((4, 4), "none", 0, boundary_air="top")[:, 0]
    array([1, 1, 1, 0], dtype=int8)
    """
    shape = check_shape(shape)
    rng = _as_rng(rng)
    if boundary_air == "none":
        boundary_air = None
    if kind not in GEOMETRIES:
        raise InvalidInputError(f"unknown geometry {kind!r}; choose one of {GEOMETRIES}")
    if boundary_air not in BOUNDARY_AIR:
        raise InvalidInputError(
            f"unknown boundary_air {boundary_air!r}; choose one of {BOUNDARY_AIR}"
        )
    lo_size, hi_size = (float(s) for s in size)
    if not (0 < lo_size <= hi_size <= 1):
        raise InvalidInputError(f"size must satisfy 0 < min <= max <= 1, got {size}")
    if not (0 <= max_solid_fraction < 1):
        raise InvalidInputError(f"max_solid_fraction must be in [0, 1), got {max_solid_fraction}")
    if count is not None and (int(count) != count or count < 0):
        raise InvalidInputError(f"count must be a non-negative integer, got {count}")

    ndim = len(shape)
    flags = np.full(shape, FLUID, dtype=np.int8)
    if kind != "none":
        num = int(rng.integers(2, 7)) if count is None else int(count)
        budget = max_solid_fraction * flags.size
        solid = np.zeros(shape, dtype=bool)
        for _ in range(num):
            is_box = kind == "boxes" or (kind == "mixed" and rng.random() < 0.5)
            if is_box:
                width = rng.uniform(lo_size, hi_size, ndim)
                start = rng.uniform(0.0, 1.0 - width)
                region = []
                for s, w, n in zip(start, width, shape, strict=True):
                    i0 = min(int(np.round(s * n)), n - 1)
                    i1 = max(int(np.round((s + w) * n)), i0 + 1)
                    region.append(slice(i0, i1))
                region = tuple(region)
                block = np.ones([r.stop - r.start for r in region], dtype=bool)
            else:
                radius = rng.uniform(lo_size, hi_size) / 2
                centre = rng.uniform(0.0, 1.0, ndim)
                region, axes = [], []
                for c, n in zip(centre, shape, strict=True):
                    i0 = max(int(np.floor((c - radius) * n)), 0)
                    i1 = min(int(np.ceil((c + radius) * n)) + 1, n)
                    region.append(slice(i0, i1))
                    axes.append((np.arange(i0, i1) + 0.5) / n - c)
                region = tuple(region)
                mesh = np.meshgrid(*axes, indexing="ij", sparse=True)
                block = sum(m**2 for m in mesh) <= radius**2
            trial = solid.copy()
            trial[region] |= block
            if trial.sum() <= budget:
                solid = trial
        flags[solid] = SOLID

    if boundary_air == "top":
        flags[-1, ...] = AIR
    elif boundary_air == "free-surface":
        level = int(np.round(rng.uniform(0.55, 0.85) * shape[0]))
        level = min(max(level, 1), shape[0] - 1) if shape[0] > 1 else 1
        flags[level:, ...] = AIR
    if not (flags == FLUID).any():  # only possible on degenerate grids (e.g. 1 x n)
        raise InvalidInputError(f"geometry left no fluid cells on grid {shape}")
    return flags


# ----------------------------------------------------------------------------------------
# Right-hand sides
# ----------------------------------------------------------------------------------------
def random_rhs(system: LinearSystem, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Standard normal right-hand side on the unknowns, made compatible (see module docs).

    Examples
    --------
    >>> s = poisson((4, 4), boundary="neumann")
    >>> b = random_rhs(s, np.random.default_rng(0))
    >>> b.shape, bool(abs(b.sum()) < 1e-12)
    ((16,), True)
    """
    rng = _as_rng(rng)
    return system.make_compatible(rng.standard_normal(system.n))


def _grf(shape: tuple[int, ...], rng: np.random.Generator, **params) -> np.ndarray:
    """One float64 Gaussian random field sample on ``shape`` (axes of size 1 allowed).

    :func:`neurosolve.data.random_fields.gaussian_random_field` needs >= 2 cells per axis;
    a size-1 axis is sampled on 2 cells and cropped.
    """
    import torch

    from neurosolve.data.random_fields import gaussian_random_field

    padded = tuple(max(n, 2) for n in shape)
    u = gaussian_random_field(padded, rng=[rng], dtype=torch.float64, **params)[0].numpy()
    return np.ascontiguousarray(u[tuple(slice(0, n) for n in shape)])


def smooth_rhs(system: LinearSystem, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Smooth random right-hand side: a Gaussian random field at the fluid cells.

    The field is :func:`neurosolve.data.random_fields.gaussian_random_field` with its
    defaults (``alpha=2.5, tau=7``, periodic on the unit square / cube), scaled to unit
    root-mean-square over the grid and made compatible (see module docs).

    Examples
    --------
    >>> s = poisson((8, 8))
    >>> b = smooth_rhs(s, 0)
    >>> b.shape, bool(np.isfinite(b).all())
    ((64,), True)
    """
    rng = _as_rng(rng)
    grid = _need_grid(system, "smooth_rhs")
    field = _grf(grid.shape, rng)
    rms = float(np.sqrt(np.mean(field**2)))
    if rms > 0:
        field /= rms
    return system.make_compatible(grid.to_vector(field))


def divergence_rhs(
    system: LinearSystem,
    rng: np.random.Generator | int | None = None,
    *,
    velocity: str = "noise",
) -> np.ndarray:
    """Right-hand side of a pressure projection: ``-div u`` of a random face velocity.

    A staggered (MAC) velocity, one normal component per cell face, is drawn; faces
    touching a SOLID cell, and domain-boundary faces when the boundary is Neumann, get
    zero normal velocity (no flow through walls). The result is
    ``b_i = -sum_d (u_{i+1/2} - u_{i-1/2}) / h_d`` at the fluid cells, the right-hand side
    of ``-lap p = -div u`` in a projection step (up to the ``1/dt`` factor).

    Compatibility: over a fluid component without Dirichlet contact every boundary face is
    a wall with zero velocity, so the face fluxes cancel and ``b`` sums to zero there (the
    residual rounding is removed by :meth:`LinearSystem.make_compatible`).

    Parameters
    ----------
    system : LinearSystem
        System with grid information.
    rng : numpy.random.Generator or int
        Source of randomness.
    velocity : {"noise", "smooth"}
        ``"noise"``: independent standard normal face velocities (every scale present);
        ``"smooth"``: each component a Gaussian random field (``alpha=2.5, tau=7``) on its
        face grid with unit RMS, closer to the intermediate velocity of a simulation.

    Examples
    --------
    >>> s = poisson((6, 6), boundary="neumann")
    >>> b = divergence_rhs(s, np.random.default_rng(0))
    >>> bool(abs(b.sum()) < 1e-10)
    True
    """
    if velocity not in ("noise", "smooth"):
        raise InvalidInputError(f"velocity must be 'noise' or 'smooth', got {velocity!r}")
    rng = _as_rng(rng)
    grid = _need_grid(system, "divergence_rhs")
    shape, ndim = grid.shape, grid.ndim
    solid = grid.flags == SOLID
    div = np.zeros(shape)
    for d in range(ndim):
        fshape = list(shape)
        fshape[d] += 1
        if velocity == "noise":
            u = rng.standard_normal(fshape)
        else:
            u = _grf(tuple(fshape), rng)
            u /= max(float(np.sqrt(np.mean(u**2))), np.finfo(float).tiny)
        # The same slices serve cells and faces: face k along d lies between cells k-1 and
        # k, so faces lo/hi of the face array are the lower/upper faces of every cell, and
        # the cells' lo/hi pairs border the interior faces 1..n-1.
        lo, hi, first, last = _axis_slices(ndim, d)
        inner = tuple(slice(1, -1) if a == d else slice(None) for a in range(ndim))
        u[inner] = np.where(solid[lo] | solid[hi], 0.0, u[inner])
        for slab in (first, last):  # domain-boundary faces: walls are closed
            closed = True if grid.boundary == "neumann" else solid[slab]
            u[slab] = np.where(closed, 0.0, u[slab])
        div += (u[hi] - u[lo]) / grid.spacing[d]
    return system.make_compatible(-grid.to_vector(div))


def _smooth_divergence_rhs(system: LinearSystem, rng=None) -> np.ndarray:
    return divergence_rhs(system, rng, velocity="smooth")


RHS_KINDS = {
    "random": random_rhs,
    "smooth": smooth_rhs,
    "divergence": divergence_rhs,
    "smooth-divergence": _smooth_divergence_rhs,
}


def make_rhs(
    system: LinearSystem, kind: str, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Right-hand side by name (a key of ``RHS_KINDS``).

    ``"random"`` (:func:`random_rhs`), ``"smooth"`` (:func:`smooth_rhs`), ``"divergence"``
    (:func:`divergence_rhs` of a noise velocity) or ``"smooth-divergence"`` (of a smooth
    velocity).

    Examples
    --------
    >>> make_rhs(poisson((4, 4)), "random", 0).shape
    (16,)
    """
    if kind not in RHS_KINDS:
        raise InvalidInputError(
            f"unknown right-hand side {kind!r}; choose one of {list(RHS_KINDS)}"
        )
    return RHS_KINDS[kind](system, rng)


# ----------------------------------------------------------------------------------------
# Validation and I/O
# ----------------------------------------------------------------------------------------
def check_spd_matrix(A, *, name: str = "matrix", symmetry_tol: float = 1e-10) -> sp.csr_matrix:
    """Validate a matrix as a candidate SPD system matrix and return float64 CSR.

    Checks: 2-D, square, non-empty, real, finite, symmetric within ``symmetry_tol``
    (``max|A - A^T| <= symmetry_tol * max|A|``) and a strictly positive diagonal. These
    are necessary conditions; definiteness itself is not tested here (that would cost a
    factorization) -- CG reports a breakdown on an indefinite matrix.

    Raises
    ------
    InvalidInputError
        Naming the first failed check.

    Examples
    --------
    >>> check_spd_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]])).nnz
    4
    >>> check_spd_matrix(np.array([[2.0, 1.0], [0.0, 2.0]]))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: matrix is not symmetric: ...
    """
    if sp.issparse(A):
        M = A
    else:
        arr = np.asarray(A)
        if arr.dtype == object:
            raise InvalidInputError(f"{name} is not a numeric array or scipy sparse matrix")
        if arr.ndim != 2:
            raise InvalidInputError(f"{name} must be 2-D, got {arr.ndim}-D array")
        M = arr
    if len(M.shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {M.shape}")
    if M.shape[0] != M.shape[1]:
        raise InvalidInputError(f"{name} is not square: shape {M.shape}")
    if M.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {M.shape})")
    if np.dtype(M.dtype).kind not in "biuf":
        raise InvalidInputError(f"{name} must be real, got dtype {M.dtype}")
    M = sp.csr_matrix(M, dtype=np.float64)  # shares the caller's arrays when it can
    if not M.has_canonical_format:
        M = M.copy()  # never reorder the caller's arrays in place
        M.sum_duplicates()  # also sorts the indices
    if not np.isfinite(M.data).all():
        raise InvalidInputError(f"{name} contains NaN or Inf entries")
    scale = float(np.abs(M.data).max()) if M.nnz else 0.0
    asym = abs(M - M.T)
    err = float(asym.max()) if asym.nnz else 0.0
    if err > symmetry_tol * scale:
        raise InvalidInputError(
            f"{name} is not symmetric: max |A - A^T| = {err:.3g} > {symmetry_tol:g} * "
            f"max |A| = {symmetry_tol * scale:.3g}"
        )
    diag = M.diagonal()
    bad = np.flatnonzero(diag <= 0)
    if bad.size:
        raise InvalidInputError(
            f"{name} has a non-positive diagonal ({bad.size} entr{'y' if bad.size == 1 else 'ies'}"
            f", first at row {bad[0]}: {diag[bad[0]]:.3g}); it cannot be positive definite"
        )
    return M


def _rhs_path(path: Path) -> Path:
    """SuiteSparse convention: the right-hand side of ``name.mtx`` is ``name_b.mtx``."""
    return path.with_name(path.stem + "_b.mtx")


def load_system(
    path: str | os.PathLike,
    *,
    grid: Grid | tuple[int, ...] | None = None,
    flags: np.ndarray | None = None,
) -> LinearSystem:
    """Load and validate a system from Matrix Market (``.mtx``) or ``.npz``.

    ``.mtx``: the matrix (general or symmetric storage); a right-hand side is read from
    ``<stem>_b.mtx`` next to it if present (the SuiteSparse convention). ``.npz``: either
    the layout written by :func:`save_system` (matrix, optional ``b``, grid shape, spacing,
    boundary and flags) or a plain ``scipy.sparse.save_npz`` file.

    Parameters
    ----------
    path : str or Path
        File to read.
    grid : Grid or tuple of int, optional
        Grid of the unknowns, or just its shape (overrides grid information in the file).
    flags : numpy.ndarray, optional
        Cell flags; with ``grid`` a shape or ``None``, builds a Dirichlet-boundary
        :class:`Grid` with these flags.

    Raises
    ------
    FileFormatError
        Missing, unreadable or malformed file, unknown extension.
    InvalidInputError
        The matrix fails :func:`check_spd_matrix`, or ``b`` / the grid does not match it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> s = poisson((3, 3))
    >>> p = save_system(d / "p.mtx", s, b=np.ones(9))
    >>> t = load_system(p)
    >>> t.n, float(abs(t.A - s.A).max()), t.b[:2]
    (9, 0.0, array([1., 1.]))
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"system file not found: {path}")
    suffix = path.suffix.lower()
    b = None
    meta: dict = {}
    if suffix == ".mtx":
        A = _read_mtx(path, "matrix")
        rhs = _rhs_path(path)
        if rhs.is_file():
            bm = _read_mtx(rhs, "right-hand side")
            b = np.asarray(bm.toarray() if sp.issparse(bm) else bm).ravel()
    elif suffix == ".npz":
        A, b, meta = _read_npz(path)
    else:
        raise FileFormatError(
            f"{path}: unknown system file extension {path.suffix!r} (use .mtx or .npz)"
        )
    A = check_spd_matrix(A, name=f"matrix in {path.name}")
    if grid is not None and not isinstance(grid, Grid):
        grid = Grid(check_shape(grid), flags=flags)
    if grid is None and flags is not None:
        grid = Grid(np.asarray(flags).shape, flags=flags)
    if grid is None and "grid_shape" in meta:
        try:
            grid = Grid(
                tuple(int(s) for s in meta["grid_shape"]),
                spacing=meta.get("spacing"),
                flags=meta.get("flags"),
                boundary=str(meta.get("boundary", "dirichlet")),
            )
        except InvalidInputError as exc:
            raise FileFormatError(f"{path}: invalid grid information: {exc}") from exc
    if grid is not None and grid.num_unknowns != A.shape[0]:
        raise InvalidInputError(
            f"{path.name}: matrix has {A.shape[0]} rows but the grid has "
            f"{grid.num_unknowns} fluid cells"
        )
    if b is not None:
        b = _check_vector(b, A.shape[0], f"right-hand side in {path.name}")
    coef = meta.get("coefficient")
    return LinearSystem(
        A=A,
        grid=grid,
        b=b,
        name=str(meta.get("name", path.stem)),
        coefficient=None if coef is None else np.asarray(coef, dtype=np.float64),
    )


def _read_mtx(path: Path, what: str):
    try:
        return scipy.io.mmread(str(path))
    except Exception as exc:  # scipy raises ValueError/OSError/... on malformed files
        raise FileFormatError(f"{path}: cannot read the {what} as Matrix Market: {exc}") from exc


_NPZ_MATRIX_KEYS = ("A_data", "A_indices", "A_indptr", "A_shape")


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if set(_NPZ_MATRIX_KEYS) <= keys:
                A = sp.csr_matrix(
                    (z["A_data"], z["A_indices"], z["A_indptr"]),
                    shape=tuple(int(s) for s in z["A_shape"]),
                )
                b = z["b"] if "b" in keys else None
                meta = {
                    k: z[k] for k in ("grid_shape", "spacing", "flags", "coefficient") if k in keys
                }
                for k in ("boundary", "name"):
                    if k in keys:
                        meta[k] = str(z[k])
                if "spacing" in meta:
                    meta["spacing"] = tuple(float(h) for h in meta["spacing"])
                return A, b, meta
            if {"data", "indices", "indptr", "shape", "format"} <= keys:
                return sp.load_npz(path), None, {}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{path}: cannot read as .npz system: {exc}") from exc
    raise FileFormatError(
        f"{path}: .npz file holds no matrix (expected keys {_NPZ_MATRIX_KEYS} as written by "
        f"save_system, or a scipy.sparse.save_npz file); found {sorted(keys)}"
    )


def _atomic_write(jobs: list[tuple[Path, object]], suffix: str) -> None:
    """Write each ``(path, write)`` to a temporary file in its directory, then rename all.

    Nothing is renamed until every write succeeded; temporary files are removed on error.
    """
    temps: list[str] = []
    try:
        for path, write in jobs:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent
            )
            os.close(fd)
            temps.append(tmp)
            write(tmp)
        for (path, _), tmp in zip(jobs, temps, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save_system(
    path: str | os.PathLike,
    system_or_A: LinearSystem | sp.spmatrix | np.ndarray,
    b: np.ndarray | None = None,
) -> Path:
    """Write a system (or a bare matrix) as ``.mtx`` or ``.npz``, atomically.

    ``.mtx`` stores the matrix in symmetric Matrix Market format and, when there is a
    right-hand side, ``b`` as ``<stem>_b.mtx`` (dense array format); without one, a stale
    ``<stem>_b.mtx`` from an earlier save is removed. ``.npz`` stores the
    CSR arrays, ``b`` and, for a :class:`LinearSystem` with a grid, its shape, spacing,
    boundary, flags and coefficient. Files are written to a temporary name and renamed,
    so a failed write never leaves a partial file.

    Parameters
    ----------
    path : str or Path
        Destination; the suffix picks the format.
    system_or_A : LinearSystem or sparse matrix
        What to save; a bare matrix is validated with :func:`check_spd_matrix`.
    b : numpy.ndarray, optional
        Right-hand side (defaults to ``system.b``).

    Returns
    -------
    Path
        The matrix file written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = save_system(pathlib.Path(tempfile.mkdtemp()) / "s.npz", poisson((2, 3)))
    >>> load_system(p).grid.shape
    (2, 3)
    """
    path = Path(path)
    if isinstance(system_or_A, LinearSystem):
        system = system_or_A
        A = check_spd_matrix(system.A, name="system matrix")
    else:
        A = check_spd_matrix(system_or_A)
        system = LinearSystem(A=A, grid=None)
    if b is None:
        b = system.b
    if b is not None:
        b = _check_vector(b, A.shape[0], "right-hand side b")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output directory does not exist: {path.parent}")
    suffix = path.suffix.lower()
    if suffix == ".mtx":
        comment = f" neurosolve system {system.name}" if system.name else ""
        jobs = [
            (
                path,
                lambda t: scipy.io.mmwrite(
                    t, A, comment=comment, symmetry="symmetric", precision=17
                ),
            )
        ]
        if b is not None:
            jobs.append(
                (_rhs_path(path), lambda t: scipy.io.mmwrite(t, b.reshape(-1, 1), precision=17))
            )
        _atomic_write(jobs, ".mtx")
        if b is None and _rhs_path(path).is_file():
            # a right-hand side left from an earlier save would be paired with this matrix
            _rhs_path(path).unlink()
    elif suffix == ".npz":
        arrays = {
            "A_data": A.data,
            "A_indices": A.indices,
            "A_indptr": A.indptr,
            "A_shape": np.asarray(A.shape, dtype=np.int64),
            "name": np.asarray(system.name),
        }
        if b is not None:
            arrays["b"] = b
        if system.grid is not None:
            g = system.grid
            arrays.update(
                grid_shape=np.asarray(g.shape, dtype=np.int64),
                spacing=np.asarray(g.spacing, dtype=np.float64),
                boundary=np.asarray(g.boundary),
                flags=g.flags,
            )
        if system.coefficient is not None:
            arrays["coefficient"] = np.asarray(system.coefficient, dtype=np.float64)

        def write(t):
            with open(t, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        _atomic_write([(path, write)], ".npz")
    else:
        raise InvalidInputError(
            f"unknown system file extension {path.suffix!r} for {path} (use .mtx or .npz)"
        )
    return path


# ----------------------------------------------------------------------------------------
# Reference solutions and samples
# ----------------------------------------------------------------------------------------
DIRECT_LIMIT = 20_000


def reference_solve(
    A: sp.spmatrix, b: np.ndarray, *, rtol: float = 1e-10, direct_limit: int | None = None
) -> np.ndarray:
    """Accurate solution of an SPD system: ``||b - A x|| <= rtol ||b||``, checked.

    Uses a sparse direct solve (SuperLU) for ``n <= direct_limit`` and pyamg smoothed
    aggregation as a CG preconditioner above; the true residual is verified (with a few
    steps of iterative refinement if needed) and an error is raised if it is not reached.

    Parameters
    ----------
    A : sparse matrix
        SPD matrix.
    b : numpy.ndarray
        Right-hand side.
    rtol : float
        Required relative residual.
    direct_limit : int, optional
        Largest ``n`` solved directly. Default: 20000 for 2D-like sparsity (at most 5.5
        stored entries per row), 4000 otherwise -- LU fill-in of 3D stencils grows like
        ``n^(4/3)``, so pyamg is much faster there beyond ~16^3 unknowns.

    Examples
    --------
    >>> s = poisson((8, 8))
    >>> x = reference_solve(s.A, np.ones(64))
    >>> float(np.linalg.norm(np.ones(64) - s.A @ x)) < 1e-10 * 8
    True
    """
    import scipy.sparse.linalg as spla

    A = sp.csr_matrix(A)
    b = _check_vector(b, A.shape[0], "right-hand side b")
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0:
        return np.zeros_like(b)
    target = rtol * bnorm
    if direct_limit is None:
        direct_limit = DIRECT_LIMIT if A.nnz <= 5.5 * A.shape[0] else 4_000
    if A.shape[0] <= direct_limit:
        lu = spla.splu(A.tocsc())
        x = lu.solve(b)
        for _ in range(3):
            r = b - A @ x
            if np.linalg.norm(r) <= target:
                return x
            x = x + lu.solve(r)
    else:
        import pyamg

        ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric")
        x = np.zeros_like(b)
        for _ in range(3):
            x = ml.solve(b, x0=x, tol=0.5 * rtol, accel="cg", maxiter=500)
            if np.linalg.norm(b - A @ x) <= target:
                return x
    res = float(np.linalg.norm(b - A @ x)) / bnorm
    if np.isfinite(res) and res <= rtol:
        return x
    raise NeurosolveError(
        f"reference solve reached relative residual {res:.3g} > rtol {rtol:g}; "
        "the matrix may not be SPD"
    )


def poisson_samples(
    rngs: Sequence[np.random.Generator],
    *,
    dim: int = 2,
    resolution: int = 32,
    geometry: str = "boxes",
    rhs: str = "divergence",
    boundary: str = "dirichlet",
    boundary_air: str | None = None,
    obstacles: int | None = None,
    coefficient: str = "constant",
    rtol: float = 1e-10,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson training samples: right-hand side + flags -> solution, one per generator.

    For each generator: flags from :func:`obstacle_flags` (``geometry``, ``obstacles``,
    ``boundary_air``), the system from :func:`poisson`, a right-hand side of kind ``rhs``,
    and the solution from :func:`reference_solve` to relative residual ``rtol``.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One generator per sample (sample ``i`` depends on ``rngs[i]`` only).
    dim : {2, 3}
        Spatial dimension; the grid is ``resolution`` cells per axis.
    resolution : int
        Cells per axis.
    geometry : {"none", "boxes", "spheres", "mixed"}
        Obstacle kind.
    rhs : {"random", "smooth", "divergence", "smooth-divergence"}
        Right-hand side kind (see :func:`make_rhs`).
    boundary : {"dirichlet", "neumann"}
        Outer boundary condition.
    boundary_air : {None, "top", "free-surface"}
        AIR region (see :func:`obstacle_flags`).
    obstacles : int, optional
        Number of obstacles (default random 2..6).
    coefficient : {"constant", "piecewise", "lognormal", "rough"}
        ``"constant"``: ``a = 1``; otherwise ``a`` from
        :func:`neurosolve.data.darcy.darcy_coefficient` and ``x`` gets a third channel.
    rtol : float
        Relative residual of the reference solution.
    progress : bool
        Show a tqdm bar (only when stderr is a terminal).

    Returns
    -------
    x : numpy.ndarray, float64, ``(B, 2, *shape)``
        Channel 0: right-hand side field (0 outside fluid); channel 1: cell flags as float
        (AIR 0, FLUID 1, SOLID 2); channel 2 (variable coefficient only): ``a``.
    y : numpy.ndarray, float64, ``(B, 1, *shape)``
        Solution field (0 outside fluid).

    Examples
    --------
    >>> rngs = [np.random.default_rng([0, i]) for i in range(2)]
    >>> x, y = poisson_samples(rngs, resolution=8)
    >>> x.shape, y.shape
    ((2, 2, 8, 8), (2, 1, 8, 8))
    """
    from tqdm.auto import tqdm

    if dim not in (2, 3):
        raise InvalidInputError(f"dim must be 2 or 3, got {dim}")
    if int(resolution) != resolution or resolution < 1:
        raise InvalidInputError(f"resolution must be a positive integer, got {resolution}")
    if rhs not in RHS_KINDS:
        raise InvalidInputError(f"unknown right-hand side {rhs!r}; choose one of {list(RHS_KINDS)}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise InvalidInputError(f"rtol must be in (0, 1), got {rtol}")
    coef_kinds = ("constant", "piecewise", "lognormal", "rough")
    if coefficient not in coef_kinds:
        raise InvalidInputError(f"unknown coefficient {coefficient!r}; choose one of {coef_kinds}")
    rngs = list(rngs)
    shape = (int(resolution),) * dim
    channels = 2 if coefficient == "constant" else 3
    x = np.zeros((len(rngs), channels, *shape))
    y = np.zeros((len(rngs), 1, *shape))
    show = progress and sys.stderr.isatty()
    for k, rng in enumerate(tqdm(rngs, desc="poisson", disable=not show)):
        rng = _as_rng(rng)
        flags = obstacle_flags(shape, geometry, rng, count=obstacles, boundary_air=boundary_air)
        a = None
        if coefficient != "constant":
            from neurosolve.data.darcy import darcy_coefficient

            a = darcy_coefficient(shape, coefficient, rng)
        system = poisson(shape, flags=flags, coefficient=a, boundary=boundary)
        b = RHS_KINDS[rhs](system, rng)
        u = reference_solve(system.A, b, rtol=rtol)
        x[k, 0] = system.grid.to_field(b)
        x[k, 1] = flags
        if a is not None:
            x[k, 2] = a
        y[k, 0] = system.grid.to_field(u)
    return x, y
