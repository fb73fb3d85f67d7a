r"""Classical baselines behind the :func:`neurosolve.solve` interface: scipy CG, IC(0), pyamg.

Every baseline is driven so that the package's stopping rule holds on the TRUE residual,

.. math:: \|b - A x\|_2 \le \max(\mathrm{rtol}\,\|b\|_2, \mathrm{atol}),

whatever the tolerance semantics of the library underneath:

- scipy's ``cg`` stops on its recurrence residual with ``||r|| < max(rtol ||b||, atol)``; it
  is called with ``rtol=0, atol=max(rtol ||b||, atol)`` and the true residual is checked
  after it returns; if the check fails, ``cg`` is restarted from the returned ``x`` (at most
  ``max_restarts`` times, then ``Status.STAGNATION``);
- pyamg's ``solve`` stops on ``||b - A x|| < tol ||b||`` (true residual, strict); it gets
  ``tol = threshold / ||b||`` and is rechecked the same way.

``setup_seconds`` (Jacobi diagonal, IC(0) factorization, AMG hierarchy) is measured apart
from ``solve_seconds``. Baselines work on the host in float64; a block ``b`` of shape
``(n, k)`` is solved column by column.

IC(0)
-----
No maintained incomplete-Cholesky package installs cleanly here (``ilupp`` ships only a
source distribution that needs a C++ toolchain), so :class:`IncompleteCholesky` is written
here: the zero-fill factor ``L`` with the sparsity of ``tril(A)``, computed row-wise in
*level-scheduled* vectorized numpy (rows of one level of the dependency DAG are independent;
a 7-point 64^3 grid has 190 levels), and applied by level-scheduled triangular solves (same
levels), which are several times faster here than ``scipy.sparse.linalg.spsolve_triangular``.
If a pivot is not positive (possible for SPD matrices that are not M-matrices), the
factorization is retried on ``A + s diag(A)`` with ``s = 1e-3, 1e-2, ...`` (Manteuffel's
shift); the shift used is reported.
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
from neurosolve.solvers.registry import check_vector, prepare_system
from neurosolve.solvers.result import SolveResult, Status, stopping_threshold

__all__ = [
    "IC0PCG",
    "IncompleteCholesky",
    "RugeStubenAMG",
    "RugeStubenPCG",
    "ScipyCG",
    "ScipyJacobiCG",
    "SmoothedAggregationAMG",
    "SmoothedAggregationPCG",
]

logger = logging.getLogger(__name__)

_SEVERITY = (
    Status.NONFINITE,
    Status.BREAKDOWN,
    Status.DIVERGED,
    Status.STAGNATION,
    Status.MAXITER,
    Status.CONVERGED,
)


class _Baseline:
    """Shared validation, batching and result assembly of the host baselines."""

    name = "baseline"
    needs_grid = False

    def __init__(
        self,
        A: Any,
        *,
        history: str = "true",
        max_restarts: int = 3,
        check_symmetry: bool = True,
    ) -> None:
        if history not in ("true", "cheap"):
            raise InvalidInputError(f"history must be 'true' or 'cheap', got {history!r}")
        if not isinstance(max_restarts, (int, np.integer)) or max_restarts < 0:
            raise InvalidInputError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
        self.prepared = prepare_system(A, check_symmetry=check_symmetry)
        t = time.perf_counter()  # setup_seconds: operator/preconditioner build, not checks
        self.A = (
            self.prepared.matrix if self.prepared.matrix is not None else (self.prepared.operator)
        )
        self.n = self.prepared.n
        self.history = history
        self.max_restarts = int(max_restarts)
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

    def solve(
        self,
        b: Any,
        *,
        x0: Any = None,
        rtol: float = 1e-6,
        atol: float = 0.0,
        maxiter: int | None = None,
        callback: Callable[[np.ndarray], None] | None = None,
    ) -> SolveResult:
        """Solve ``A x = b`` (``b`` of shape ``(n,)`` or ``(n, k)``) to the true-residual rule.

        Parameters
        ----------
        b : numpy.ndarray or torch.Tensor
            Right-hand side(s); ``x`` is returned as the same type.
        x0 : array, optional
            Initial guess, same shape as ``b``.
        rtol, atol : float
            Stop when ``||b - A x|| <= max(rtol ||b||, atol)``.
        maxiter : int, optional
            Iteration (Krylov step or V-cycle) limit; default ``10 n`` for CG, 500 cycles
            for standalone AMG.
        callback : callable, optional
            ``callback(x_k)`` after every iteration (numpy array).

        Returns
        -------
        SolveResult
        """
        is_torch = type(b).__module__.startswith("torch")
        device = b.device if is_torch else None
        b = check_vector(b, self.n, name="b")
        if is_torch:
            b = b.detach().cpu().double().numpy()
        if x0 is not None:
            x0 = check_vector(x0, self.n, name="x0")
            if type(x0).__module__.startswith("torch"):
                x0 = x0.detach().cpu().double().numpy()
            if x0.shape != b.shape:
                raise InvalidInputError(f"x0 has shape {x0.shape} but b has shape {b.shape}")
        if maxiter is not None and (not isinstance(maxiter, (int, np.integer)) or maxiter < 0):
            raise InvalidInputError(f"maxiter must be a non-negative integer, got {maxiter!r}")
        stopping_threshold(1.0, rtol, atol)  # validates rtol / atol
        t0 = time.perf_counter()
        if b.ndim == 1:
            res = self._solve_one(b, x0, rtol, atol, maxiter, callback)
            x = res.pop("x")
            residuals = np.asarray(res.pop("residuals"))
            status, iterations, matvecs = (
                res.pop("status"),
                res.pop("iterations"),
                res.pop("matvecs"),
            )
            info = res
        else:
            cols = [
                self._solve_one(
                    b[:, j], None if x0 is None else x0[:, j], rtol, atol, maxiter, callback
                )
                for j in range(b.shape[1])
            ]
            x = np.stack([c["x"] for c in cols], axis=1)
            length = max(len(c["residuals"]) for c in cols)
            residuals = np.stack(
                [
                    np.concatenate(
                        [c["residuals"], np.full(length - len(c["residuals"]), c["residuals"][-1])]
                    )
                    for c in cols
                ],
                axis=1,
            )
            status = _SEVERITY[min(_SEVERITY.index(c["status"]) for c in cols)]
            iterations = max(c["iterations"] for c in cols)
            matvecs = sum(c["matvecs"] for c in cols)
            info = {
                "column_status": [c["status"].value for c in cols],
                "column_iterations": [c["iterations"] for c in cols],
                "times": [c["times"] for c in cols],
            }
        info["method"] = self.name
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

    def _solve_one(self, b, x0, rtol, atol, maxiter, callback) -> dict[str, Any]:
        raise NotImplementedError  # each concrete baseline defines its iteration

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, setup={self.setup_seconds:.3g}s)"


class _Stop(Exception):
    """Raised from a scipy callback to end the iteration early (divergence, NaN)."""

    def __init__(self, status: Status, x: np.ndarray) -> None:
        super().__init__(status.value)
        self.status, self.x = status, x


class _ScipyCGDriver(_Baseline):
    """scipy.sparse.linalg.cg with an optional preconditioner, driven to the true-residual rule.

    With ``history="true"`` the callback also stops scipy on NaN/Inf and when the residual
    exceeds ``divergence_factor`` (1e8) times its initial value.
    """

    divergence_factor = 1e8

    def _preconditioner(self) -> spla.LinearOperator | None:
        return None

    def _solve_one(self, b, x0, rtol, atol, maxiter, callback) -> dict[str, Any]:
        t0 = time.perf_counter()
        bnorm = float(np.linalg.norm(b))
        bscale = bnorm if bnorm > 0 else 1.0
        thr = stopping_threshold(bnorm, rtol, atol)
        maxiter = 10 * self.n if maxiter is None else int(maxiter)
        if bnorm == 0:
            return dict(
                x=np.zeros_like(b),
                status=Status.CONVERGED,
                iterations=0,
                residuals=[0.0],
                matvecs=0,
                times=[0.0],
                restarts=0,
            )
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
        matvecs = 0
        if x.any():
            r0 = self._true_norm(x, b)
            matvecs += 1
        else:
            r0 = bnorm
        residuals = [r0 / bscale]
        times = [0.0]
        state = {"it": 0, "mv": 0}
        true_history = self.history == "true"

        def cb(xk: np.ndarray) -> None:
            state["it"] += 1
            state["mv"] += 1
            if true_history:
                residuals.append(self._true_norm(xk, b) / bscale)
                state["mv"] += 1
            else:
                residuals.append(np.nan)
            times.append(time.perf_counter() - t0)
            if callback is not None:
                callback(xk.copy())  # scipy reuses its array; hand out a snapshot
            if true_history:  # scipy has no such checks; stop it from the callback
                if not np.isfinite(residuals[-1]):
                    raise _Stop(Status.NONFINITE, xk.copy())
                if residuals[-1] * bscale > self.divergence_factor * max(r0, thr):
                    raise _Stop(Status.DIVERGED, xk.copy())

        M = self._preconditioner()
        status = Status.MAXITER
        restarts = 0
        final = r0
        if r0 <= thr:
            status = Status.CONVERGED
        while status is not Status.CONVERGED:
            remaining = maxiter - state["it"]
            if remaining <= 0:
                status = Status.MAXITER
                break
            # scipy stops on ||r_recurrence|| < atol; atol = our threshold, rtol = 0.
            try:
                x, code = spla.cg(
                    self.A, b, x0=x, rtol=0.0, atol=thr, maxiter=remaining, M=M, callback=cb
                )
            except _Stop as stop:
                status, x = stop.status, stop.x
                final = self._true_norm(x, b)
                state["mv"] += 2
                break
            state["mv"] += 1  # the initial residual of this call
            final = self._true_norm(x, b)
            state["mv"] += 1
            if not np.isfinite(final) or not np.isfinite(x).all():
                status = Status.NONFINITE
                break
            if final <= thr:
                status = Status.CONVERGED
                break
            if code > 0:
                status = Status.MAXITER
                break
            restarts += 1
            if restarts > self.max_restarts:
                status = Status.STAGNATION
                break
            logger.debug(
                "%s: recurrence converged, true residual %.3e > %.3e; restart",
                self.name,
                final,
                thr,
            )
        residuals[-1] = final / bscale
        return dict(
            x=x,
            status=status,
            iterations=state["it"],
            residuals=residuals,
            matvecs=matvecs + state["mv"],
            times=np.array(times),
            restarts=restarts,
        )


class ScipyCG(_ScipyCGDriver):
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
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> ScipyCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "scipy-cg"


class ScipyJacobiCG(_ScipyCGDriver):
    """scipy.sparse.linalg.cg with the Jacobi (inverse diagonal) preconditioner.

    Examples
    --------
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


