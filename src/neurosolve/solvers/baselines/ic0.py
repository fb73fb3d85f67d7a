"""Zero-fill incomplete Cholesky, IC(0), and scipy CG preconditioned by it.

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
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from neurosolve.errors import InvalidInputError
from neurosolve.solvers.baselines.scipy_cg import ScipyCGDriver

__all__ = ["IC0PCG", "IncompleteCholesky"]

logger = logging.getLogger(__name__)


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
    >>> import numpy as np
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


class IC0PCG(ScipyCGDriver):
    """scipy CG preconditioned by zero-fill incomplete Cholesky, IC(0).

    The factor is built by :class:`IncompleteCholesky` (level-scheduled, with a diagonal
    shift only if a pivot fails) and applied by level-scheduled triangular solves.

    Examples
    --------
    >>> import numpy as np
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
