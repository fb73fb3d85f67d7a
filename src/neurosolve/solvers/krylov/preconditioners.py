"""Preconditioners of the torch Krylov methods, from whatever the user passes as ``M``.

:func:`make_preconditioner` turns ``None``, ``"jacobi"``, a matrix (scipy, numpy or torch),
a scipy ``LinearOperator``, an object with ``.aspreconditioner()`` (a pyamg hierarchy, a
solver of this package) or any callable (a torch module) into one function
``apply(v, single) -> M v`` on the operator's internal layout, with a label for reports.

A scipy ``LinearOperator`` is applied as scipy applies it: ``matvec`` on a 1-D vector for one
right-hand side, and for a block ``matmat`` only where the operator's class defines a block
product of its own (a matrix wrapped by ``aslinearoperator``), else ``matvec`` column by
column (see :func:`apply_linear_operator`). A user's ``matvec`` is therefore never handed an
``(n, 1)`` column, on which ``lambda v: v / d`` would broadcast to ``(n, n)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from neurosolve.errors import InvalidInputError
from neurosolve.solvers.stencil import SparseOperator

__all__ = ["apply_linear_operator", "make_preconditioner"]

# The class scipy builds for LinearOperator(shape, matvec=..., ...). Whether such an operator
# was given a matmat is not public, so its blocks are applied column by column.
_FROM_FUNCTIONS = type(spla.LinearOperator((1, 1), matvec=lambda v: v, dtype=np.float64))


def _has_block_product(M: spla.LinearOperator) -> bool:
    """Whether ``M``'s class computes ``M @ X`` for a block itself (not column by column)."""
    cls = type(M)
    return cls is not _FROM_FUNCTIONS and cls._matmat is not spla.LinearOperator._matmat


def apply_linear_operator(M: spla.LinearOperator, X: np.ndarray) -> np.ndarray:
    """``M @ X`` for an ``(n,)`` vector or an ``(n, k)`` block, calling ``M`` as scipy does.

    One vector (or a block of one column) goes to ``M.matvec`` as a 1-D array; a wider block
    goes to ``M.matmat`` when ``M``'s class has a block product of its own, else to
    ``M.matvec`` one 1-D column at a time.

    Parameters
    ----------
    M : scipy.sparse.linalg.LinearOperator
        The operator, of shape ``(n, n)``.
    X : numpy.ndarray
        ``(n,)`` or ``(n, k)``.

    Returns
    -------
    numpy.ndarray
        ``M @ X``, the shape of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse.linalg as spla
    >>> d = np.array([1.0, 2.0, 4.0])
    >>> M = spla.LinearOperator((3, 3), matvec=lambda v: v / d)
    >>> apply_linear_operator(M, np.ones((3, 2)))
    array([[1.  , 1.  ],
           [0.5 , 0.5 ],
           [0.25, 0.25]])
    """
    X = np.asarray(X)
    n = X.shape[0]
    if X.ndim == 1:
        return np.asarray(M.matvec(X)).reshape(n)
    if X.shape[1] == 1:
        return np.asarray(M.matvec(X[:, 0])).reshape(n, 1)
    if _has_block_product(M):
        return np.asarray(M.matmat(X)).reshape(X.shape)
    columns = [np.asarray(M.matvec(X[:, j])).reshape(n) for j in range(X.shape[1])]
    return np.stack(columns, axis=1)


def make_preconditioner(
    M: Any, op: Any, device: torch.device, dtype: torch.dtype
) -> tuple[Callable[[torch.Tensor, bool], torch.Tensor] | None, str]:
    """Return ``apply(v_internal, single) -> M v`` (or None for identity) and a label.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> from neurosolve.solvers.krylov.operators import as_torch_operator
    >>> op = as_torch_operator(poisson((4, 4)))
    >>> make_preconditioner("jacobi", op, op.device, op.dtype)[1]
    'jacobi'
    """
    if M is None:
        return None, "none"
    if isinstance(M, str):
        if M != "jacobi":
            raise InvalidInputError(f"unknown preconditioner {M!r}; use 'jacobi' or an object")
        return _jacobi(op, device, dtype), "jacobi"
    if hasattr(M, "aspreconditioner") and not isinstance(M, spla.LinearOperator):
        M = M.aspreconditioner()
    fn, squeeze, label = _action(M, op.num_unknowns, device, dtype)
    return _on_unknowns(fn, op, squeeze, device, dtype), label


Apply = Callable[[torch.Tensor], Any]


def _jacobi(op: Any, device: torch.device, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    """``v -> D^{-1} v`` on the internal layout (zero where the diagonal is zero)."""
    d = op.diagonal_internal().to(device=device, dtype=dtype)
    if bool((d < 0).any()):
        raise InvalidInputError("Jacobi needs a positive diagonal; A has negative entries")
    inv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), 0.0).unsqueeze(1)
    return lambda v, single: v * inv


def _action(M: Any, n: int, device: torch.device, dtype: torch.dtype) -> tuple[Apply, bool, str]:
    """``M`` as a function on ``(n, k)`` blocks of unknowns, with its label.

    The flag says whether the function wants an ``(n,)`` vector for a single column (a user
    callable or network) rather than the ``(n, 1)`` block.
    """
    if isinstance(M, torch.Tensor):
        if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] != n:
            raise InvalidInputError(
                f"preconditioner matrix has shape {tuple(M.shape)}; expected ({n}, {n})"
            )
        Mt = M.to(device=device, dtype=dtype)
        return (lambda u: Mt @ u), False, "matrix"
    if sp.issparse(M) or isinstance(M, np.ndarray):
        if M.shape != (n, n):
            raise InvalidInputError(
                f"preconditioner matrix has shape {M.shape}; expected ({n}, {n})"
            )
        if sp.issparse(M):
            return SparseOperator(M, device=device, dtype=dtype).apply_internal, False, "matrix"
        Md = torch.as_tensor(M, device=device, dtype=dtype)
        return (lambda u: Md @ u), False, "matrix"
    if isinstance(M, spla.LinearOperator):
        if M.shape != (n, n):
            raise InvalidInputError(f"preconditioner has shape {M.shape}; expected ({n}, {n})")

        def host(u: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(apply_linear_operator(M, u.detach().cpu().double().numpy()))

        return host, False, "linear-operator"
    if isinstance(M, nn.Module) or callable(M):

        def call(u: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return M(u)

        return call, True, type(M).__name__
    raise InvalidInputError(
        "preconditioner must be None, 'jacobi', a matrix (scipy/numpy/torch), a "
        f"LinearOperator, an object with .aspreconditioner(), or a callable; got {type(M).__name__}"
    )


def _on_unknowns(
    fn: Apply, op: Any, squeeze: bool, device: torch.device, dtype: torch.dtype
) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """``fn`` on the unknowns, wrapped to take and return the operator's internal layout."""

    def apply(v: torch.Tensor, single: bool) -> torch.Tensor:
        u = op.from_internal(v)
        arg = u[:, 0] if (single and squeeze) else u
        out = fn(arg)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out))
        out = out.to(device=device, dtype=dtype).reshape(u.shape)
        return op.to_internal(out)

    return apply
