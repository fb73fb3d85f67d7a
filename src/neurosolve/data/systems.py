"""Sparse SPD systems on structured grids: the container, Poisson assembly, reference solves.

This module turns a grid (shape, cell flags, boundary condition, coefficient) into a
:class:`LinearSystem` with :func:`poisson`, and solves such systems accurately with
:func:`reference_solve` (the ground truth of every dataset). Geometry builders live in
:mod:`neurosolve.data.geometry`, right-hand sides in :mod:`neurosolve.data.rhs`, file
input and output in :mod:`neurosolve.data.io`.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from neurosolve.data.grids import AIR, FLUID, SOLID, Grid, axis_slices, check_shape
from neurosolve.errors import InvalidInputError, NeurosolveError

__all__ = ["DIRECT_LIMIT", "LinearSystem", "poisson", "reference_solve"]

logger = logging.getLogger(__name__)

#: Largest 2D-like system :func:`reference_solve` factorizes directly by default.
DIRECT_LIMIT = 20_000


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
        lo, hi, first, last = axis_slices(ndim, d)
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
# Reference solutions
# ----------------------------------------------------------------------------------------
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