# ---------------------------------------------------------------------------------------------
# IC(0)
# ---------------------------------------------------------------------------------------------
def _levels(S: sp.csr_matrix) -> list[np.ndarray]:
    """Level sets of the DAG ``i depends on j if S[i, j] != 0`` (``S`` strictly lower)."""
    n = S.shape[0]
    indeg = np.diff(S.indptr).astype(np.int64)
    dependents = S.T.tocsr()  # row j: the rows i that need j
    frontier = np.flatnonzero(indeg == 0)
    levels = []
    done = 0
    while frontier.size:
        levels.append(frontier)
        done += frontier.size
        starts, ends = dependents.indptr[frontier], dependents.indptr[frontier + 1]
        counts = ends - starts
        if counts.sum() == 0:
            break
        pos = np.repeat(ends - counts.cumsum(), counts) + np.arange(counts.sum())
        rows = dependents.indices[pos]
        np.subtract.at(indeg, rows, 1)
        cand = np.unique(rows)
        frontier = cand[indeg[cand] == 0]
    if done != n:  # cannot happen for a strictly lower triangular S
        raise RuntimeError("level scheduling failed: dependency graph has a cycle")
    return levels


class IncompleteCholesky:
    """Zero-fill incomplete Cholesky ``A ~ L L^T`` with level-scheduled factor and solves.

    Parameters
    ----------
    A : scipy sparse matrix
        Symmetric matrix with a positive diagonal (only ``tril(A)`` is read).
    shifts : sequence of float
        Diagonal shifts ``s`` (``A + s diag(A)``) tried in order if a pivot is not positive.

    Attributes
    ----------
    L : scipy.sparse.csr_matrix
        The lower-triangular factor (pattern of ``tril(A)``).
    shift : float
        The shift that was needed (0.0 normally).
    levels : list of numpy.ndarray
        Row level sets used by the factorization and the triangular solves.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[4.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]]))
    >>> ic = IncompleteCholesky(A)
    >>> np.allclose((ic.L @ ic.L.T).toarray(), A.toarray())  # tridiagonal: IC(0) is exact
    True
    >>> np.allclose(A @ ic.solve(np.ones(3)), np.ones(3))
    True
    """

    def __init__(self, A: Any, *, shifts: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)) -> None:
        A = sp.csr_matrix(A, dtype=np.float64)
        A.sum_duplicates()
        A.sort_indices()
        n = A.shape[0]
        diag = A.diagonal()
        if (diag <= 0).any():
            raise InvalidInputError("IC(0) needs a positive diagonal")
        S = sp.tril(A, k=-1, format="csr")
        S.sort_indices()
        self.n = n
        self.levels = _levels(S)
        self._plan(S)
        shift = 0.0
        for attempt in (0.0, *shifts):
            ok, off, d = self._factor(S.data, diag * (1.0 + attempt))
            if ok:
                shift = attempt
                break
        else:
            raise InvalidInputError(
                "IC(0) failed: non-positive pivots even with a diagonal shift of "
                f"{shifts[-1]:g} diag(A); the matrix is probably not positive definite"
            )
        if shift:
            logger.info("IC(0) needed a diagonal shift of %g diag(A)", shift)
        self.shift = shift
        self.d = d
        Soff = sp.csr_matrix((off, S.indices, S.indptr), shape=S.shape)
        self.L = (Soff + sp.diags(d)).tocsr()
        self._prepare_solves(Soff)

    def _plan(self, S: sp.csr_matrix) -> None:
        """Precompute the entry groups (level, position in row) and the update triples."""
        n = self.n
        nnz = S.nnz
        rowlen = np.diff(S.indptr)
        row_of = np.repeat(np.arange(n), rowlen)
        pos_in_row = np.arange(nnz) - S.indptr[row_of]
        level_of_row = np.empty(n, dtype=np.int64)
        for lev, rows in enumerate(self.levels):
            level_of_row[rows] = lev
        maxpos = int(rowlen.max()) if n else 0
        group = level_of_row[row_of] * max(maxpos, 1) + pos_in_row
        order = np.argsort(group, kind="stable")
        self._entry_order = order
        self._entry_bounds = np.searchsorted(
            group[order], np.arange(len(self.levels) * max(maxpos, 1) + 1)
        )
        self._maxpos = max(maxpos, 1)
        self._row_of = row_of
        self._col_of = S.indices.astype(np.int64)
        # Triples (i, j, k), k < j < i, with S[i,k], S[j,k], S[i,j] all in the pattern:
        # L_ij -= L_ik L_jk. Enumerate pairs of rows j < i within every column k.
        C = S.tocsc()
        C.sort_indices()
        # map each CSC position to the CSR data index of the same entry
        idx = sp.csr_matrix(
            (np.arange(1, nnz + 1, dtype=np.float64), S.indices, S.indptr), shape=S.shape
        ).tocsc()
        idx.sort_indices()
        csr_pos = idx.data.astype(np.int64) - 1
        colcount = np.diff(C.indptr)
        col_of_pos = np.repeat(np.arange(n), colcount)
        keys = row_of * n + self._col_of  # sorted: CSR with sorted indices
        tgt, src_ik, src_jk = [], [], []
        for dist in range(1, int(colcount.max()) if nnz else 0):
            first = np.arange(nnz - dist)
            first = first[first + dist < C.indptr[col_of_pos[first] + 1]]
            j_rows = C.indices[first]
            i_rows = C.indices[first + dist]
            want = i_rows.astype(np.int64) * n + j_rows
            loc = np.searchsorted(keys, want)
            loc = np.minimum(loc, max(nnz - 1, 0))
            hit = keys[loc] == want
            tgt.append(loc[hit])
            src_ik.append(csr_pos[first + dist][hit])
            src_jk.append(csr_pos[first][hit])
        if tgt:
            tgt_a, ik_a, jk_a = (np.concatenate(v) for v in (tgt, src_ik, src_jk))
        else:
            tgt_a = ik_a = jk_a = np.zeros(0, dtype=np.int64)
        tgroup = group[tgt_a]
        torder = np.argsort(tgroup, kind="stable")
        self._t_tgt, self._t_ik, self._t_jk = tgt_a[torder], ik_a[torder], jk_a[torder]
        self._t_bounds = np.searchsorted(
            tgroup[torder], np.arange(len(self.levels) * self._maxpos + 1)
        )

    def _factor(self, Sdata: np.ndarray, diag: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
        off = np.zeros_like(Sdata)
        d = np.zeros(self.n)
        sq = np.zeros(self.n)  # running sum of L_ik^2 per row
        g = 0
        for rows in self.levels:
            for _ in range(self._maxpos):
                lo, hi = self._entry_bounds[g], self._entry_bounds[g + 1]
                tlo, thi = self._t_bounds[g], self._t_bounds[g + 1]
                g += 1
                if lo == hi:
                    continue
                e = self._entry_order[lo:hi]
                val = Sdata[e].copy()
                if thi > tlo:
                    t = slice(tlo, thi)
                    upd = off[self._t_ik[t]] * off[self._t_jk[t]]
                    # a group's entries are in increasing order (stable sort by group)
                    local = np.searchsorted(e, self._t_tgt[t])
                    val -= np.bincount(local, weights=upd, minlength=e.size)
                val /= d[self._col_of[e]]
                off[e] = val
                sq[self._row_of[e]] += val * val  # one entry per row in a group
            piv = diag[rows] - sq[rows]
            if not (piv > 0).all():
                return False, off, d
            d[rows] = np.sqrt(piv)
        return True, off, d

    def _prepare_solves(self, Soff: sp.csr_matrix) -> None:
        # Renumber the unknowns level by level: a level is then a contiguous slice, and it
        # only needs the unknowns of earlier levels (a prefix), so each step of the
        # triangular solves is one small CSR product on slices, without fancy indexing.
        perm = np.concatenate(self.levels)
        self._perm = perm
        bounds = np.concatenate([[0], np.cumsum([lev.size for lev in self.levels])])
        P = Soff[perm][:, perm].tocsr()  # still strictly lower triangular
        U = P.T.tocsr()
        self._dp = self.d[perm]
        self._fwd = [
            (int(lo), int(hi), P[lo:hi, :lo].tocsr())
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        self._bwd = [
            (int(lo), int(hi), U[lo:hi, hi:].tocsr())
            for lo, hi in reversed(list(zip(bounds[:-1], bounds[1:], strict=True)))
        ]

    def solve(self, r: np.ndarray) -> np.ndarray:
        """Apply ``(L L^T)^{-1}`` to ``r`` (shape ``(n,)`` or ``(n, k)``)."""
        r = np.asarray(r, dtype=np.float64)
        rp = r[self._perm]
        d = self._dp if r.ndim == 1 else self._dp[:, None]
        y = np.empty_like(rp)
        for lo, hi, block in self._fwd:
            y[lo:hi] = rp[lo:hi]
            if block.nnz:
                y[lo:hi] -= block @ y[:lo]
            y[lo:hi] /= d[lo:hi]
        x = np.empty_like(rp)
        for lo, hi, block in self._bwd:
            x[lo:hi] = y[lo:hi]
            if block.nnz:
                x[lo:hi] -= block @ x[hi:]
            x[lo:hi] /= d[lo:hi]
        out = np.empty_like(x)
        out[self._perm] = x
        return out

    def aspreconditioner(self) -> spla.LinearOperator:
        """The preconditioner ``(L L^T)^{-1}`` as a scipy LinearOperator."""
        return spla.LinearOperator(
            (self.n, self.n), matvec=self.solve, matmat=self.solve, dtype=np.float64
        )

    def __repr__(self) -> str:
        return f"IncompleteCholesky(n={self.n}, levels={len(self.levels)}, shift={self.shift:g})"


class IC0PCG(_ScipyCGDriver):
    """scipy CG preconditioned by zero-fill incomplete Cholesky, IC(0).

    The factor is built by :class:`IncompleteCholesky` (level-scheduled, with a diagonal
    shift only if a pivot fails) and applied by level-scheduled triangular solves.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> result = IC0PCG(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.iterations < 40
    (True, True)
    """

    name = "ic-pcg"

    def _setup(self) -> None:
        self.factor = IncompleteCholesky(self._matrix())

    def _preconditioner(self) -> spla.LinearOperator:
        return self.factor.aspreconditioner()


# ---------------------------------------------------------------------------------------------
# pyamg
# ---------------------------------------------------------------------------------------------
class _AMGMixin:
    kind = "sa"

    def _build_hierarchy(self, options: dict[str, Any]) -> Any:
        import pyamg

        A = self._matrix()
        if self.kind == "sa":
            return pyamg.smoothed_aggregation_solver(A, **options)
        return pyamg.ruge_stuben_solver(A, **options)


class _AMGSolver(_AMGMixin, _Baseline):
    """pyamg hierarchy used as a standalone V-cycle solver."""

    def __init__(
        self,
        A: Any,
        *,
        amg_options: dict[str, Any] | None = None,
        cycle: str = "V",
        history: str = "true",
        max_restarts: int = 3,
        check_symmetry: bool = True,
    ) -> None:
        self.amg_options = dict(amg_options or {})
        if cycle not in ("V", "W", "F"):
            raise InvalidInputError(f"cycle must be 'V', 'W' or 'F', got {cycle!r}")
        self.cycle = cycle
        super().__init__(
            A, history=history, max_restarts=max_restarts, check_symmetry=check_symmetry
        )

    def _setup(self) -> None:
        self.ml = self._build_hierarchy(self.amg_options)

    def _solve_one(self, b, x0, rtol, atol, maxiter, callback) -> dict[str, Any]:
        t0 = time.perf_counter()
        bnorm = float(np.linalg.norm(b))
        bscale = bnorm if bnorm > 0 else 1.0
        thr = stopping_threshold(bnorm, rtol, atol)
        maxiter = 500 if maxiter is None else int(maxiter)
        if bnorm == 0:
            return dict(
                x=np.zeros_like(b),
                status=Status.CONVERGED,
                iterations=0,
                residuals=[0.0],
                matvecs=0,
                times=[0.0],
                restarts=0,
            )
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
        times = [0.0]

        def cb(xk: np.ndarray) -> None:
            times.append(time.perf_counter() - t0)
            if callback is not None:
                callback(xk.copy())

        history: list[float] = []
        cycles = 0
        restarts = 0
        status = Status.MAXITER
        final = self._true_norm(x, b)
        history.append(final)
        matvecs = 1
        if final <= thr:
            status = Status.CONVERGED
        while status is not Status.CONVERGED:
            remaining = maxiter - cycles
            if remaining <= 0:
                status = Status.MAXITER
                break
            res: list[float] = []
            # pyamg stops on the true residual with a strict '<' against tol * ||b||.
            x = self.ml.solve(
                b,
                x0=x,
                tol=thr / bnorm,
                maxiter=remaining,
                cycle=self.cycle,
                accel=None,
                residuals=res,
                callback=cb,
            )
            history.extend(res[1:])
            cycles += len(res) - 1
            matvecs += len(res)  # pyamg computes b - A x once per cycle (+ once initially)
            final = self._true_norm(x, b)
            matvecs += 1
            if not np.isfinite(final):
                status = Status.NONFINITE
                break
            if final <= thr:
                status = Status.CONVERGED
                break
            if cycles >= maxiter:
                status = Status.MAXITER
                break
            if len(res) >= 2 and res[-1] > 1e8 * res[0]:
                status = Status.DIVERGED
                break
            restarts += 1
            if restarts > self.max_restarts:
                status = Status.STAGNATION
                break
        residuals = np.array(history) / bscale
        residuals[-1] = final / bscale
        return dict(
            x=x,
            status=status,
            iterations=cycles,
            residuals=residuals,
            matvecs=matvecs,
            times=np.array(times),
            restarts=restarts,
            pyamg_residuals=np.array(history),
            levels=len(self.ml.levels),
            operator_complexity=float(self.ml.operator_complexity()),
        )

    def aspreconditioner(self) -> spla.LinearOperator:
        """One V-cycle of the hierarchy as a scipy LinearOperator."""
        return self.ml.aspreconditioner(cycle=self.cycle)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, levels={len(self.ml.levels)}, "
            f"setup={self.setup_seconds:.3g}s)"
        )


class _AMGPCG(_AMGMixin, _ScipyCGDriver):
    """scipy CG preconditioned by one pyamg V-cycle."""

    def __init__(
        self,
        A: Any,
        *,
        amg_options: dict[str, Any] | None = None,
        cycle: str = "V",
        history: str = "true",
        max_restarts: int = 3,
        check_symmetry: bool = True,
    ) -> None:
        self.amg_options = dict(amg_options or {})
        if cycle not in ("V", "W", "F"):
            raise InvalidInputError(f"cycle must be 'V', 'W' or 'F', got {cycle!r}")
        self.cycle = cycle
        super().__init__(
            A, history=history, max_restarts=max_restarts, check_symmetry=check_symmetry
        )

    def _setup(self) -> None:
        self.ml = self._build_hierarchy(self.amg_options)
        self._M = self.ml.aspreconditioner(cycle=self.cycle)

    def _preconditioner(self) -> spla.LinearOperator:
        return self._M

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, levels={len(self.ml.levels)}, "
            f"setup={self.setup_seconds:.3g}s)"
        )


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
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> RugeStubenPCG(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "amg-rs-pcg"
    kind = "rs"
