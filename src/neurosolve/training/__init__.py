"""Training of every model of the package: one :class:`Trainer`, its settings and its state.

- :mod:`~neurosolve.training.trainer`: :class:`Trainer` (checkpoints, bit-identical
  resumption, validation, logs, DDP, :meth:`Trainer.export_best`) and
  :func:`evaluate_metrics`;
- :mod:`~neurosolve.training.config`: :class:`TrainConfig` (checked settings) and
  :class:`ModelSpec`;
- :mod:`~neurosolve.training.state`: RNG capture and restore, resume bookkeeping;
- :mod:`~neurosolve.training.distributed`: process group, collectives, DDP teardown;
- :mod:`~neurosolve.training.losses`, :mod:`~neurosolve.training.split`,
  :mod:`~neurosolve.training.history`: :func:`supervised_loss`, :func:`holdout_split`,
  ``metrics.json`` and the learning curve.

The package knows nothing about particular models: operators and solvers import it, never
the other way round. Names are imported lazily, so importing the package does not import
torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "ModelSpec",
    "TrainConfig",
    "Trainer",
    "evaluate_metrics",
    "holdout_split",
    "supervised_loss",
]

_WHERE = {
    "ModelSpec": "config",
    "TrainConfig": "config",
    "Trainer": "trainer",
    "evaluate_metrics": "trainer",
    "holdout_split": "split",
    "supervised_loss": "losses",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
