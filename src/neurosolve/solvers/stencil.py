"""The one 5/7-point stencil of the package: its coefficient layout, its kernel, its CSR reader.

A 5-point (2D) or 7-point (3D) matrix on a structured grid is stored as two dense arrays over
the grid: the ``diagonal`` and the ``2 * ndim`` ``couplings``, where channel ``2 a`` holds
``A[c, c - e_a]`` and channel ``2 a + 1`` holds ``A[c, c + e_a]`` (zero where that neighbour
is outside the grid or not an unknown). Batched, as every field in the package, the arrays
are ``(G, 1, *grid)`` and ``(G, 2 ndim, *grid)`` for ``G`` matrices, and fields are
``(G, K, *grid)``. :func:`stencil_from_csr` reads the arrays from a CSR matrix (exactly, and
refusing entries off the pattern), :func:`apply_stencil` and :func:`stencil_residual` are the
one kernel (used by :class:`StencilOperator`, the MGPC hierarchy and DCDM's loss), and
:class:`StencilOperator` / :class:`SparseOperator` are the torch operators of the Krylov
solvers.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from neurosolve._util.validate import float_dtype
from neurosolve.data.grids import Grid
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native
from neurosolve.solvers.compiled import CompiledKernel
from neurosolve.solvers.stencil_read import check_stencil_spd, stencil_from_csr

__all__ = [
    "SparseOperator",
    "StencilOperator",
    "apply_stencil",
    "exactly_symmetric",
    "smoothing_step",
    "stencil_from_csr",
    "stencil_residual",
]


# ---------------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------------
def apply_stencil(
    diagonal: torch.Tensor, couplings: torch.Tensor, u: torch.Tensor, *, symmetric: bool = False
) -> torch.Tensor:
    """``A u`` for batches of 5/7-point stencils and fields, in one fused pass.

    Compiled (see :mod:`neurosolve.solvers.compiled`) for large fields, eager otherwise;
    both forms add the same terms in the same order.

    Parameters
    ----------
    diagonal : torch.Tensor, shape ``(G, 1, *grid)``
        Diagonal of ``A`` (zero outside the unknowns).
    couplings : torch.Tensor, shape ``(G, 2 d, *grid)``
        Channel ``2 a`` couples a cell to its neighbour at ``-e_a``, ``2 a + 1`` to ``+e_a``.
    u : torch.Tensor, shape ``(G, K, *grid)``
        ``K`` fields per matrix (``d = u.dim() - 2`` grid axes); ``G`` broadcasts.
    symmetric : bool
        The caller's promise that the couplings are exactly symmetric
        (:func:`exactly_symmetric`): the native CPU loop then reads half of them, with the
        same result. Wrong for a non-symmetric stencil; every other form ignores it.

    Returns
    -------
    torch.Tensor, shape ``(G, K, *grid)``

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> c = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> apply_stencil(d, c, torch.ones(1, 1, 3))
    tensor([[[1., 0., 1.]]])
    """
    _check_couplings(couplings, u)
    out = _native(PRODUCT, native.PRODUCT, diagonal, couplings, u, symmetric=symmetric)
    return PRODUCT(diagonal, couplings, _pad(u)) if out is None else out


def stencil_residual(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor,
    *,
    symmetric: bool = False,
) -> torch.Tensor:
    """``f - A u`` for the stencils of :func:`apply_stencil`, in one fused pass.

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> c = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> stencil_residual(d, c, torch.ones(1, 1, 3), torch.ones(1, 1, 3))
    tensor([[[0., 1., 0.]]])
    """
    _check_couplings(couplings, u)
    out = _native(RESIDUAL, native.RESIDUAL, diagonal, couplings, u, f, symmetric=symmetric)
    return RESIDUAL(diagonal, couplings, _pad(u), f) if out is None else out


def smoothing_step(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    weights: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor,
    *,
    symmetric: bool = False,
) -> torch.Tensor:
    """One weighted Jacobi-type step ``u + w (f - A u)``, residual and update in one pass.

    ``weights`` (``(G, 1, *grid)``, per cell) scale the residual; the stencil and fields are
    those of :func:`apply_stencil`.

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> c = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> smoothing_step(d, c, torch.full((1, 1, 3), 0.5), torch.zeros(1, 1, 3), torch.ones(1, 1, 3))
    tensor([[[0.5000, 0.5000, 0.5000]]])
    """
    _check_couplings(couplings, u)
    out = _native(
        SMOOTHING_STEP, native.SMOOTHING, diagonal, couplings, u, f, weights, symmetric=symmetric
    )
    return SMOOTHING_STEP(diagonal, couplings, weights, _pad(u), f) if out is None else out


def _native(
    kernel: CompiledKernel,
    mode: int,
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    *,
    symmetric: bool = False,
) -> torch.Tensor | None:
    """The CPU pass of :mod:`~neurosolve.solvers.native`, unless ``kernel`` is compiled.

    ``None`` sends the call to ``kernel`` (inductor when compiling is on and the call is
    large, else the eager form): on a GPU, under autograd, inside a compiled trace, for
    unusual shapes, or where numba is absent.
    """
    if torch.compiler.is_compiling() or kernel.wants_compiled((diagonal, couplings, u, f)):
        return None
    return native.stencil_pass(mode, diagonal, couplings, u, f, weights, symmetric)


def exactly_symmetric(couplings: torch.Tensor) -> bool:
    """Whether every coupling to ``+e_a`` equals the ``+e_a`` neighbour's coupling back.

    ``couplings[:, 2 a + 1]`` at cell ``c`` against ``couplings[:, 2 a]`` at ``c + e_a``,
    bit for bit, inside the grid: the symmetric matrices of the stencil layout (a CSR
    matrix read by :func:`stencil_from_csr` whose entries are symmetric, every Galerkin
    coarse level). Such stencils may be applied with ``symmetric=True``.

    Examples
    --------
    >>> c = torch.tensor([[[0.0, -1.0, -2.0], [-1.0, -2.0, 0.0]]])
    >>> exactly_symmetric(c), exactly_symmetric(c * torch.tensor([1.0, 2.0]).view(1, 2, 1))
    (True, False)
    """
    ndim = couplings.dim() - 2
    for a in range(ndim):
        n = couplings.shape[2 + a]
        if n < 2:
            continue
        up = couplings[:, 2 * a + 1].narrow(1 + a, 0, n - 1)
        back = couplings[:, 2 * a].narrow(1 + a, 1, n - 1)
        if not torch.equal(up, back):
            return False
    return True


def _check_couplings(couplings: torch.Tensor, u: torch.Tensor) -> None:
    """Refuse couplings whose channel count does not fit the fields' dimension."""
    ndim = u.dim() - 2
    if couplings.dim() != u.dim() or couplings.shape[1] != 2 * ndim:
        raise InvalidInputError(
            f"couplings of shape {tuple(couplings.shape)} do not fit {ndim}D fields "
            f"{tuple(u.shape)}: expected {2 * ndim} channels"
        )


