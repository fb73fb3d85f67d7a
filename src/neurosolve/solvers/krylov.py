r"""Conjugate gradients in torch: CG, preconditioned CG and flexible CG.

All three run on CPU or CUDA, in float32 or float64, for one right-hand side ``(n,)`` or a
block ``(n, k)`` solved column by column in lock step (each column stops on its own).

Stopping rule and residual checks
---------------------------------
The loop is driven by the recurrence residual ``r_k`` (as in every CG code), but a column is
only declared converged after its TRUE residual ``b - A x_k``, recomputed in float64, meets

.. math:: \|b - A x_k\|_2 \le \max(\mathrm{rtol}\,\|b\|_2, \mathrm{atol}).

If the recurrence says "converged" and the true residual disagrees (rounding drift, float32,
an inexact preconditioner), the recurrence residual is replaced by the true one and the
iteration continues; after ``max_replacements`` such replacements the column stops with
``Status.STAGNATION``. A column also stops on breakdown (``p^T A p <= 0``, or
``r^T M r <= 0`` for PCG: the matrix or preconditioner is not SPD), on NaN/Inf, when the
residual grows above ``divergence_factor`` times its initial value, or when the residual
has not reached a new minimum for ``max(stagnation_window, k_min)`` iterations, ``k_min``
the iteration of the minimum so far.

Residual history
----------------
``history="true"`` (default) records the true relative residual ``||b - A x_k|| / ||b||`` at
every iteration at the price of one extra product with ``A`` per iteration (counted in
``matvecs``; for a 5/7-point operator this is about a third of an iteration's cost).
``history="recurrence"`` (alias ``"cheap"``) records the recurrence residual instead (free)
except for the first entry (``b - A x_0``) and each column's final entry, which are true
residuals; use it for timings. In both modes convergence is only declared on the true
residual. ``setup_seconds`` is the operator / preconditioner build; input checks are not
counted.

For CG and PCG the Lanczos coefficients (``alphas``, ``betas``) are kept in ``info``, and
:func:`condition_estimate` turns them into an estimate of the condition number of the
(preconditioned) matrix.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.registry import PreparedSystem, check_vector, prepare_system
from neurosolve.solvers.result import SolveResult, Status, stopping_threshold
from neurosolve.solvers.stencil import SparseOperator, StencilOperator

__all__ = [
    "CGSolver",
    "FlexibleCGSolver",
    "JacobiPCGSolver",
    "PCGSolver",
    "as_torch_operator",
    "cg",
    "condition_estimate",
    "fcg",
    "pcg",
]

logger = logging.getLogger(__name__)

# When several columns of a batch fail for different reasons, the result reports the most
# severe one (first in this list).
_SEVERITY = (
    Status.NONFINITE,
    Status.BREAKDOWN,
    Status.DIVERGED,
    Status.STAGNATION,
    Status.MAXITER,
    Status.CONVERGED,
)
_CODE = {s: i for i, s in enumerate(_SEVERITY)}
_ACTIVE = -1


# ---------------------------------------------------------------------------------------------
# Operators and preconditioners
# ---------------------------------------------------------------------------------------------
class _LinearOperatorAdapter:
    """A scipy LinearOperator behind the torch operator protocol (host round trip per use).

    Only for operators without an explicit matrix; on CUDA every product copies the vector
    to the host and back, so prefer a matrix, a LinearSystem or a StencilOperator there.
    """

    grid = None

    def __init__(self, operator: spla.LinearOperator, device: torch.device, dtype: torch.dtype):
        self.operator, self.device, self.dtype = operator, device, dtype
        self.num_unknowns = int(operator.shape[0])

    def to_internal(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def from_internal(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def apply_internal(self, v: torch.Tensor) -> torch.Tensor:
        out = self.operator.matmat(v.detach().cpu().double().numpy().reshape(v.shape[0], -1))
        return torch.as_tensor(np.asarray(out), dtype=v.dtype, device=v.device).reshape(v.shape)

    def diagonal_internal(self) -> torch.Tensor:
        raise InvalidInputError(
            "the Jacobi preconditioner needs the diagonal of A, which a LinearOperator does "
            "not expose; pass the matrix instead"
        )

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_internal(x)


def as_torch_operator(
    A: Any,
    *,
    device: Any = None,
    dtype: torch.dtype = torch.float64,
    operator: str = "auto",
    prepared: PreparedSystem | None = None,
) -> Any:
    """Turn any supported ``A`` into a torch operator (stencil, sparse CSR or adapter).

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        The operator (checked by :func:`~neurosolve.solvers.registry.prepare_system` unless
        ``prepared`` is given).
    device, dtype
        Where and in which precision products are computed.
    operator : {"auto", "stencil", "csr"}
        ``"stencil"``: matrix-free :class:`StencilOperator` (needs a grid and a 5/7-point
        matrix); ``"csr"``: torch sparse CSR; ``"auto"``: the stencil when a grid is known
        and the matrix fits its pattern, else CSR.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> type(as_torch_operator(poisson((4, 4)))).__name__
    'StencilOperator'
    >>> type(as_torch_operator(poisson((4, 4)).A)).__name__
    'SparseOperator'
    """
    if operator not in ("auto", "stencil", "csr"):
        raise InvalidInputError(f"operator must be 'auto', 'stencil' or 'csr', got {operator!r}")
    if dtype not in (torch.float32, torch.float64):
        raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    device = resolve_device(device)
    p = prepared if prepared is not None else prepare_system(A)
    if p.torch_operator is not None:
        op = p.torch_operator
        if op.device == device and op.dtype == dtype:
            return op
        if isinstance(op, StencilOperator):
            return StencilOperator(
                op.grid,
                op.diagonal.to(device=device, dtype=dtype),
                op.neighbours.to(device=device, dtype=dtype),
            )
        return _LinearOperatorAdapter(p.operator, device, dtype)
    if p.matrix is None:
        if operator != "auto":
            raise InvalidInputError(
                f"operator={operator!r} needs an explicit matrix; got a LinearOperator"
            )
        return _LinearOperatorAdapter(p.operator, device, dtype)
    if operator in ("auto", "stencil") and p.grid is not None:
        try:
            return StencilOperator.from_matrix(p.matrix, p.grid, device=device, dtype=dtype)
        except InvalidInputError:
            if operator == "stencil":
                raise
            logger.info("matrix is not a 5/7-point stencil on its grid; using sparse CSR")
    elif operator == "stencil":
        raise InvalidInputError("operator='stencil' needs a grid: pass a LinearSystem with a grid")
    return SparseOperator(p.matrix, device=device, dtype=dtype)


def _float64_twin(op: Any, prepared: PreparedSystem) -> Any:
    """The same operator in float64 (for verifying float32 solves); ``op`` itself if it is."""
    if op.dtype == torch.float64:
        return op
    if isinstance(op, StencilOperator):
        return StencilOperator(op.grid, op.diagonal.double(), op.neighbours.double())
    if prepared.matrix is not None:
        return SparseOperator(prepared.matrix, device=op.device, dtype=torch.float64)
    return _LinearOperatorAdapter(prepared.operator, op.device, torch.float64)


def _make_preconditioner(
    M: Any, op: Any, device: torch.device, dtype: torch.dtype
) -> tuple[Callable[[torch.Tensor, bool], torch.Tensor] | None, str]:
    """Return ``apply(v_internal, single) -> M v`` (or None for identity) and a label."""
    if M is None:
        return None, "none"
    if isinstance(M, str):
        if M != "jacobi":
            raise InvalidInputError(f"unknown preconditioner {M!r}; use 'jacobi' or an object")
        d = op.diagonal_internal().to(device=device, dtype=dtype)
        if bool((d < 0).any()):
            raise InvalidInputError("Jacobi needs a positive diagonal; A has negative entries")
        inv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), 0.0).unsqueeze(1)
        return (lambda v, single: v * inv), "jacobi"

    def on_unknowns(fn: Callable[[torch.Tensor], torch.Tensor], squeeze: bool):
        def apply(v: torch.Tensor, single: bool) -> torch.Tensor:
            u = op.from_internal(v)
            arg = u[:, 0] if (single and squeeze) else u
            out = fn(arg)
            if not isinstance(out, torch.Tensor):
                out = torch.as_tensor(np.asarray(out))
            out = out.to(device=device, dtype=dtype).reshape(u.shape)
            return op.to_internal(out)

        return apply

    if hasattr(M, "aspreconditioner") and not isinstance(M, spla.LinearOperator):
        M = M.aspreconditioner()
    if isinstance(M, torch.Tensor):
        if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] != op.num_unknowns:
            raise InvalidInputError(
                f"preconditioner matrix has shape {tuple(M.shape)}; expected "
                f"({op.num_unknowns}, {op.num_unknowns})"
            )
        Mt = M.to(device=device, dtype=dtype)
        return on_unknowns(lambda u: Mt @ u, squeeze=False), "matrix"
    if sp.issparse(M) or isinstance(M, np.ndarray):
        if M.shape != (op.num_unknowns, op.num_unknowns):
            raise InvalidInputError(
                f"preconditioner matrix has shape {M.shape}; expected "
                f"({op.num_unknowns}, {op.num_unknowns})"
            )
        if sp.issparse(M):
            Ms = SparseOperator(M, device=device, dtype=dtype)
            return on_unknowns(Ms.apply_internal, squeeze=False), "matrix"
        Md = torch.as_tensor(M, device=device, dtype=dtype)
        return on_unknowns(lambda u: Md @ u, squeeze=False), "matrix"
    if isinstance(M, spla.LinearOperator):
        if M.shape != (op.num_unknowns, op.num_unknowns):
            raise InvalidInputError(
                f"preconditioner has shape {M.shape}; expected ({op.num_unknowns}, "
                f"{op.num_unknowns})"
            )

        def host(u: torch.Tensor) -> torch.Tensor:
            out = M.matmat(u.detach().cpu().double().numpy())
            return torch.as_tensor(np.asarray(out))

        return on_unknowns(host, squeeze=False), "linear-operator"
    if isinstance(M, nn.Module) or callable(M):

        def call(u: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return M(u)

        return on_unknowns(call, squeeze=True), type(M).__name__
    raise InvalidInputError(
        "preconditioner must be None, 'jacobi', a matrix (scipy/numpy/torch), a "
        f"LinearOperator, an object with .aspreconditioner(), or a callable; got {type(M).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# The iteration
# ---------------------------------------------------------------------------------------------
def _colnorm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=0)


def _coldot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if u.shape[1] == 1:  # one fused kernel for a single right-hand side
        return torch.vdot(u.reshape(-1), v.reshape(-1)).reshape(1)
    return (u * v).sum(dim=0)


def _axpy(y: torch.Tensor, x: torch.Tensor, a: Any) -> None:
    """``y += a * x`` in place; ``a`` is a Python/NumPy scalar (1 column) or a (k,) tensor."""
    if isinstance(a, torch.Tensor):
        y.addcmul_(x, a)
    else:
        y.add_(x, alpha=float(np.asarray(a).reshape(-1)[0]))


class _Run:
    """State and bookkeeping of one (batched) solve; see :meth:`iterate`."""

    def __init__(
        self,
        solver: _TorchKrylov,
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
        if maxiter is None:
            maxiter = 10 * n
        if not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
            raise InvalidInputError(f"maxiter must be a non-negative integer, got {maxiter!r}")
        self.maxiter = int(maxiter)
        self.callback = callback

        def to_dev(v: Any, dtype: torch.dtype) -> torch.Tensor:
            t = torch.as_tensor(v).to(device=self.device, dtype=dtype)
            return t.reshape(n, -1)

        # Unknown-layout float64 copies for verification; internal working copies.
        self.b64 = (
            op.to_internal(to_dev(b_user, torch.float64)) if op.dtype != torch.float64 else None
        )
        self.b = op.to_internal(to_dev(b_user, self.dtype))
        if self.b64 is None:
            self.b64 = self.b
        self.k = self.b.shape[1]
        self.x = (
            op.to_internal(to_dev(x0, self.dtype)).clone()
            if x0 is not None
            else torch.zeros_like(self.b)
        )
        bnorm = _colnorm(self.b64).cpu().numpy().astype(np.float64)
        self.bnorm = bnorm
        self.bscale = np.where(bnorm > 0, bnorm, 1.0)
        self.thr = np.array([stopping_threshold(float(v), rtol, atol) for v in bnorm])
        self.matvecs = 0
        self.verify_matvecs = 0

    # -- helpers ------------------------------------------------------------------------------
    def _on_device(self, values: np.ndarray) -> Any:
        """Per-column scalars for the device: a float for one column, else a (k,) tensor."""
        if self.k == 1:
            return float(values[0])
        return torch.as_tensor(values, dtype=self.dtype, device=self.device)

    def A(self, v: torch.Tensor) -> torch.Tensor:
        self.matvecs += v.shape[1]
        return self.s.op.apply_internal(v)

    def true_residual64(self, cols: np.ndarray | None = None) -> np.ndarray:
        """float64 ``||b - A x||`` per column (all columns, or ``cols``)."""
        x = self.x if cols is None else self.x[:, cols]
        b = self.b64 if cols is None else self.b64[:, cols]
        self.verify_matvecs += x.shape[1]
        self.matvecs += x.shape[1]
        r = b - self.s.op64.apply_internal(x.to(torch.float64))
        return _colnorm(r).cpu().numpy().astype(np.float64)

    def to_user(self, v: torch.Tensor) -> Any:
        u = self.s.op.from_internal(v)
        if self.single:
            u = u[:, 0]
        # always a copy: callbacks may keep iterates, and x must not alias solver state
        if self.is_torch:
            return u.to(self.user_device, copy=True)
        return u.detach().cpu().numpy().copy()

    # -- the loop -----------------------------------------------------------------------------
    def iterate(self) -> SolveResult:
        s = self.s
        t0 = time.perf_counter()
        k = self.k
        x, b = self.x, self.b
        variant = s.variant
        precond = s.precond
        hist_true = s.history == "true"

        status = np.full(k, _ACTIVE)
        stop_it = np.zeros(k, dtype=np.int64)
        replacements = np.zeros(k, dtype=np.int64)
        first_rep = np.full(k, -1, dtype=np.int64)
        final_true = np.full(k, np.nan)

        # b = 0: x = 0 is the exact solution, whatever x0 says.
        zero_b = self.bnorm == 0
        if zero_b.any():
            x[:, torch.as_tensor(zero_b, device=self.device)] = 0
            status[zero_b] = _CODE[Status.CONVERGED]
            final_true[zero_b] = 0.0

        if bool(torch.count_nonzero(x)):
            r = b - self.A(x)
        else:
            r = b.clone()
        r0 = _colnorm(r).cpu().numpy().astype(np.float64)
        if self.dtype != torch.float64:
            r0 = np.where(status == _ACTIVE, self.true_residual64(), r0)
        hist = [r0 / self.bscale]
        times = [time.perf_counter() - t0]
        ok0 = (r0 <= self.thr) & (status == _ACTIVE)
        status[ok0] = _CODE[Status.CONVERGED]
        final_true[ok0] = r0[ok0]
        best = r0.copy()
        best_it = np.zeros(k, dtype=np.int64)
        rscale = np.maximum(r0, self.thr)

        alphas: list[np.ndarray] = []
        betas: list[np.ndarray] = []

        z = r if precond is None else precond(r, self.single)
        rz = _coldot(r, z)
        rz_h = rz.cpu().numpy().astype(np.float64)
        bad = (status == _ACTIVE) & ~np.isfinite(rz_h)
        status[bad] = _CODE[Status.NONFINITE]
        bad = (status == _ACTIVE) & (rz_h <= 0)
        status[bad] = _CODE[Status.BREAKDOWN]
        active_h = status == _ACTIVE
        active = torch.as_tensor(active_h, device=self.device)
        all_active = bool(active_h.all())
        p = z.clone() if all_active else torch.where(active, z, 0.0)
        directions: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []
        flexible = variant == "fcg"
        it = 0
        # Two host synchronizations per iteration: after p^T A p (so that a breakdown never
        # touches x and the step length is computed on the host), and after the residual
        # update (for every decision). Scalars travel to the device only as step lengths.
        while active_h.any() and it < self.maxiter:
            it += 1
            was_active = active_h.copy()
            Ap = self.A(p)
            if flexible:
                host = torch.stack([_coldot(p, Ap), _coldot(p, r)]).cpu().numpy()
                pAp_h, num_h = host[0].astype(np.float64), host[1].astype(np.float64)
            else:
                pAp_h = _coldot(p, Ap).cpu().numpy().astype(np.float64)
                num_h = rz_h
            nonfinite = was_active & ~np.isfinite(pAp_h)
            breakdown = was_active & ~nonfinite & (pAp_h <= 0)
            status[nonfinite] = _CODE[Status.NONFINITE]
            status[breakdown] = _CODE[Status.BREAKDOWN]
            ok = status == _ACTIVE
            alpha_h = np.where(ok, num_h / np.where(ok, pAp_h, 1.0), 0.0)
            alpha = self._on_device(alpha_h)
            _axpy(x, p, alpha)
            _axpy(r, Ap, -alpha_h if k == 1 else -alpha)
            z = r if precond is None else precond(r, self.single)
            stats = [_coldot(r, z)]
            if precond is not None:
                stats.append(_coldot(r, r))
            if flexible and s.truncation == 1:
                stats.append(_coldot(z, Ap))
            if hist_true:
                stats.append(_colnorm(b - self.A(x)))
            host = torch.stack(stats).cpu().numpy().astype(np.float64)
            rz_new_h = host[0]
            rnorm_h = np.sqrt(np.maximum(host[1] if precond is not None else host[0], 0.0))
            zAp_h = (
                host[2 if precond is not None else 1] if flexible and s.truncation == 1 else None
            )
            tnorm_h = host[-1] if hist_true else None
            rz_safe = np.where(rz_h != 0, rz_h, 1.0)
            if not flexible:
                beta_h = rz_new_h / rz_safe
                alphas.append(np.where(was_active, alpha_h, np.nan))
                betas.append(np.where(was_active, beta_h, np.nan))
            elif zAp_h is not None:
                # Polak-Ribiere: beta = z_{k+1}^T (r_{k+1} - r_k) / (z_k^T r_k), with
                # r_{k+1} - r_k = -alpha A p_k (no copy of r_k needed).
                beta_h = -alpha_h * zAp_h / rz_safe
            else:
                beta_h = None  # truncated flexible CG: explicit A-orthogonalization below

            # ---- decisions, per active column --------------------------------------------
            monitor = tnorm_h if hist_true else rnorm_h
            live = status == _ACTIVE
            nonfinite = live & ~(np.isfinite(rz_new_h) & np.isfinite(monitor))
            status[nonfinite] = _CODE[Status.NONFINITE]
            live = status == _ACTIVE
            candidate = live & ((rnorm_h <= self.thr) | (hist_true & (monitor <= self.thr)))
            replace_cols = np.zeros(k, dtype=bool)
            if candidate.any():
                cols = np.flatnonzero(candidate)
                if hist_true and self.dtype == torch.float64:
                    tn = tnorm_h[cols]
                else:
                    tn = self.true_residual64(cols)
                good = tn <= self.thr[cols]
                status[cols[good]] = _CODE[Status.CONVERGED]
                final_true[cols[good]] = tn[good]
                failed = cols[~good]
                replacements[failed] += 1
                over = replacements[failed] > s.max_replacements
                status[failed[over]] = _CODE[Status.STAGNATION]
                final_true[failed[over]] = tn[~good][over]
                replace_cols[failed[~over]] = True
            live = status == _ACTIVE
            # The preconditioned inner product r^T M r must stay positive (M SPD).
            pbreak = live & ~replace_cols & (rz_new_h <= 0) & (rnorm_h > 0)
            status[pbreak] = _CODE[Status.BREAKDOWN]
            live = status == _ACTIVE
            diverged = live & (monitor > s.divergence_factor * rscale)
            status[diverged] = _CODE[Status.DIVERGED]
            live = status == _ACTIVE
            improved = live & (monitor < best)
            best = np.where(improved, monitor, best)
            best_it = np.where(improved, it, best_it)
            # a plateau may last as long as the progress before it (CG's residual norm is
            # not monotone: 600 iterations above an earlier minimum at contrast 1e4)
            stagnant = live & (it - best_it >= np.maximum(s.stagnation_window, best_it))
            status[stagnant] = _CODE[Status.STAGNATION]

            # ---- history -----------------------------------------------------------------
            row = hist[-1].copy()
            row[was_active] = monitor[was_active] / self.bscale[was_active]
            done_now = was_active & (status != _ACTIVE)
            stop_it[done_now] = it
            known = done_now & np.isfinite(final_true)
            row[known] = final_true[known] / self.bscale[known]
            hist.append(row)
            times.append(time.perf_counter() - t0)

            # ---- residual replacement ----------------------------------------------------
            if replace_cols.any():
                logger.debug(
                    "iteration %d: residual replacement in columns %s",
                    it,
                    np.flatnonzero(replace_cols).tolist(),
                )
                rc = torch.as_tensor(replace_cols, device=self.device)
                r = torch.where(rc, b - self.A(x), r)
                z = r if precond is None else precond(r, self.single)
                extra = [_coldot(r, z)]
                if flexible and beta_h is not None:
                    extra.append(_coldot(z, Ap))
                host = torch.stack(extra).cpu().numpy().astype(np.float64)
                rz_new_h = np.where(replace_cols, host[0], rz_new_h)
                if not flexible:
                    beta_h = rz_new_h / rz_safe
                elif beta_h is not None:
                    beta_h = -alpha_h * host[1] / rz_safe
                newly = replace_cols & (first_rep < 0)
                first_rep[newly] = it

            # ---- next direction ----------------------------------------------------------
            new_active = status == _ACTIVE
            if not np.array_equal(new_active, active_h):  # upload only when it changes
                active_h = new_active
                all_active = False
                active = torch.as_tensor(active_h, device=self.device)
            if not active_h.any():
                pass
            elif s.restart and it % s.restart == 0:
                p = z.clone()
                directions.clear()
            elif beta_h is None:  # truncated flexible CG: A-orthogonalize z against old p's
                directions.append((p, Ap, pAp_h))
                if len(directions) > s.truncation:
                    directions.pop(0)
                zAp = torch.stack([_coldot(z, Apj) for _, Apj, _ in directions])
                coef = zAp.cpu().numpy().astype(np.float64)
                p = z.clone()
                for (pj, _, pApj), cj in zip(directions, coef, strict=True):
                    c = np.where(pApj > 0, cj / np.where(pApj > 0, pApj, 1.0), 0.0)
                    _axpy(p, pj, -c if k == 1 else self._on_device(-c))
            else:
                beta_h = np.where(active_h, beta_h, 0.0)
                p = p.mul_(self._on_device(beta_h)).add_(z)
            if not all_active and active_h.any():
                p = torch.where(active, p, 0.0)
            rz_h = rz_new_h
            if self.callback is not None:
                self.callback(self.to_user(x))

        # ---- wrap up -------------------------------------------------------------------------
        remaining = status == _ACTIVE
        status[remaining] = _CODE[Status.MAXITER]
        stop_it[remaining] = it
        need = ~np.isfinite(final_true)
        if need.any():
            cols = np.flatnonzero(need)
            final_true[cols] = self.true_residual64(cols)
        hist_arr = np.array(hist)
        for j in range(k):  # last entry of each column: its true final residual
            hist_arr[stop_it[j] :, j] = final_true[j] / self.bscale[j]
        # Guarantee of the module: never 'converged' unless the true residual meets tol.
        conv = status == _CODE[Status.CONVERGED]
        if np.any(final_true[conv] > self.thr[conv]):
            raise RuntimeError("internal error: converged column fails the true residual check")
        overall = _SEVERITY[int(status.min())] if k else Status.CONVERGED
        info: dict[str, Any] = {
            "method": s.name,
            "column_status": [_SEVERITY[c].value for c in status],
            "column_iterations": stop_it.tolist(),
            "residual_replacements": replacements.tolist(),
            "first_replacement": first_rep.tolist(),
            "history": s.history,
            "verification_matvecs": self.verify_matvecs,
            "times": np.array(times),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "operator": type(s.op).__name__,
            "preconditioner": s.precond_label,
            "threshold": self.thr[0] if self.single else self.thr,
        }
        if variant != "fcg":
            a = np.array(alphas).reshape(-1, k)
            bt = np.array(betas).reshape(-1, k)
            info["alphas"] = a[:, 0] if self.single else a
            info["betas"] = bt[:, 0] if self.single else bt
        residuals = hist_arr[:, 0] if self.single else hist_arr
        return SolveResult(
            x=self.to_user(x),
            status=overall,
            iterations=int(stop_it.max()) if k else 0,
            residuals=residuals,
            setup_seconds=s.setup_seconds,
            solve_seconds=time.perf_counter() - t0,
            matvecs=self.matvecs,
            info=info,
        )


# ---------------------------------------------------------------------------------------------
# Solver objects
# ---------------------------------------------------------------------------------------------
class _TorchKrylov:
    variant = "cg"
    name = "cg"
    needs_grid = False

    def __init__(
        self,
        A: Any,
        *,
        preconditioner: Any = None,
        device: Any = None,
        dtype: torch.dtype = torch.float64,
        operator: str = "auto",
        history: str = "true",
        truncation: int = 1,
        restart: int | None = None,
        max_replacements: int = 5,
        stagnation_window: int = 500,
        divergence_factor: float = 1e8,
        check_symmetry: bool = True,
    ) -> None:
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if history == "cheap":  # the name every method accepts for "no extra products"
            history = "recurrence"
        if history not in ("true", "recurrence"):
            raise InvalidInputError(
                f"history must be 'true', 'recurrence' or 'cheap', got {history!r}"
            )
        for label, value, low in (
            ("truncation", truncation, 1),
            ("max_replacements", max_replacements, 0),
            ("stagnation_window", stagnation_window, 1),
        ):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise InvalidInputError(f"{label} must be an integer >= {low}, got {value!r}")
        if restart is not None and (not isinstance(restart, (int, np.integer)) or restart < 1):
            raise InvalidInputError(f"restart must be None or an integer >= 1, got {restart!r}")
        if not (divergence_factor > 1):
            raise InvalidInputError(f"divergence_factor must be > 1, got {divergence_factor!r}")
        self.prepared = prepare_system(A, check_symmetry=check_symmetry)
        t = time.perf_counter()  # setup_seconds: operator/preconditioner build, not checks
        self.op = as_torch_operator(
            A, device=device, dtype=dtype, operator=operator, prepared=self.prepared
        )
        self.op64 = _float64_twin(self.op, self.prepared)
        self.precond, self.precond_label = _make_preconditioner(
            preconditioner, self.op, self.op.device, dtype
        )
        self.history = history
        self.truncation = int(truncation)
        self.restart = restart
        self.max_replacements = int(max_replacements)
        self.stagnation_window = int(stagnation_window)
        self.divergence_factor = float(divergence_factor)
        self.setup_seconds = time.perf_counter() - t

    @property
    def device(self) -> torch.device:
        """Device the iteration runs on."""
        return self.op.device

    @property
    def dtype(self) -> torch.dtype:
        """Working precision."""
        return self.op.dtype

    def solve(
        self,
        b: Any,
        *,
        x0: Any = None,
        rtol: float = 1e-6,
        atol: float = 0.0,
        maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> SolveResult:
        """Solve ``A x = b`` for one right-hand side ``(n,)`` or a block ``(n, k)``.

        Parameters
        ----------
        b : numpy.ndarray or torch.Tensor
            Right-hand side(s). ``x`` is returned as the same type (and, for tensors, on the
            same device) in the solver's dtype.
        x0 : array or tensor, optional
            Initial guess, same shape as ``b`` (default zero).
        rtol, atol : float
            Stop when ``||b - A x|| <= max(rtol ||b||, atol)`` (true residual, per column).
        maxiter : int, optional
            Iteration limit (default ``10 n``).
        callback : callable, optional
            Called as ``callback(x_k)`` after every iteration, ``x_k`` in the type of ``b``.

        Returns
        -------
        SolveResult
        """
        with torch.no_grad():  # a solve is never part of an autograd graph
            return _Run(self, b, x0, rtol, atol, maxiter, callback).iterate()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.op.num_unknowns}, operator={type(self.op).__name__}, "
            f"preconditioner={self.precond_label}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, history={self.history})"
        )


class CGSolver(_TorchKrylov):
    """Conjugate gradients in torch (CPU/CUDA, float32/float64, batched right-hand sides).

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        SPD operator (checked once, at construction).
    preconditioner : optional
        ``None``, ``"jacobi"``, a matrix (scipy/numpy/torch) approximating ``A^{-1}``, a
        ``LinearOperator``, an object with ``.aspreconditioner()`` (e.g. a pyamg hierarchy),
        a torch module or any callable (called on ``(n,)`` or ``(n, k)`` tensors). It must be
        a fixed SPD linear map; use :class:`FlexibleCGSolver` otherwise.
    device, dtype
        Where and in which precision to iterate (default CPU, float64).
    operator : {"auto", "stencil", "csr"}
        How ``A`` is applied; see :func:`as_torch_operator`.
    history : {"true", "recurrence", "cheap"}
        What ``residuals`` records between the first and last entry (see module docs);
        ``"cheap"`` (accepted by every built-in method) is ``"recurrence"`` here.

    Other Parameters
    ----------------
    truncation : int
        Flexible CG only: directions kept for A-orthogonalization (1 = Polak-Ribiere).
    restart : int, optional
        Flexible CG: restart with ``p = z`` every ``restart`` iterations.
    max_replacements : int
        Residual replacements allowed before stopping with ``STAGNATION``.
    stagnation_window : int
        Stop with ``STAGNATION`` after ``max(stagnation_window, k_min)`` iterations without
        a new minimum residual, ``k_min`` the iteration of the minimum so far (default 500:
        CG residual norms are not monotone and may plateau for hundreds of iterations on
        hard problems; a plateau as long as the progress before it is allowed).
    divergence_factor : float
        Stop with ``DIVERGED`` when the residual exceeds this factor times its initial value.
    check_symmetry : bool
        Check symmetry / positive diagonal of ``A`` at construction.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> result = CGSolver(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.final_residual <= 1e-8
    (True, True)
    """

    variant = "cg"
    name = "cg"


class PCGSolver(_TorchKrylov):
    """Preconditioned conjugate gradients in torch (``preconditioner`` required).

    Same parameters as :class:`CGSolver`.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 10.0, 100.0]).tocsr()
    >>> M = sp.diags([1.0, 0.1, 0.01]).tocsr()
    >>> PCGSolver(A, preconditioner=M).solve(np.ones(3), rtol=1e-10).iterations
    1
    """

    variant = "pcg"
    name = "pcg"

    def __init__(self, A: Any, *, preconditioner: Any = None, **options: Any) -> None:
        if preconditioner is None:
            raise InvalidInputError(
                "pcg needs preconditioner=...: 'jacobi', a matrix, a LinearOperator, an "
                "object with .aspreconditioner(), or a callable (use 'cg' for none)"
            )
        super().__init__(A, preconditioner=preconditioner, **options)


class JacobiPCGSolver(_TorchKrylov):
    """CG preconditioned by the inverse diagonal of A (Jacobi), in torch.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8), coefficient=np.linspace(1, 100, 64).reshape(8, 8))
    >>> JacobiPCGSolver(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    variant = "pcg"
    name = "pcg-jacobi"

    def __init__(self, A: Any, **options: Any) -> None:
        options.pop("preconditioner", None)
        super().__init__(A, preconditioner="jacobi", **options)


class FlexibleCGSolver(_TorchKrylov):
    """Flexible CG (Polak-Ribiere beta, optional truncation/restart) for variable preconditioners.

    Use it when the preconditioner is not a fixed SPD linear map: a neural network, an
    inner iteration, a multigrid cycle with a non-symmetric smoother. With
    ``truncation=m > 1`` each new direction is A-orthogonalized explicitly against the last
    ``m`` directions (Notay's FCG(m)); ``restart=r`` restarts with ``p = M r`` every ``r``
    iterations. With a fixed SPD preconditioner it takes the same steps as PCG in exact
    arithmetic. Lanczos coefficients are not recorded (they have no meaning here).

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8))
    >>> FlexibleCGSolver(system, preconditioner="jacobi").solve(np.ones(64), rtol=1e-8).converged
    True
    """

    variant = "fcg"
    name = "fcg"


# ---------------------------------------------------------------------------------------------
# Functional, scipy-like API
# ---------------------------------------------------------------------------------------------
def cg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Any = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Solve ``A x = b`` by (preconditioned) conjugate gradients in torch.

    A scipy-like wrapper around :class:`CGSolver` (``M`` is the preconditioner, an
    approximation of ``A^{-1}``). ``options`` go to the solver (device, dtype, ...).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    >>> result = cg(A, np.array([1.0, 2.0]), rtol=1e-12)
    >>> result.converged, result.iterations
    (True, 2)
    """
    solver = CGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def pcg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    M: Any,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Preconditioned CG in torch (``M`` required, e.g. ``"jacobi"``).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 4.0]).tocsr()
    >>> pcg(A, np.array([1.0, 4.0]), M="jacobi", rtol=1e-12).x
    array([1., 1.])
    """
    solver = PCGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def fcg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    M: Any = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Flexible CG in torch (see :class:`FlexibleCGSolver`).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 4.0]).tocsr()
    >>> fcg(A, np.array([1.0, 4.0]), M="jacobi", rtol=1e-12).converged
    True
    """
    solver = FlexibleCGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def condition_estimate(info: dict[str, Any], column: int = 0) -> float:
    """Estimate ``cond(M^{-1} A)`` from the Lanczos coefficients of a CG/PCG run.

    The CG step lengths ``alpha_j`` and ``beta_j`` define the Lanczos tridiagonal matrix
    ``T`` with ``T_jj = 1/alpha_j + beta_{j-1}/alpha_{j-1}`` and
    ``T_{j,j+1} = sqrt(beta_j)/alpha_j``; its extreme eigenvalues (Ritz values) approach
    those of the preconditioned matrix from inside, so the ratio is a lower bound that
    tightens as CG proceeds. Iterations after a residual replacement are not used.

    Parameters
    ----------
    info : dict
        ``SolveResult.info`` of a CG or PCG solve (torch solvers or scipy baselines).
    column : int
        Which right-hand side of a batch.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags(np.linspace(1.0, 100.0, 50)).tocsr()
    >>> result = cg(A, np.ones(50), rtol=1e-12)
    >>> round(condition_estimate(result.info))
    100
    """
    from scipy.linalg import eigvalsh_tridiagonal

    if "alphas" not in info or "betas" not in info:
        raise InvalidInputError(
            "info has no Lanczos coefficients (alphas, betas); only CG/PCG record them"
        )
    a = np.asarray(info["alphas"], dtype=np.float64)
    bt = np.asarray(info["betas"], dtype=np.float64)
    if a.ndim == 2:
        a, bt = a[:, column], bt[:, column]
    valid = np.isfinite(a) & (a > 0) & np.isfinite(bt) & (bt >= 0)
    m = int(np.argmin(valid)) if not valid.all() else a.size
    replaced = info.get("first_replacement")
    if replaced is not None:
        first = int(np.atleast_1d(replaced)[column])
        if first > 0:  # the Lanczos relation holds up to the step before the replacement
            m = min(m, first - 1)
    if m == 0:
        raise InvalidInputError("no usable CG iterations to estimate a condition number from")
    a, bt = a[:m], bt[:m]
    diag = 1.0 / a
    diag[1:] += bt[:-1] / a[:-1]
    off = np.sqrt(bt[:-1]) / a[:-1]
    ev = eigvalsh_tridiagonal(diag, off)
    lo, hi = float(ev[0]), float(ev[-1])
    return hi / lo if lo > 0 else math.inf
