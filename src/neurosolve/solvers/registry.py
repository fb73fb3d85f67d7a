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

:func:`make_solver` checks option names before building: :func:`method_options` reads them
from the factory's signature (following ``**options`` up the class hierarchy), scipy's
``M=`` is accepted for ``preconditioner=``, and an unknown name is an
:class:`~neurosolve.errors.InvalidInputError` naming the method, suggesting a close match
(``tol`` -> ``rtol``) and listing the options. ``threads=`` is taken by every method: it is
the thread policy (:mod:`neurosolve._util.threads`) under which :func:`make_solver` builds
the solver and :meth:`~neurosolve.solvers.base.Solver.solve` runs, not a factory option.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from neurosolve._util.threads import check_threads, torch_threads
from neurosolve.errors import InvalidInputError, UnknownNameError
from neurosolve.solvers.base import Solver

__all__ = [
    "BUILTIN_METHODS",
    "SOLVE_ARGUMENTS",
    "available",
    "check_options",
    "describe",
    "get_factory",
    "make_solver",
    "method_options",
    "needs_grid",
    "register_method",
    "takes_device",
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

#: Arguments of ``Solver.solve`` (per call), not options of a solver object.
SOLVE_ARGUMENTS = ("rtol", "atol", "maxiter", "x0", "callback")

# Names users bring from scipy / pyamg / other solvers, and what they are called here.
_ALIASES = {
    "tol": "rtol",
    "M": "preconditioner",
    "precond": "preconditioner",
    "max_iter": "maxiter",
    "maxit": "maxiter",
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


def _keyword_names(function: Any, skip: int) -> tuple[list[str], bool] | None:
    """Keyword parameter names of ``function`` after its first ``skip``, and ``**kwargs``.

    Returns ``(names, takes_var_keyword)``, or None when the signature cannot be read.
    """
    try:
        params = list(inspect.signature(function).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None
    named = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _factory_options(factory: Any) -> tuple[list[str], bool]:
    """The option names a factory takes, and whether it takes any name (open ``**kwargs``).

    For a class, ``**options`` of an ``__init__`` are followed to the ``__init__`` of the
    next class in the MRO that defines one, until one without ``**options``.
    """
    if not isinstance(factory, type):
        found = _keyword_names(factory, 1)  # the first parameter is A
        return ([], True) if found is None else found
    names: list[str] = []
    for cls in factory.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls is object:
            continue
        found = _keyword_names(init, 2)  # self, A
        if found is None:
            return names, True
        names += [name for name in found[0] if name not in names]
        if not found[1]:
            return names, False
    return names, True


def takes_device(method: str) -> bool:
    """Whether ``method`` runs where a ``device`` option puts it (the torch-based methods).

    The scipy / pyamg baselines accept ``device`` only to refuse anything but the CPU, so a
    caller with a device in hand (a CUDA right-hand side, ``bench --device``) leaves it out
    for them.

    Examples
    --------
    >>> takes_device("cg"), takes_device("amg-sa-pcg")
    (True, False)
    """
    if getattr(get_factory(method), "cpu_only", False):
        return False
    names = method_options(method)
    return names is None or "device" in names


def method_options(method: str) -> tuple[str, ...] | None:
    """The keyword options the solver of ``method`` takes; None if it takes any name.

    Examples
    --------
    >>> "preconditioner" in method_options("pcg"), "device" in method_options("pcg")
    (True, True)
    >>> method_options("amg-sa-pcg")
    ('amg_options', 'cycle', 'history', 'max_restarts', 'check_symmetry', 'device')
    """
    names, open_ended = _factory_options(get_factory(method))
    return None if open_ended else tuple(names)


def _unknown_option(method: str, key: str, known: list[str]) -> InvalidInputError:
    """The error for option ``key`` that the solver of ``method`` does not take."""
    if key in SOLVE_ARGUMENTS:
        hint = f"; {key} is an argument of solve(), not an option of the solver"
    elif key in ("M", "preconditioner"):
        hint = f"; {method} takes no preconditioner (pcg takes any, as M= or preconditioner=)"
    else:
        guess = _ALIASES.get(key)
        if guess is None or guess not in (*known, *SOLVE_ARGUMENTS):
            close = difflib.get_close_matches(key, [*known, *SOLVE_ARGUMENTS], n=1, cutoff=0.6)
            guess = close[0] if close else None
        hint = f"; did you mean {guess!r}?" if guess else ""
    takes = ", ".join(known) if known else "no options"
    return InvalidInputError(
        f"method {method!r} rejected its options: it has no option {key!r}{hint} (options "
        f"of {method!r}: {takes}; "
        f"solve() takes {', '.join(SOLVE_ARGUMENTS)})"
    )


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for the solver of ``method``, with ``M`` renamed, or an error naming it.

    Parameters
    ----------
    method : str
        A registered method name.
    options : dict
        Keyword options meant for the method's factory.

    Returns
    -------
    dict
        The options, with scipy's ``M`` renamed ``preconditioner`` for the methods that
        take one.

    Raises
    ------
    InvalidInputError
        An option the method does not take (the message names the method, suggests a
        close name and lists the options), or both ``M`` and ``preconditioner``.

    Examples
    --------
    >>> check_options("pcg", {"M": "jacobi"})
    {'preconditioner': 'jacobi'}
    >>> try:
    ...     check_options("cg", {"tol": 1e-8})
    ... except InvalidInputError as exc:
    ...     print(str(exc)[:78])
    method 'cg' rejected its options: it has no option 'tol'; did you mean 'rtol'?
    """
    names, open_ended = _factory_options(get_factory(method))
    options = dict(options)
    if "M" in options and "preconditioner" in names:
        if "preconditioner" in options:
            raise InvalidInputError(
                f"method {method!r}: pass the preconditioner once, as M= or preconditioner="
            )
        options["preconditioner"] = options.pop("M")
    if not open_ended:
        for key in options:
            if key not in names:
                raise _unknown_option(method, key, names)
    return options


def _rows(A: Any) -> int | None:
    """Unknowns of ``A`` (a LinearSystem, a matrix or an operator), None when unknown."""
    rows = getattr(A, "n", None)
    if rows is None:
        shape = getattr(A, "shape", None)
        rows = shape[0] if shape else None
    return int(rows) if hasattr(rows, "__index__") else None


def make_solver(method: str, A: Any, **options: Any) -> Any:
    """Build the solver object of ``method`` for the operator ``A``.

    Parameters
    ----------
    method : str
        A name from :func:`available`.
    A : LinearSystem, scipy sparse matrix, LinearOperator or ndarray
        The operator. Methods that need a grid require a LinearSystem with a grid.
    **options
        Method-specific settings (device, dtype, preconditioner, ...); see
        :func:`method_options`. ``M`` is accepted as scipy's name of ``preconditioner``.

    Other Parameters
    ----------------
    threads : {"auto"} or int or None
        torch intra-op threads for the setup here and for every ``solve`` of the solver
        (its :attr:`~neurosolve.solvers.base.Solver.threads`): ``"auto"`` (default) one
        thread below :data:`~neurosolve._util.threads.SERIAL_BELOW` unknowns (measured by
        ``benchmarks/thread_policy.py``) and torch's setting above it, an int exactly that
        many (restored afterwards), ``None`` torch's setting. A solver of a run-time
        registration that is not a :class:`~neurosolve.solvers.base.Solver` gets the
        policy for its setup only.

    Returns
    -------
    Solver
        A :class:`~neurosolve.solvers.base.Solver` (or, for a run-time registration, an
        object with its ``solve`` and ``setup_seconds``).

    Raises
    ------
    UnknownNameError
        ``method`` is not registered.
    InvalidInputError
        An option the method does not take (see :func:`check_options`), or a method that
        needs a grid given a bare matrix.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> solver = make_solver("scipy-cg", sp.diags([2.0, 3.0]).tocsr())
    >>> solver.solve(np.array([2.0, 3.0])).x
    array([1., 1.])
    >>> make_solver("cg", sp.diags([2.0, 3.0]).tocsr(), threads=1).solve(np.ones(2)).info["threads"]
    1
    """
    factory = get_factory(method)
    threads = check_threads(options.pop("threads", "auto"))
    options = check_options(method, options)
    if needs_grid(method) and getattr(A, "grid", None) is None:
        raise InvalidInputError(
            f"method {method!r} needs a grid: pass a LinearSystem with a grid (e.g. from "
            "neurosolve.data.systems.poisson, or load_system(path, grid=...)); for a bare "
            "matrix use " + ", ".join(m for m in available() if not needs_grid(m))
        )
    try:
        with torch_threads(threads, _rows(A)):
            solver = factory(A, **options)
    except TypeError as exc:
        # An open **options passed on to a class that refuses a name (e.g. mgpc-pcg's
        # options going to its inner PCG): the same error as a name refused up front.
        names, open_ended = _factory_options(factory)
        if not open_ended or "unexpected keyword argument" not in str(exc):
            raise
        key = str(exc).rsplit("argument", 1)[-1].strip(" '\"")
        raise _unknown_option(method, key, names) from exc
    if isinstance(solver, Solver):
        solver.threads = threads
    return solver
