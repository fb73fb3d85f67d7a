r"""The deep conjugate-direction method (DCDM) of Kaneda et al. (ICML 2023).

Each iteration asks a network for a search direction ``q = f(r / |r|)`` that
approximates ``A^{-1} r`` up to a constant, makes it A-orthogonal to the last ``k``
search directions, and takes the exact line-search step in the A-norm:

.. math::

    q \leftarrow q - \sum_{j} \frac{q^T A p_j}{p_j^T A p_j} p_j, \qquad
    \alpha = \frac{q^T r}{q^T A q}, \qquad x \leftarrow x + \alpha q, \qquad
    r \leftarrow b - A x .

The A-norm of the error never increases (each step minimizes it along ``q``), whatever
the network returns; the network decides how fast it falls. The network runs in float32
on full grid fields, the iteration in float64 on the unknowns (fluid cells).

Differences from the reference:

- the stopping rule is the package's common one on the TRUE residual,
  ``||b - A x|| <= max(rtol ||b||, atol)`` (reference: ``||r|| <= tol ||r0||``);
- the network input is the residual scaled to unit root-mean-square over the fluid cells
  (reference: unit 2-norm), so the input magnitude does not depend on the grid size and
  a model trained at one resolution sees familiar inputs at another;
- optional cell-type channel (see :class:`~neurosolve.solvers.dcdm.network.DCDMNet`);
- several right-hand sides can be solved at once (columns of ``b``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import nn

from neurosolve.data.grids import Grid
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.result import SolveResult, Status, stopping_threshold

__all__ = [
    "DCDMSolver",
    "dcdm",
    "load_dcdm_model",
    "shipped_model_path",
    "network_input",
    "GRID_FREE_METHODS",
]

logger = logging.getLogger(__name__)

#: Methods that solve a matrix without grid information (named in DCDM's refusal).
GRID_FREE_METHODS = ("cg", "pcg-jacobi", "ic-pcg", "amg-sa-pcg", "amg-rs-pcg")

SHIPPED_MODEL = "dcdm3d.pt"


def shipped_model_path() -> Path:
    """Path of the small 3D model shipped with the package.

    Examples
    --------
    >>> shipped_model_path().name
    'dcdm3d.pt'
    """
    return Path(str(resources.files("neurosolve") / "models" / SHIPPED_MODEL))


def load_dcdm_model(
    path: str | Path | None = None, *, device: torch.device | str | None = None
) -> nn.Module:
    """Load a DCDM network from a checkpoint (default: the shipped 3D model).

    Loaded networks are cached per (file, modification time, device), so solvers built
    for a sequence of matrices (one per time step) read the weights once; the returned
    module is shared and must not be modified.

    Parameters
    ----------
    path : path-like, optional
        A checkpoint written by ``neurosolve train dcdm`` (a ``model.pt``).
    device : torch.device or str, optional
        Where to put the network.

    Returns
    -------
    torch.nn.Module
        The network in eval mode.

    Raises
    ------
    FileFormatError
        If the file is missing, not a neurosolve checkpoint, or holds another model kind.

    Examples
    --------
    >>> net = load_dcdm_model()
    >>> net.dim
    3
    """
    path = shipped_model_path() if path is None else Path(path)
    if not path.is_file():
        from neurosolve.errors import FileFormatError

        raise FileFormatError(f"DCDM model {path} does not exist")
    device = str(resolve_device(device))
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns, device)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, device: str) -> nn.Module:
    from neurosolve.checkpoint import load_model

    model, _ = load_model(path, kind="dcdm", map_location=device)
    return model


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
        Geometry channel ``(1 or B, 1, *grid)`` from
        :func:`~neurosolve.solvers.dcdm.network.flags_channel`; appended when given.

    Returns
    -------
    torch.Tensor
        ``(B, 1 or 2, *grid)``: each residual scaled to unit root-mean-square over its
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
        x = torch.cat([x, geometry.expand(batch, *geometry.shape[1:]).to(x.dtype)], dim=1)
    return x


def _grid_system(A: Any, grid: Grid | tuple | None, flags: np.ndarray | None):
    """Coerce the inputs to a LinearSystem with a grid, or refuse clearly."""
    from neurosolve.data.systems import LinearSystem

    if isinstance(A, LinearSystem):
        system = A
        if grid is None and flags is None:
            if system.grid is None:
                _refuse(system.name or "this matrix")
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
    from neurosolve.data import check_spd_matrix

    return LinearSystem(A=check_spd_matrix(matrix, name="the DCDM matrix"), grid=grid)


def _refuse(what: str) -> None:
    raise InvalidInputError(
        f"DCDM needs the grid of {what}: its network works on grid fields. Give the grid "
        "(e.g. --grid 64x64x64 or grid=(64, 64, 64), unknowns in lexicographic order, plus "
        "a cell-flags file if solid cells were dropped), or use a method that needs no grid: "
        + ", ".join(GRID_FREE_METHODS)
    )


class DCDMSolver:
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
    >>> from neurosolve.data.systems import poisson
    >>> system = poisson((8, 8, 8))
    >>> solver = DCDMSolver(system)
    >>> result = solver.solve(np.ones(system.n), rtol=1e-6)
    >>> result.converged
    True
    """

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
        from neurosolve.solvers.dcdm.network import flags_channel
        from neurosolve.solvers.stencil import StencilOperator

        start = time.perf_counter()
        if int(k) < 0:
            raise InvalidInputError(f"k must be >= 0, got {k}")
        self.k = int(k)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.network_dtype = network_dtype
        self.system = _grid_system(A, grid, flags)
        self.grid = self.system.grid
        self.operator = StencilOperator.from_system(self.system, device=self.device, dtype=dtype)
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
        self.geometry = (
            flags_channel(self.grid.flags, device=self.device, dtype=network_dtype)[None, None]
            if self.in_channels == 2
            else None
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

    # -- solve --------------------------------------------------------------------------
    def solve(
        self,
        b: np.ndarray | torch.Tensor,
        *,
        x0: np.ndarray | torch.Tensor | None = None,
        rtol: float = 1e-6,
        atol: float = 0.0,
        maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None,
    ) -> SolveResult:
        """Solve ``A x = b`` for one right-hand side ``(n,)`` or several ``(n, m)``.

        Parameters
        ----------
        b : numpy.ndarray or torch.Tensor
            Right-hand side(s); the solution comes back with the same type and device.
        x0 : array, optional
            Initial guess (default zero).
        rtol, atol : float
            Stop when ``||b - A x|| <= max(rtol ||b||, atol)`` (per column).
        maxiter : int, optional
            Iteration limit (default 500).
        callback : callable, optional
            Called as ``callback(x)`` after every iteration with the current iterate
            (a float64 torch tensor on the solver's device).

        Returns
        -------
        SolveResult
            With true relative residual history, ``matvecs`` and
            ``info["network_calls"]``.
        """
        n = self.system.n
        is_numpy = not torch.is_tensor(b)
        b_t = torch.as_tensor(np.asarray(b) if is_numpy else b)
        out_device, out_dtype = (None, None) if is_numpy else (b_t.device, b_t.dtype)
        if b_t.ndim not in (1, 2) or b_t.shape[0] != n:
            raise InvalidInputError(f"b must have shape ({n},) or ({n}, m), got {tuple(b_t.shape)}")
        single = b_t.ndim == 1
        B = b_t.reshape(n, -1).to(device=self.device, dtype=self.dtype)
        if not torch.isfinite(B).all():
            raise InvalidInputError("b contains NaN or Inf")
        maxiter = 500 if maxiter is None else int(maxiter)
        if maxiter < 0:
            raise InvalidInputError(f"maxiter must be >= 0, got {maxiter}")
        start = time.perf_counter()
        bnorm = torch.linalg.vector_norm(B, dim=0)
        thresholds = torch.tensor(
            [stopping_threshold(float(v), rtol, atol) for v in bnorm],
            device=self.device,
            dtype=self.dtype,
        )
        scale = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        if x0 is None:
            X = torch.zeros_like(B)
            R = B.clone()
            matvecs = 0
        else:
            X = torch.as_tensor(np.asarray(x0) if not torch.is_tensor(x0) else x0)
            X = X.reshape(n, -1).to(device=self.device, dtype=self.dtype).clone()
            if X.shape != B.shape:
                raise InvalidInputError(f"x0 has shape {tuple(X.shape)}, b has {tuple(B.shape)}")
            R = B - self._matvec(X)
            matvecs = 1
        rnorm = torch.linalg.vector_norm(R, dim=0)
        history = [(rnorm / scale).cpu().numpy()]
        directions: deque = deque(maxlen=self.k) if self.k > 0 else deque(maxlen=1)
        status = Status.MAXITER
        done = rnorm <= thresholds
        best = rnorm.clone()
        since_best = torch.zeros_like(rnorm, dtype=torch.long)
        it = calls = 0
        if bool(done.all()):
            status = Status.CONVERGED
        while status is Status.MAXITER and it < maxiter:
            active = ~done
            # converged columns get a zero direction: they stay where they are
            q = self.direction(R) * active.to(self.dtype)
            calls += 1
            if self.k > 0:
                for P, AP, pAp in directions:
                    q = q - P * ((q * AP).sum(dim=0) / pAp)
            Aq = self._matvec(q)
            matvecs += 1
            qAq = (q * Aq).sum(dim=0)
            if not bool(torch.isfinite(qAq[active]).all()):
                status = Status.NONFINITE
                break
            if bool((qAq[active] <= 0).any()):
                status = Status.BREAKDOWN
                break
            alpha = torch.where(active, (q * R).sum(dim=0) / torch.where(active, qAq, 1.0), 0.0)
            X = X + alpha * q
            R = B - self._matvec(X)
            matvecs += 1
            it += 1
            if self.k > 0:
                directions.append((q, Aq, torch.where(active, qAq, 1.0)))
            rnorm = torch.linalg.vector_norm(R, dim=0)
            history.append((rnorm / scale).cpu().numpy())
            if callback is not None:
                callback(X[:, 0] if single else X)
            if not bool(torch.isfinite(rnorm).all()):
                status = Status.NONFINITE
                break
            done = done | (rnorm <= thresholds)
            if bool(done.all()):
                status = Status.CONVERGED
                break
            improved = rnorm < 0.99 * best
            best = torch.where(improved, rnorm, best)
            since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
            if bool((since_best[~done] >= 100).any()):
                status = Status.STAGNATION
                break
            if bool((rnorm[~done] > 1e8 * scale[~done]).any()):
                status = Status.DIVERGED
                break
        elapsed = time.perf_counter() - start
        x_out = X[:, 0] if single else X
        if is_numpy:
            x_out = x_out.cpu().numpy()
        else:
            x_out = x_out.to(device=out_device, dtype=out_dtype)
        residuals = np.asarray(history)
        if single:
            residuals = residuals[:, 0]
        return SolveResult(
            x=x_out,
            status=status,
            iterations=it,
            residuals=residuals,
            setup_seconds=self.setup_seconds,
            solve_seconds=elapsed,
            matvecs=matvecs,
            info={"network_calls": calls, "k": self.k},
        )


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
    >>> from neurosolve.data.systems import poisson
    >>> system = poisson((8, 8, 8))
    >>> dcdm(system, np.ones(system.n)).converged
    True
    """
    solver = DCDMSolver(A, **options)
    return solver.solve(b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
