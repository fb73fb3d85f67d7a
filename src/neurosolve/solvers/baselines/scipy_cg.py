"""scipy's ``cg`` (plain, Jacobi-preconditioned, or with any preconditioner) as a baseline.

scipy's ``cg`` stops on its recurrence residual with ``||r|| < max(rtol ||b||, atol)``; the
driver here calls it with ``rtol=0, atol=max(rtol ||b||, atol)``, checks the true residual
after it returns, and if that check fails restarts ``cg`` from the returned ``x`` (at most
``max_restarts`` times, then ``Status.STAGNATION``). With ``history="true"`` its callback
records the true residual and stops scipy on NaN/Inf and on divergence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from neurosolve.errors import InvalidInputError
from neurosolve.solvers.baselines.common import Baseline, Column
from neurosolve.solvers.result import Status, stopping_threshold

__all__ = ["ScipyCG", "ScipyCGDriver", "ScipyJacobiCG"]

logger = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised from a scipy callback to end the iteration early (divergence, NaN)."""

    def __init__(self, status: Status, x: np.ndarray, detail: str | None = None) -> None:
        super().__init__(status.value)
        self.status, self.x, self.detail = status, x, detail


class _Monitor:
    """scipy's callback: counts steps and products, records the history, stops on NaN/growth."""

    def __init__(
        self,
        driver: ScipyCGDriver,
        b: np.ndarray,
        r0: float,
        thr: float,
        callback: Callable[[np.ndarray], None] | None,
    ) -> None:
        self.t0 = time.perf_counter()
        self.driver, self.b, self.r0, self.thr, self.callback = driver, b, r0, thr, callback
        bnorm = float(np.linalg.norm(b))
        self.bscale = bnorm if bnorm > 0 else 1.0
        self.true_history = driver.history == "true"
        self.it = 0
        self.mv = 0
        self.residuals = [r0 / self.bscale]
        self.times = [0.0]
        self.last_x: np.ndarray | None = None  # scipy's iterate: x_k while it forms A p_k
        self.detail: str | None = None

    def curvature_operator(self, A: Any, x: np.ndarray) -> spla.LinearOperator:
        """``A`` for scipy, checking ``v^T A v > 0`` on every vector it is applied to."""
        self.last_x = x

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.ravel(v)
            Av = np.ravel(A @ v)
            if v.any():
                curvature = float(v @ Av)
                if not np.isfinite(curvature):
                    raise _Stop(Status.NONFINITE, self._snapshot(), "p^T A p is NaN or Inf")
                if curvature <= 0:
                    raise _Stop(
                        Status.BREAKDOWN,
                        self._snapshot(),
                        f"p^T A p = {curvature:.3e} <= 0 at iteration {self.it + 1}: A is "
                        "not positive definite, so the SPD premise of CG is broken",
                    )
            return Av

        return spla.LinearOperator(A.shape, matvec=matvec, dtype=np.float64)

    def _snapshot(self) -> np.ndarray:
        return np.array(self.last_x, dtype=np.float64, copy=True)

    def __call__(self, xk: np.ndarray) -> None:
        self.last_x = xk  # scipy updates this array in place: x_k until the next step
        self.it += 1
        self.mv += 1
        if self.true_history:
            self.residuals.append(self.driver._true_norm(xk, self.b) / self.bscale)
            self.mv += 1
        else:
            self.residuals.append(np.nan)
        self.times.append(time.perf_counter() - self.t0)
        if self.callback is not None:
            self.callback(xk.copy())  # scipy reuses its array; hand out a snapshot
        if self.true_history:  # scipy has no such checks; stop it from the callback
            if not np.isfinite(self.residuals[-1]):
                raise _Stop(Status.NONFINITE, xk.copy())
            limit = self.driver.divergence_factor * max(self.r0, self.thr)
            if self.residuals[-1] * self.bscale > limit:
                raise _Stop(Status.DIVERGED, xk.copy())


