"""The method registry: solvers looked up by name, built-in ones imported on first use.

Methods are looked up by name. Built-in methods live in :data:`BUILTIN_METHODS`, a table of
``"name": "module:attr"`` strings imported only when a method is first used, so that
``import neurosolve.solvers`` stays cheap and learned methods (``dcdm``, ``mgpc-pcg``) join
by adding one line to that table. :func:`register_method` adds methods at run time.

A *factory* is any callable ``factory(A, **options)`` returning a solver object: the
built-in ones are subclasses of :class:`~neurosolve.solvers.base.Solver`, the contract
(``solve(b, *, x0, rtol, atol, maxiter, callback) -> SolveResult`` and ``setup_seconds``);
a run-time factory may return any object that provides the same. A factory may carry the
attributes ``description`` (one line; default: the first line of its docstring) and
``needs_grid`` (default ``False``). Input checks live in :mod:`neurosolve.solvers.system`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from neurosolve.errors import InvalidInputError, UnknownNameError

__all__ = [
    "BUILTIN_METHODS",
    "available",
    "describe",
    "get_factory",
    "make_solver",
    "needs_grid",
    "register_method",
]

#: Built-in methods: name -> "module:attr" of the factory (imported lazily).
#: Owners of learned methods add their line here (one line each).
BUILTIN_METHODS: dict[str, str] = {
    # torch Krylov methods (neurosolve.solvers.krylov package)
    "cg": "neurosolve.solvers.krylov:CGSolver",
    "pcg": "neurosolve.solvers.krylov:PCGSolver",
    "pcg-jacobi": "neurosolve.solvers.krylov:JacobiPCGSolver",
    "fcg": "neurosolve.solvers.krylov:FlexibleCGSolver",
    # scipy / pyamg baselines (neurosolve.solvers.baselines package)
    "scipy-cg": "neurosolve.solvers.baselines:ScipyCG",
    "scipy-cg-jacobi": "neurosolve.solvers.baselines:ScipyJacobiCG",
    "ic-pcg": "neurosolve.solvers.baselines:IC0PCG",
    "amg-sa": "neurosolve.solvers.baselines:SmoothedAggregationAMG",
    "amg-rs": "neurosolve.solvers.baselines:RugeStubenAMG",
    "amg-sa-pcg": "neurosolve.solvers.baselines:SmoothedAggregationPCG",
    "amg-rs-pcg": "neurosolve.solvers.baselines:RugeStubenPCG",
    # learned methods (added by their owners):
    "dcdm": "neurosolve.solvers.dcdm.solver:DCDMSolver",
    "mgpc-pcg": "neurosolve.solvers.mgpc:MGPCSolver",
}

# Methods registered at run time: name -> (factory, description, needs_grid).
_REGISTERED: dict[str, tuple[Callable[..., Any], str, bool]] = {}


def register_method(
    name: str, factory: Callable[..., Any], *, description: str, needs_grid: bool = False
) -> None:
    """Register a solver factory under ``name`` (replacing a previous registration).

    Parameters
    ----------
    name : str
        Method name used by :func:`neurosolve.solve` and :func:`make_solver`.
    factory : callable
        ``factory(A, **options)`` returning an object with ``solve(b, *, x0, rtol, atol,
        maxiter, callback) -> SolveResult`` and a ``setup_seconds`` attribute.
    description : str
        One line shown by ``neurosolve`` listings.
    needs_grid : bool
        True if the method needs the grid of a :class:`~neurosolve.data.systems.LinearSystem`
        (e.g. a CNN or a stencil operator) and cannot work from a bare matrix.

    Examples
    --------
    >>> from neurosolve.solvers.krylov import CGSolver
    >>> register_method("my-cg", CGSolver, description="CG under another name")
    >>> "my-cg" in available()
    True
    >>> unregister = _REGISTERED.pop("my-cg")
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"method name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise InvalidInputError(f"factory for method {name!r} is not callable")
    _REGISTERED[name] = (factory, str(description), bool(needs_grid))


def available() -> list[str]:
    """Names of every registered method, sorted.

    Examples
    --------
    >>> "cg" in available() and "amg-sa-pcg" in available()
    True
    """
    return sorted(set(BUILTIN_METHODS) | set(_REGISTERED))


def _unknown(name: str) -> UnknownNameError:
    return UnknownNameError(f"unknown method {name!r}; available methods: {', '.join(available())}")


def get_factory(name: str) -> Callable[..., Any]:
    """The factory registered under ``name`` (importing its module on first use).

    Examples
    --------
    >>> get_factory("cg").__name__
    'CGSolver'
    """
    if name in _REGISTERED:
        return _REGISTERED[name][0]
    target = BUILTIN_METHODS.get(name) if isinstance(name, str) else None
    if target is None:
        raise _unknown(name)
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as exc:  # a broken table line is a programming error; say which
        raise UnknownNameError(
            f"method {name!r} points at {target!r}, which does not exist"
        ) from exc


def describe(name: str) -> str:
    """One-line description of a method.

    Examples
    --------
    >>> describe("scipy-cg")
    'scipy.sparse.linalg.cg without preconditioner, driven to the true-residual rule.'
    """
    if name in _REGISTERED:
        return _REGISTERED[name][1]
    factory = get_factory(name)
    text = getattr(factory, "description", None) or (factory.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""


def needs_grid(name: str) -> bool:
    """Whether method ``name`` needs the grid of a LinearSystem.

    Examples
    --------
    >>> needs_grid("cg")
    False
    """
    if name in _REGISTERED:
        return _REGISTERED[name][2]
    return bool(getattr(get_factory(name), "needs_grid", False))


def make_solver(method: str, A: Any, **options: Any) -> Any:
    """Build the solver object of ``method`` for the operator ``A``.

    Parameters
    ----------
    method : str
        A name from :func:`available`.
    A : LinearSystem, scipy sparse matrix, LinearOperator or ndarray
        The operator. Methods that need a grid require a LinearSystem with a grid.
    **options
        Method-specific settings (device, dtype, preconditioner, ...).

    Returns
    -------
    Solver
        A :class:`~neurosolve.solvers.base.Solver` (or, for a run-time registration, an
        object with its ``solve`` and ``setup_seconds``).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> solver = make_solver("scipy-cg", sp.diags([2.0, 3.0]).tocsr())
    >>> solver.solve(np.array([2.0, 3.0])).x
    array([1., 1.])
    """
    factory = get_factory(method)
    if needs_grid(method) and getattr(A, "grid", None) is None:
        raise InvalidInputError(
            f"method {method!r} needs a grid: pass a LinearSystem with a grid (e.g. from "
            "neurosolve.data.systems.poisson, or load_system(path, grid=...)); for a bare "
            "matrix use " + ", ".join(m for m in available() if not needs_grid(m))
        )
    return factory(A, **options)
