"""Linear solvers behind one interface: :func:`solve`.

Every method, classical or learned, is reached by name (see :func:`available`), returns a
:class:`~neurosolve.solvers.result.SolveResult`, and stops on the TRUE residual
``||b - A x|| <= max(rtol ||b||, atol)``:

- torch Krylov methods (:mod:`neurosolve.solvers.krylov`): ``cg``, ``pcg``, ``pcg-jacobi``,
  ``fcg``; CPU/CUDA, float32/float64, batched right-hand sides;
- baselines (:mod:`neurosolve.solvers.baselines`): ``scipy-cg``, ``scipy-cg-jacobi``,
  ``ic-pcg``, ``amg-sa``, ``amg-rs``, ``amg-sa-pcg``, ``amg-rs-pcg``;
- learned methods registered by their modules (e.g. ``dcdm``).

Solver objects (:func:`make_solver`, subclasses of :class:`~neurosolve.solvers.base.Solver`)
split setup from solve, so a hierarchy, a factorization or a trained network is built once and
reused across right-hand sides. :func:`prepare_system` (in :mod:`neurosolve.solvers.system`)
is the one input check every method starts with; :mod:`neurosolve.solvers.registry` maps
names to methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neurosolve.solvers.base import Solver
from neurosolve.solvers.registry import (
    available,
    describe,
    get_factory,
    make_solver,
    method_options,
    needs_grid,
    register_method,
    takes_device,
)
from neurosolve.solvers.result import (
    SolveInfo,
    SolveResult,
    Status,
    relative_residual,
    stopping_threshold,
)
from neurosolve.solvers.system import PreparedSystem, check_vector, prepare_system

__all__ = [
    "PreparedSystem",
    "SolveInfo",
    "SolveResult",
    "Solver",
    "Status",
    "available",
    "check_vector",
    "describe",
    "get_factory",
    "make_solver",
    "method_options",
    "needs_grid",
    "prepare_system",
    "register_method",
    "relative_residual",
    "solve",
    "stopping_threshold",
    "takes_device",
]


def solve(
    A: Any,
    b: Any = None,
    method: str = "cg",
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: Any = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Solve the SPD system ``A x = b`` with the method called ``method``.

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        The operator. A :class:`~neurosolve.data.systems.LinearSystem` carries its grid, which
        grid-based methods (stencil operator, CNN preconditioners, DCDM) need, and its ``b``,
        used when ``b`` is not given.
    b : numpy.ndarray or torch.Tensor, optional
        Right-hand side ``(n,)`` or a block ``(n, k)`` (torch methods solve every column;
        baselines solve them one after another).
    method : str
        A name from :func:`available`.
    rtol, atol : float
        Stopping rule on the true residual: ``||b - A x|| <= max(rtol ||b||, atol)``.
    maxiter : int, optional
        Iteration limit (method default otherwise).
    x0 : array or tensor, optional
        Initial guess.
    callback : callable, optional
        ``callback(x_k)`` after every iteration.
    **options
        Settings of the method (``device``, ``dtype``, ``preconditioner``, ``history``...;
        :func:`method_options` lists them); ``M`` is accepted as scipy's name of
        ``preconditioner``. For torch methods ``device`` defaults to the device of a tensor
        ``b``. ``threads`` (every method: ``"auto"``, an int or None) is torch's intra-op
        thread count for the setup and the solve, restored afterwards (see
        :func:`make_solver`); ``"auto"`` runs small problems on one thread.

    Returns
    -------
    SolveResult
        ``x`` has the type, floating dtype and device of ``b`` (a float32 ``b`` gets a
        float32 ``x`` from a float64 iteration); ``setup_seconds`` holds the setup time of
        the method.

    Raises
    ------
    UnknownNameError
        ``method`` is not registered (the message lists the available ones).
    InvalidInputError
        Bad ``A``, ``b`` or ``x0`` (non-square, non-symmetric, NaN/Inf, shape mismatch), or
        an option the method does not take (the message names the method, suggests the
        likely name, e.g. ``rtol`` for ``tol``, and lists its options).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> result = solve(system, np.ones(system.n), method="cg", rtol=1e-8)
    >>> result.converged, result.iterations > 0
    (True, True)
    >>> solve(system, np.ones(system.n), method="amg-sa-pcg", rtol=1e-8).converged
    True
    >>> solve(system, np.ones(system.n, dtype=np.float32), method="pcg", M="jacobi").x.dtype
    dtype('float32')
    """
    if b is None:
        b = getattr(A, "b", None)
        if b is None:
            from neurosolve.errors import InvalidInputError

            raise InvalidInputError("no right-hand side: pass b (the system has none either)")
    if "device" not in options and type(b).__module__.startswith("torch"):
        if takes_device(method):
            options["device"] = b.device
    solver = make_solver(method, A, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
