"""Neural operators: MgNO, FNO (2D and 3D), the spatio-temporal FNO, their layers and losses.

- :class:`~neurosolve.operators.spectral.SpectralConv`: N-d spectral convolution.
- :class:`~neurosolve.operators.mgno.MgNO`: multigrid neural operator.
- :class:`~neurosolve.operators.fno.FNO2d`, :class:`~neurosolve.operators.fno.FNO3d`:
  Fourier neural operators (2D; the original space-time FNO-3D).
- :class:`~neurosolve.operators.sfno.SFNO`: the spatio-temporal FNO of Cao et al. (not the
  spherical FNO of neuraloperator, which shares the acronym).
- :mod:`~neurosolve.operators.losses`: relative L2 / H1 losses and metrics.
- :mod:`~neurosolve.operators.normalizers`: per-channel normalizers and
  :class:`~neurosolve.operators.normalizers.NormalizedOperator`.
- :mod:`~neurosolve.operators.supervised`: :func:`train_operator` (on the shared
  :class:`neurosolve.training.Trainer`) and :func:`load_operator`.
- :mod:`~neurosolve.operators.refine`: the Spectral-Refiner.

The Krylov-style evaluation of Darcy operators runs solvers and lives in
:mod:`neurosolve.harness.operator_eval`. Names are imported lazily so that importing the
package does not import torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "FNO2d",
    "FNO3d",
    "MgConv",
    "MgNO",
    "NormalizedOperator",
    "SFNO",
    "SpectralConv",
    "UnitGaussianNormalizer",
    "load_operator",
    "normalizers_from_state",
    "relative_h1",
    "relative_l2",
    "train_operator",
]

_WHERE = {
    "FNO2d": "fno",
    "FNO3d": "fno",
    "MgConv": "mgno",
    "MgNO": "mgno",
    "NormalizedOperator": "normalizers",
    "SFNO": "sfno",
    "SpectralConv": "spectral",
    "UnitGaussianNormalizer": "normalizers",
    "load_operator": "supervised",
    "normalizers_from_state": "normalizers",
    "relative_h1": "losses",
    "relative_l2": "losses",
    "train_operator": "supervised",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
