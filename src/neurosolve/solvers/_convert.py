"""Conversions at the edge of the API: ``x`` in the user's terms, and block operators.

A method may iterate in a higher precision than ``b`` (the torch Krylov methods default to
float64, the host baselines always work in float64); :func:`like_input` hands ``x`` back as
``b`` came in, so that a float32 ``b`` gets a float32 ``x`` and a CUDA tensor a CUDA tensor.
``x`` is never widened beyond the precision it was computed in: a float64 ``b`` solved by a
float32 iteration (``dtype=torch.float32``) gets the float32 ``x`` it asked for.
:meth:`~neurosolve.solvers.base.Solver.solve` applies it to every result.

:class:`BlockOperator` is the scipy ``LinearOperator`` the package's ``aspreconditioner()``
methods return: one function for vectors and blocks, so a block goes through in one call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from neurosolve.solvers.result import SolveResult

__all__ = ["BlockOperator", "like_input", "match_input"]


class BlockOperator(spla.LinearOperator):
    """A square float64 ``LinearOperator`` from one function of ``(n,)`` and ``(n, k)`` arrays.

    Unlike ``LinearOperator(matvec=f, matmat=f)``, its class has a block product of its own,
    so :func:`~neurosolve.solvers.krylov.preconditioners.apply_linear_operator` hands it a
    whole block instead of one column at a time.

    Parameters
    ----------
    n : int
        Size of the operator.
    function : callable
        ``function(X) -> M X`` for ``X`` of shape ``(n,)`` or ``(n, k)``.

    Examples
    --------
    >>> import numpy as np
    >>> M = BlockOperator(3, lambda X: 2.0 * X)
    >>> M @ np.ones(3), (M @ np.ones((3, 2))).shape
    (array([2., 2., 2.]), (3, 2))
    """

    def __init__(self, n: int, function: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__(np.dtype(np.float64), (int(n), int(n)))
        self._function = function

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._function(np.asarray(x, dtype=np.float64).reshape(self.shape[0]))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._function(np.asarray(X, dtype=np.float64))


def _is_tensor(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype")


def like_input(x: object, b: object) -> object:
    """``x`` as the type, floating dtype and device of ``b``.

    A tensor ``b`` gives a tensor on ``b``'s device, an array ``b`` a numpy array. The dtype
    becomes ``b``'s when ``b`` is a narrower floating type than ``x`` (a float32 ``b``
    solved in float64); ``x`` keeps its own when it is the narrower one (a float32
    iteration asked for by the user) or ``b`` is not floating point. Anything else as ``b``
    (a list, ``None``) leaves ``x`` as it is.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        The solution as the method produced it.
    b : numpy.ndarray or torch.Tensor
        The right-hand side as the user passed it.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``x`` itself when it already matches, else a converted copy.

    Examples
    --------
    >>> import numpy as np
    >>> like_input(np.ones(2), np.zeros(2, dtype=np.float32)).dtype
    dtype('float32')
    >>> like_input(np.ones(2, dtype=np.float32), np.zeros(2)).dtype
    dtype('float32')
    >>> like_input(np.ones(2), np.zeros(2, dtype=np.int64)).dtype
    dtype('float64')
    """
    if _is_tensor(b):
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        narrower = (
            b.dtype.is_floating_point
            and t.dtype.is_floating_point
            and torch.finfo(b.dtype).bits < torch.finfo(t.dtype).bits
        )
        return t.to(device=b.device, dtype=b.dtype if narrower else t.dtype)
    if isinstance(b, np.ndarray):
        a = x.detach().cpu().numpy() if _is_tensor(x) else np.asarray(x)
        if (
            np.issubdtype(b.dtype, np.floating)
            and np.issubdtype(a.dtype, np.floating)
            and np.finfo(b.dtype).bits < np.finfo(a.dtype).bits
        ):
            return a.astype(b.dtype)
        return a
    return x


def match_input(result: SolveResult, b: object) -> SolveResult:
    """``result`` with its ``x`` converted by :func:`like_input` (in place; returned).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.solvers.result import Status
    >>> r = SolveResult(x=np.ones(2), status=Status.CONVERGED, iterations=1,
    ...                 residuals=np.zeros(2))
    >>> match_input(r, np.ones(2, dtype=np.float32)).x.dtype
    dtype('float32')
    """
    result.x = like_input(result.x, b)
    return result
