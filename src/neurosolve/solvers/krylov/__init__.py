r"""Conjugate gradients in torch: CG, preconditioned CG and flexible CG.

The package holds the operators (:mod:`~neurosolve.solvers.krylov.operators`), the
preconditioners (:mod:`~neurosolve.solvers.krylov.preconditioners`), the iteration
(:mod:`~neurosolve.solvers.krylov.cg`), the solver classes and functions
(:mod:`~neurosolve.solvers.krylov.solvers`) and the Lanczos condition estimate
(:mod:`~neurosolve.solvers.krylov.lanczos`); the public names are re-exported here.

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
``history="recurrence"`` (default; alias ``"cheap"``) records the recurrence residual
``||r_k|| / ||b||`` at every iteration, which costs nothing, except for the first entry
(``b - A x_0``) and each column's final entry, which are true residuals. The true residual
``b - A x_k`` is computed in float64 only where a decision rests on it: at every claimed
convergence (the recurrence residual met the tolerance) and at each residual replacement.
``history="true"`` records the true relative residual ``||b - A x_k|| / ||b||`` at every
iteration at the price of one extra product with ``A`` per iteration (counted in
``matvecs``; for a 5/7-point operator about a third of an iteration's cost); a column
then also stops as soon as that true residual meets the tolerance. In both modes
convergence is only declared on the true residual. ``setup_seconds`` is the operator /
preconditioner build; input checks are not counted.

For CG and PCG the Lanczos coefficients (``alphas``, ``betas``) are kept in ``info``, and
:func:`condition_estimate` turns them into an estimate of the condition number of the
(preconditioned) matrix.
"""

from neurosolve.solvers.krylov.lanczos import condition_estimate
from neurosolve.solvers.krylov.operators import as_torch_operator
from neurosolve.solvers.krylov.solvers import (
    CGSolver,
    FlexibleCGSolver,
    JacobiPCGSolver,
    PCGSolver,
    cg,
    fcg,
    pcg,
)

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
