"""MGPC: a learned multigrid preconditioner for CG, SPD by construction on every geometry.

``M`` is one symmetric multigrid cycle (a W-cycle by default) over the structured grid of a
5-point (2D) or 7-point (3D) SPD matrix; a small network reads the matrix (and through it
the geometry) once per new matrix and sets the smoother weights of every cell on every
level and an over-correction factor per level. The network never sees the right-hand side,
so ``M`` is a fixed SPD linear map and plain PCG applies: method ``"mgpc-pcg"`` of
:func:`neurosolve.solve`. The cycle, the proof that ``M`` is SPD for every network output,
and the training loss are written up in ``docs/mgpc.md`` (in the repository).

- :mod:`~neurosolve.solvers.mgpc.network`: :class:`MGPCNet`, :func:`level_features`;
- :mod:`~neurosolve.solvers.mgpc.hierarchy`: transfers, Galerkin coarsening, :class:`Level`,
  :class:`Hierarchy` (the cycle);
- :mod:`~neurosolve.solvers.mgpc.solver`: :class:`MGPCSolver`, :class:`MGPCPreconditioner`;
- :mod:`~neurosolve.solvers.mgpc.training`: :func:`mgpc_samples`, :func:`mgpc_loss`,
  :func:`train_mgpc`.
"""

from neurosolve.solvers.mgpc.hierarchy import (
    Hierarchy,
    Level,
    coarsening_axes,
    coarsest_inverse,
    galerkin_coarsen,
    prolong,
    restrict,
)
from neurosolve.solvers.mgpc.network import MGPCNet, level_features
from neurosolve.solvers.mgpc.solver import MGPCPreconditioner, MGPCSolver, load_mgpc_model
from neurosolve.solvers.mgpc.training import mgpc_loss, mgpc_samples, train_mgpc

__all__ = [
    "Hierarchy",
    "Level",
    "MGPCNet",
    "MGPCPreconditioner",
    "MGPCSolver",
    "coarsening_axes",
    "coarsest_inverse",
    "galerkin_coarsen",
    "level_features",
    "load_mgpc_model",
    "mgpc_loss",
    "mgpc_samples",
    "prolong",
    "restrict",
    "train_mgpc",
]
