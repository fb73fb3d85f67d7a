"""Torch operators for the Krylov solvers: a matrix-free grid stencil and torch sparse CSR.

Both classes apply a fixed sparse SPD matrix ``A`` on CPU or CUDA, in float32 or float64,
to one vector ``(n,)`` or a block ``(n, k)`` of unknowns (:meth:`matvec`). They share a
small protocol the solvers in :mod:`neurosolve.solvers.krylov` use:

- ``num_unknowns``, ``device``, ``dtype``;
- ``to_internal(v)`` / ``from_internal(v)`` / ``apply_internal(v)``: a vector layout in which
  the operator is cheapest (the stencil works on full grid fields, with zeros outside the
  fluid, so a solver does not gather and scatter the unknowns on every product);
- ``diagonal_internal()``: the diagonal in that layout (for Jacobi).

:class:`StencilOperator` stores the diagonal and the ``2 * ndim`` neighbour coefficients of a
5-point (2D) or 7-point (3D) matrix as dense arrays over the grid, extracted from the CSR
matrix itself, so it reproduces *any* such matrix (variable coefficients, obstacles, matrices
exported by other codes) exactly, and refuses matrices with entries off that pattern.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from neurosolve.data.grids import Grid
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError

__all__ = ["SparseOperator", "StencilOperator"]


def _as_device(device: Any) -> torch.device:
    return resolve_device(device)


def _check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


class StencilOperator(nn.Module):
    """Matrix-free 5/7-point operator on a structured grid, equal to a given CSR matrix.

    Parameters
    ----------
    grid : Grid
        The grid; unknowns are its FLUID cells in C order.
    diagonal : torch.Tensor
        ``(*shape)`` diagonal of ``A`` at each cell (zero outside the fluid).
    neighbours : torch.Tensor
        ``(2 * ndim, *shape)``: entry ``2 * a + s`` at cell ``c`` is the coefficient of
        ``A[c, c - e_a]`` (``s = 0``) or ``A[c, c + e_a]`` (``s = 1``); zero where the
        neighbour is outside the grid or not fluid.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> g = Grid((3, 3))
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(3, 3))
    >>> A = (sp.kron(T, sp.eye(3)) + sp.kron(sp.eye(3), T)).tocsr()
    >>> op = StencilOperator.from_matrix(A, g)
    >>> x = torch.arange(9.0, dtype=torch.float64)
    >>> bool(torch.allclose(op.matvec(x), torch.from_numpy(A @ x.numpy())))
    True
    """

    def __init__(self, grid: Grid, diagonal: torch.Tensor, neighbours: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(grid, Grid):
            raise InvalidInputError(f"grid must be a neurosolve Grid, got {type(grid).__name__}")
        shape = tuple(grid.shape)
        if tuple(diagonal.shape) != shape or tuple(neighbours.shape) != (2 * grid.ndim, *shape):
            raise InvalidInputError(
                f"stencil arrays have shapes {tuple(diagonal.shape)}, "
                f"{tuple(neighbours.shape)}; expected {shape} and {(2 * grid.ndim, *shape)}"
            )
        self.grid = grid
        self.register_buffer("diagonal", diagonal)
        self.register_buffer("neighbours", neighbours)
        fluid = torch.from_numpy(np.ascontiguousarray(grid.fluid))
        self.register_buffer("fluid_mask", fluid.to(diagonal.device))
        cells = torch.from_numpy(np.flatnonzero(grid.fluid.ravel()))
        self.register_buffer("cells", cells.to(diagonal.device))
        self._all_fluid = bool(grid.fluid.all())
        self._views: dict = {}

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_system(
        cls, system: Any, device: Any = None, dtype: torch.dtype = torch.float64
    ) -> StencilOperator:
        """Build from a :class:`~neurosolve.data.systems.LinearSystem` (its ``A`` and ``grid``).

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> import scipy.sparse as sp
        >>> system = SimpleNamespace(A=sp.diags([4.0, 4.0, 4.0, 4.0]).tocsr(), grid=Grid((2, 2)))
        >>> StencilOperator.from_system(system).grid.shape
        (2, 2)
        """
        grid = getattr(system, "grid", None)
        if grid is None:
            raise InvalidInputError(
                "a StencilOperator needs the grid of the system; this system has none "
                "(load it with grid=... or use the sparse CSR operator)"
            )
        return cls.from_matrix(system.A, grid, device=device, dtype=dtype)

    @classmethod
    def from_matrix(
        cls, A: Any, grid: Grid, device: Any = None, dtype: torch.dtype = torch.float64
    ) -> StencilOperator:
        """Extract the stencil of a CSR matrix over the FLUID cells of ``grid``.

        Raises
        ------
        InvalidInputError
            If ``A`` does not have one row per fluid cell, or has an entry that is not the
            diagonal or a face neighbour (e.g. a 9-point matrix or a wrong grid).

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> StencilOperator.from_matrix(sp.eye(5).tocsr(), Grid((2, 2)))
        Traceback (most recent call last):
        ...
        neurosolve.errors.InvalidInputError: matrix is 5x5 but the grid has 4 fluid cells...
        """
        dtype = _check_float_dtype(dtype)
        if not sp.issparse(A):
            raise InvalidInputError(f"A must be a scipy sparse matrix, got {type(A).__name__}")
        n = grid.num_unknowns
        if A.shape != (n, n):
            raise InvalidInputError(
                f"matrix is {A.shape[0]}x{A.shape[1]} but the grid has {n} fluid cells "
                f"(shape {grid.shape}); the grid does not match this matrix"
            )
        csr = sp.csr_matrix(A, dtype=np.float64)
        csr.sum_duplicates()
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(csr.indptr))
        keep = csr.data != 0
        rows, cols, vals = rows[keep], csr.indices[keep].astype(np.int64), csr.data[keep]
        if not np.isfinite(vals).all():
            raise InvalidInputError("matrix has NaN/Inf entries")
        # Work with linear cell indices: a face neighbour along axis a differs by
        # +-stride_a, and must not wrap around (checked on the coordinate along a only).
        cells = np.flatnonzero(grid.fluid.ravel())
        rcell = cells[rows]
        delta = cells[cols] - rcell
        slot = np.full(rows.size, -1, dtype=np.int64)
        is_diag = delta == 0
        strides = [int(np.prod(grid.shape[a + 1 :])) for a in range(grid.ndim)]
        for a, (stride, size) in enumerate(zip(strides, grid.shape, strict=True)):
            for sign in (-1, 1):
                m = np.flatnonzero((delta == sign * stride) & (slot < 0))
                coord = (rcell[m] // stride) % size + sign
                ok = m[(coord >= 0) & (coord < size)]
                slot[ok] = 2 * a + (sign > 0)
        bad = ~is_diag & (slot < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rc = tuple(int(c) for c in np.unravel_index(rcell[i], grid.shape))
            cc = tuple(int(c) for c in np.unravel_index(rcell[i] + delta[i], grid.shape))
            raise InvalidInputError(
                f"matrix has {int(bad.sum())} entries off the {2 * grid.ndim + 1}-point stencil "
                f"of grid {grid.shape}, e.g. A[{rows[i]}, {cols[i]}] couples cells {rc} and {cc}"
            )
        diagonal = np.zeros(grid.num_cells)
        diagonal[rcell[is_diag]] = vals[is_diag]
        neighbours = np.zeros((2 * grid.ndim, grid.num_cells))
        face = ~is_diag
        neighbours[slot[face], rcell[face]] = vals[face]
        diagonal = diagonal.reshape(grid.shape)
        neighbours = neighbours.reshape(2 * grid.ndim, *grid.shape)
        device = _as_device(device)
        return cls(
            grid,
            torch.as_tensor(diagonal, dtype=dtype, device=device),
            torch.as_tensor(neighbours, dtype=dtype, device=device),
        )

    # ----------------------------------------------------------------------------- protocol
    @property
    def num_unknowns(self) -> int:
        """Number of unknowns (fluid cells)."""
        return int(self.cells.numel())

    @property
    def device(self) -> torch.device:
        """Device of the coefficients."""
        return self.diagonal.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the coefficients."""
        return self.diagonal.dtype

    def _stencil(self, u: torch.Tensor, first: int, trailing: int) -> torch.Tensor:
        """Apply on fields whose spatial axes are ``first .. first+ndim-1``.

        ``trailing`` extra axes follow the spatial ones (batch-last layout); coefficients are
        broadcast over leading and trailing axes. Every neighbour term is an in-place
        ``addcmul`` on shifted views: no padded copy of ``u`` is made.
        """
        diagonal, terms = self._coefficient_views(trailing)
        out = u * diagonal
        for a, lo, hi in terms:
            ax = first + a
            size = u.shape[ax]
            # A[c, c - e_a] u[c - e_a]: cells 1.. take values from cells 0..
            out.narrow(ax, 1, size - 1).addcmul_(lo, u.narrow(ax, 0, size - 1))
            out.narrow(ax, 0, size - 1).addcmul_(hi, u.narrow(ax, 1, size - 1))
        return out

    def _coefficient_views(self, trailing: int) -> tuple[torch.Tensor, list]:
        """Broadcastable, pre-shifted coefficient views (cached; rebuilt after ``.to()``)."""
        key = (trailing, self.diagonal.data_ptr(), self.neighbours.data_ptr())
        cached = self._views.get(key)
        if cached is None:
            view = (*self.diagonal.shape, *([1] * trailing))
            terms = []
            for a in range(self.grid.ndim):
                size = self.diagonal.shape[a]
                if size < 2:
                    continue
                lo = self.neighbours[2 * a].view(view).narrow(a, 1, size - 1)
                hi = self.neighbours[2 * a + 1].view(view).narrow(a, 0, size - 1)
                terms.append((a, lo, hi))
            cached = (self.diagonal.view(view), terms)
            self._views = {
                key: cached,
                **{k: v for k, v in self._views.items() if k[1:] == key[1:]},
            }
        return cached

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Apply ``A`` to full fields ``(B, *shape)`` or ``(B, 1, *shape)``.

        Values outside the fluid are ignored (they must be finite); the output is zero there.
        """
        shape = tuple(self.grid.shape)
        if tuple(u.shape[-len(shape) :]) != shape or u.dim() not in (
            len(shape) + 1,
            len(shape) + 2,
        ):
            raise InvalidInputError(
                f"expected fields of shape (B, *{shape}) or (B, 1, *{shape}), got {tuple(u.shape)}"
            )
        if u.dim() == len(shape) + 2 and u.shape[1] != 1:
            raise InvalidInputError(f"expected one channel, got {u.shape[1]}")
        first = u.dim() - len(shape)
        return self._stencil(u.to(self.dtype), first, 0)

    def to_internal(self, v: torch.Tensor) -> torch.Tensor:
        """Unknowns ``(n, k)`` -> flattened full fields ``(num_cells, k)``, zero off-fluid."""
        if self._all_fluid:
            return v
        out = v.new_zeros((self.grid.num_cells, *v.shape[1:]))
        out[self.cells] = v
        return out

    def from_internal(self, v: torch.Tensor) -> torch.Tensor:
        """Flattened full fields ``(num_cells, k)`` -> unknowns ``(n, k)``."""
        return v if self._all_fluid else v[self.cells]

    def apply_internal(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` in the internal (full-field, batch-last) layout."""
        shape = tuple(self.grid.shape)
        u = v.reshape(*shape, *v.shape[1:])
        return self._stencil(u, 0, v.dim() - 1).reshape(v.shape)

    def diagonal_internal(self) -> torch.Tensor:
        """The diagonal in the internal layout, ``(num_cells,)`` (zero off-fluid)."""
        return self.diagonal.reshape(-1)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for unknown vectors ``(n,)`` or blocks ``(n, k)``.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> op = StencilOperator.from_matrix(sp.diags([2.0, 2.0]).tocsr(), Grid((1, 2)))
        >>> op.matvec(torch.ones(2, dtype=torch.float64))
        tensor([2., 2.], dtype=torch.float64)
        """
        if x.shape[0] != self.num_unknowns or x.dim() not in (1, 2):
            raise InvalidInputError(
                f"expected (n,) or (n, k) with n={self.num_unknowns}, got {tuple(x.shape)}"
            )
        x = x.to(device=self.device, dtype=self.dtype)
        return self.from_internal(self.apply_internal(self.to_internal(x)))

    def extra_repr(self) -> str:
        """Summary shown by ``repr``."""
        return (
            f"shape={tuple(self.grid.shape)}, unknowns={self.num_unknowns}, "
            f"dtype={self.dtype}, device={self.device}"
        )


class SparseOperator:
    """A scipy sparse matrix as a torch sparse CSR tensor (CPU or CUDA, float32/float64).

    The grid-free fallback of the torch solvers: any SPD matrix, no structure assumed.

    Parameters
    ----------
    A : scipy sparse matrix
        Square matrix (converted to CSR).
    device, dtype
        Where and in which precision to apply it.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> op = SparseOperator(sp.diags([1.0, 2.0, 3.0]))
    >>> op.matvec(torch.ones(3, dtype=torch.float64))
    tensor([1., 2., 3.], dtype=torch.float64)
    """

    grid = None

    def __init__(self, A: Any, device: Any = None, dtype: torch.dtype = torch.float64) -> None:
        self.dtype = _check_float_dtype(dtype)
        self.device = _as_device(device)
        if not sp.issparse(A) or A.shape[0] != A.shape[1]:
            raise InvalidInputError("SparseOperator needs a square scipy sparse matrix")
        csr = sp.csr_matrix(A, dtype=np.float64)
        csr.sum_duplicates()
        self.shape = csr.shape
        with warnings.catch_warnings():  # "sparse CSR support is in beta" is not for users
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = torch.sparse_csr_tensor(
                torch.from_numpy(csr.indptr.astype(np.int64)),
                torch.from_numpy(csr.indices.astype(np.int64)),
                torch.from_numpy(csr.data),
                size=csr.shape,
                check_invariants=False,
            ).to(device=self.device, dtype=self.dtype)
        self._diagonal = torch.as_tensor(csr.diagonal(), dtype=self.dtype, device=self.device)

    @property
    def num_unknowns(self) -> int:
        """Number of unknowns."""
        return int(self.shape[0])

    def to_internal(self, v: torch.Tensor) -> torch.Tensor:
        """Identity: the internal layout is the unknown vector."""
        return v

    def from_internal(self, v: torch.Tensor) -> torch.Tensor:
        """Identity: the internal layout is the unknown vector."""
        return v

    def apply_internal(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for ``(n,)`` or ``(n, k)``."""
        return self.matrix @ v

    def diagonal_internal(self) -> torch.Tensor:
        """The diagonal of ``A``."""
        return self._diagonal

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``(n,)`` or ``(n, k)``."""
        if x.shape[0] != self.num_unknowns or x.dim() not in (1, 2):
            raise InvalidInputError(
                f"expected (n,) or (n, k) with n={self.num_unknowns}, got {tuple(x.shape)}"
            )
        return self.matrix @ x.to(device=self.device, dtype=self.dtype)

    def __repr__(self) -> str:
        nnz = int(self.matrix._nnz())
        return (
            f"SparseOperator(n={self.num_unknowns}, nnz={nnz}, dtype={self.dtype}, "
            f"device={self.device})"
        )
