"""Zero-fill incomplete Cholesky, IC(0), and scipy CG preconditioned by it.

:class:`IncompleteCholesky` computes the zero-fill factor ``L`` (the sparsity of
``tril(A)``) with one of two implementations, both giving the same factor up to rounding:

- ``"ilupp"``: the compiled IChol(0) of the `ilupp <https://pypi.org/project/ilupp/>`_
  package (``pip install ilupp``, or the ``neurosolve[ilupp]`` extra; a source build that
  needs a C++ compiler), used when it is installed: its setup and its triangular solves
  are several times faster;
- ``"neurosolve"``: the fallback written here, computed row-wise in *level-scheduled*
  vectorized numpy (rows of one level of the dependency DAG are independent; a 7-point
  64^3 grid has 190 levels), and applied by level-scheduled triangular solves (same
  levels), several times faster than ``scipy.sparse.linalg.spsolve_triangular``.

``backend="auto"`` (the default) takes ilupp when it imports and the fallback otherwise; the
one that ran is :attr:`IncompleteCholesky.backend`, and every ``ic-pcg`` result records it
as ``info.preconditioner`` (``"ic0 (ilupp)"`` or ``"ic0 (neurosolve)"``). If a pivot is not
positive (possible for SPD matrices that are not M-matrices), the factorization is retried
on ``A + s diag(A)`` with ``s = 1e-3, 1e-2, ...`` (Manteuffel's shift); the shift used is
reported (``info["ic0_shift"]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from neurosolve.errors import InvalidInputError
from neurosolve.solvers._convert import BlockOperator
from neurosolve.solvers.baselines.scipy_cg import ScipyCGDriver
from neurosolve.solvers.result import SolveResult

__all__ = ["BACKENDS", "IC0PCG", "IncompleteCholesky", "ilupp_available"]

logger = logging.getLogger(__name__)

#: Implementations of the factorization; "auto" is ilupp when installed, else neurosolve's.
BACKENDS = ("auto", "ilupp", "neurosolve")


def _import_ilupp() -> Any:
    """The ilupp module, or None when it is not installed."""
    try:
        import ilupp
    except ImportError:
        return None
    return ilupp


def ilupp_available() -> bool:
    """Whether the compiled IC(0) of the ``ilupp`` package can be used.

    Examples
    --------
    >>> ilupp_available() in (True, False)
    True
    """
    return _import_ilupp() is not None


def _check_backend(backend: Any) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _pivot_failure(shifts: tuple[float, ...]) -> InvalidInputError:
    return InvalidInputError(
        "IC(0) failed: non-positive pivots even with a diagonal shift of "
        f"{shifts[-1] if shifts else 0.0:g} diag(A); the matrix is probably not positive "
        "definite"
    )


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
    """Zero-fill incomplete Cholesky ``A ~ L L^T``: ilupp's when installed, else our own.

    Parameters
    ----------
    A : scipy sparse matrix
        Symmetric matrix with a positive diagonal (only ``tril(A)`` is read).
    shifts : sequence of float
        Diagonal shifts ``s`` (``A + s diag(A)``) tried in order if a pivot is not positive.
    backend : {"auto", "ilupp", "neurosolve"}
        ``"ilupp"``: the compiled IChol(0) of the ilupp package (an error if it is not
        installed); ``"neurosolve"``: the level-scheduled factor and solves of this module;
        ``"auto"``: ilupp when it imports, else this module's.

    Attributes
    ----------
    L : scipy.sparse.csr_matrix
        The lower-triangular factor (pattern of ``tril(A)``).
    shift : float
        The shift that was needed (0.0 normally).
    backend : str
        The implementation that ran, ``"ilupp"`` or ``"neurosolve"`` (see :attr:`label`).
    levels : list of numpy.ndarray
        Row level sets of the dependency DAG of ``L``, used by the own factorization and
        triangular solves (computed only when asked for with ilupp).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[4.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]]))
    >>> ic = IncompleteCholesky(A)
    >>> np.allclose((ic.L @ ic.L.T).toarray(), A.toarray())  # tridiagonal: IC(0) is exact
    True
    >>> np.allclose(A @ ic.solve(np.ones(3)), np.ones(3))
    True
    """

    def __init__(
        self,
        A: Any,
        *,
        shifts: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0),
        backend: str = "auto",
    ) -> None:
        backend = _check_backend(backend)
        A = sp.csr_matrix(A, dtype=np.float64)
        A.sum_duplicates()
        A.sort_indices()
        diag = A.diagonal()
        if (diag <= 0).any():
            raise InvalidInputError("IC(0) needs a positive diagonal")
        self.n = A.shape[0]
        self._levels: list[np.ndarray] | None = None
        self._ilupp: Any = None
        module = None if backend == "neurosolve" else _import_ilupp()
        if module is None and backend == "ilupp":
            raise InvalidInputError(
                "backend='ilupp' needs the ilupp package: pip install ilupp (a source build "
                "with a C++ compiler), or use backend='auto' for the fallback"
            )
        if module is not None:
            self.backend = "ilupp"
            self._factor_ilupp(module, A, diag, tuple(shifts))
        else:
            self.backend = "neurosolve"
            self._factor_own(A, diag, tuple(shifts))
        if self.shift:
            logger.info("IC(0) needed a diagonal shift of %g diag(A)", self.shift)

    @property
    def levels(self) -> list[np.ndarray]:
        """Row level sets of the dependency DAG of ``L`` (computed on first use with ilupp)."""
        if self._levels is None:
            self._levels = _levels(sp.tril(self.L, k=-1, format="csr"))
        return self._levels

    @property
    def label(self) -> str:
        """``"ic0 (ilupp)"`` or ``"ic0 (neurosolve)"``: the implementation that ran."""
        return f"ic0 ({self.backend})"

    def _factor_ilupp(
        self, module: Any, A: sp.csr_matrix, diag: np.ndarray, shifts: tuple[float, ...]
    ) -> None:
        """The IChol(0) of ilupp (it reads the lower triangle), shifted if a pivot fails."""
        for attempt in (0.0, *shifts):
            shifted = A if not attempt else (A + sp.diags(attempt * diag)).tocsr()
            factor = module.IChol0Preconditioner(shifted)
            L = sp.csr_matrix(factor.factors()[0])  # lower triangular, CSR
            d = L.diagonal()
            # ilupp does not stop at a failed pivot: the factor holds NaN from there on
            if np.isfinite(L.data).all() and (d > 0).all():
                self.shift, self.L, self.d, self._ilupp = attempt, L, d, factor
                return
        raise _pivot_failure(shifts)

    def _factor_own(self, A: sp.csr_matrix, diag: np.ndarray, shifts: tuple[float, ...]) -> None:
        """The level-scheduled factorization of this module, shifted if a pivot fails."""
        S = sp.tril(A, k=-1, format="csr")
        S.sort_indices()
        self._levels = _levels(S)
        self._plan(S)
        for attempt in (0.0, *shifts):
            ok, off, d = self._factor(S.data, diag * (1.0 + attempt))
            if ok:
                break
        else:
            raise _pivot_failure(shifts)
        self.shift = attempt
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
        if self._ilupp is not None:
            if r.ndim == 1:
                out = r.copy()
                self._ilupp.apply(out)  # in place
                return out
            return np.stack([self.solve(r[:, j]) for j in range(r.shape[1])], axis=1)
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
        return BlockOperator(self.n, self.solve)

    def __repr__(self) -> str:
        levels = "" if self._levels is None else f", levels={len(self._levels)}"
        return (
            f"IncompleteCholesky(n={self.n}, backend={self.backend!r}{levels}, "
            f"shift={self.shift:g})"
        )


class IC0PCG(ScipyCGDriver):
    """scipy CG preconditioned by zero-fill incomplete Cholesky, IC(0).

    The factor is built by :class:`IncompleteCholesky`: ilupp's compiled IChol(0) when
    ilupp is installed, else the level-scheduled one of this module (with a diagonal shift
    only if a pivot fails). Every result records the implementation that ran as
    ``info.preconditioner`` (``"ic0 (ilupp)"`` / ``"ic0 (neurosolve)"``) and the shift as
    ``info["ic0_shift"]``.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix or ndarray
        SPD matrix.
    backend : {"auto", "ilupp", "neurosolve"}
        Implementation of the factorization (``"auto"``: ilupp when installed).
    **options
        ``history``, ``max_restarts``, ``check_symmetry`` (see
        :class:`~neurosolve.solvers.baselines.common.Baseline`).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> result = IC0PCG(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.iterations < 40
    (True, True)
    >>> result.info.preconditioner in ("ic0 (ilupp)", "ic0 (neurosolve)")
    True
    """

    name = "ic-pcg"

    def __init__(self, A: Any, *, backend: str = "auto", **options: Any) -> None:
        self.backend = _check_backend(backend)
        super().__init__(A, **options)

    def _setup(self) -> None:
        self.factor = IncompleteCholesky(self._matrix(), backend=self.backend)

    def _preconditioner(self) -> spla.LinearOperator:
        return self.factor.aspreconditioner()

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
        result = super()._solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
        result.info.preconditioner = self.factor.label
        result.info.extra["ic0_shift"] = float(self.factor.shift)
        return result
