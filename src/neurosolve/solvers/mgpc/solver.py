"""MGPC as a solver: the cycle as a preconditioner on unknown vectors, and its PCG.

:class:`MGPCSolver` (method ``"mgpc-pcg"`` of :func:`neurosolve.solve`) reads the stencil of
the matrix, builds the :class:`~neurosolve.solvers.mgpc.hierarchy.Hierarchy` with the
trained network once (its setup) and runs the torch PCG of :mod:`neurosolve.solvers.krylov`
with the cycle as ``M``; :meth:`MGPCSolver.aspreconditioner` hands ``M`` to scipy.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurosolve._util.threads import torch_threads
from neurosolve._util.validate import float_dtype
from neurosolve.checkpoint import load_shipped
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import native, native_vectors
from neurosolve.solvers.base import Solver
from neurosolve.solvers.mgpc.hierarchy import Hierarchy
from neurosolve.solvers.mgpc.network import MGPCNet
from neurosolve.solvers.result import SolveResult

__all__ = ["PRECISIONS", "MGPCPreconditioner", "MGPCSolver", "load_mgpc_model"]

#: Values of ``MGPCSolver(precision=...)``.
PRECISIONS = ("full", "mixed")


def load_mgpc_model(
    path: str | Path | MGPCNet | None = None, *, device: torch.device | str | None = None
) -> MGPCNet:
    """Load an MGPC network (default: the shipped model) through the shared model cache.

    Parameters
    ----------
    path : path-like or MGPCNet, optional
        A checkpoint of kind ``"mgpc"`` (``neurosolve train mgpc`` writes one), or a network
        (returned as is, moved to ``device``).
    device : torch.device or str, optional
        Where to put the network.

    Raises
    ------
    FileFormatError
        Missing file, not a neurosolve checkpoint, or another model kind.

    Examples
    --------
    >>> load_mgpc_model().smoothing_steps >= 1
    True
    """
    if isinstance(path, MGPCNet):
        return path.to(device) if device is not None else path
    return load_shipped("mgpc", path, device=device)


def _prepare_levels(hierarchy: Hierarchy, dtype: torch.dtype) -> None:
    """Every level's arrays in ``dtype`` and in C order, for the cycle's fused kernels.

    The hierarchy is built in the precision of the matrix (Galerkin sums, network and the
    exactly symmetric coarsest inverse in float64) and rounded once; a rounded symmetric
    array stays symmetric, so only the rounding inside the cycle's arithmetic breaks the
    symmetry of ``M``. C order: the network's weights come out channels-last, which turns
    the smoothing step's weight reads into strided gathers (measured: the compiled step
    loses its vector loads).
    """
    for lvl in hierarchy.levels:
        for name in ("diagonal", "couplings", "fluid", "weights", "scale", "inverse"):
            value = getattr(lvl, name)
            if value is not None:
                setattr(lvl, name, _cast(value, dtype))


def _cast(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``v`` in ``dtype`` and C order, on the native kernels' threads where they take it."""
    if v.dtype != dtype and v.is_contiguous():
        out = native_vectors.cast(v.reshape(-1), dtype)
        if out is not None:
            return out.reshape(v.shape)
    return v.to(dtype=dtype, memory_format=torch.contiguous_format)


