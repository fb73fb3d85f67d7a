"""PDE data: grids, sparse SPD systems, random fields, Darcy and Navier-Stokes datasets, HDF5.

The most used names are re-exported here; the submodules hold the rest:

- :mod:`neurosolve.data.grids`: :class:`Grid` and the cell flags ``AIR``, ``FLUID``, ``SOLID``.
- :mod:`neurosolve.data.systems`: :func:`poisson`, :func:`obstacle_flags`, right-hand sides,
  Matrix Market / ``.npz`` input and output.
- :mod:`neurosolve.data.random_fields`, :mod:`neurosolve.data.darcy`,
  :mod:`neurosolve.data.navier_stokes`: operator-learning data.
- :mod:`neurosolve.data.store`: HDF5 datasets.
"""

from neurosolve.data.grids import AIR, FLUID, SOLID, Grid
from neurosolve.data.systems import (
    LinearSystem,
    check_spd_matrix,
    load_system,
    obstacle_flags,
    poisson,
    save_system,
)

__all__ = [
    "AIR",
    "FLUID",
    "SOLID",
    "Grid",
    "LinearSystem",
    "check_spd_matrix",
    "load_system",
    "obstacle_flags",
    "poisson",
    "save_system",
]
