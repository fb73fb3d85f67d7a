"""neurosolve: learned PDE solvers measured against classical ones.

The package has four parts:

- :mod:`neurosolve.data`: generators of sparse SPD systems and operator-learning datasets
  (Poisson, Darcy, Navier-Stokes), stored in HDF5.
- :mod:`neurosolve.solvers`: Krylov methods in torch, scipy / pyamg baselines and the deep
  conjugate-direction method (DCDM), all behind :func:`neurosolve.solve`.
- :mod:`neurosolve.operators`: neural operators (MgNO, FNO, SFNO), the Spectral-Refiner and
  the shared trainer.
- :mod:`neurosolve.harness`: problem suites, benchmark runner, tables and plots.
"""

from __future__ import annotations

from neurosolve._version import __version__
from neurosolve.errors import (
    FileFormatError,
    InvalidInputError,
    NeurosolveError,
    TrainingDivergedError,
    UnknownNameError,
)

__all__ = [
    "__version__",
    "FileFormatError",
    "InvalidInputError",
    "NeurosolveError",
    "TrainingDivergedError",
    "UnknownNameError",
    "solve",
]


def __getattr__(name: str):
    # Lazy so that `import neurosolve` stays cheap and free of import cycles.
    if name == "solve":
        from neurosolve.solvers import solve

        return solve
    raise AttributeError(f"module 'neurosolve' has no attribute {name!r}")
