r"""The result of every solve, and the one stopping rule all methods share.

Every method in neurosolve, classical or learned, stops on the TRUE residual:

.. math:: \|b - A x\|_2 \le \max(\mathrm{rtol}\,\|b\|_2, \mathrm{atol})

and returns a :class:`SolveResult`. ``residuals`` always holds true relative residual
norms ``||b - A x_k|| / ||b||`` (one per iteration, starting with the initial guess), so
curves of different methods can be drawn on one plot.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SolveResult", "Status", "stopping_threshold", "relative_residual"]


class Status(enum.Enum):
    """Why a solve stopped. ``status.message`` explains it to a user."""

    CONVERGED = "converged"
    MAXITER = "maxiter"
    BREAKDOWN = "breakdown"
    STAGNATION = "stagnation"
    DIVERGED = "diverged"
    NONFINITE = "nonfinite"

    @property
    def message(self) -> str:
        """A sentence saying what happened and what to try next."""
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged: the true residual meets max(rtol*||b||, atol)",
    Status.MAXITER: (
        "maximum number of iterations reached before the tolerance; raise maxiter, "
        "use a stronger preconditioner, or loosen rtol"
    ),
    Status.BREAKDOWN: (
        "breakdown: a search direction had p^T A p <= 0; the matrix (or the "
        "preconditioner) is probably not symmetric positive definite"
    ),
    Status.STAGNATION: (
        "stagnation: the residual stopped decreasing; the tolerance may be below what "
        "the floating-point precision allows, or the method does not suit this matrix"
    ),
    Status.DIVERGED: "diverged: the residual grew far above its initial value",
    Status.NONFINITE: "NaN or Inf appeared in the iteration (check A, b and the preconditioner)",
}


@dataclass
class SolveResult:
    """Outcome of :func:`neurosolve.solve` and of every solver in the package.

    Attributes
    ----------
    x : numpy.ndarray or torch.Tensor
        The approximate solution, same type, shape and device as the right-hand side.
    status : Status
        Why the solve stopped.
    iterations : int
        Iterations performed (for a batch: the maximum over the batch).
    residuals : numpy.ndarray
        True relative residual norms ``||b - A x_k|| / ||b||``, starting with the initial
        guess; shape ``(iterations + 1,)``, or ``(iterations + 1, batch)`` for a batch.
    setup_seconds, solve_seconds : float
        Wall time of the setup (hierarchy, factorization, model load) and of the solve.
    matvecs : int
        Products with ``A`` performed during the solve.
    info : dict
        Method-specific extras (e.g. preconditioner applications, Lanczos coefficients).
    """

    x: Any
    status: Status
    iterations: int
    residuals: np.ndarray
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    matvecs: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """True only when the true residual met the tolerance."""
        return self.status is Status.CONVERGED

    @property
    def reason(self) -> str:
        """Human-readable explanation of :attr:`status`."""
        return self.status.message

    @property
    def final_residual(self) -> float:
        """The last recorded true relative residual (max over a batch)."""
        last = np.asarray(self.residuals)[-1]
        return float(np.max(last))

    def __repr__(self) -> str:
        return (
            f"SolveResult(status={self.status.value}, iterations={self.iterations}, "
            f"final_residual={self.final_residual:.3e}, setup={self.setup_seconds:.3g}s, "
            f"solve={self.solve_seconds:.3g}s)"
        )


def stopping_threshold(bnorm: float, rtol: float, atol: float) -> float:
    """Absolute residual norm below which a solve counts as converged.

    Parameters
    ----------
    bnorm : float
        ``||b||_2``.
    rtol, atol : float
        Relative and absolute tolerances (non-negative, finite).

    Returns
    -------
    float
        ``max(rtol * bnorm, atol)``.

    Examples
    --------
    >>> stopping_threshold(10.0, 1e-6, 0.0)
    1e-05
    >>> stopping_threshold(0.0, 1e-6, 1e-12)
    1e-12
    """
    from neurosolve.errors import InvalidInputError

    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be finite and >= 0, got {value!r}")
    return max(rtol * bnorm, atol)


def relative_residual(A: Any, x: np.ndarray, b: np.ndarray) -> float:
    """True relative residual ``||b - A x||_2 / ||b||_2`` computed in float64.

    ``A`` may be anything with ``A @ x`` (scipy sparse matrix or LinearOperator, ndarray).
    A zero ``b`` gives the absolute residual instead.

    Examples
    --------
    >>> import numpy as np
    >>> relative_residual(np.eye(2), np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    """
    x64 = np.asarray(x, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    r = b64 - np.asarray(A @ x64, dtype=np.float64).reshape(b64.shape)
    bnorm = float(np.linalg.norm(b64))
    rnorm = float(np.linalg.norm(r))
    return rnorm / bnorm if bnorm > 0 else rnorm