def _add_couplings(
    out: torch.Tensor, couplings: torch.Tensor, padded: torch.Tensor, value: float
) -> torch.Tensor:
    """``out += value * (off-diagonal part of A) u`` in place, ``u`` given zero-padded.

    ``padded`` is ``u`` with one zero cell on every side of every grid axis (:func:`_pad`),
    and each coupling is one fused multiply-add (``addcmul_``) of a full-size coefficient
    array with a shifted full-size view of it, so every term is the same elementwise loop;
    compiled, all terms are one loop of plain shifted loads (padding inside the compiled
    code would be a masked load per neighbour, measured 1.5-2x slower). Per cell the terms
    are added in the order diagonal, then ``-e_0, +e_0, -e_1, ...``; a coupling to a cell
    outside the grid multiplies the zero padding.
    """
    shape = couplings.shape[2:]
    ndim = len(shape)
    inner = [slice(1, 1 + n) for n in shape]
    for a in range(ndim):
        for side, start in ((0, 0), (1, 2)):  # -e_a reads padded cell c, +e_a cell c + 2
            index = list(inner)
            index[a] = slice(start, start + shape[a])
            view = padded[(slice(None), slice(None), *index)]
            channel = 2 * a + side
            out.addcmul_(couplings[:, channel : channel + 1], view, value=value)
    return out


