"""PDE data: grids, sparse SPD systems, random fields, Darcy and Navier-Stokes datasets, HDF5.

The package is a gallery of pure problem builders plus the dataset machinery on top:

- :mod:`~neurosolve.data.grids`: :class:`Grid` and the cell flags ``AIR``, ``FLUID``,
  ``SOLID``;
- :mod:`~neurosolve.data.systems`: :class:`LinearSystem`, :func:`poisson` assembly and
  :func:`reference_solve`;
- :mod:`~neurosolve.data.geometry`: obstacles, moving scenes, contrast coefficients;
- :mod:`~neurosolve.data.rhs`: right-hand sides; :mod:`~neurosolve.data.io`: Matrix
  Market / ``.npz`` input and output and :func:`check_spd_matrix`;
- :mod:`~neurosolve.data.samples`, :mod:`~neurosolve.data.random_fields`,
  :mod:`~neurosolve.data.darcy`, :mod:`~neurosolve.data.navier_stokes`: operator-learning
  data;
- :mod:`~neurosolve.data.store` and :mod:`~neurosolve.data.generate`: HDF5 datasets and the
  generator registry behind ``neurosolve generate``.

The most used names are re-exported here.
"""

from neurosolve.data.geometry import (
    BOUNDARY_AIR,
    GEOMETRIES,
    contrast_coefficient,
    moving_obstacle_flags,
    obstacle_flags,
)
from neurosolve.data.grids import AIR, FLUID, SOLID, Grid
from neurosolve.data.io import check_csr_structure, check_spd_matrix, load_system, save_system
from neurosolve.data.rhs import RHS_KINDS, divergence_rhs, make_rhs, random_rhs, smooth_rhs
from neurosolve.data.samples import poisson_samples
from neurosolve.data.systems import LinearSystem, poisson, reference_solve

__all__ = [
    "AIR",
    "BOUNDARY_AIR",
    "FLUID",
    "GEOMETRIES",
    "RHS_KINDS",
    "SOLID",
    "Grid",
    "LinearSystem",
    "check_csr_structure",
    "check_spd_matrix",
    "contrast_coefficient",
    "divergence_rhs",
    "load_system",
    "make_rhs",
    "moving_obstacle_flags",
    "obstacle_flags",
    "poisson",
    "poisson_samples",
    "random_rhs",
    "reference_solve",
    "save_system",
    "smooth_rhs",
]
