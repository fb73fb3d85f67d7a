"""DCDM: the deep conjugate-direction method (Kaneda et al., ICML 2023).

- :mod:`~neurosolve.solvers.dcdm.network`: the fully convolutional network;
- :mod:`~neurosolve.solvers.dcdm.ritz`: Lanczos, Ritz vectors, training right-hand sides;
- :mod:`~neurosolve.solvers.dcdm.training`: the scale-invariant loss and ``train_dcdm``;
- :mod:`~neurosolve.solvers.dcdm.solver`: the iteration (method ``"dcdm"`` of
  :func:`neurosolve.solve`).

Submodules are imported on first use, so ``import neurosolve.solvers.dcdm`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DCDMNet",
    "DCDMSolver",
    "dcdm",
    "dcdm_loss",
    "load_dcdm_model",
    "ritz_pairs",
    "ritz_rhs",
    "ritz_samples",
    "train_dcdm",
]

_WHERE = {
    "DCDMNet": "network",
    "DCDMSolver": "solver",
    "dcdm": "solver",
    "load_dcdm_model": "solver",
    "dcdm_loss": "training",
    "train_dcdm": "training",
    "ritz_pairs": "ritz",
    "ritz_rhs": "ritz",
    "ritz_samples": "ritz",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
