"""The conjugate-gradient iteration shared by CG, PCG and flexible CG, in small steps.

One :class:`Run` is one (batched) solve: :meth:`Run.start` forms the initial residual and
direction, :meth:`Run.step` does one iteration (step length, update, residual statistics,
:meth:`Run.decide` on every column, residual replacement, next direction), and
:meth:`Run.finish` assembles the :class:`~neurosolve.solvers.result.SolveResult`. What differs
between the methods lives in a :class:`~neurosolve.solvers.krylov.variants.Variant`
strategy (:mod:`neurosolve.solvers.krylov.variants`, re-exported here): how the step
length's numerator is formed, the extra inner products a method needs, ``beta`` and the next
search direction. The stopping rule, residual replacement and history modes are documented
in :mod:`neurosolve.solvers.krylov`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native_vectors
from neurosolve.solvers.krylov.variants import (
    ConjugateGradient,
    PolakRibiere,
    TruncatedFlexible,
    Variant,
    coldot,
    coldots,
    colnorm,
    host_values,
)
from neurosolve.solvers.result import SolveInfo, SolveResult, Status, stopping_threshold
from neurosolve.solvers.system import check_vector, rhs_scales

__all__ = ["ConjugateGradient", "PolakRibiere", "Run", "TruncatedFlexible", "Variant"]

logger = logging.getLogger(__name__)

_ACTIVE = -1  # status code of a column still iterating; stopped ones hold Status.severity


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
class Run:
    """State and bookkeeping of one (batched) solve of a torch Krylov solver.

    Parameters
    ----------
    solver : CGSolver, PCGSolver, JacobiPCGSolver or FlexibleCGSolver
        Provides the operators (``op``, ``op64``), the preconditioner and the settings;
        ``solver.variant(single)`` gives the :class:`Variant`.
    b_user, x0, rtol, atol, maxiter, callback
        As for :meth:`neurosolve.solvers.base.Solver.solve`.
    """

    def __init__(
        self,
        solver: Any,
        b_user: Any,
        x0: Any,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[Any], None] | None,
    ) -> None:
        self.s = solver
        op = solver.op
        self.device, self.dtype = op.device, op.dtype
        n = op.num_unknowns
        b_user = check_vector(b_user, n, name="b")
        if x0 is not None:
            x0 = check_vector(x0, n, name="x0")
            if tuple(x0.shape) != tuple(b_user.shape):
                raise InvalidInputError(
                    f"x0 has shape {tuple(x0.shape)} but b has shape {tuple(b_user.shape)}"
                )
        self.is_torch = isinstance(b_user, torch.Tensor)
        self.user_device = b_user.device if self.is_torch else None
        self.single = b_user.dim() == 1 if self.is_torch else b_user.ndim == 1
        self.maxiter = 10 * n if maxiter is None else int(maxiter)
        self.callback = callback
        self.variant = solver.variant(self.single)
        self.rr: float | None = None  # r^T r after a step, where the step's pass gave it
        self._load(b_user, x0, rtol, atol)

    def _load(self, b_user: Any, x0: Any, rtol: float, atol: float) -> None:
        """Working copies of ``b`` and ``x`` on the device, float64 ``b`` and thresholds.

        Each column of ``b`` (with ``x0`` and ``atol``) is divided by a power of two from
        :func:`~neurosolve.solvers.system.rhs_scales` when its entries are too large or too
        small for squares to stay finite and normal; ``x`` is scaled back at the end.
        """
        op, n = self.s.op, self.s.op.num_unknowns

        def to_dev(v: Any) -> torch.Tensor:
            t = torch.as_tensor(v).to(device=self.device, dtype=torch.float64)
            return t.reshape(n, -1)

        b_user64 = to_dev(b_user)
        self.scale = rhs_scales(b_user64.abs().amax(dim=0).cpu().numpy())
        self.scaled = bool((self.scale != 1.0).any())
        if self.scaled:
            b_user64 = b_user64 / torch.as_tensor(self.scale, device=self.device)
        # Unknown-layout float64 copies for verification; internal working copies.
        self.b64 = op.to_internal(b_user64) if op.dtype != torch.float64 else None
        self.b = op.to_internal(b_user64.to(self.dtype))
        if self.b64 is None:
            self.b64 = self.b
        self.k = self.b.shape[1]
        if x0 is not None:
            x064 = to_dev(x0)
            if self.scaled:
                x064 = x064 / torch.as_tensor(self.scale, device=self.device)
            self.x = op.to_internal(x064.to(self.dtype)).clone()
        else:
            self.x = torch.zeros_like(self.b)
        bnorm = colnorm(self.b64).cpu().numpy().astype(np.float64)
        self.bnorm = bnorm
        self.bscale = np.where(bnorm > 0, bnorm, 1.0)
        self.thr = np.array(
            [
                stopping_threshold(float(v), rtol, atol / s)
                for v, s in zip(bnorm, self.scale, strict=True)
            ]
        )
        self.matvecs = 0
        self.verify_matvecs = 0
        self.detail: str | None = None

    # -- helpers ------------------------------------------------------------------------------
    def on_device(self, values: np.ndarray) -> Any:
        """Per-column scalars for the device: a float for one column, else a (k,) tensor."""
        if self.k == 1:
            return float(values[0])
        return torch.as_tensor(values, dtype=self.dtype, device=self.device)

    def A(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` in the working precision (counted in ``matvecs``)."""
        self.matvecs += v.shape[1]
        return self.s.op.apply_internal(v)

    def true_residual64(self, cols: np.ndarray | None = None) -> np.ndarray:
        """float64 ``||b - A x||`` per column (all columns, or ``cols``)."""
        x = self.x if cols is None else self.x[:, cols]
        b = self.b64 if cols is None else self.b64[:, cols]
        self.verify_matvecs += x.shape[1]
        self.matvecs += x.shape[1]
        r = b - self.s.op64.apply_internal(x.to(torch.float64))
        return colnorm(r).cpu().numpy().astype(np.float64)

    def to_user(self, v: torch.Tensor) -> Any:
        """``v`` in the layout, type and device of the user's ``b`` (always a copy)."""
        u = self.s.op.from_internal(v)
        if self.scaled:  # back to the user's units (in float64: the scale may be 2^500)
            u = (u.to(torch.float64) * torch.as_tensor(self.scale, device=u.device)).to(u.dtype)
        if self.single:
            u = u[:, 0]
        # always a copy: callbacks may keep iterates, and x must not alias solver state
        if self.is_torch:
            return u.to(self.user_device, copy=True)
        return u.detach().cpu().numpy().copy()

    def stop(self, mask: np.ndarray, status: Status) -> None:
        """Stop the columns of ``mask`` with ``status``."""
        self.status[mask] = status.severity

    def live(self) -> np.ndarray:
        """Mask of the columns still iterating."""
        return self.status == _ACTIVE

    # -- the loop -----------------------------------------------------------------------------
    def iterate(self) -> SolveResult:
        """Run the iteration to the end and return its result."""
        self.t0 = time.perf_counter()
        self.start()
        # One host synchronization per iteration: the step length is formed on the device
        # (zero where p^T A p is not finite and positive, so a breakdown never touches x),
        # x and r are updated, and every inner product of the iteration (p^T A p, r^T z,
        # ||r||, the variant's) travels to the host in one transfer for the decisions.
        while self.active_h.any() and self.it < self.maxiter:
            self.step()
        return self.finish()

    def start(self) -> None:
        """Initial residual, history entry and checks, and the first search direction."""
        k = self.k
        self.status = np.full(k, _ACTIVE)
        self.stop_it = np.zeros(k, dtype=np.int64)
        self.replacements = np.zeros(k, dtype=np.int64)
        self.first_rep = np.full(k, -1, dtype=np.int64)
        self.final_true = np.full(k, np.nan)
        self.alphas: list[np.ndarray] = []
        self.betas: list[np.ndarray] = []
        self.it = 0
        # b = 0: x = 0 is the exact solution, whatever x0 says.
        zero_b = self.bnorm == 0
        if zero_b.any():
            self.x[:, torch.as_tensor(zero_b, device=self.device)] = 0
            self.stop(zero_b, Status.CONVERGED)
            self.final_true[zero_b] = 0.0
        r0 = self._initial_residual()
        self.hist = [r0 / self.bscale]
        self.times = [time.perf_counter() - self.t0]
        ok0 = (r0 <= self.thr) & self.live()
        self.stop(ok0, Status.CONVERGED)
        self.final_true[ok0] = r0[ok0]
        self.best = r0.copy()
        self.best_it = np.zeros(k, dtype=np.int64)
        self.rscale = np.maximum(r0, self.thr)
        self._first_direction()

    def _initial_residual(self) -> np.ndarray:
        """``r = b - A x0`` (``b`` for a zero guess) and its norm, true in float64."""
        if bool(torch.count_nonzero(self.x)):
            self.r = self.b - self.A(self.x)
        else:
            self.r = self.b.clone()
        r0 = colnorm(self.r).cpu().numpy().astype(np.float64)
        if self.dtype != torch.float64:
            r0 = np.where(self.live(), self.true_residual64(), r0)
        return r0

    def _first_direction(self) -> None:
        """``z = M r``, ``r^T z`` (checked: finite and positive) and ``p = z``."""
        z = self.variant.precondition(self.r)
        self.rz_t = coldot(self.r, z)
        self.rz_h = self.rz_t.cpu().numpy().astype(np.float64)
        self.stop(self.live() & ~np.isfinite(self.rz_h), Status.NONFINITE)
        self.stop(self.live() & (self.rz_h <= 0), Status.BREAKDOWN)
        self.active_h = self.live()
        self.active = torch.as_tensor(self.active_h, device=self.device)
        self.all_active = bool(self.active_h.all())
        if not self.all_active:
            self.p = torch.where(self.active, z, 0.0)
        else:  # a new z becomes p as it is; one sharing r's memory (no M: z is r) is copied
            shared = z.untyped_storage().data_ptr() == self.r.untyped_storage().data_ptr()
            self.p = z.clone() if shared else z

    def step(self) -> None:
        """One iteration on every active column."""
        self.it += 1
        Ap = self.A(self.p)
        dots_t = self._update(Ap)
        if not self._converged_before_preconditioning(dots_t):
            z, stats_t = self._residual_statistics(Ap)
            host = host_values([*dots_t, *stats_t])
            self.rz_t = stats_t[0]
            dots_h, stats = host[: len(dots_t)], self._split_statistics(host[len(dots_t) :])
            if not self._quiet_step(z, Ap, dots_h, *stats):
                self._full_step(z, Ap, dots_h, *stats)
        if self.callback is not None:
            self.callback(self.to_user(self.x))

    def _converged_before_preconditioning(self, dots_t: list[torch.Tensor]) -> bool:
        """Stop a single CPU column that has converged, without applying ``M`` once more.

        The iteration that reaches the tolerance would otherwise precondition its residual
        (one more cycle of MGPC, a tenth of a 7-iteration solve) only to find, after the
        transfer, that it is done. Where the step's native pass gave the new ``r^T r``
        (one CPU column inside a native-threads block, as MGPC runs: no extra pass, no
        transfer), ``||r||`` is looked at first; where it meets the threshold and the true
        float64 residual confirms it, the iteration ends here with the bookkeeping of
        :meth:`_full_step` (its Lanczos ``beta`` recorded as 0: the condition estimate never
        reads the last one). Anything else (no such value, no preconditioner, the true
        history, a recurrence residual the true one does not confirm) takes the usual path.
        """
        if self.rr is None or self.variant.precond is None or self.s.history == "true":
            return False
        rnorm = math.sqrt(max(self.rr, 0.0))
        if not rnorm <= float(self.thr[0]):
            return False
        dots_h = host_values(dots_t)
        pAp = float(dots_h[0, 0])
        if not (math.isfinite(pAp) and pAp > 0):
            return False
        true = self.true_residual64()
        if not true[0] <= self.thr[0]:
            return False  # the usual path replaces the residual (and checks again)
        was_active = self.active_h.copy()
        _, alpha_h = self._step_length(dots_h, was_active)
        if self.variant.lanczos:
            self.alphas.append(np.where(was_active, alpha_h, np.nan))
            self.betas.append(np.zeros(1))
        self.status[0] = Status.CONVERGED.severity
        self.final_true[0] = true[0]
        self._record(was_active, np.array([rnorm]))
        self.active_h = self.live()
        return True

    def _full_step(self, z, Ap, dots_h, rz_new_h, rnorm_h, extra_h, tnorm_h) -> None:
        """The host side of an iteration: every check and decision, column by column."""
        was_active = self.active_h.copy()
        pAp_h, alpha_h = self._step_length(dots_h, was_active)
        rz_safe = np.where(self.rz_h != 0, self.rz_h, 1.0)
        beta_h = self.variant.beta(rz_new_h, rz_safe, alpha_h, extra_h)
        if self.variant.lanczos:
            self.alphas.append(np.where(was_active, alpha_h, np.nan))
            self.betas.append(np.where(was_active, beta_h, np.nan))
        monitor = tnorm_h if tnorm_h is not None else rnorm_h
        replace_cols = self.decide(rz_new_h, rnorm_h, monitor, tnorm_h)
        self._record(was_active, monitor)
        if replace_cols.any():
            replaced = self.replace_residual(replace_cols, Ap, rz_new_h, rz_safe, alpha_h)
            z, rz_new_h, beta_h = replaced
        self._next_direction(z, Ap, pAp_h, beta_h)
        self.rz_h = rz_new_h

    def _quiet_step(self, z, Ap, dots_h, rz_new_h, rnorm_h, extra_h, tnorm_h) -> bool:
        """The host side of an iteration of one column where nothing is decided.

        Most iterations of a single right-hand side decide nothing: every value is finite,
        ``p^T A p`` and ``r^T z`` are positive, the residual is above the threshold and
        below the divergence bound, and the stagnation window is not over. Checked on
        Python floats, such an iteration only records its values and takes the next
        direction (a few operations instead of the mask algebra of :meth:`_full_step`,
        which any other iteration goes through). Returns False, having changed nothing,
        when the iteration needs :meth:`_full_step`.
        """
        if self.k != 1 or (self.s.restart and self.it % self.s.restart == 0):
            return False
        pAp, num, rz_old = (
            float(dots_h[0, 0]),
            float(self.variant.numerator(dots_h, self.rz_h)[0]),
            float(self.rz_h[0]),
        )
        rz_new, rnorm = float(rz_new_h[0]), float(rnorm_h[0])
        monitor = rnorm if tnorm_h is None else float(tnorm_h[0])
        thr = float(self.thr[0])
        best, best_it = float(self.best[0]), int(self.best_it[0])
        if monitor < best:
            best, best_it = monitor, self.it
        quiet = (
            math.isfinite(pAp) and pAp > 0 and math.isfinite(num)
            and math.isfinite(rz_new) and rz_new > 0 and rz_old != 0
            and math.isfinite(monitor) and rnorm > thr and monitor > thr
            and monitor <= self.s.divergence_factor * float(self.rscale[0])
            and self.it - best_it < max(self.s.stagnation_window, best_it)
        )  # fmt: skip
        if not quiet:
            return False
        alpha_h = np.array([num / pAp])
        beta_h = self.variant.beta(rz_new_h, self.rz_h, alpha_h, extra_h)
        if beta_h is not None and not math.isfinite(float(beta_h[0])):
            return False
        if self.variant.lanczos:
            self.alphas.append(alpha_h)
            self.betas.append(beta_h)
        self.best[0], self.best_it[0] = best, best_it
        self.hist.append(np.array([monitor / float(self.bscale[0])]))
        self.times.append(time.perf_counter() - self.t0)
        self.p = self.variant.direction(self, z, Ap, dots_h[0], beta_h)
        self.rz_h = rz_new_h
        return True

    def _update(self, Ap: torch.Tensor) -> list[torch.Tensor]:
        """``x += alpha p`` and ``r -= alpha A p`` with the step length formed on the device.

        ``alpha`` is zero in every column where ``p^T A p`` is not finite and positive (a
        stopped column, whose ``p`` is zero, or a breakdown, which the host reports after
        the transfer), so such a column's ``x`` and ``r`` stay as they were. Returns the
        step's inner products (``p^T A p`` first) for the one host transfer.
        """
        dots_t = self.variant.step_dots(self.p, Ap, self.r)
        pAp_t = dots_t[0]
        num_t = self.variant.numerator(dots_t, self.rz_t)
        # NaN > 0 is False and num / inf is 0: one comparison guards every bad p^T A p
        alpha_t = torch.where(pAp_t > 0, num_t / pAp_t, 0.0)
        self.rr = None  # the new r^T r, where the step's pass gives it
        if self.k == 1 and self.device.type == "cpu":  # no transfer: the native kernels may
            alpha = float(alpha_t.reshape(-1)[0])
            x, p, r, q = (t.reshape(-1) for t in (self.x, self.p, self.r, Ap))
            self.rr = native_vectors.step(alpha, p, x, q, r)
            if self.rr is not None:
                return dots_t
        self.x.addcmul_(self.p, alpha_t)
        self.r.addcmul_(Ap, alpha_t, value=-1.0)
        return dots_t

    def _step_length(self, dots: np.ndarray, was_active: np.ndarray) -> tuple[np.ndarray, ...]:
        """``p^T A p`` (breakdown and NaN checked) and the step length ``alpha`` on the host."""
        pAp_h, num_h = dots[0], self.variant.numerator(dots, self.rz_h)
        nonfinite = was_active & ~np.isfinite(pAp_h)
        self.stop(nonfinite, Status.NONFINITE)
        self.stop(was_active & ~nonfinite & (pAp_h <= 0), Status.BREAKDOWN)
        ok = self.live()
        alpha_h = np.where(ok, num_h / np.where(ok, pAp_h, 1.0), 0.0)
        return pAp_h, alpha_h

    def _residual_statistics(self, Ap: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``z = M r`` and the residual's statistics, on the device.

        ``r^T z``, ``r^T r`` (with a preconditioner), the variant's dots and
        (``history="true"``) the true ``||b - A x||``.
        """
        z = self.variant.precondition(self.r)
        if self.variant.precond is not None:
            stats = coldots(self.r, z, self.r)  # r^T z and r^T r in one pass
        else:
            stats = [coldot(self.r, z)]
        stats.extend(self.variant.residual_dots(z, Ap))
        if self.s.history == "true":
            stats.append(colnorm(self.b - self.A(self.x)))
        return z, stats

    def _split_statistics(self, host: np.ndarray) -> tuple[Any, ...]:
        """``r^T z``, ``||r||``, the variant's dots and the true norm (or None) on the host."""
        preconditioned = self.variant.precond is not None
        rnorm_h = np.sqrt(np.maximum(host[1] if preconditioned else host[0], 0.0))
        first = 2 if preconditioned else 1
        last = len(host) - 1 if self.s.history == "true" else len(host)
        tnorm_h = host[-1] if self.s.history == "true" else None
        return host[0], rnorm_h, host[first:last], tnorm_h

    def decide(
        self,
        rz_new_h: np.ndarray,
        rnorm_h: np.ndarray,
        monitor: np.ndarray,
        tnorm_h: np.ndarray | None,
    ) -> np.ndarray:
        """Stop the columns that converged, broke down, diverged or stagnated.

        Returns the mask of the columns whose recurrence residual must be replaced by the
        true one (it met the tolerance, the true residual did not).
        """
        self.stop(self.live() & ~(np.isfinite(rz_new_h) & np.isfinite(monitor)), Status.NONFINITE)
        hist_true = tnorm_h is not None
        candidate = self.live() & ((rnorm_h <= self.thr) | (hist_true & (monitor <= self.thr)))
        replace_cols = np.zeros(self.k, dtype=bool)
        if candidate.any():
            replace_cols = self._confirm(np.flatnonzero(candidate), tnorm_h)
        # The preconditioned inner product r^T M r must stay positive (M SPD).
        pbreak = self.live() & ~replace_cols & (rz_new_h <= 0) & (rnorm_h > 0)
        self.stop(pbreak, Status.BREAKDOWN)
        self.stop(self.live() & (monitor > self.s.divergence_factor * self.rscale), Status.DIVERGED)
        improved = self.live() & (monitor < self.best)
        self.best = np.where(improved, monitor, self.best)
        self.best_it = np.where(improved, self.it, self.best_it)
        # a plateau may last as long as the progress before it (CG's residual norm is
        # not monotone: 600 iterations above an earlier minimum at contrast 1e4)
        window = np.maximum(self.s.stagnation_window, self.best_it)
        self.stop(self.live() & (self.it - self.best_it >= window), Status.STAGNATION)
        return replace_cols

    def _confirm(self, cols: np.ndarray, tnorm_h: np.ndarray | None) -> np.ndarray:
        """Check convergence of ``cols`` on the true float64 residual; count the failures."""
        if tnorm_h is not None and self.dtype == torch.float64:
            tn = tnorm_h[cols]
        else:
            tn = self.true_residual64(cols)
        good = tn <= self.thr[cols]
        self.status[cols[good]] = Status.CONVERGED.severity
        self.final_true[cols[good]] = tn[good]
        failed = cols[~good]
        self.replacements[failed] += 1
        over = self.replacements[failed] > self.s.max_replacements
        self.status[failed[over]] = Status.STAGNATION.severity
        self.final_true[failed[over]] = tn[~good][over]
        replace_cols = np.zeros(self.k, dtype=bool)
        replace_cols[failed[~over]] = True
        return replace_cols

    def _record(self, was_active: np.ndarray, monitor: np.ndarray) -> None:
        """Append this iteration's history row (final true residuals where columns stopped)."""
        row = self.hist[-1].copy()
        row[was_active] = monitor[was_active] / self.bscale[was_active]
        done_now = was_active & ~self.live()
        self.stop_it[done_now] = self.it
        known = done_now & np.isfinite(self.final_true)
        row[known] = self.final_true[known] / self.bscale[known]
        self.hist.append(row)
        self.times.append(time.perf_counter() - self.t0)

    def replace_residual(
        self,
        replace_cols: np.ndarray,
        Ap: torch.Tensor,
        rz_new_h: np.ndarray,
        rz_safe: np.ndarray,
        alpha_h: np.ndarray,
    ) -> tuple[torch.Tensor, np.ndarray, Any]:
        """Replace the recurrence residual of ``replace_cols`` by ``b - A x``.

        Returns the new ``z = M r``, ``r^T z`` and ``beta``.
        """
        logger.debug(
            "iteration %d: residual replacement in columns %s",
            self.it,
            np.flatnonzero(replace_cols).tolist(),
        )
        rc = torch.as_tensor(replace_cols, device=self.device)
        if self.dtype == torch.float64:
            self.r = torch.where(rc, self.b - self.A(self.x), self.r)
        else:  # in float64 with the original matrix, the one convergence is checked on
            self.matvecs += self.k
            true_r = self.b64 - self.s.op64.apply_internal(self.x.to(torch.float64))
            self.r = torch.where(rc, true_r.to(self.dtype), self.r)
        z = self.variant.precondition(self.r)
        rz_t = coldot(self.r, z)
        host = host_values([rz_t, *self.variant.residual_dots(z, Ap)])
        self.rz_t = torch.where(rc, rz_t, self.rz_t)
        rz_new_h = np.where(replace_cols, host[0], rz_new_h)
        beta_h = self.variant.beta(rz_new_h, rz_safe, alpha_h, host[1:])
        newly = replace_cols & (self.first_rep < 0)
        self.first_rep[newly] = self.it
        return z, rz_new_h, beta_h

    def _next_direction(self, z: torch.Tensor, Ap: torch.Tensor, pAp_h: np.ndarray, beta_h: Any):
        """The next search direction (zero in stopped columns), restarting when due."""
        new_active = self.live()
        if not np.array_equal(new_active, self.active_h):  # upload only when it changes
            self.active_h = new_active
            self.all_active = False
            self.active = torch.as_tensor(self.active_h, device=self.device)
        if not self.active_h.any():
            return
        restart = self.s.restart
        if restart and self.it % restart == 0:
            self.p = z.clone()
            self.variant.restart()
        else:
            self.p = self.variant.direction(self, z, Ap, pAp_h, beta_h)
        if not self.all_active:
            self.p = torch.where(self.active, self.p, 0.0)

    # -- wrap up ------------------------------------------------------------------------------
    def finish(self) -> SolveResult:
        """Final true residuals, the overall status and the result with its statistics."""
        remaining = self.live()
        self.stop(remaining, Status.MAXITER)
        self.stop_it[remaining] = self.it
        need = ~np.isfinite(self.final_true)
        if need.any():
            cols = np.flatnonzero(need)
            self.final_true[cols] = self.true_residual64(cols)
        if self.scaled:
            self._check_scaled_back()
        hist_arr = np.array(self.hist)
        for j in range(self.k):  # last entry of each column: its true final residual
            hist_arr[self.stop_it[j] :, j] = self.final_true[j] / self.bscale[j]
        # Guarantee of the module: never 'converged' unless the true residual meets tol.
        conv = self.status == Status.CONVERGED.severity
        if np.any(self.final_true[conv] > self.thr[conv]):
            raise RuntimeError("internal error: converged column fails the true residual check")
        bad = ~np.isfinite(self.final_true)
        if bad.any():
            self.stop(bad, Status.NONFINITE)
            self.detail = self.detail or "the final residual is NaN or Inf"
        x_user = self.to_user(self.x)
        overall = Status.from_severity(int(self.status.min())) if self.k else Status.CONVERGED
        return SolveResult(
            x=x_user,
            status=overall,
            iterations=int(self.stop_it.max()) if self.k else 0,
            residuals=hist_arr[:, 0] if self.single else hist_arr,
            setup_seconds=self.s.setup_seconds,
            solve_seconds=time.perf_counter() - self.t0,
            matvecs=self.matvecs,
            info=self._info(),
        )

    def _check_scaled_back(self) -> None:
        """Recheck converged columns on the ``x`` the user gets, rounded in the user's units.

        Scaled back to the size of ``b``, ``x`` may leave the range of the working
        precision: Inf above it, zero or subnormal (a few bits left) below it. The residual
        of that rounded ``x`` (divided by the same power of two again, which is exact) is
        what must meet the threshold; columns where it does not become NONFINITE.
        """
        conv = np.flatnonzero(self.status == Status.CONVERGED.severity)
        if conv.size == 0:
            return
        scale = torch.as_tensor(self.scale[conv], device=self.device)
        x = self.x[:, conv].to(torch.float64)
        with torch.no_grad():
            returned = ((x * scale).to(self.dtype).to(torch.float64)) / scale
        self.verify_matvecs += conv.size
        self.matvecs += conv.size
        r = self.b64[:, conv] - self.s.op64.apply_internal(returned)
        tn = colnorm(r).cpu().numpy().astype(np.float64)
        bad = ~(tn <= self.thr[conv])
        if bad.any():
            cols = conv[bad]
            self.stop(np.isin(np.arange(self.k), cols), Status.NONFINITE)
            self.final_true[cols] = tn[bad]
            name = str(self.dtype).replace("torch.", "")
            self.detail = (
                f"the solution is outside the range of {name} once scaled back to the size of "
                f"b (its entries over- or underflow); solve a rescaled system"
                + (" or in float64" if name != "float64" else "")
            )

    def _info(self) -> SolveInfo:
        s = self.s
        info = SolveInfo(
            method=s.name,
            column_status=[Status.from_severity(c).value for c in self.status],
            column_iterations=self.stop_it.tolist(),
            residual_replacements=self.replacements.tolist(),
            first_replacement=self.first_rep.tolist(),
            history=s.history,
            verification_matvecs=self.verify_matvecs,
            times=np.array(self.times),
            device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""),
            operator=type(s.op).__name__,
            preconditioner=s.precond_label,
            threshold=self.thr[0] * self.scale[0] if self.single else self.thr * self.scale,
            detail=self.detail,
        )
        if self.variant.lanczos:
            a = np.array(self.alphas).reshape(-1, self.k)
            bt = np.array(self.betas).reshape(-1, self.k)
            info.alphas = a[:, 0] if self.single else a
            info.betas = bt[:, 0] if self.single else bt
        return info
