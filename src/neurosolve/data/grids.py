"""Structured grids and cell-type flags, shared by every generator and solver.

Cells are flagged as in fluid pressure solves:

- ``FLUID`` cells are the unknowns,
- ``SOLID`` cells impose zero-flux (Neumann) faces on their fluid neighbours,
- ``AIR`` (empty) cells impose Dirichlet ``p = 0`` on their fluid neighbours.

The domain boundary behaves like a layer of cells outside the grid whose type is given by
the boundary condition (``"dirichlet"``: AIR, ``"neumann"``: SOLID). Arrays are indexed
``[i, j]`` / ``[i, j, k]`` with the last axis fastest, and unknowns are numbered in that
C (lexicographic) order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from neurosolve._util.limits import check_memory
from neurosolve.errors import InvalidInputError

__all__ = ["FLUID", "SOLID", "AIR", "Grid", "axis_slices", "check_shape"]

AIR: int = 0
FLUID: int = 1
SOLID: int = 2


def check_shape(shape, *, dims: tuple[int, ...] = (2, 3), minimum: int = 1) -> tuple[int, ...]:
    """Validate a grid shape and return it as a tuple of ints.

    Examples
    --------
    >>> check_shape((4, 5))
    (4, 5)
    >>> check_shape(8, dims=(2,))
    (8, 8)
    """
    if isinstance(shape, (int, np.integer)):
        if len(dims) != 1:
            raise InvalidInputError(
                f"a single integer shape is ambiguous; give one size per axis ({dims} axes)"
            )
        shape = (int(shape),) * dims[0]
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"grid shape must be a sequence of integers, got {shape!r}"
        ) from exc
    if len(shape) not in dims:
        raise InvalidInputError(
            f"grid shape must have {' or '.join(map(str, dims))} axes, got {shape}"
        )
    if any(n < minimum for n in shape):
        raise InvalidInputError(f"every grid size must be >= {minimum}, got {shape}")
    # flags, coefficients and a few float64 fields per cell: refuse before any is allocated
    cells = float(np.prod([float(n) for n in shape]))
    check_memory(cells * _BYTES_PER_CELL, f"a grid of shape {shape} ({cells:.3g} cells)")
    return shape


#: Bytes per cell of the smallest useful problem on a grid (flags, a matrix row, vectors).
_BYTES_PER_CELL = 64


def axis_slices(ndim: int, axis: int) -> tuple[tuple, tuple, tuple, tuple]:
    """Slices ``(lower, upper, first, last)`` of an ``ndim``-D array along ``axis``.

    ``lower`` / ``upper`` select the two cells of every interior face (``[0:-1]`` and
    ``[1:]``), ``first`` / ``last`` the first and the last slab (kept as axes of size 1).

    Examples
    --------
    >>> lo, hi, first, last = axis_slices(2, 1)
    >>> a = np.arange(6).reshape(2, 3)
    >>> a[lo].tolist(), a[hi].tolist(), a[last].tolist()
    ([[0, 1], [3, 4]], [[1, 2], [4, 5]], [[2], [5]])
    """
    lo = [slice(None)] * ndim
    hi = [slice(None)] * ndim
    first = [slice(None)] * ndim
    last = [slice(None)] * ndim
    lo[axis] = slice(0, -1)
    hi[axis] = slice(1, None)
    first[axis] = slice(0, 1)
    last[axis] = slice(-1, None)
    return tuple(lo), tuple(hi), tuple(first), tuple(last)


@dataclass
class Grid:
    """Metadata of a structured grid: shape, spacing and cell flags.

    Parameters
    ----------
    shape : tuple of int
        Cells per axis.
    spacing : tuple of float, optional
        Cell width per axis; default ``1 / n`` (unit cube).
    flags : numpy.ndarray of int8, optional
        Cell types (``FLUID``, ``SOLID``, ``AIR``); default all fluid.
    boundary : str
        ``"dirichlet"`` or ``"neumann"``: what lies outside the grid.

    Examples
    --------
    >>> g = Grid((4, 4))
    >>> g.num_unknowns, g.ndim
    (16, 2)
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    flags: np.ndarray | None = field(default=None, repr=False)
    boundary: str = "dirichlet"

    def __post_init__(self) -> None:
        self.shape = check_shape(self.shape)
        if self.spacing is None:
            self.spacing = tuple(1.0 / n for n in self.shape)
        self.spacing = tuple(float(h) for h in self.spacing)
        if len(self.spacing) != len(self.shape) or not all(
            np.isfinite(h) and h > 0 for h in self.spacing
        ):
            raise InvalidInputError(f"spacing must be positive, one per axis; got {self.spacing}")
        if self.flags is None:
            self.flags = np.full(self.shape, FLUID, dtype=np.int8)
        self.flags = np.asarray(self.flags)
        if self.flags.shape != self.shape:
            raise InvalidInputError(f"flags shape {self.flags.shape} != grid shape {self.shape}")
        if not np.isin(self.flags, (AIR, FLUID, SOLID)).all():
            raise InvalidInputError("flags may only hold AIR (0), FLUID (1) and SOLID (2)")
        self.flags = self.flags.astype(np.int8, copy=False)
        if self.boundary not in ("dirichlet", "neumann"):
            raise InvalidInputError(
                f"boundary must be 'dirichlet' or 'neumann', got {self.boundary!r}"
            )

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.shape)

    @property
    def num_cells(self) -> int:
        """Cells in the grid (fluid or not)."""
        return int(np.prod(self.shape))

    @property
    def fluid(self) -> np.ndarray:
        """Boolean mask of fluid cells."""
        return self.flags == FLUID

    @property
    def num_unknowns(self) -> int:
        """Number of fluid cells."""
        return int(self.fluid.sum())

    def to_vector(self, field: np.ndarray) -> np.ndarray:
        """Gather the fluid cells of ``field`` (shape ``(..., *shape)``) into unknowns.

        Examples
        --------
        >>> g = Grid((2, 2), flags=np.array([[1, 2], [1, 1]]))
        >>> g.to_vector(np.arange(4.0).reshape(2, 2))
        array([0., 2., 3.])
        """
        field = np.asarray(field)
        if field.shape[field.ndim - self.ndim :] != self.shape:
            raise InvalidInputError(f"field shape {field.shape} does not end with {self.shape}")
        return field[..., self.fluid]

    def to_field(self, vector: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter unknowns (shape ``(..., num_unknowns)``) onto the grid; other cells get ``fill``.

        Examples
        --------
        >>> g = Grid((2, 2), flags=np.array([[1, 2], [1, 1]]))
        >>> g.to_field(np.array([5.0, 6.0, 7.0]))
        array([[5., 0.],
               [6., 7.]])
        """
        vector = np.asarray(vector)
        if vector.shape[-1] != self.num_unknowns:
            raise InvalidInputError(
                f"vector has {vector.shape[-1]} entries, the grid has {self.num_unknowns} unknowns"
            )
        out = np.full(vector.shape[:-1] + self.shape, fill, dtype=vector.dtype)
        out[..., self.fluid] = vector
        return out