def _pad(u: torch.Tensor) -> torch.Tensor:
    """``u`` with one zero cell on both sides of every grid axis (axes 2 on)."""
    return F.pad(u, (1, 1) * (u.dim() - 2))


def _interior(padded: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return padded[(slice(None), slice(None), *(slice(1, 1 + n) for n in shape))]


def _product(diagonal: torch.Tensor, couplings: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    u = _interior(padded, couplings.shape[2:])
    return _add_couplings(diagonal * u, couplings, padded, 1.0)


def _residual(
    diagonal: torch.Tensor, couplings: torch.Tensor, padded: torch.Tensor, f: torch.Tensor
) -> torch.Tensor:
    u = _interior(padded, couplings.shape[2:])
    return _add_couplings(torch.addcmul(f, diagonal, u, value=-1.0), couplings, padded, -1.0)


def _smoothing_step(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    weights: torch.Tensor,
    padded: torch.Tensor,
    f: torch.Tensor,
) -> torch.Tensor:
    u = _interior(padded, couplings.shape[2:])
    return torch.addcmul(u, weights, _residual(diagonal, couplings, padded, f))


# The kernels: compiled when the largest argument (the couplings, 2 d values per cell) has
# at least MIN_COMPILED_NUMEL elements (a 28^3 or 182^2 grid). Below, the eager form is as
# fast (its arrays sit in cache and the compiled call's fixed cost, some 30 us, is not
# paid back; benchmarks/stencil_kernel.py) and tests and small solves never wait for a
# compiler; above, the fused pass saves the eager form's passes over memory.
MIN_COMPILED_NUMEL = 2**17
_SIZED = {"min_numel": MIN_COMPILED_NUMEL, "size_arg": 1}  # sized by the couplings
PRODUCT = CompiledKernel(_product, name="stencil product", **_SIZED)
RESIDUAL = CompiledKernel(_residual, name="stencil residual", **_SIZED)
SMOOTHING_STEP = CompiledKernel(_smoothing_step, name="smoothing step", **_SIZED)


# ---------------------------------------------------------------------------------------------
# Torch operators
# ---------------------------------------------------------------------------------------------
class StencilOperator(nn.Module):
    """Matrix-free 5/7-point operator on a structured grid, equal to a given CSR matrix.

    Parameters
    ----------
    grid : Grid
        The grid; unknowns are its FLUID cells in C order.
    diagonal : torch.Tensor
        ``(*shape)`` diagonal of ``A`` at each cell (zero outside the fluid).
    neighbours : torch.Tensor
        ``(2 * ndim, *shape)``: the couplings of :func:`apply_stencil` (entry ``2 * a + s``
        at cell ``c`` is ``A[c, c - e_a]`` for ``s = 0``, ``A[c, c + e_a]`` for ``s = 1``;
        zero where the neighbour is outside the grid or not fluid).

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

    def __init__(
        self,
        grid: Grid,
        diagonal: torch.Tensor,
        neighbours: torch.Tensor,
        symmetric: bool | None = None,
    ) -> None:
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
        # an exactly symmetric matrix (every SPD system as assembled): the native product
        # reads half of the couplings (one comparison pass here, unless the caller knows)
        self._symmetric = exactly_symmetric(neighbours[None]) if symmetric is None else symmetric

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
        cls,
        A: Any,
        grid: Grid,
        device: Any = None,
        dtype: torch.dtype = torch.float64,
        *,
        check: str | None = None,
    ) -> StencilOperator:
        """Extract the stencil of a CSR matrix over the FLUID cells of ``grid``.

        ``check``: the matrix's name, to check it as an SPD system matrix on the stencil
        read (finite, symmetric within 1e-10 of ``max |A|``, a positive diagonal: the checks
        and messages of :func:`~neurosolve.data.check_spd_matrix`, in one pass over the
        stencil instead of the CSR entries; the stencil holds every entry); ``None``: the
        caller checked it.

        Raises
        ------
        InvalidInputError
            If ``A`` does not have one row per fluid cell, or has an entry that is not the
            diagonal or a face neighbour (e.g. a 9-point matrix or a wrong grid); with
            ``check``, if it is not symmetric or its diagonal is not positive.

        Examples
        --------
        >>> import scipy.sparse as sp
        >>> StencilOperator.from_matrix(sp.eye(5).tocsr(), Grid((2, 2)))
        Traceback (most recent call last):
        ...
        neurosolve.errors.InvalidInputError: matrix is 5x5 but the grid has 4 fluid cells...
        """
        dtype = float_dtype(dtype)
        diagonal, couplings = stencil_from_csr(A, grid, check_finite=check is None)
        device = resolve_device(device)
        symmetric = None
        if check is not None:
            symmetric = check_stencil_spd(diagonal, couplings, A, grid, check)
        return cls(
            grid,
            torch.as_tensor(diagonal, dtype=dtype, device=device),
            torch.as_tensor(couplings, dtype=dtype, device=device),
            symmetric=symmetric if dtype == torch.float64 else None,  # rounding may differ
        )

    # ----------------------------------------------------------------------------- protocol
    @property
    def symmetric(self) -> bool:
        """Whether the couplings are exactly symmetric (:func:`exactly_symmetric`, at build).

        Examples
        --------
        >>> from neurosolve.data import poisson
        >>> StencilOperator.from_system(poisson((4, 4))).symmetric
        True
        """
        return self._symmetric

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

    def _product(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for fields ``(B, 1, *shape)``, by :func:`apply_stencil`."""
        d, c = self.diagonal[None, None], self.neighbours[None]
        return apply_stencil(d, c, u, symmetric=self._symmetric)

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
        u = u.to(self.dtype)
        if u.dim() == len(shape) + 1:
            return self._product(u[:, None])[:, 0]
        return self._product(u)

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
        cells, k = v.shape[0], (v.shape[1] if v.dim() == 2 else 1)
        u = v.reshape(cells, k).t().reshape(k, 1, *self.grid.shape)  # a view for k = 1
        out = self._product(u).reshape(k, cells).t()
        return out.contiguous().reshape(v.shape)

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

    The grid-free fallback of the torch solvers: any SPD matrix, no structure assumed. The
    indices are stored as int32 when the matrix allows (half the index traffic of int64),
    and one column is multiplied as a vector (``mv``): on one CPU thread that product is
    within 10% of scipy's CSR product at 64^3 and 128^3, where the int64 ``(n, 1)`` product
    took 2x and 4x scipy's time (``benchmarks/cg_per_iteration.py``), and it runs on
    torch's threads (scipy's is serial).

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
        self.dtype = float_dtype(dtype)
        self.device = resolve_device(device)
        if not sp.issparse(A) or A.shape[0] != A.shape[1]:
            raise InvalidInputError("SparseOperator needs a square scipy sparse matrix")
        csr = sp.csr_matrix(A, dtype=np.float64)
        csr.sum_duplicates()
        self.shape = csr.shape
        index = np.int32 if max(csr.nnz, csr.shape[0]) < np.iinfo(np.int32).max else np.int64
        with warnings.catch_warnings():  # "sparse CSR support is in beta" is not for users
            warnings.simplefilter("ignore", UserWarning)
            self.matrix = torch.sparse_csr_tensor(
                torch.from_numpy(csr.indptr.astype(index)),
                torch.from_numpy(csr.indices.astype(index)),
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
        if v.dim() == 2 and v.shape[1] == 1:  # one column: the vector kernel
            return torch.mv(self.matrix, v[:, 0]).unsqueeze(1)
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
        return self.apply_internal(x.to(device=self.device, dtype=self.dtype))

    def __repr__(self) -> str:
        nnz = int(self.matrix._nnz())
        return (
            f"SparseOperator(n={self.num_unknowns}, nnz={nnz}, dtype={self.dtype}, "
            f"device={self.device})"
        )
