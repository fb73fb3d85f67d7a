"""Settings of a training run (:class:`TrainConfig`, checked when built) and :class:`ModelSpec`.

A :class:`TrainConfig` holds everything that decides what a run computes (epochs, batch size,
optimizer, schedule, seed, ...) and a few fields that only decide how (device, workers,
progress, plots); :data:`RESUME_FREE` names the latter, which may change between an
interrupted run and its resumption. A :class:`ModelSpec` says how a checkpoint rebuilds the
trained model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError

__all__ = ["OPTIMIZERS", "RESUME_FREE", "SCHEDULES", "ModelSpec", "TrainConfig"]

#: Optimizers a :class:`TrainConfig` accepts.
OPTIMIZERS = ("adam", "adamw")
#: Learning-rate schedules (stepped once per batch).
SCHEDULES = ("onecycle", "cosine", "constant")
#: Fields that may change between an interrupted run and its resumption.
RESUME_FREE = ("progress", "device", "num_workers", "amp", "plot")


@dataclass
class ModelSpec:
    """How to rebuild a model: a :data:`neurosolve.checkpoint.MODELS` kind and its kwargs.

    Examples
    --------
    >>> ModelSpec("mgno", {"channels": 4})
    ModelSpec(kind='mgno', kwargs={'channels': 4})
    """

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Settings of a training run.

    Attributes
    ----------
    epochs : int
        Number of passes over the training set.
    batch_size : int
        GLOBAL batch size (split over ranks under torchrun).
    lr : float
        Learning rate (the peak of the OneCycle schedule).
    weight_decay : float
        Weight decay (L2 for Adam, decoupled for AdamW).
    optimizer : {"adam", "adamw"}
    schedule : {"onecycle", "cosine", "constant"}
        Stepped once per batch.
    grad_clip : float or None
        Clip the global gradient norm.
    seed : int
        Seeds shuffling (per epoch), the validation split and torch's RNG.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available).
    amp : bool
        Mixed precision (float16 autocast + gradient scaling); CUDA only, ignored on CPU
        with a logged warning.
    val_fraction : float
        Held-out fraction of the training set used when no validation set is given
        (0 disables validation; then ``model.pt`` is the last epoch's model).
    progress : bool
        tqdm bar (also off when stderr is not a terminal).
    num_workers : int
        DataLoader workers.
    monitor : str
        Validation quantity for the best model: ``"loss"`` or a metric name.
    pct_start : float
        Warm-up fraction of the OneCycle schedule.
    plot : bool
        Write ``learning_curve.png`` every epoch.

    Examples
    --------
    >>> TrainConfig(epochs=3, lr=1e-2).schedule
    'onecycle'
    >>> TrainConfig(optimizer="sgd")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: unknown optimizer 'sgd'; choose from adam, adamw
    """

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "onecycle"
    grad_clip: float | None = None
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    val_fraction: float = 0.1
    progress: bool = True
    num_workers: int = 0
    monitor: str = "loss"
    pct_start: float = 0.3
    plot: bool = True

    def __post_init__(self) -> None:
        self.epochs = integer(self.epochs, "epochs")
        self.batch_size = integer(self.batch_size, "batch_size")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError(f"lr must be positive, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidInputError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name, value, choices in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
        ):
            if value not in choices:
                raise InvalidInputError(
                    f"unknown {name} {value!r}; choose from {', '.join(choices)}"
                )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidInputError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InvalidInputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.pct_start < 1.0:
            raise InvalidInputError(f"pct_start must be in (0, 1), got {self.pct_start}")
        integer(self.num_workers, "num_workers", minimum=0)
