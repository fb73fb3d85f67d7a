"""PDE data: grids, sparse SPD systems, random fields, Darcy and Navier-Stokes datasets, HDF5."""

from neurosolve.data.grids import AIR, FLUID, SOLID, Grid

__all__ = ["AIR", "FLUID", "SOLID", "Grid"]
