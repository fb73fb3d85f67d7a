"""The one input-normalizing step every solver starts with (scipy's ``make_system`` idea).

:func:`prepare_system` accepts every supported form of ``A`` (a
:class:`~neurosolve.data.systems.LinearSystem`, a scipy sparse matrix or ``LinearOperator``, a
dense array, a torch matrix, or a torch grid operator of this package), checks it once
(square, real, finite, symmetric with a positive diagonal), and hands every solver the same
:class:`PreparedSystem`: the float64 CSR matrix when there is one, a ``LinearOperator``
always, and the grid when ``A`` came with one. :func:`check_vector` does the same for
right-hand sides and initial guesses, on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from neurosolve.data import check_csr_structure
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native_matrix

__all__ = ["PreparedSystem", "check_spd", "check_vector", "prepare_system", "rhs_scales"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedSystem:
    """A checked operator, in the forms solvers need.

    Attributes
    ----------
    n : int
        Number of unknowns.
    operator : scipy.sparse.linalg.LinearOperator
        ``A`` as a float64 LinearOperator (always set).
    matrix : scipy.sparse.csr_matrix or None
        ``A`` as float64 CSR when it is an explicit matrix (sparse, dense or LinearSystem).
    grid : Grid or None
        The grid when ``A`` came with one (LinearSystem, StencilOperator).
    system : object or None
        The original LinearSystem, if one was given.
    torch_operator : object or None
        The original torch operator (e.g. a StencilOperator), if one was given.
    """

    n: int
    operator: spla.LinearOperator
    matrix: sp.csr_matrix | None = None
    grid: Any = None
    system: Any = None
    torch_operator: Any = None


def _is_linear_system(A: Any) -> bool:
    return hasattr(A, "A") and hasattr(A, "grid") and sp.issparse(getattr(A, "A", None))


def _is_torch_operator(A: Any) -> bool:
    return hasattr(A, "matvec") and hasattr(A, "num_unknowns") and hasattr(A, "apply_internal")


def check_spd(matrix: Any, name: str = "A") -> sp.csr_matrix:
    """:func:`neurosolve.data.check_spd_matrix` with the native one-pass symmetry test.

    The same checks and messages; the entries' statistics (finite, ``max|A - A^T|``, the
    diagonal) come from one pass over the matrix without forming ``A^T``
    (:func:`~neurosolve.solvers.native_matrix.csr_statistics`) where the native kernels run.

    Examples
    --------
    >>> check_spd(np.array([[2.0, -1.0], [-1.0, 2.0]])).nnz
    4
    """
    from neurosolve.data import check_spd_matrix

    return check_spd_matrix(matrix, name=name, statistics=native_matrix.csr_statistics)


def prepare_system(
    A: Any, *, check_symmetry: bool = True, name: str = "A", rng_seed: int = 0
) -> PreparedSystem:
    """Check an operator once and return it in every form a solver needs.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        The system matrix. Explicit matrices are converted to float64 CSR and checked for
        squareness, finite entries, symmetry and a positive diagonal (by
        :func:`neurosolve.data.check_spd_matrix`). A ``LinearOperator`` (or torch
        operator) cannot be inspected entrywise: it is probed with two random vectors,
        ``|x^T A y - y^T A x| <= 1e-8 ||A y|| ||x||`` (a cheap necessary test of symmetry).
    check_symmetry : bool
        Skip the symmetry / positive-diagonal checks (e.g. for a matrix already checked).
    name : str
        Name used in error messages.
    rng_seed : int
        Seed of the random probe vectors.

    Returns
    -------
    PreparedSystem

    Raises
    ------
    InvalidInputError
        Non-square, empty, complex, NaN/Inf, non-symmetric or non-positive diagonal.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> prepare_system(sp.diags([1.0, 2.0])).n
    2
    >>> prepare_system(np.array([[1.0, 2.0], [0.0, 1.0]]))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: A is not symmetric...
    """
    system = None
    grid = None
    torch_operator = None
    if _is_linear_system(A):
        system, grid = A, A.grid
        A = A.A
    elif _is_torch_operator(A):
        torch_operator, grid = A, getattr(A, "grid", None)

    if torch_operator is not None:
        n = int(torch_operator.num_unknowns)
        operator = _torch_as_linear_operator(torch_operator)
        if check_symmetry:  # products in float32 are only that accurate
            eps = float(_torch_eps(torch_operator.dtype))
            _probe_symmetry(operator, name, rng_seed, tol=max(1e-8, 100 * eps))
        return PreparedSystem(n, operator, None, grid, None, torch_operator)

    if isinstance(A, spla.LinearOperator):
        shape = A.shape
        _check_square(shape, name)
        if np.dtype(A.dtype).kind == "c":
            raise InvalidInputError(f"{name} is complex; only real SPD systems are supported")
        if check_symmetry:
            _probe_symmetry(A, name, rng_seed)
        return PreparedSystem(int(shape[0]), A, None, grid, system, None)

    if type(A).__module__.startswith("torch") and hasattr(A, "detach"):
        A = _torch_matrix_to_host(A)  # checked and stored on the host, like any matrix
    if sp.issparse(A) or isinstance(A, np.ndarray) or _is_array_like(A):
        matrix = A if sp.issparse(A) else np.asarray(A)
        _check_square(matrix.shape, name)
        kind = np.dtype(matrix.dtype).kind
        if kind == "c":
            raise InvalidInputError(f"{name} is complex; only real SPD systems are supported")
        if kind not in "fiub":
            raise InvalidInputError(f"{name} has dtype {matrix.dtype}; expected real numbers")
        if check_symmetry:  # structure first, then float64 CSR, finite, symmetric, diagonal
            matrix = check_spd(matrix, name)
        else:
            if sp.issparse(matrix):  # before any arithmetic: a bad index array can crash scipy
                matrix = check_csr_structure(matrix, name)  # canonical: sorted, no duplicates
            if not (isinstance(matrix, sp.csr_matrix) and matrix.dtype == np.float64):
                matrix = sp.csr_matrix(matrix, dtype=np.float64)  # a dense array's: canonical
            if not np.isfinite(matrix.data).all():
                bad = int((~np.isfinite(matrix.data)).sum())
                raise InvalidInputError(f"{name} contains NaN or Inf entries ({bad} of them)")
        return PreparedSystem(
            int(matrix.shape[0]), spla.aslinearoperator(matrix), matrix, grid, system, None
        )

    raise InvalidInputError(
        f"{name} must be a LinearSystem, a scipy sparse matrix, a LinearOperator, a dense "
        f"array or a StencilOperator; got {type(A).__name__}"
    )


def rhs_scales(maxabs: Any) -> np.ndarray:
    """Powers of two that bring right-hand sides of any magnitude into a safe range.

    Squares of entries beyond about 1e154 overflow and those below about 1e-162 underflow,
    so ``||b||`` and every inner product of an iteration do too. A solver divides each
    column of ``b`` by its scale (and ``x0``, ``atol`` alike), iterates on the scaled
    system and multiplies ``x`` back. Powers of two scale exactly: for a column whose
    largest entry lies in ``[2^-24, 2^24]`` the scale is 1, and any other column runs the
    same iteration bit for bit as one of unit size would.

    Parameters
    ----------
    maxabs : array_like
        ``max |b_j|`` per column (non-negative; zero for a zero column).

    Returns
    -------
    numpy.ndarray
        float64 scales ``s_j``, powers of two, with ``max |b_j| / s_j`` in ``[0.5, 1)``
        where a column needs scaling, else 1.

    Examples
    --------
    >>> m = np.array([1.0, 2.0**100, 0.0, 1e-300])
    >>> (m / rhs_scales(m)).tolist()
    [1.0, 0.5, 0.0, 0.669...]
    """
    m = np.asarray(maxabs, dtype=np.float64).reshape(-1)
    out = np.ones_like(m)
    wild = np.isfinite(m) & (m > 0) & ((m > 2.0**24) | (m < 2.0**-24))
    _, exponent = np.frexp(m[wild])
    out[wild] = np.ldexp(1.0, np.minimum(exponent, 1023))  # 2^1024 would be Inf
    return out


def _torch_matrix_to_host(A: Any) -> Any:
    """A torch matrix (dense, sparse CSR or COO, any device) as numpy / scipy."""
    import torch

    A = A.detach().cpu()
    if A.layout == torch.sparse_csr:
        shape = tuple(A.shape)
        return sp.csr_matrix(
            (A.values().numpy(), A.col_indices().numpy(), A.crow_indices().numpy()), shape=shape
        )
    if A.layout == torch.sparse_coo:
        A = A.coalesce()
        rows, cols = A.indices().numpy()
        return sp.csr_matrix((A.values().numpy(), (rows, cols)), shape=tuple(A.shape))
    if A.layout != torch.strided:
        raise InvalidInputError(f"unsupported torch matrix layout {A.layout}")
    return A.numpy()


def _is_array_like(A: Any) -> bool:
    return isinstance(A, (list, tuple)) or hasattr(A, "__array__")


def _check_square(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 2:
        raise InvalidInputError(f"{name} must be 2-dimensional, got shape {tuple(shape)}")
    if shape[0] != shape[1]:
        raise InvalidInputError(f"{name} must be square, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {tuple(shape)}): nothing to solve")


def _probe_symmetry(operator: spla.LinearOperator, name: str, seed: int, tol: float = 1e-8) -> None:
    rng = np.random.default_rng(seed)
    n = operator.shape[0]
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    Ax, Ay = np.asarray(operator @ x).ravel(), np.asarray(operator @ y).ravel()
    if not (np.isfinite(Ax).all() and np.isfinite(Ay).all()):
        raise InvalidInputError(f"{name} produced NaN/Inf when applied to a random vector")
    gap = abs(float(x @ Ay) - float(y @ Ax))
    scale = max(float(np.linalg.norm(Ay) * np.linalg.norm(x)), np.finfo(float).tiny)
    if gap > tol * scale:
        raise InvalidInputError(
            f"{name} is not symmetric: |x^T A y - y^T A x| / (||x|| ||A y||) = {gap / scale:.2e} "
            "for random x, y; CG-type methods need a symmetric positive definite operator"
        )


def _torch_eps(dtype: Any) -> float:
    """Machine epsilon of a torch floating dtype."""
    import torch

    return float(torch.finfo(dtype).eps)


def _torch_as_linear_operator(op: Any) -> spla.LinearOperator:
    import torch

    n = int(op.num_unknowns)

    def matmat(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=op.dtype, device=op.device)
        with torch.no_grad():
            return op.matvec(t).detach().cpu().numpy().astype(np.float64)

    return spla.LinearOperator((n, n), matvec=matmat, matmat=matmat, dtype=np.float64)


def check_vector(v: Any, n: int, *, name: str = "b", allow_batch: bool = True) -> np.ndarray | Any:
    """Check a right-hand side / initial guess: shape ``(n,)`` or ``(n, k)``, real, finite.

    Works on numpy arrays (returned as float64 arrays) and torch tensors (returned
    unchanged, on their device).

    Examples
    --------
    >>> check_vector([1.0, 2.0], 2)
    array([1., 2.])
    >>> check_vector(np.ones(3), 2)
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: b has shape (3,) but A has 2 rows...
    """
    is_torch = type(v).__module__.startswith("torch")
    if is_torch:
        import torch

        if v.is_complex():
            raise InvalidInputError(f"{name} is complex; only real systems are supported")
        if not v.is_floating_point():
            v = v.to(torch.float64)
        shape = tuple(v.shape)
    else:
        try:
            v = np.asarray(v)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{name} is not an array: {exc}") from exc
        if v.dtype.kind == "c":
            raise InvalidInputError(f"{name} is complex; only real systems are supported")
        if v.dtype.kind not in "fiub":
            raise InvalidInputError(f"{name} has dtype {v.dtype}; expected real numbers")
        v = v.astype(np.float64, copy=False)
        shape = v.shape
    ok_shape = (len(shape) == 1 or (allow_batch and len(shape) == 2)) and shape[0] == n
    if not ok_shape:
        want = f"({n},)" + (f" or ({n}, k)" if allow_batch else "")
        raise InvalidInputError(f"{name} has shape {shape} but A has {n} rows; expected {want}")
    if len(shape) == 2 and shape[1] == 0:
        raise InvalidInputError(f"{name} has no columns (shape {shape})")
    finite = bool(torch.isfinite(v).all()) if is_torch else bool(np.isfinite(v).all())
    if not finite:
        raise InvalidInputError(f"{name} contains NaN or Inf")
    return v
