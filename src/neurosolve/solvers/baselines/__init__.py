r"""Classical baselines behind the :func:`neurosolve.solve` interface: scipy CG, IC(0), pyamg.

The shared driver is in :mod:`~neurosolve.solvers.baselines.common`; scipy's ``cg`` in
:mod:`~neurosolve.solvers.baselines.scipy_cg`, the incomplete Cholesky factorization in
:mod:`~neurosolve.solvers.baselines.ic0`, pyamg in :mod:`~neurosolve.solvers.baselines.amg`.
The solver classes are re-exported here.

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
"""

from neurosolve.solvers.baselines.amg import (
    RugeStubenAMG,
    RugeStubenPCG,
    SmoothedAggregationAMG,
    SmoothedAggregationPCG,
)
from neurosolve.solvers.baselines.ic0 import IC0PCG, IncompleteCholesky
from neurosolve.solvers.baselines.scipy_cg import ScipyCG, ScipyJacobiCG

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
