"""Condition-number estimates from the Lanczos coefficients that CG and PCG record.

CG's step lengths ``alpha_j`` and ``beta_j`` are the entries of the Lanczos tridiagonal
matrix of the (preconditioned) operator; its extreme eigenvalues (Ritz values) give
:func:`condition_estimate`, a lower bound on ``cond(M^{-1} A)`` that tightens as CG proceeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from neurosolve.errors import InvalidInputError

__all__ = ["condition_estimate"]


def condition_estimate(info: Mapping[str, Any], column: int = 0) -> float:
    """Estimate ``cond(M^{-1} A)`` from the Lanczos coefficients of a CG/PCG run.

    The CG step lengths ``alpha_j`` and ``beta_j`` define the Lanczos tridiagonal matrix
    ``T`` with ``T_jj = 1/alpha_j + beta_{j-1}/alpha_{j-1}`` and
    ``T_{j,j+1} = sqrt(beta_j)/alpha_j``; its extreme eigenvalues (Ritz values) approach
    those of the preconditioned matrix from inside, so the ratio is a lower bound that
    tightens as CG proceeds. Iterations after a residual replacement are not used.

    Parameters
    ----------
    info : SolveInfo or mapping
        ``SolveResult.info`` of a CG or PCG solve (or any mapping with ``alphas``, ``betas``).
    column : int
        Which right-hand side of a batch.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from neurosolve.solvers.krylov import cg
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