class MGPCPreconditioner:
    """``M`` of one matrix as a callable on unknown vectors ``(n,)`` / ``(n, k)``.

    Scatters the unknowns to full grid fields, applies the cycle, gathers back.
    """

    def __init__(self, hierarchy: Hierarchy, cells: torch.Tensor, shape: tuple[int, ...]):
        self.hierarchy = hierarchy
        self.cells = cells
        self.shape = shape
        self.num_cells = int(math.prod(shape))

    def internal(self, v: torch.Tensor, single: bool) -> torch.Tensor:
        """``M v`` on full fields ``(num_cells, k)`` (the stencil operator's internal layout).

        The PCG of :class:`MGPCSolver` iterates in that layout (zero off the fluid), so the
        cycle takes its vectors as they are, with no scatter to and gather from the
        unknowns; in the precision of the hierarchy, returned in that of ``v``.
        """
        k = v.shape[1]
        dtype = self.hierarchy.levels[0].diagonal.dtype
        fields = _cast(v.t(), dtype).reshape(1, k, *self.shape)
        with torch.no_grad():
            out = self.hierarchy.apply(fields)
        return _cast(out.reshape(k, self.num_cells), v.dtype).t()

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``M u`` for ``u`` of shape ``(n,)`` or ``(n, k)``."""
        single = u.dim() == 1
        in_dtype = u.dtype
        cols = u.reshape(u.shape[0], -1).to(self.hierarchy.levels[0].diagonal.dtype)
        full = cols.new_zeros((self.num_cells, cols.shape[1]))
        full[self.cells] = cols
        fields = full.t().reshape(1, cols.shape[1], *self.shape)
        with torch.no_grad():
            out = self.hierarchy.apply(fields)
        out = out.reshape(cols.shape[1], -1).t()[self.cells].to(in_dtype)
        return out[:, 0] if single else out


class MGPCSolver(Solver):
    """PCG preconditioned by the learned multigrid cycle (method ``"mgpc-pcg"``).

    Setup (timed in ``setup_seconds``): the stencil of ``A`` is read from the matrix, the
    Galerkin coarse stencils are formed, the network runs once per level, and the coarsest
    matrix is factorized. The solve is the torch PCG of :mod:`neurosolve.solvers.krylov`
    (true-residual stopping rule; Lanczos coefficients in ``info`` give the condition
    estimate ``info["condition_estimate"]`` of ``M A``).

    Parameters
    ----------
    A : LinearSystem
        A 5/7-point SPD system with its grid (any size, 2D or 3D, any flags/coefficients).
    model : path-like or MGPCNet, optional
        Trained network (default: the shipped model).
    device, dtype
        Where and in which precision to run (default CPU, float64).
    precision : {"mixed", "full"}
        ``"mixed"``: the preconditioner (hierarchy, smoothers, coarse levels) in float32
        inside the ``dtype`` iteration, which then is flexible CG (Polak-Ribiere; float32
        rounding makes ``M`` slightly non-symmetric); ``"full"``: the preconditioner in
        ``dtype`` too, inside PCG. The stopping rule (true float64 residual) is the same.
    max_coarse : int, optional
        The coarsest grid has at most this many cells (solved exactly by a dense Cholesky
        factor). Default: 64 (as in training) where the cycle runs as native CPU passes,
        on which a visit of a tiny level costs microseconds and a 512-cell inverse about
        5 CSR products of setup at 64^3; 512 elsewhere (on a GPU every visit of a level
        costs kernel launches, which the W-cycle multiplies).
    history : {"true", "recurrence", "cheap"}
        Residual history mode of the PCG (see :mod:`neurosolve.solvers.krylov`).

    Other Parameters
    ----------------
    **options
        Passed to :class:`~neurosolve.solvers.krylov.PCGSolver` (``max_replacements``,
        ``stagnation_window``, ...).

    Examples
    --------
    >>> from neurosolve.data import obstacle_flags, poisson
    >>> system = poisson((16, 16, 16), flags=obstacle_flags((16,) * 3, "mixed", 1))
    >>> result = MGPCSolver(system).solve(np.ones(system.n), rtol=1e-8)
    >>> result.converged, result.iterations < 30
    (True, True)
    """

    name = "mgpc-pcg"
    description = "PCG with the learned SPD multigrid (W-cycle) preconditioner (MGPC)."
    needs_grid = True

    def __init__(
        self,
        A: Any,
        *,
        model: str | Path | MGPCNet | None = None,
        device: Any = None,
        dtype: torch.dtype | str = torch.float64,
        max_coarse: int | None = None,
        history: str = "recurrence",
        precision: str = "full",
        **options: Any,
    ) -> None:
        from neurosolve.solvers.krylov import FlexibleCGSolver, PCGSolver
        from neurosolve.solvers.stencil import StencilOperator
        from neurosolve.solvers.system import prepare_system

        dtype = float_dtype(dtype)
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        # the SPD checks run on the stencil read below (one pass over the stencil, not the
        # CSR entries: the stencil holds every entry); here the structure and finiteness
        prepared = prepare_system(A, check_symmetry=False)
        if prepared.grid is None or prepared.matrix is None:
            raise InvalidInputError(
                "mgpc-pcg needs a 5/7-point matrix with its grid (a LinearSystem from "
                "neurosolve.data.systems, or a file loaded with grid=...); for a bare matrix "
                "use cg, ic-pcg, amg-sa-pcg or amg-rs-pcg"
            )
        device = resolve_device(device)
        if max_coarse is None:
            max_coarse = 64 if device.type == "cpu" and native.available() else 512
        net = load_mgpc_model(model, device=device)
        t0 = time.perf_counter()
        self._native = device.type == "cpu" and native.available()
        # the solve's thread policy for the setup too (inside make_solver's, that one's)
        with torch_threads("auto", prepared.matrix.shape[0]), self._threads():
            op = StencilOperator.from_matrix(
                prepared.matrix, prepared.grid, device=device, dtype=dtype, check="A"
            )
            with torch.no_grad():
                self.hierarchy = Hierarchy.build(
                    net,
                    op.diagonal[None, None],
                    op.neighbours[None],
                    op.fluid_mask[None, None].to(dtype),
                    max_coarse=max_coarse,
                    symmetric=op.symmetric,
                )
            _prepare_levels(self.hierarchy, torch.float32 if precision == "mixed" else dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.model_setup_seconds = time.perf_counter() - t0
        self.preconditioner = MGPCPreconditioner(self.hierarchy, op.cells, tuple(op.grid.shape))
        # The PCG iterates in ``dtype`` but verifies convergence in float64 against the
        # given matrix: it gets the float64 stencil and rounds its own working copy.
        exact = op
        if dtype != torch.float64:
            exact = StencilOperator.from_matrix(
                prepared.matrix, prepared.grid, device=device, dtype=torch.float64
            )
        # a cycle rounded to a lower precision than the iteration's is not exactly symmetric
        self.flexible = self.hierarchy.levels[0].diagonal.dtype != dtype
        krylov = FlexibleCGSolver if self.flexible else PCGSolver
        self.pcg = krylov(
            exact,
            preconditioner=self.preconditioner,
            device=device,
            dtype=dtype,
            check_symmetry=False,
            history=history,
            **options,
        )
        if isinstance(self.pcg.op, StencilOperator):  # the cycle on the iteration's layout
            self.pcg.precond = self.preconditioner.internal
        self.setup_seconds = self.model_setup_seconds + self.pcg.setup_seconds
        self.n = op.num_unknowns

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
        """MGPC-preconditioned CG.

        ``info`` adds ``levels``, ``cycle``, ``cycle_matvec_equivalents`` and, for one
        right-hand side, ``condition_estimate`` (of ``M A``, from Lanczos).
        """
        from neurosolve.solvers.krylov import condition_estimate

        with self._threads():
            result = self.pcg.solve(
                b, x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback
            )
        try:
            condition: float | None = float(condition_estimate(result.info))
        except (InvalidInputError, ValueError, np.linalg.LinAlgError):
            condition = None
        result = result.with_info(
            method="mgpc-pcg",
            levels=self.hierarchy.num_levels,
            cycle="V" if self.hierarchy.gamma == 1 else "W",
            cycle_matvec_equivalents=self.hierarchy.matvec_equivalents(),
            condition_estimate=condition,
        )
        result.setup_seconds = self.setup_seconds
        return result

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """The policy's thread count to the native kernels, torch's own pool at one thread.

        The count is torch's as the thread policy set it, or that of an enclosing
        :func:`~neurosolve.solvers.native.kernel_threads` block.

        On the CPU the cycle, the stencil products and the setup's loops are native kernels;
        what stays with torch (PCG's vector updates, the network's small GEMMs) gains little
        from a second thread, and torch's OpenMP threads, spinning after each operation,
        would take the cores the kernels' threads need (measured at 64^3 with 2 threads:
        0.079 s per solve with both pools at 2 threads, 0.053 s with torch's at one;
        ``benchmarks/native_threads.py``).
        """
        if not self._native:
            yield
            return
        with native.kernel_threads(native.kernel_thread_count()), torch_threads(1):
            yield

    def aspreconditioner(self) -> Any:
        """``M`` as a scipy ``LinearOperator`` on the unknowns (host round trip per use).

        Examples
        --------
        >>> from neurosolve.data import poisson
        >>> M = MGPCSolver(poisson((8, 8))).aspreconditioner()
        >>> M.shape
        (64, 64)
        """
        import scipy.sparse.linalg as spla

        dev = self.hierarchy.levels[0].diagonal.device
        dt = self.hierarchy.levels[0].diagonal.dtype

        def matmat(v: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev, dtype=dt)
            return self.preconditioner(t).cpu().double().numpy()

        return spla.LinearOperator((self.n, self.n), matvec=matmat, matmat=matmat, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"MGPCSolver(n={self.n}, levels={self.hierarchy.num_levels}, "
            f"setup={self.setup_seconds:.3g}s, {self.pcg!r})"
        )