class ScipyCGDriver(Baseline):
    """scipy.sparse.linalg.cg with an optional preconditioner, driven to the true-residual rule.

    Subclasses provide the preconditioner in :meth:`_preconditioner`. With
    ``history="true"`` the callback also stops scipy on NaN/Inf and when the residual
    exceeds ``divergence_factor`` (1e8) times its initial value. ``maxiter`` defaults to
    ``10 n``.
    """

    divergence_factor = 1e8

    def _preconditioner(self) -> spla.LinearOperator | None:
        return None

    def aspreconditioner(self) -> spla.LinearOperator:
        """The preconditioner this CG runs with, as a scipy ``LinearOperator`` (for ``M=``)."""
        M = self._preconditioner()
        if M is None:
            raise InvalidInputError(
                f"{self.name} runs without a preconditioner and is not a fixed linear map; "
                "use scipy-cg-jacobi, ic-pcg or amg-sa-pcg for M="
            )
        return M

    def _solve_one(
        self,
        b: np.ndarray,
        x0: np.ndarray | None,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[np.ndarray], None] | None,
    ) -> Column:
        bnorm = float(np.linalg.norm(b))
        thr = stopping_threshold(bnorm, rtol, atol)
        maxiter = 10 * self.n if maxiter is None else int(maxiter)
        if bnorm == 0:
            return Column.zero(b)
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
        matvecs = 0
        if x.any():
            r0 = self._true_norm(x, b)
            matvecs += 1
        else:
            r0 = bnorm
        monitor = _Monitor(self, b, r0, thr, callback)
        col, final = self._iterate(b, x, r0, thr, maxiter, monitor)
        col.detail = monitor.detail
        monitor.residuals[-1] = final / monitor.bscale  # the last entry: the true residual
        col.iterations = monitor.it
        col.residuals = monitor.residuals
        col.matvecs = matvecs + monitor.mv
        col.times = np.array(monitor.times)
        return col

    def _iterate(
        self, b: np.ndarray, x: np.ndarray, r0: float, thr: float, maxiter: int, monitor: _Monitor
    ) -> tuple[Column, float]:
        """Call scipy until the true residual meets ``thr`` or a stop; the column and ``final``."""
        M = self._preconditioner()
        col = Column(x, Status.CONVERGED if r0 <= thr else Status.MAXITER)
        final = r0
        while col.status is not Status.CONVERGED:
            remaining = maxiter - monitor.it
            if remaining <= 0:
                col.status = Status.MAXITER
                break
            col.x, final, stopped = self._call_cg(b, col.x, thr, remaining, M, monitor)
            if stopped is not None:
                col.status = stopped
                break
            col.restarts += 1
            if col.restarts > self.max_restarts:
                col.status = Status.STAGNATION
                break
            logger.debug(
                "%s: recurrence converged, true residual %.3e > %.3e; restart",
                self.name,
                final,
                thr,
            )
        return col, final

    def _call_cg(
        self,
        b: np.ndarray,
        x: np.ndarray,
        thr: float,
        remaining: int,
        M: spla.LinearOperator | None,
        monitor: _Monitor,
    ) -> tuple[np.ndarray, float, Status | None]:
        """One call of scipy's ``cg``: ``x``, its true residual, and the verdict (None: restart)."""
        # scipy stops on ||r_recurrence|| < atol; atol = our threshold, rtol = 0.
        A = monitor.curvature_operator(self.A, x)
        try:
            x, code = spla.cg(
                A, b, x0=x, rtol=0.0, atol=thr, maxiter=remaining, M=M, callback=monitor
            )
        except _Stop as stop:
            monitor.mv += 2
            monitor.detail = stop.detail
            return stop.x, self._true_norm(stop.x, b), stop.status
        monitor.mv += 2  # the initial residual of this call, and the check below
        final = self._true_norm(x, b)
        if not np.isfinite(final) or not np.isfinite(x).all():
            return x, final, Status.NONFINITE
        if final <= thr:
            return x, final, Status.CONVERGED
        if code > 0:
            return x, final, Status.MAXITER
        return x, final, None


class ScipyCG(ScipyCGDriver):
    """scipy.sparse.linalg.cg without preconditioner, driven to the true-residual rule.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator or ndarray
        SPD operator.
    history : {"true", "cheap"}
        ``"true"``: record ``||b - A x_k|| / ||b||`` every iteration (one extra product
        with ``A`` per iteration, in the callback); ``"cheap"``: only the first and final
        entries, the others are NaN (use for timings).
    max_restarts : int
        Restarts from the returned ``x`` when scipy's recurrence residual met the
        tolerance but the true residual did not.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> ScipyCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "scipy-cg"


class ScipyJacobiCG(ScipyCGDriver):
    """scipy.sparse.linalg.cg with the Jacobi (inverse diagonal) preconditioner.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> ScipyJacobiCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "scipy-cg-jacobi"

    def _setup(self) -> None:
        d = self._matrix().diagonal()
        if (d <= 0).any():
            raise InvalidInputError("Jacobi needs a positive diagonal")
        self._inv = sp.diags(1.0 / d).tocsr()

    def _preconditioner(self) -> spla.LinearOperator:
        return spla.aslinearoperator(self._inv)
