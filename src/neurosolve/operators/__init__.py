"""Neural operators: MgNO, FNO, the shared spectral layers, losses and the trainer.

- :class:`~neurosolve.operators.spectral.SpectralConv`: N-d spectral convolution.
- :class:`~neurosolve.operators.mgno.MgNO`: multigrid neural operator.
- :class:`~neurosolve.operators.fno.FNO2d`: Fourier neural operator (2D).
- :mod:`~neurosolve.operators.losses`: relative L2 / H1 losses and metrics.
- :class:`~neurosolve.operators.training.Trainer`: one trainer for every model;
  :func:`~neurosolve.operators.training.train_operator` for supervised operators.
- :mod:`~neurosolve.operators.evaluation`: test errors, pictures and the Krylov-style
  evaluation of Darcy operators.

Names are imported lazily so that ``import neurosolve.operators.commands`` (done when the
command line parser is built) does not import torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "FNO2d",
    "MgConv",
    "MgNO",
    "ModelSpec",
    "NormalizedOperator",
    "SpectralConv",
    "TrainConfig",
    "Trainer",
    "UnitGaussianNormalizer",
    "darcy_krylov_evaluation",
    "evaluate_operator",
    "holdout_split",
    "load_operator",
    "relative_h1",
    "relative_l2",
    "supervised_loss",
    "train_operator",
]

_WHERE = {
    "FNO2d": "fno",
    "MgConv": "mgno",
    "MgNO": "mgno",
    "ModelSpec": "training",
    "NormalizedOperator": "training",
    "SpectralConv": "spectral",
    "TrainConfig": "training",
    "Trainer": "training",
    "UnitGaussianNormalizer": "training",
    "darcy_krylov_evaluation": "evaluation",
    "evaluate_operator": "evaluation",
    "holdout_split": "training",
    "load_operator": "training",
    "relative_h1": "losses",
    "relative_l2": "losses",
    "supervised_loss": "training",
    "train_operator": "training",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
