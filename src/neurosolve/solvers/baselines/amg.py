"""pyamg's algebraic multigrid as baselines: standalone cycles, and CG preconditioned by one.

pyamg's ``solve`` stops on ``||b - A x|| < tol ||b||`` (true residual, strict); it gets
``tol = threshold / ||b||``, and the result is rechecked against the package's rule
``||b - A x|| <= max(rtol ||b||, atol)`` (restarting at most ``max_restarts`` times). The
preconditioned variants run scipy's ``cg`` (see :mod:`~neurosolve.solvers.baselines.scipy_cg`)
with one cycle of the hierarchy as ``M``. Smoothed aggregation (``amg-sa``) and classical
Ruge-Stuben coarsening (``amg-rs``) are both offered; ``amg_options`` go to pyamg.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from neurosolve.errors import InvalidInputError
from neurosolve.solvers.baselines.common import Baseline, Column, _check_cpu
from neurosolve.solvers.baselines.scipy_cg import ScipyCGDriver
from neurosolve.solvers.result import Status, stopping_threshold

__all__ = [
    "RugeStubenAMG",
    "RugeStubenPCG",
    "SmoothedAggregationAMG",
    "SmoothedAggregationPCG",
]


#: Levels with at most this many unknowns get a dense eigenvalue check at setup.
_CHECKED_LEVEL_SIZE = 1000


def _indefinite_level(ml: Any) -> str | None:
    """Why the hierarchy proves ``A`` indefinite, or None.

    A multigrid cycle has no ``p^T A p`` to watch, and on a matrix that is symmetric but
    not positive definite it may still converge. Its Galerkin matrices ``P^T A P`` do
    tell: a negative eigenvalue ``v^T P^T A P v < 0`` of any level is the negative
    curvature ``(P v)^T A (P v) < 0`` of ``A``. Every level of at most
    ``_CHECKED_LEVEL_SIZE`` unknowns (the finest one of a small system) is checked densely;
    in the tests every converged run on an indefinite matrix was caught this way.
    """
    for number, level in enumerate(ml.levels):
        n = level.A.shape[0]
        if n > _CHECKED_LEVEL_SIZE:
            continue
        dense = level.A.toarray()
        eigenvalues = np.linalg.eigvalsh(0.5 * (dense + dense.T))
        lowest, top = float(eigenvalues[0]), float(np.max(np.abs(eigenvalues)))
        if lowest < -64 * np.finfo(float).eps * top:
            return (
                f"level {number} of the hierarchy ({n} unknowns) has the eigenvalue "
                f"{lowest:.3e} < 0: A is not positive definite, so the SPD premise of "
                "the method is broken (x may still meet the tolerance, but do not trust it)"
            )
    return None


class _Hierarchy:
    """Settings and construction of the pyamg hierarchy (mixed into both AMG baselines)."""

    kind = "sa"

    def __init__(
        self,
        A: Any,
        *,
        amg_options: dict[str, Any] | None = None,
        cycle: str = "V",
        history: str = "true",
        max_restarts: int = 3,
        check_symmetry: bool = True,
        device: Any = None,
    ) -> None:
        _check_cpu(self.name, device)  # before the (possibly long) hierarchy setup
        self.amg_options = dict(amg_options or {})
        if cycle not in ("V", "W", "F"):
            raise InvalidInputError(f"cycle must be 'V', 'W' or 'F', got {cycle!r}")
        self.cycle = cycle
        super().__init__(
            A,
            history=history,
            max_restarts=max_restarts,
            check_symmetry=check_symmetry,
            device=device,
        )

    def _build_hierarchy(self, options: dict[str, Any]) -> Any:
        import pyamg

        A = self._matrix()
        if self.kind == "sa":
            ml = pyamg.smoothed_aggregation_solver(A, **options)
        else:
            ml = pyamg.ruge_stuben_solver(A, **options)
        self.premise = _indefinite_level(ml)
        return ml

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, levels={len(self.ml.levels)}, "
            f"setup={self.setup_seconds:.3g}s)"
        )


class _AMGSolver(_Hierarchy, Baseline):
    """pyamg hierarchy used as a standalone cycle solver (default 500 cycles at most)."""

    def _setup(self) -> None:
        self.ml = self._build_hierarchy(self.amg_options)

    def _solve_one(
        self,
        b: np.ndarray,
        x0: np.ndarray | None,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[np.ndarray], None] | None,
    ) -> Column:
        t0 = time.perf_counter()
        bnorm = float(np.linalg.norm(b))
        bscale = bnorm if bnorm > 0 else 1.0
        thr = stopping_threshold(bnorm, rtol, atol)
        maxiter = 500 if maxiter is None else int(maxiter)
        if bnorm == 0:
            return Column.zero(b)
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
        times = [0.0]

        def cb(xk: np.ndarray) -> None:
            times.append(time.perf_counter() - t0)
            if callback is not None:
                callback(xk.copy())

        history = [self._true_norm(x, b)]
        col, final = self._cycle(b, x, thr, maxiter, cb, history)
        residuals = np.array(history) / bscale
        residuals[-1] = final / bscale
        col.residuals, col.times = residuals, np.array(times)
        col.stats = dict(
            pyamg_residuals=np.array(history),
            levels=len(self.ml.levels),
            operator_complexity=float(self.ml.operator_complexity()),
        )
        return col

    def _cycle(
        self,
        b: np.ndarray,
        x: np.ndarray,
        thr: float,
        maxiter: int,
        cb: Callable[[np.ndarray], None],
        history: list[float],
    ) -> tuple[Column, float]:
        """Call pyamg until the true residual meets ``thr`` or a stop; the column and ``final``."""
        final = history[0]
        col = Column(x, Status.CONVERGED if final <= thr else Status.MAXITER, matvecs=1)
        bnorm = float(np.linalg.norm(b))
        while col.status is not Status.CONVERGED:
            remaining = maxiter - col.iterations
            if remaining <= 0:
                col.status = Status.MAXITER
                break
            res: list[float] = []
            # pyamg stops on the true residual with a strict '<' against tol * ||b||.
            col.x = self.ml.solve(
                b,
                x0=col.x,
                tol=thr / bnorm,
                maxiter=remaining,
                cycle=self.cycle,
                accel=None,
                residuals=res,
                callback=cb,
            )
            history.extend(res[1:])
            col.iterations += len(res) - 1
            col.matvecs += len(res) + 1  # pyamg: b - A x per cycle and initially; our check
            final = self._true_norm(col.x, b)
            stopped = self._verdict(final, thr, col.iterations, maxiter, res)
            if stopped is not None:
                col.status = stopped
                break
            col.restarts += 1
            if col.restarts > self.max_restarts:
                col.status = Status.STAGNATION
                break
        return col, final

    @staticmethod
    def _verdict(
        final: float, thr: float, cycles: int, maxiter: int, res: list[float]
    ) -> Status | None:
        """Why the column stops after a pyamg call, or None to restart it."""
        if not np.isfinite(final):
            return Status.NONFINITE
        if final <= thr:
            return Status.CONVERGED
        if cycles >= maxiter:
            return Status.MAXITER
        if len(res) >= 2 and res[-1] > 1e8 * res[0]:
            return Status.DIVERGED
        return None

    def aspreconditioner(self) -> spla.LinearOperator:
        """One cycle of the hierarchy as a scipy LinearOperator."""
        return self.ml.aspreconditioner(cycle=self.cycle)


class _AMGPCG(_Hierarchy, ScipyCGDriver):
    """scipy CG preconditioned by one pyamg cycle."""

    def _setup(self) -> None:
        self.ml = self._build_hierarchy(self.amg_options)
        self._M = self.ml.aspreconditioner(cycle=self.cycle)

    def _preconditioner(self) -> spla.LinearOperator:
        return self._M


class SmoothedAggregationAMG(_AMGSolver):
    """pyamg smoothed-aggregation AMG as a standalone V-cycle solver.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix or ndarray
        SPD matrix.
    amg_options : dict, optional
        Keyword arguments of ``pyamg.smoothed_aggregation_solver``.
    cycle : {"V", "W", "F"}
        Multigrid cycle.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> SmoothedAggregationAMG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "amg-sa"
    kind = "sa"


class RugeStubenAMG(_AMGSolver):
    """pyamg classical (Ruge-Stuben) AMG as a standalone V-cycle solver.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> RugeStubenAMG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "amg-rs"
    kind = "rs"


class SmoothedAggregationPCG(_AMGPCG):
    """scipy CG preconditioned by a pyamg smoothed-aggregation V-cycle.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> SmoothedAggregationPCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "amg-sa-pcg"
    kind = "sa"


class RugeStubenPCG(_AMGPCG):
    """scipy CG preconditioned by a pyamg Ruge-Stuben V-cycle.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> RugeStubenPCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "amg-rs-pcg"
    kind = "rs"
