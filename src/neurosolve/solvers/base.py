"""The solver contract: what every method behind :func:`neurosolve.solve` provides.

A solver object does its setup (checks, factorization, hierarchy, network load) in its
constructor, keeps its settings, and solves any number of right-hand sides with
:meth:`Solver.solve`. The ``solve`` docstring, the per-call argument checks and the thread
policy (:func:`~neurosolve._util.threads.torch_threads` around every solve, with the
solver's :attr:`Solver.threads`) live here once; a method implements :meth:`Solver._solve`
only.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

from neurosolve._util.threads import torch_threads
from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError
from neurosolve.solvers._convert import match_input
from neurosolve.solvers.result import SolveResult, stopping_threshold

__all__ = ["Solver"]


class Solver(abc.ABC):
    """Base class of every solver object: setup in ``__init__``, then :meth:`solve`.

    Subclasses set :attr:`name` (the registry name) and :attr:`needs_grid`, record
    :attr:`setup_seconds` in their constructor, and implement :meth:`_solve`. A solver whose
    action is a fixed SPD linear map also overrides :meth:`aspreconditioner`.

    Attributes
    ----------
    name : str
        The method's registry name (``"cg"``, ``"amg-sa-pcg"``, ``"mgpc-pcg"``...).
    needs_grid : bool
        Whether the method needs the structured grid of the system.
    setup_seconds : float
        Wall time of the setup done in the constructor.
    threads : {"auto"} or int or None
        torch intra-op threads of :meth:`solve` (see :mod:`neurosolve._util.threads`):
        ``"auto"`` (default) one thread below a measured problem size and torch's setting
        above it, an int that many, ``None`` torch's setting. ``make_solver(...,
        threads=...)`` sets it (and builds the solver under the same policy).
    """

    name: ClassVar[str] = "solver"
    needs_grid: ClassVar[bool] = False
    setup_seconds: float = 0.0
    threads: int | str | None = "auto"

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
            Right-hand side(s). ``x`` comes back as the same type, floating dtype and (for
            tensors) device, even when the method iterated in a higher precision (never
            wider than the iteration: ``dtype=torch.float32`` gives a float32 ``x``). The
            residuals are those of the iteration, so a float32 ``b`` with ``rtol`` near
            float32's resolution may get an ``x`` whose own residual is a little above.
        x0 : array or tensor, optional
            Initial guess, same shape as ``b`` (default zero).
        rtol, atol : float
            Stop when ``||b - A x|| <= max(rtol ||b||, atol)``, on the true residual and per
            column; convergence is confirmed in float64 before it is reported.
        maxiter : int, optional
            Iteration limit (each method documents its default).
        callback : callable, optional
            Called as ``callback(x_k)`` after every iteration.

        Returns
        -------
        SolveResult
            ``x``, ``status`` (with its ``message``), ``iterations``, the relative residual
            history, setup and solve times, and the method's statistics in ``info`` (a
            :class:`~neurosolve.solvers.result.SolveInfo`; ``info["threads"]``: the torch
            intra-op threads the solve ran under, when torch is loaded).

        Raises
        ------
        InvalidInputError
            Bad tolerances, ``maxiter``, ``b`` or ``x0`` (shape, NaN/Inf).
        """
        stopping_threshold(1.0, rtol, atol)  # validates rtol / atol
        if maxiter is not None:
            maxiter = integer(maxiter, "maxiter", minimum=0)
        size = math.prod(getattr(b, "shape", None) or (0,)) or None
        with torch_threads(self.threads, size) as threads:
            result = self._solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
        if threads is not None and isinstance(result, SolveResult):
            result.info.extra.setdefault("threads", threads)
        return match_input(result, b)  # x as b came in: type, float dtype, device

    @abc.abstractmethod
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
        """The method's iteration; arguments already passed the checks of :meth:`solve`."""

    def aspreconditioner(self) -> Any:
        """The solver's action as a scipy ``LinearOperator``, for ``M=`` in scipy's ``cg``.

        Raises
        ------
        InvalidInputError
            The method is not a fixed linear map (the default).
        """
        raise InvalidInputError(
            f"{self.name} is not a fixed linear map, so it cannot serve as a preconditioner"
        )
