"""The torch Krylov solvers (CG, PCG, Jacobi PCG, flexible CG) and their scipy-like functions.

Each solver class checks ``A`` and builds its torch operator and preconditioner once, in its
constructor (timed as ``setup_seconds``), then runs :class:`~neurosolve.solvers.krylov.cg.Run`
with its :class:`~neurosolve.solvers.krylov.cg.Variant` for every right-hand side.
:func:`cg`, :func:`pcg` and :func:`fcg` are one-call wrappers in scipy's style
(``cg(A, b, x0, *, rtol, atol, maxiter, M, callback)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse.linalg as spla
import torch

from neurosolve._util.validate import float_dtype, integer
from neurosolve.errors import InvalidInputError
from neurosolve.solvers._convert import BlockOperator
from neurosolve.solvers.base import Solver
from neurosolve.solvers.krylov.cg import (
    ConjugateGradient,
    PolakRibiere,
    Run,
    TruncatedFlexible,
    Variant,
)
from neurosolve.solvers.krylov.operators import as_torch_operator, float64_twin
from neurosolve.solvers.krylov.preconditioners import make_preconditioner
from neurosolve.solvers.result import SolveResult
from neurosolve.solvers.system import prepare_system

__all__ = ["CGSolver", "FlexibleCGSolver", "JacobiPCGSolver", "PCGSolver", "cg", "fcg", "pcg"]


class _TorchKrylov(Solver):
    """Setup and settings shared by the torch Krylov solvers (see :class:`CGSolver`)."""

    name: ClassVar[str] = "cg"

    def __init__(
        self,
        A: Any,
        *,
        preconditioner: Any = None,
        device: Any = None,
        dtype: torch.dtype = torch.float64,
        operator: str = "auto",
        history: str = "recurrence",
        truncation: int = 1,
        restart: int | None = None,
        max_replacements: int = 5,
        stagnation_window: int = 500,
        divergence_factor: float = 1e8,
        check_symmetry: bool = True,
    ) -> None:
        dtype = float_dtype(dtype)
        if history == "cheap":  # the name every method accepts for "no extra products"
            history = "recurrence"
        if history not in ("true", "recurrence"):
            raise InvalidInputError(
                f"history must be 'true', 'recurrence' or 'cheap', got {history!r}"
            )
        self.truncation = integer(truncation, "truncation", minimum=1)
        self.max_replacements = integer(max_replacements, "max_replacements", minimum=0)
        self.stagnation_window = integer(stagnation_window, "stagnation_window", minimum=1)
        if restart is not None:
            restart = integer(restart, "restart", minimum=1)
        if not (divergence_factor > 1):
            raise InvalidInputError(f"divergence_factor must be > 1, got {divergence_factor!r}")
        self.prepared = prepare_system(A, check_symmetry=check_symmetry)
        t = time.perf_counter()  # setup_seconds: operator/preconditioner build, not checks
        self.op = as_torch_operator(
            A, device=device, dtype=dtype, operator=operator, prepared=self.prepared
        )
        self.op64 = float64_twin(self.op, self.prepared)
        self.precond, self.precond_label = make_preconditioner(
            preconditioner, self.op, self.op.device, dtype
        )
        self.history = history
        self.restart = restart
        self.divergence_factor = float(divergence_factor)
        self.setup_seconds = time.perf_counter() - t

    @property
    def device(self) -> torch.device:
        """Device the iteration runs on."""
        return self.op.device

    @property
    def dtype(self) -> torch.dtype:
        """Working precision."""
        return self.op.dtype

    def variant(self, single: bool) -> Variant:
        """The iteration's strategy for one solve: CG with this solver's preconditioner."""
        return ConjugateGradient(self.precond, single)

    def aspreconditioner(self) -> spla.LinearOperator:
        """The solver's preconditioner as a scipy ``LinearOperator`` on the unknowns.

        Vectors and blocks go to the device in the solver's dtype and come back as float64
        numpy arrays (a host round trip per product on CUDA). For ``fcg`` the map is only
        linear if the preconditioner given was.

        Raises
        ------
        InvalidInputError
            The solver has no preconditioner (``cg`` without ``preconditioner=``).

        Examples
        --------
        >>> import numpy as np
        >>> import scipy.sparse as sp
        >>> M = JacobiPCGSolver(sp.diags([2.0, 4.0]).tocsr()).aspreconditioner()
        >>> M @ np.ones(2)
        array([0.5 , 0.25])
        """
        if self.precond is None:
            raise InvalidInputError(
                f"{self.name} without a preconditioner is not a fixed linear map (CG depends "
                "nonlinearly on b), so it has no M= to hand out; build it with "
                "preconditioner=... or use pcg-jacobi, ic-pcg, amg-sa-pcg or mgpc-pcg"
            )
        op, apply, n = self.op, self.precond, self.op.num_unknowns

        def product(v: np.ndarray) -> np.ndarray:
            u = torch.as_tensor(np.asarray(v, dtype=np.float64), device=op.device)
            block = u.to(op.dtype).reshape(n, -1)
            with torch.no_grad():
                out = op.from_internal(apply(op.to_internal(block), block.shape[1] == 1))
            return out.detach().cpu().double().numpy().reshape(u.shape)

        return BlockOperator(n, product)

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
        # maxiter defaults to 10 n.
        with torch.no_grad():  # a solve is never part of an autograd graph
            return Run(self, b, x0, rtol, atol, maxiter, callback).iterate()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.op.num_unknowns}, operator={type(self.op).__name__}, "
            f"preconditioner={self.precond_label}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, history={self.history})"
        )


class CGSolver(_TorchKrylov):
    """Conjugate gradients in torch (CPU/CUDA, float32/float64, batched right-hand sides).

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        SPD operator (checked once, at construction).
    preconditioner : optional
        ``None``, ``"jacobi"``, a matrix (scipy/numpy/torch) approximating ``A^{-1}``, a
        ``LinearOperator``, an object with ``.aspreconditioner()`` (e.g. a pyamg hierarchy),
        a torch module or any callable (called on ``(n,)`` or ``(n, k)`` tensors). It must be
        a fixed SPD linear map; use :class:`FlexibleCGSolver` otherwise.
    device, dtype
        Where and in which precision to iterate (default CPU, float64).
    operator : {"auto", "stencil", "csr"}
        How ``A`` is applied; see :func:`as_torch_operator`.
    history : {"recurrence", "true", "cheap"}
        What ``residuals`` records between the first and last entry (see module docs):
        ``"recurrence"`` (default) the recurrence residual, free; ``"true"`` the true
        residual ``b - A x_k`` at every iteration, one extra product with ``A`` each;
        ``"cheap"`` (accepted by every built-in method) is ``"recurrence"`` here. Either
        way convergence is only declared on the true residual, in float64.

    Other Parameters
    ----------------
    truncation : int
        Flexible CG only: directions kept for A-orthogonalization (1 = Polak-Ribiere).
    restart : int, optional
        Flexible CG: restart with ``p = z`` every ``restart`` iterations.
    max_replacements : int
        Residual replacements allowed before stopping with ``STAGNATION``.
    stagnation_window : int
        Stop with ``STAGNATION`` after ``max(stagnation_window, k_min)`` iterations without
        a new minimum residual, ``k_min`` the iteration of the minimum so far (default 500:
        CG residual norms are not monotone and may plateau for hundreds of iterations on
        hard problems; a plateau as long as the progress before it is allowed).
    divergence_factor : float
        Stop with ``DIVERGED`` when the residual exceeds this factor times its initial value.
    check_symmetry : bool
        Check symmetry / positive diagonal of ``A`` at construction.

    Notes
    -----
    :meth:`solve` iterates at most ``10 n`` times unless ``maxiter`` says otherwise. It
    iterates in the solver's ``dtype`` and returns ``x`` as the type and device of ``b``, in
    the narrower of the two dtypes: a float32 ``b`` gets a float32 ``x`` from a float64
    iteration, and ``dtype=torch.float32`` a float32 ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((16, 16))
    >>> result = CGSolver(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.final_residual <= 1e-8
    (True, True)
    """

    name = "cg"


class PCGSolver(_TorchKrylov):
    """Preconditioned conjugate gradients in torch (``preconditioner`` required).

    Same parameters as :class:`CGSolver`.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 10.0, 100.0]).tocsr()
    >>> M = sp.diags([1.0, 0.1, 0.01]).tocsr()
    >>> PCGSolver(A, preconditioner=M).solve(np.ones(3), rtol=1e-10).iterations
    1
    """

    name = "pcg"

    def __init__(self, A: Any, *, preconditioner: Any = None, **options: Any) -> None:
        if preconditioner is None:
            raise InvalidInputError(
                "pcg needs preconditioner=...: 'jacobi', a matrix, a LinearOperator, an "
                "object with .aspreconditioner(), or a callable (use 'cg' for none)"
            )
        super().__init__(A, preconditioner=preconditioner, **options)


class JacobiPCGSolver(_TorchKrylov):
    """CG preconditioned by the inverse diagonal of A (Jacobi), in torch.

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8), coefficient=np.linspace(1, 100, 64).reshape(8, 8))
    >>> JacobiPCGSolver(system).solve(np.ones(system.n), rtol=1e-8).converged
    True
    """

    name = "pcg-jacobi"

    def __init__(self, A: Any, *, preconditioner: Any = None, **options: Any) -> None:
        if preconditioner is not None and not (
            isinstance(preconditioner, str) and preconditioner == "jacobi"
        ):
            raise InvalidInputError(
                "pcg-jacobi always uses the Jacobi preconditioner; for another one use pcg "
                "with preconditioner=... (or M=...)"
            )
        super().__init__(A, preconditioner="jacobi", **options)


class FlexibleCGSolver(_TorchKrylov):
    """Flexible CG (Polak-Ribiere beta, optional truncation/restart) for variable preconditioners.

    Use it when the preconditioner is not a fixed SPD linear map: a neural network, an
    inner iteration, a multigrid cycle with a non-symmetric smoother. With
    ``truncation=m > 1`` each new direction is A-orthogonalized explicitly against the last
    ``m`` directions (Notay's FCG(m)); ``restart=r`` restarts with ``p = M r`` every ``r``
    iterations. With a fixed SPD preconditioner it takes the same steps as PCG in exact
    arithmetic. Lanczos coefficients are not recorded (they have no meaning here).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8))
    >>> FlexibleCGSolver(system, preconditioner="jacobi").solve(np.ones(64), rtol=1e-8).converged
    True
    """

    name = "fcg"

    def variant(self, single: bool) -> Variant:
        """Polak-Ribiere flexible CG, or FCG(m) for ``truncation=m > 1``."""
        if self.truncation == 1:
            return PolakRibiere(self.precond, single)
        return TruncatedFlexible(self.precond, single, self.truncation)


def cg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Any = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Solve ``A x = b`` by (preconditioned) conjugate gradients in torch.

    A scipy-like wrapper around :class:`CGSolver` (``M`` is the preconditioner, an
    approximation of ``A^{-1}``). ``options`` go to the solver (device, dtype, ...).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[4.0, 1.0], [1.0, 3.0]]))
    >>> result = cg(A, np.array([1.0, 2.0]), rtol=1e-12)
    >>> result.converged, result.iterations
    (True, 2)
    """
    solver = CGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def pcg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    M: Any,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Preconditioned CG in torch (``M`` required, e.g. ``"jacobi"``).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 4.0]).tocsr()
    >>> pcg(A, np.array([1.0, 4.0]), M="jacobi", rtol=1e-12).x
    array([1., 1.])
    """
    solver = PCGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def fcg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    M: Any = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Flexible CG in torch (see :class:`FlexibleCGSolver`).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> A = sp.diags([1.0, 4.0]).tocsr()
    >>> fcg(A, np.array([1.0, 4.0]), M="jacobi", rtol=1e-12).converged
    True
    """
    solver = FlexibleCGSolver(A, preconditioner=M, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
