"""What every host baseline shares: input checks, column-by-column batching, the result.

A baseline subclasses :class:`Baseline`, builds its preconditioner or hierarchy in
:meth:`Baseline._setup` (timed as ``setup_seconds``) and solves one column in
:meth:`Baseline._solve_one`, returning a :class:`Column`; :meth:`Baseline._solve` checks
``b`` and ``x0``, moves tensors to the host in float64, solves a block ``(n, k)`` column
after column, and assembles the :class:`~neurosolve.solvers.result.SolveResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.base import Solver
from neurosolve.solvers.result import (
    SolveInfo,
    SolveResult,
    Status,
    safe_norm,
    stopping_threshold,
)
from neurosolve.solvers.system import check_vector, prepare_system, rhs_scales

__all__ = ["Baseline", "Column"]


@dataclass
class Column:
    """The outcome of one column (one right-hand side) of a baseline solve.

    Attributes
    ----------
    x : numpy.ndarray
        The solution.
    status : Status
        Why the column stopped.
    iterations : int
        Krylov steps or multigrid cycles.
    residuals : list of float or numpy.ndarray
        Relative residual history (first entry: the initial guess, last: the true final one).
    matvecs : int
        Products with ``A``.
    times : list of float or numpy.ndarray
        Seconds since the start of the column at each entry of ``residuals``.
    restarts : int
        Restarts after a false convergence of the library's iteration.
    detail : str or None
        What went wrong, beyond the status (``SolveInfo.detail``).
    stats : dict
        Further :class:`~neurosolve.solvers.result.SolveInfo` fields of the method.
    """

    x: np.ndarray
    status: Status = Status.MAXITER
    iterations: int = 0
    residuals: Any = field(default_factory=list)
    matvecs: int = 0
    times: Any = field(default_factory=list)
    restarts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None

    @classmethod
    def zero(cls, b: np.ndarray) -> Column:
        """The exact answer ``x = 0`` of a zero right-hand side."""
        return cls(np.zeros_like(b), Status.CONVERGED, 0, [0.0], 0, [0.0], 0)


class Baseline(Solver):
    """Shared validation, batching and result assembly of the host baselines.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator or ndarray
        SPD operator (checked once, at construction).
    history : {"true", "cheap"}
        ``"true"``: record ``||b - A x_k|| / ||b||`` every iteration; ``"cheap"``: only the
        first and final entries (use for timings).
    max_restarts : int
        Restarts from the returned ``x`` when the library met its tolerance but the true
        residual did not (then ``Status.STAGNATION``).
    check_symmetry : bool
        Check symmetry / positive diagonal of ``A`` at construction.
    device : str or torch.device, optional
        Accepted for a uniform interface, but only ``"cpu"`` (or None): scipy and pyamg
        run on the host; any other device is refused with :class:`InvalidInputError`.

    Notes
    -----
    Each column of ``b`` whose entries are beyond ``2^24`` or below ``2^-24`` in magnitude
    is solved scaled by a power of two (with ``x0`` and ``atol``) and ``x`` scaled back, so
    that norms and inner products neither overflow nor underflow.
    """

    name: ClassVar[str] = "baseline"
    #: scipy / pyamg: host only (:func:`neurosolve.solve` never passes a tensor's device).
    cpu_only: ClassVar[bool] = True
    #: Set at setup when it proved ``A`` not SPD; every solve then reports BREAKDOWN with it.
    premise: str | None = None

    def __init__(
        self,
        A: Any,
        *,
        history: str = "true",
        max_restarts: int = 3,
        check_symmetry: bool = True,
        device: Any = None,
    ) -> None:
        _check_cpu(self.name, device)
        if history not in ("true", "cheap"):
            raise InvalidInputError(f"history must be 'true' or 'cheap', got {history!r}")
        self.max_restarts = integer(max_restarts, "max_restarts", minimum=0)
        self.prepared = prepare_system(A, check_symmetry=check_symmetry)
        t = time.perf_counter()  # setup_seconds: operator/preconditioner build, not checks
        self.A = (
            self.prepared.matrix if self.prepared.matrix is not None else (self.prepared.operator)
        )
        self.n = self.prepared.n
        self.history = history
        self._setup()
        self.setup_seconds = time.perf_counter() - t

    def _setup(self) -> None:
        """Build preconditioner / hierarchy (timed as setup)."""

    def _matrix(self) -> sp.csr_matrix:
        if self.prepared.matrix is None:
            raise InvalidInputError(
                f"{self.name} needs an explicit sparse matrix, not a LinearOperator"
            )
        return self.prepared.matrix

    def _true_norm(self, x: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(b - self.A @ x))

    def _solve(
        self,
        b: Any,
        *,
        x0: Any,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[Any], None] | None,
    ) -> SolveResult:
        # Host float64; a block is solved column by column; callback gets numpy arrays.
        is_torch = type(b).__module__.startswith("torch")
        device = b.device if is_torch else None
        b, x0 = self._host_inputs(b, x0)
        t0 = time.perf_counter()
        if b.ndim == 1:
            col = self._solve_column(b, x0, rtol, atol, maxiter, callback)
            x, status, iterations, matvecs = col.x, col.status, col.iterations, col.matvecs
            residuals = np.asarray(col.residuals)
            info = SolveInfo(
                method=self.name,
                times=col.times,
                restarts=col.restarts,
                detail=col.detail,
                **col.stats,
            )
        else:
            cols = [
                self._solve_column(
                    b[:, j], None if x0 is None else x0[:, j], rtol, atol, maxiter, callback
                )
                for j in range(b.shape[1])
            ]
            x = np.stack([c.x for c in cols], axis=1)
            residuals = _stack_histories([c.residuals for c in cols])
            status = Status.worst(c.status for c in cols)
            iterations = max(c.iterations for c in cols)
            matvecs = sum(c.matvecs for c in cols)
            info = SolveInfo(
                method=self.name,
                column_status=[c.status.value for c in cols],
                column_iterations=[c.iterations for c in cols],
                times=[c.times for c in cols],
                detail="; ".join(f"column {j}: {c.detail}" for j, c in enumerate(cols) if c.detail)
                or None,
            )
        if is_torch:
            import torch

            x = torch.as_tensor(x, device=device)
        return SolveResult(
            x=x,
            status=status,
            iterations=int(iterations),
            residuals=residuals,
            setup_seconds=self.setup_seconds,
            solve_seconds=time.perf_counter() - t0,
            matvecs=int(matvecs),
            info=info,
        )

    def _host_inputs(self, b: Any, x0: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``b`` and ``x0`` checked and on the host in float64."""
        b = check_vector(b, self.n, name="b")
        if type(b).__module__.startswith("torch"):
            b = b.detach().cpu().double().numpy()
        if x0 is not None:
            x0 = check_vector(x0, self.n, name="x0")
            if type(x0).__module__.startswith("torch"):
                x0 = x0.detach().cpu().double().numpy()
            if x0.shape != b.shape:
                raise InvalidInputError(f"x0 has shape {x0.shape} but b has shape {b.shape}")
        return b, x0

    def _solve_column(
        self,
        b: np.ndarray,
        x0: np.ndarray | None,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[np.ndarray], None] | None,
    ) -> Column:
        """:meth:`_solve_one` on ``b`` scaled into a safe range; never converged with NaN."""
        s = float(rhs_scales([np.max(np.abs(b))])[0])
        if s == 1.0:
            col = self._solve_one(b, x0, rtol, atol, maxiter, callback)
        else:
            inner = None if callback is None else (lambda xk: callback(xk * s))
            x0s = None if x0 is None else x0 / s
            col = self._solve_one(b / s, x0s, rtol, atol / s, maxiter, inner)
            with np.errstate(over="ignore"):  # an x beyond float64 is reported below
                col.x = col.x * s
                if "pyamg_residuals" in col.stats:  # absolute norms: in the user's units
                    col.stats["pyamg_residuals"] = col.stats["pyamg_residuals"] * s
            if col.status is Status.CONVERGED:
                self._check_scaled_back(col, b / s, s, rtol, atol)
        final = float(np.asarray(col.residuals, dtype=np.float64)[-1])
        if not (np.isfinite(final) and np.isfinite(col.x).all()):
            col.status = Status.NONFINITE
            col.detail = col.detail or "the solution or its final residual is NaN or Inf"
        if self.premise and col.status is not Status.BREAKDOWN:
            # never "converged" (nor a plain maxiter) on a matrix shown not to be SPD
            nonfinite = col.status is Status.NONFINITE
            col.detail = f"{col.detail}; {self.premise}" if nonfinite else self.premise
            col.status = col.status if nonfinite else Status.BREAKDOWN
        return col

    def _check_scaled_back(
        self, col: Column, b_scaled: np.ndarray, s: float, rtol: float, atol: float
    ) -> None:
        """Recheck a converged column on its ``x`` rounded in the user's units.

        ``x * s`` may overflow or fall below the normal range of float64 (losing its
        digits); the residual of that rounded ``x``, divided by ``s`` again (exact), must
        still meet the threshold, or the column is NONFINITE.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            back = col.x / s
            rnorm = safe_norm(b_scaled - self.A @ back) if np.isfinite(back).all() else np.inf
        bnorm = safe_norm(b_scaled)
        if not rnorm <= stopping_threshold(bnorm, rtol, atol / s):
            col.status = Status.NONFINITE
            col.residuals = [*list(col.residuals)[:-1], rnorm / bnorm]
            col.detail = (
                "the solution is outside the range of float64 once scaled back to the size "
                "of b (its entries over- or underflow); solve a rescaled system"
            )

    def _solve_one(
        self,
        b: np.ndarray,
        x0: np.ndarray | None,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[np.ndarray], None] | None,
    ) -> Column:
        raise NotImplementedError  # each concrete baseline defines its iteration

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, setup={self.setup_seconds:.3g}s)"


def _check_cpu(name: str, device: Any) -> None:
    """Refuse any device but the CPU for a host method."""
    if device is None:
        return
    kind = str(device).split(":")[0].strip().lower()
    if kind != "cpu":
        raise InvalidInputError(
            f"{name} runs on the CPU only (scipy/pyamg); got device={str(device)!r}. Leave "
            "the device out, or use a torch method on that device: cg, pcg, pcg-jacobi, fcg, "
            "mgpc-pcg, dcdm"
        )


def _stack_histories(histories: list[Any]) -> np.ndarray:
    """Column histories as one ``(length, k)`` array, short ones padded with their last value."""
    length = max(len(h) for h in histories)
    return np.stack(
        [np.concatenate([h, np.full(length - len(h), h[-1])]) for h in histories], axis=1
    )
