"""neurosolve: learned PDE solvers measured against classical ones.

The package is built in layers, each importing only from those below it:

- :mod:`neurosolve.data`: generators of sparse SPD systems and operator-learning datasets
  (Poisson, Darcy, Navier-Stokes), stored in HDF5.
- :mod:`neurosolve.training`: the shared trainer (configuration, resumable state, DDP).
- :mod:`neurosolve.operators`: neural operators (MgNO, FNO, the spatio-temporal FNO) and
  the Spectral-Refiner.
- :mod:`neurosolve.solvers`: Krylov methods in torch, scipy / pyamg baselines and the learned
  methods (DCDM, MGPC), all behind :func:`neurosolve.solve` and :func:`neurosolve.make_solver`.
- :mod:`neurosolve.harness`: problem suites, benchmark runner, tables and plots.
- :mod:`neurosolve.cli`: the ``neurosolve`` command.

This module is the facade: the error types, the version, and :func:`solve` /
:func:`make_solver`, imported on first use so that ``import neurosolve`` stays cheap. Both
take ``threads=`` (torch's intra-op threads for the setup and the solve: ``"auto"``, the
default, one thread below a measured problem size; an int; or None for torch's setting).
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
    "make_solver",
    "solve",
]

_LAZY = ("make_solver", "solve")  # from neurosolve.solvers, imported on first use


def __getattr__(name: str):
    # Lazy so that `import neurosolve` stays cheap (no torch, scipy) and free of cycles.
    if name in _LAZY:
        import neurosolve.solvers

        return getattr(neurosolve.solvers, name)
    raise AttributeError(f"module 'neurosolve' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
