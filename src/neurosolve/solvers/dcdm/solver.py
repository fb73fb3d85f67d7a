r"""The DCDM iteration: network search directions, A-orthogonalized, exact line search.

:class:`DCDMSolver` (method ``"dcdm"`` of :func:`neurosolve.solve`) holds one grid matrix
and its network and solves any number of right-hand sides; the A-norm of the error never
increases whatever the network returns. The iteration and its differences from the
reference (Kaneda et al., ICML 2023) are written up in ``docs/dcdm.md``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import nn

from neurosolve._util.validate import float_dtype
from neurosolve.checkpoint import load_shipped
from neurosolve.data.grids import Grid
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.base import Solver
from neurosolve.solvers.result import SolveResult, Status, stopping_threshold
from neurosolve.solvers.system import check_spd, rhs_scales

__all__ = [
    "DCDMSolver",
    "dcdm",
    "load_dcdm_model",
    "network_input",
    "GRID_FREE_METHODS",
]

logger = logging.getLogger(__name__)

#: Methods that solve a matrix without grid information (named in DCDM's refusal).
GRID_FREE_METHODS = ("cg", "pcg-jacobi", "ic-pcg", "amg-sa-pcg", "amg-rs-pcg")


def load_dcdm_model(
    path: str | Path | None = None, *, device: torch.device | str | None = None
) -> nn.Module:
    """Load a DCDM network (default: the shipped 3D model) through the shared model cache.

    The network is cached per (file, modification time, device) by
    :func:`neurosolve.checkpoint.load_shipped`; the returned module is shared and must not
    be modified.

    Parameters
    ----------
    path : path-like, optional
        A checkpoint written by ``neurosolve train dcdm`` (a ``model.pt``).
    device : torch.device or str, optional
        Where to put the network.

    Raises
    ------
    FileFormatError
        If the file is missing, not a neurosolve checkpoint, or holds another model kind.

    Examples
    --------
    >>> load_dcdm_model().dim
    3
    """
    return load_shipped("dcdm", path, device=device)


def network_input(
    r_fields: torch.Tensor, fluid: torch.Tensor, geometry: torch.Tensor | None
) -> torch.Tensor:
    """Build the network input from residual fields.

    Parameters
    ----------
    r_fields : torch.Tensor, shape ``(B, 1, *grid)``
        Residuals (zero outside fluid cells).
    fluid : torch.Tensor of bool, shape ``(*grid)`` or ``(B, 1, *grid)``
        Fluid mask.
    geometry : torch.Tensor, optional
        Geometry channels ``(1 or B, C, *grid)`` from
        :func:`~neurosolve.solvers.dcdm.network.geometry_input`; appended when given.
        When they carry ghost layers (a larger grid), the residual is zero-padded to
        their size.

    Returns
    -------
    torch.Tensor
        ``(B, 1 + C, *grid)``: each residual scaled to unit root-mean-square over its
        fluid cells (a zero residual stays zero).

    Examples
    --------
    >>> r = torch.tensor([[[3.0, 4.0, 0.0]]])
    >>> network_input(r, torch.tensor([True, True, False]), None)
    tensor([[[0.8485, 1.1314, 0.0000]]])
    """
    batch = r_fields.shape[0]
    if fluid.ndim == r_fields.ndim - 2:
        cells = fluid.sum().to(r_fields.dtype).expand(batch)
    else:
        cells = fluid.reshape(batch, -1).sum(dim=1).to(r_fields.dtype)
    ones = [1] * (r_fields.ndim - 1)
    norm = torch.linalg.vector_norm(r_fields.reshape(batch, -1), dim=1)
    tiny = torch.finfo(r_fields.dtype).tiny
    scale = torch.sqrt(torch.clamp(cells, min=1.0)) / torch.clamp(norm, min=tiny)
    scale = scale.reshape(batch, *ones)
    x = r_fields * scale
    if geometry is not None:
        pad = [(g - n) // 2 for g, n in zip(geometry.shape[2:], x.shape[2:], strict=True)]
        if any(pad):
            x = torch.nn.functional.pad(x, [p for p in reversed(pad) for _ in range(2)])
        x = torch.cat([x, geometry.expand(batch, *geometry.shape[1:]).to(x.dtype)], dim=1)
    return x


def _grid_system(A: Any, grid: Grid | tuple | None, flags: np.ndarray | None):
    """Coerce the inputs to a LinearSystem with a grid, or refuse clearly."""
    from neurosolve.data import LinearSystem

    if isinstance(A, LinearSystem):
        system = A
        if grid is None and flags is None:
            if system.grid is None:
                _refuse(system.name or "this matrix")
            check_spd(system.A, name="the DCDM matrix")  # symmetric, positive diagonal
            return system
        matrix = system.A
    else:
        matrix = A
    if not scipy.sparse.issparse(matrix):
        raise InvalidInputError(
            "DCDM needs the matrix itself (scipy sparse or LinearSystem) with its grid, got "
            f"{type(matrix).__name__}; for a LinearOperator use one of: "
            + ", ".join(GRID_FREE_METHODS)
        )
    if grid is None and flags is None:
        _refuse("this matrix")
    if not isinstance(grid, Grid):
        if flags is not None:
            flags = np.asarray(flags)
            shape = flags.shape if grid is None else tuple(int(s) for s in grid)
        else:
            shape = tuple(int(s) for s in grid)
        grid = Grid(shape, flags=flags)
    elif flags is not None:
        grid = Grid(grid.shape, spacing=grid.spacing, flags=flags, boundary=grid.boundary)
    if grid.num_unknowns != matrix.shape[0]:
        raise InvalidInputError(
            f"the matrix has {matrix.shape[0]} unknowns but the grid {grid.shape} has "
            f"{grid.num_unknowns} fluid cells; give the cell-flags file of the exporting code "
            "when it drops solid cells"
        )
    return LinearSystem(A=check_spd(matrix, name="the DCDM matrix"), grid=grid)


def _refuse(what: str) -> None:
    raise InvalidInputError(
        f"DCDM needs the grid of {what}: its network works on grid fields. Give the grid "
        "(e.g. --grid 64x64x64 or grid=(64, 64, 64), unknowns in lexicographic order, plus "
        "a cell-flags file if solid cells were dropped), or use a method that needs no grid: "
        + ", ".join(GRID_FREE_METHODS)
    )


class DCDMSolver(Solver):
    """DCDM for one matrix on a grid; reusable across right-hand sides.

    Parameters
    ----------
    A : LinearSystem or scipy sparse matrix
        SPD matrix over the fluid cells of a grid (lexicographic order). A bare matrix
        needs ``grid`` (and ``flags`` when it was exported without its solid cells).
    model : torch.nn.Module, callable, path-like or None
        The network: a module or callable taking ``(B, C, *grid)`` fields (``C`` is its
        ``in_channels`` attribute, default 1) and returning ``(B, 1, *grid)``; a
        checkpoint path; ``None`` for the shipped 3D model (2D systems need a model).
    k : int
        Number of previous search directions each new one is made A-orthogonal to
        (reference: 2).
    grid : Grid or tuple of int, optional
        Grid of a bare matrix.
    flags : numpy.ndarray, optional
        Cell flags of a bare matrix (its FLUID cells are the unknowns).
    device : torch.device or str, optional
        Where the network and the iteration run (default CPU).
    dtype : torch.dtype
        Precision of the iteration (default float64).
    network_dtype : torch.dtype
        Precision of the network (default float32).

    Attributes
    ----------
    setup_seconds : float
        Time to build the stencil operator and load the network.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8, 8))
    >>> solver = DCDMSolver(system)
    >>> result = solver.solve(np.ones(system.n), rtol=1e-6)
    >>> result.converged
    True
    """

    name = "dcdm"
    #: Registry metadata: DCDM's network works on grid fields.
    needs_grid = True
    description = "DCDM: CNN search directions, A-orthogonalized, exact line search (learned)"

    def __init__(
        self,
        A: Any,
        *,
        model: nn.Module | Callable | str | Path | None = None,
        k: int = 2,
        grid: Grid | tuple | None = None,
        flags: np.ndarray | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
        network_dtype: torch.dtype = torch.float32,
    ) -> None:
        from neurosolve.solvers.dcdm.network import geometry_input
        from neurosolve.solvers.stencil import StencilOperator

        start = time.perf_counter()
        if int(k) < 0:
            raise InvalidInputError(f"k must be >= 0, got {k}")
        self.k = int(k)
        self.device = resolve_device(device)
        self.dtype = dtype = float_dtype(dtype)  # "float32" as well as torch.float32
        self.network_dtype = network_dtype = float_dtype(network_dtype)
        self.system = _grid_system(A, grid, flags)
        self.grid = self.system.grid
        self.operator = StencilOperator.from_system(self.system, device=self.device, dtype=dtype)
        # residuals in float64 with the given coefficients when iterating in lower precision
        self.operator64 = (
            self.operator
            if dtype == torch.float64
            else StencilOperator.from_system(self.system, device=self.device, dtype=torch.float64)
        )
        if model is None or isinstance(model, (str, Path)):
            model = load_dcdm_model(model, device=self.device)
        if isinstance(model, nn.Module):
            model = model.to(device=self.device, dtype=network_dtype).eval()
        self.model = model
        dim = getattr(model, "dim", self.grid.ndim)
        if dim != self.grid.ndim:
            raise InvalidInputError(
                f"the DCDM network is {dim}D but the system's grid {self.grid.shape} is "
                f"{self.grid.ndim}D; train or load a {self.grid.ndim}D model"
            )
        self.in_channels = int(getattr(model, "in_channels", 1))
        self.fluid = torch.as_tensor(self.grid.fluid, device=self.device)
        self._fluid_flat = self.fluid.reshape(-1)
        self.geometry = None
        if self.in_channels >= 2:
            self.geometry = geometry_input(
                torch.as_tensor(self.grid.flags, device=self.device)[None, None],
                self.grid.boundary == "neumann",
                channels=self.in_channels - 1,
                ghost=int(getattr(model, "ghost", 0)),
                dtype=network_dtype,
            )
        self.setup_seconds = time.perf_counter() - start

    def __repr__(self) -> str:
        return (
            f"DCDMSolver(grid={self.grid.shape}, n={self.system.n}, k={self.k}, "
            f"device={self.device}, network={type(self.model).__name__})"
        )

    # -- pieces -------------------------------------------------------------------------
    def direction(self, r: torch.Tensor) -> torch.Tensor:
        """Network search directions for residual columns ``r`` of shape ``(n, m)``."""
        m = r.shape[1]
        fields = torch.zeros(m, self.grid.num_cells, device=self.device, dtype=self.network_dtype)
        fields[:, self._fluid_flat] = r.T.to(self.network_dtype)
        fields = fields.reshape(m, 1, *self.grid.shape)
        with torch.no_grad():
            out = self.model(network_input(fields, self.fluid, self.geometry))
        out = out.reshape(m, -1)[:, self._fluid_flat]
        return out.T.to(self.dtype)

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.operator.matvec(x)

    def aspreconditioner(self) -> Any:
        """Refused: DCDM is not a linear map, so it cannot serve as ``M=``.

        Raises
        ------
        InvalidInputError
            Always.

        Examples
        --------
        >>> from neurosolve.data import poisson
        >>> DCDMSolver(poisson((4, 4, 4))).aspreconditioner()
        Traceback (most recent call last):
        ...
        neurosolve.errors.InvalidInputError: dcdm cannot serve as a preconditioner: ...
        """
        raise InvalidInputError(
            "dcdm cannot serve as a preconditioner: its network is a nonlinear map of the "
            "residual (and each step depends on the previous directions), while M= needs a "
            "fixed SPD linear map; use mgpc-pcg or amg-sa-pcg (amg-rs-pcg) for M="
        )

    # -- solve --------------------------------------------------------------------------
    def _solve(
        self,
        b: np.ndarray | torch.Tensor,
        *,
        x0: np.ndarray | torch.Tensor | None,
        rtol: float,
        atol: float,
        maxiter: int | None,
        callback: Callable[[Any], None] | None,
    ) -> SolveResult:
        """The DCDM iteration (default ``maxiter`` 500); ``info["network_calls"]``, ``k``.

        ``callback(x)`` gets the current iterate as a float64 torch tensor on the solver's
        device.
        """
        B, single, restore = self._right_hand_sides(b)
        maxiter = 500 if maxiter is None else int(maxiter)
        start = time.perf_counter()
        # columns too large or small for their squares: solved scaled by a power of two
        scale = torch.as_tensor(
            rhs_scales(B.abs().amax(dim=0).cpu().numpy()), device=self.device, dtype=B.dtype
        )
        B = B / scale  # float64: kept for the residuals, rounded to dtype for the iteration
        if x0 is not None:
            x0 = (self._initial_guess(x0, B) / scale).to(self.dtype)
        run = self._start(B, x0, rtol, atol, scale)
        while run.status is Status.MAXITER and run.iterations < maxiter:
            status = self._step(run)
            if status is None:
                if callback is not None:
                    callback(run.X[:, 0] * scale[0] if single else run.X * scale)
                status = run.decide()
            if status is not None:
                run.status = status
        elapsed = time.perf_counter() - start
        residuals = np.asarray(run.history)
        X = (run.X.double() * scale).to(self.dtype)
        detail = None
        if not (bool(torch.isfinite(X).all()) and np.isfinite(residuals[-1]).all()):
            run.status = Status.NONFINITE
            detail = "the solution or its residual is NaN or Inf"
        elif run.status is Status.CONVERGED and bool((scale != 1).any()):
            # x rounded in the user's units may over- or underflow: recheck that x, exactly
            # rescaled, against the thresholds
            back = X.double() / scale
            true = torch.linalg.vector_norm(run.B64 - self.operator64.matvec(back), dim=0)
            run.matvecs += 1
            if not bool((true <= run.thresholds).all()):
                run.status = Status.NONFINITE
                detail = (
                    "the solution is outside the range of "
                    f"{str(self.dtype).replace('torch.', '')} once scaled back to the size of b "
                    "(its entries over- or underflow); solve a rescaled system"
                )
        return SolveResult(
            x=restore(X[:, 0] if single else X),
            status=run.status,
            iterations=run.iterations,
            residuals=residuals[:, 0] if single else residuals,
            setup_seconds=self.setup_seconds,
            solve_seconds=elapsed,
            matvecs=run.matvecs,
            info={"network_calls": run.calls, "k": self.k, "detail": detail},
        )

    def _right_hand_sides(
        self, b: np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, bool, Callable[[torch.Tensor], Any]]:
        """``b`` as ``(n, m)`` columns, whether it was one vector, and how to give ``x`` back."""
        n = self.system.n
        is_numpy = not torch.is_tensor(b)
        b_t = torch.as_tensor(np.asarray(b) if is_numpy else b)
        if b_t.ndim not in (1, 2) or b_t.shape[0] != n:
            raise InvalidInputError(f"b must have shape ({n},) or ({n}, m), got {tuple(b_t.shape)}")
        B = b_t.reshape(n, -1).to(device=self.device, dtype=torch.float64)
        if not torch.isfinite(B).all():
            raise InvalidInputError("b contains NaN or Inf")
        if is_numpy:
            return B, b_t.ndim == 1, lambda x: x.cpu().numpy()
        device, dtype = b_t.device, b_t.dtype
        return B, b_t.ndim == 1, lambda x: x.to(device=device, dtype=dtype)

    def _initial_guess(self, x0: Any, B: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(np.asarray(x0) if not torch.is_tensor(x0) else x0)
        X = X.reshape(B.shape[0], -1).to(device=self.device, dtype=torch.float64).clone()
        if X.shape != B.shape:
            raise InvalidInputError(f"x0 has shape {tuple(X.shape)}, b has {tuple(B.shape)}")
        return X

    def _start(
        self, B: torch.Tensor, X: torch.Tensor | None, rtol: float, atol: float, scale: Any
    ) -> _Run:
        """The initial iterate, residual and thresholds (``B``: scaled, float64).

        Norms, thresholds and the decisions on them are float64 in every precision.
        """
        bnorm = torch.linalg.vector_norm(B, dim=0)
        thresholds = torch.tensor(
            [
                stopping_threshold(float(v), rtol, atol / float(s))
                for v, s in zip(bnorm, scale, strict=True)
            ],
            device=self.device,
            dtype=torch.float64,
        )
        bscale = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        run = _Run(B.to(self.dtype), B, B, thresholds, bscale, deque(maxlen=max(self.k, 1)))
        run.B64 = B
        if X is None:
            run.X, run.R = torch.zeros_like(run.B), run.B.clone()
        else:
            run.X, run.R = X, self._residual(run, X)
        run.record(self._residual_norm(run))
        run.best = run.rnorm.clone()
        run.since_best = torch.zeros_like(run.rnorm, dtype=torch.long)
        run.done = run.rnorm <= thresholds
        if bool(run.done.all()):
            run.status = Status.CONVERGED
        return run

    def _step(self, run: _Run) -> Status | None:
        """One DCDM step: direction, A-orthogonalization, exact line search, true residual.

        Returns a status when the step cannot be taken (NaN/Inf, ``q^T A q <= 0``).
        """
        active = ~run.done
        # converged columns get a zero direction: they stay where they are
        q = self.direction(run.R) * active.to(self.dtype)
        run.calls += 1
        if self.k > 0:
            for P, AP, pAp in run.directions:
                q = q - P * ((q * AP).sum(dim=0) / pAp)
        Aq = self._matvec(q)
        run.matvecs += 1
        qAq = (q * Aq).sum(dim=0)
        if not bool(torch.isfinite(qAq[active]).all()):
            return Status.NONFINITE
        if bool((qAq[active] <= 0).any()):
            return Status.BREAKDOWN
        safe = torch.where(active, qAq, 1.0)
        alpha = torch.where(active, (q * run.R).sum(dim=0) / safe, 0.0)
        run.X = run.X + alpha * q
        run.R = self._residual(run, run.X)
        run.iterations += 1
        if self.k > 0:
            run.directions.append((q, Aq, safe))
        run.record(self._residual_norm(run))
        return None

    def _residual(self, run: _Run, X: torch.Tensor) -> torch.Tensor:
        """``B - A X``; below float64 computed in float64 with the given coefficients."""
        run.matvecs += 1
        if self.operator64 is self.operator:
            return run.B - self._matvec(X)
        run.R64 = run.B64 - self.operator64.matvec(X.double())
        return run.R64.to(self.dtype)

    def _residual_norm(self, run: _Run) -> torch.Tensor:
        """Norms of the true residual (float64 ones below float64), per column."""
        R = run.R if run.R64 is None else run.R64
        return torch.linalg.vector_norm(R, dim=0).double()


@dataclass
class _Run:
    """The state of one DCDM solve (columns are right-hand sides)."""

    B: torch.Tensor
    X: torch.Tensor
    R: torch.Tensor
    thresholds: torch.Tensor
    scale: torch.Tensor
    directions: deque
    matvecs: int = 0
    calls: int = 0
    iterations: int = 0
    status: Status = Status.MAXITER
    history: list = field(default_factory=list)
    rnorm: Any = None
    done: Any = None
    best: Any = None
    since_best: Any = None
    R64: Any = None
    B64: Any = None

    def record(self, rnorm: torch.Tensor) -> None:
        """Keep the residual norms of the current iterate and their relative history."""
        self.rnorm = rnorm
        self.history.append((rnorm / self.scale).cpu().numpy())

    def decide(self) -> Status | None:
        """After a step: converged, stagnating (no 1% gain in 100 steps), diverged, or on."""
        rnorm = self.rnorm
        if not bool(torch.isfinite(rnorm).all()):
            return Status.NONFINITE
        self.done = self.done | (rnorm <= self.thresholds)
        if bool(self.done.all()):
            return Status.CONVERGED
        improved = rnorm < 0.99 * self.best
        self.best = torch.where(improved, rnorm, self.best)
        self.since_best = torch.where(
            improved, torch.zeros_like(self.since_best), self.since_best + 1
        )
        if bool((self.since_best[~self.done] >= 100).any()):
            return Status.STAGNATION
        if bool((rnorm[~self.done] > 1e8 * self.scale[~self.done]).any()):
            return Status.DIVERGED
        return None


def dcdm(
    A: Any,
    b: np.ndarray | torch.Tensor,
    *,
    x0: np.ndarray | torch.Tensor | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    callback: Callable[[Any], None] | None = None,
    **options: Any,
) -> SolveResult:
    """Solve ``A x = b`` with DCDM in one call (see :class:`DCDMSolver` for ``options``).

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((8, 8, 8))
    >>> dcdm(system, np.ones(system.n)).converged
    True
    """
    solver = DCDMSolver(A, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
