"""One trainer for every model of the package (MgNO, FNO, SFNO, DCDM, ...).

:class:`Trainer` runs mini-batch training of any ``torch.nn.Module`` with a loss given as a
function ``loss_fn(model, batch) -> scalar tensor`` (so supervised operators and the
unsupervised DCDM loss use the same loop), and takes care of what every run needs:

- Adam or AdamW; OneCycle, cosine or constant learning rate (stepped per batch);
- a checkpoint after every epoch (``out_dir/checkpoint.pt``: weights, optimizer, scheduler,
  AMP scaler and every RNG state), so that rerunning the same ``fit`` after an interruption
  continues and ends with **bit-identical** weights to an uninterrupted run (tested);
- the best model on the validation set (``out_dir/model.pt``, loadable with
  :func:`neurosolve.checkpoint.load_model`), a held-out split of the training set when no
  validation set is given;
- ``out_dir/metrics.json`` rewritten every epoch and ``out_dir/learning_curve.png``;
- a tqdm progress bar, CPU or CUDA, optional mixed precision (CUDA only);
- a NaN/Inf loss stops training with :class:`~neurosolve.errors.TrainingDivergedError`
  naming the epoch and step; the last good checkpoint stays on disk;
- ``torchrun`` / DistributedDataParallel: when started by ``torchrun`` (``WORLD_SIZE > 1``)
  or inside an initialized process group, the trainer wraps the model in DDP, shards each
  global batch over the ranks with a ``DistributedSampler`` and writes files on rank 0
  only. ``config.batch_size`` is the GLOBAL batch: the same global batches in the same
  order as a single-process run, so results agree up to floating-point reduction order.

Normalizers (:class:`UnitGaussianNormalizer`) are passed to the trainer so that they are
stored in every checkpoint; the loss function applies them (see
:func:`supervised_loss`) and :func:`load_operator` rebuilds the normalized operator.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from neurosolve.checkpoint import load_checkpoint, load_model, save_checkpoint
from neurosolve.devices import resolve_device
from neurosolve.errors import FileFormatError, InvalidInputError, TrainingDivergedError

__all__ = [
    "ModelSpec",
    "NormalizedOperator",
    "TrainConfig",
    "Trainer",
    "UnitGaussianNormalizer",
    "evaluate_metrics",
    "holdout_split",
    "load_operator",
    "normalizers_from_state",
    "supervised_loss",
    "train_operator",
]

logger = logging.getLogger(__name__)

Batch = Any
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


# --------------------------------------------------------------------------- normalizers
class UnitGaussianNormalizer(nn.Module):
    """Per-channel standardization ``(x - mean) / (std + eps)``.

    Statistics are one number per channel (over samples and grid points), not one per grid
    point as in the original FNO code, so a normalized model stays resolution-agnostic.

    Parameters
    ----------
    mean, std : torch.Tensor
        Shape ``(channels,)``.
    eps : float, optional
        Added to ``std``.

    Examples
    --------
    >>> import torch
    >>> x = 3.0 + 2.0 * torch.randn(64, 1, 8, 8, dtype=torch.float64)
    >>> norm = UnitGaussianNormalizer.fit(x)
    >>> z = norm.encode(x)
    >>> round(float(z.mean()), 6), round(float(z.std()), 2)
    (0.0, 1.0)
    >>> bool(torch.allclose(norm.decode(z), x))
    True
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> None:
        super().__init__()
        mean = torch.as_tensor(mean).reshape(-1)
        std = torch.as_tensor(std).reshape(-1)
        if mean.shape != std.shape:
            raise InvalidInputError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} differ")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std < 0).any():
            raise InvalidInputError("normalizer statistics must be finite with std >= 0")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.eps = float(eps)

    @classmethod
    def fit(
        cls,
        data: torch.Tensor | Dataset,
        *,
        index: int = 0,
        max_samples: int | None = None,
        eps: float = 1e-6,
    ) -> UnitGaussianNormalizer:
        """Per-channel statistics of a tensor ``(N, C, ...)`` or of item ``index`` of a dataset.

        Parameters
        ----------
        data : torch.Tensor or Dataset
            A batch tensor, or a dataset whose items are tuples ``(x, y, ...)`` of
            ``(C, *spatial)`` tensors.
        index : int, optional
            Which item of each dataset sample (0: input, 1: target).
        max_samples : int, optional
            Use at most this many dataset samples (the first ones).
        eps : float, optional
            Added to ``std``.

        Returns
        -------
        UnitGaussianNormalizer
        """
        total = None
        total_sq = None
        count = 0
        if isinstance(data, torch.Tensor):
            if data.ndim < 2:
                raise InvalidInputError(f"expected (N, C, ...) data, got shape {tuple(data.shape)}")
            chunks: Any = [data]
            channel_axis = 1
        else:
            n = len(data)  # type: ignore[arg-type]
            if max_samples is not None:
                n = min(n, int(max_samples))
            chunks = (data[i][index] for i in range(n))
            channel_axis = 0
        for t in chunks:
            t = t.detach().to(torch.float64).movedim(channel_axis, 0)
            flat = t.reshape(t.shape[0], -1)
            s = flat.sum(dim=1)
            sq = (flat * flat).sum(dim=1)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += flat.shape[1]
        if total is None or count == 0:
            raise InvalidInputError("cannot fit a normalizer to an empty dataset")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0.0)
        return cls(mean.float(), var.sqrt().float(), eps=eps)

    def _shape(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim < 2 or x.shape[1] != self.mean.numel():
            raise InvalidInputError(
                f"normalizer for {self.mean.numel()} channels got shape {tuple(x.shape)}"
            )
        view = (1, -1) + (1,) * (x.ndim - 2)
        mean = self.mean.to(device=x.device, dtype=x.dtype).view(view)
        std = self.std.to(device=x.device, dtype=x.dtype).view(view)
        return mean, std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / (std + eps)`` per channel (axis 1)."""
        mean, std = self._shape(x)
        return (x - mean) / (std + self.eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`."""
        mean, std = self._shape(z)
        return z * (std + self.eps) + mean

    def state(self) -> dict[str, Any]:
        """Plain dictionary stored in checkpoints."""
        return {
            "type": "unit_gaussian",
            "mean": self.mean.detach().cpu(),
            "std": self.std.detach().cpu(),
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        """Channel count."""
        return f"channels={self.mean.numel()}, eps={self.eps}"


def normalizers_from_state(
    states: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, UnitGaussianNormalizer]:
    """Rebuild the normalizers stored in a checkpoint's ``"normalizers"`` entry.

    Parameters
    ----------
    states : mapping or None
        ``{name: normalizer.state()}``.

    Returns
    -------
    dict
        ``{name: UnitGaussianNormalizer}`` (empty for ``None``).

    Examples
    --------
    >>> import torch
    >>> n = UnitGaussianNormalizer(torch.tensor([1.0]), torch.tensor([2.0]))
    >>> normalizers_from_state({"x": n.state()})["x"].std
    tensor([2.])
    """
    out: dict[str, UnitGaussianNormalizer] = {}
    for name, state in (states or {}).items():
        if not isinstance(state, Mapping) or state.get("type") != "unit_gaussian":
            raise FileFormatError(f"unknown normalizer {name!r} in checkpoint: {state!r}")
        out[name] = UnitGaussianNormalizer(state["mean"], state["std"], eps=state["eps"])
    return out


class NormalizedOperator(nn.Module):
    """An operator with its input and output normalization: ``decode(op(encode(x)))``.

    Parameters
    ----------
    operator : torch.nn.Module
        Maps normalized inputs to normalized outputs.
    x_normalizer, y_normalizer : UnitGaussianNormalizer, optional
        Input / output normalizers (``None``: identity).

    Examples
    --------
    >>> import torch
    >>> op = NormalizedOperator(torch.nn.Identity(),
    ...                         UnitGaussianNormalizer(torch.tensor([1.0]), torch.tensor([2.0])))
    >>> op(torch.tensor([[3.0]]))
    tensor([[1.0000]])
    """

    def __init__(
        self,
        operator: nn.Module,
        x_normalizer: UnitGaussianNormalizer | None = None,
        y_normalizer: UnitGaussianNormalizer | None = None,
    ) -> None:
        super().__init__()
        self.operator = operator
        self.x_normalizer = x_normalizer
        self.y_normalizer = y_normalizer

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Apply normalization, the operator, and de-normalization."""
        if self.x_normalizer is not None:
            x = self.x_normalizer.encode(x)
        y = self.operator(x, *args, **kwargs)
        if self.y_normalizer is not None:
            y = self.y_normalizer.decode(y)
        return y


def supervised_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_normalizer: UnitGaussianNormalizer | None = None,
    y_normalizer: UnitGaussianNormalizer | None = None,
) -> LossFn:
    """A trainer loss ``(model, (x, y)) -> loss(decode(model(encode(x))), y)``.

    The loss is computed in physical units (after decoding), as in the FNO/MgNO papers.

    Parameters
    ----------
    loss : callable
        ``loss(prediction, target) -> scalar`` (for example
        :func:`neurosolve.operators.losses.relative_l2`).
    x_normalizer, y_normalizer : UnitGaussianNormalizer, optional
        Applied to inputs / outputs.

    Returns
    -------
    callable

    Examples
    --------
    >>> import torch
    >>> fn = supervised_loss(lambda p, t: ((p - t) ** 2).mean())
    >>> float(fn(torch.nn.Identity(), (torch.ones(2, 1, 4), torch.zeros(2, 1, 4))))
    1.0
    """

    def loss_fn(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if x_normalizer is not None:
            x = x_normalizer.encode(x)
        pred = model(x)
        if y_normalizer is not None:
            pred = y_normalizer.decode(pred)
        return loss(pred.float() if pred.dtype in (torch.float16, torch.bfloat16) else pred, y)

    return loss_fn


def load_operator(
    path: str | os.PathLike, *, kind: str | None = None, map_location: Any = "cpu"
) -> NormalizedOperator:
    """Load a trained operator with its normalizers (``x``, ``y``) from a checkpoint.

    Parameters
    ----------
    path : path-like
        For example a run's ``model.pt``.
    kind : str, optional
        Expected model kind.
    map_location : str or torch.device, optional
        Device.

    Returns
    -------
    NormalizedOperator
        In eval mode; ``op(a)`` gives predictions in physical units.
    """
    model, data = load_model(path, kind=kind, map_location=map_location)
    norms = normalizers_from_state(data.get("normalizers"))
    op = NormalizedOperator(model, norms.get("x"), norms.get("y"))
    if map_location is not None:
        op = op.to(map_location)
    return op.eval()


# --------------------------------------------------------------------------- configuration
@dataclass
class ModelSpec:
    """How to rebuild a model: a :data:`neurosolve.checkpoint.MODELS` kind and its kwargs."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


_OPTIMIZERS = ("adam", "adamw")
_SCHEDULES = ("onecycle", "cosine", "constant")
# Fields that may change between an interrupted run and its resumption.
_RESUME_FREE = ("progress", "device", "num_workers", "amp", "plot")


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
        if int(self.epochs) < 1:
            raise InvalidInputError(f"epochs must be >= 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError(f"lr must be positive, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidInputError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in _OPTIMIZERS:
            raise InvalidInputError(
                f"unknown optimizer {self.optimizer!r}; choose from {', '.join(_OPTIMIZERS)}"
            )
        if self.schedule not in _SCHEDULES:
            raise InvalidInputError(
                f"unknown schedule {self.schedule!r}; choose from {', '.join(_SCHEDULES)}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidInputError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InvalidInputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.pct_start < 1.0:
            raise InvalidInputError(f"pct_start must be in (0, 1), got {self.pct_start}")
        if int(self.num_workers) < 0:
            raise InvalidInputError(f"num_workers must be >= 0, got {self.num_workers}")
        self.epochs = int(self.epochs)
        self.batch_size = int(self.batch_size)


# --------------------------------------------------------------------------- helpers
def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_len(batch: Batch) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0])
    return 1


def _rng_state(device: torch.device) -> dict[str, Any]:
    # the legacy global state, saved because user loss functions may draw from it
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            np_state["keys"].cpu().numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached"]),
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _plot_history(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [h["epoch"] for h in history]
    keys = ["train_loss"] + sorted(
        k for k in history[-1] if k.startswith("val_") and not k.endswith("_seconds")
    )
    for key in keys:
        values = [h.get(key) for h in history]
        if all(isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / metric")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def _resolve_device(name: str, local_rank: int | None) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        if local_rank is not None and device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def holdout_split(
    dataset: Dataset, fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """Split off a random validation subset (fixed by ``seed``).

    Parameters
    ----------
    dataset : Dataset
    fraction : float
        Share of samples held out, in ``[0, 1)``; 0 returns ``(dataset, None)``.
    seed : int, optional

    Returns
    -------
    train, val : Dataset
        ``torch.utils.data.Subset`` objects (indices in increasing order).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> train, val = holdout_split(TensorDataset(torch.arange(10)), 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return dataset, None
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise InvalidInputError(
            f"validation fraction {fraction} leaves no training samples out of {n}"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).tolist()
    return Subset(dataset, sorted(perm[n_val:])), Subset(dataset, sorted(perm[:n_val]))


def train_operator(
    kind: str,
    model_kwargs: Mapping[str, Any],
    train_dataset: Dataset,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    val_dataset: Dataset | None = None,
    loss: str = "l2+h1",
    resume: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a supervised operator (``x -> y`` datasets) with per-channel normalization.

    Builds the model ``kind`` (a :data:`neurosolve.checkpoint.MODELS` name) with weights
    seeded by ``config.seed``, fits input/output normalizers on the training samples,
    trains on relative H1 or L2 error in physical units, and reports ``val_l2`` and
    ``val_h1`` every epoch. ``out_dir/model.pt`` then loads with :func:`load_operator`.

    Parameters
    ----------
    kind : str
        Model kind, e.g. ``"mgno"`` or ``"fno2d"``.
    model_kwargs : mapping
        Constructor arguments.
    train_dataset : Dataset
        Items ``(x, y)``.
    config : TrainConfig
    out_dir : path-like
    val_dataset : Dataset, optional
        Default: a ``config.val_fraction`` hold-out of ``train_dataset``.
    loss : {"l2+h1", "h1", "l2"}
        Training loss: relative L2 + relative H1 (default), relative H1 (finite
        differences) or relative L2. On the unit square the gradient part dominates the
        H1 norm, so H1 alone barely penalizes a constant offset (observed on Darcy: an
        MgNO with test H1 error 0.19 had L2 error 0.57); the sum controls both.
    resume : bool, optional
        Continue an interrupted run in ``out_dir``.

    Returns
    -------
    model : torch.nn.Module
        The network after the last epoch (``model.pt`` holds the best on validation).
    history : dict
        As :meth:`Trainer.fit`.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(8, 1, 8, 8)
    >>> cfg = TrainConfig(epochs=1, batch_size=4, progress=False, plot=False)
    >>> _, hist = train_operator("mgno", {"channels": 2, "levels": 2, "layers": 1},
    ...                          TensorDataset(x, x), cfg, tempfile.mkdtemp())
    >>> sorted(k for k in hist["epochs"][0] if k.startswith("val_"))
    ['val_h1', 'val_l2', 'val_loss', 'val_seconds']
    """
    from neurosolve.checkpoint import build_model
    from neurosolve.operators.losses import relative_h1, relative_l2

    def l2_plus_h1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return relative_l2(pred, target) + relative_h1(pred, target)

    losses = {"h1": relative_h1, "l2": relative_l2, "l2+h1": l2_plus_h1}
    if loss not in losses:
        raise InvalidInputError(f"loss must be one of {', '.join(losses)}, got {loss!r}")
    if val_dataset is None:
        train, val = holdout_split(train_dataset, config.val_fraction, config.seed)
    else:
        train, val = train_dataset, val_dataset
    torch.manual_seed(config.seed)
    model = build_model(kind, **model_kwargs)
    xn = UnitGaussianNormalizer.fit(train, index=0)
    yn = UnitGaussianNormalizer.fit(train, index=1)
    metrics = {
        "l2": supervised_loss(relative_l2, xn, yn),
        "h1": supervised_loss(relative_h1, xn, yn),
    }
    spec = ModelSpec(kind, model.config() if hasattr(model, "config") else dict(model_kwargs))
    trainer = Trainer(
        model,
        supervised_loss(losses[loss], xn, yn),
        config,
        out_dir,
        metrics=metrics,
        model_spec=spec,
        normalizers={"x": xn, "y": yn},
    )
    history = trainer.fit(train, val, resume=resume)
    return model, history


@torch.no_grad()
def evaluate_metrics(
    model: nn.Module,
    dataset: Dataset,
    metrics: Mapping[str, LossFn],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Dataset averages of metrics ``fn(model, batch)`` (each a batch mean).

    Parameters
    ----------
    model : torch.nn.Module
    dataset : Dataset
    metrics : mapping
        ``{name: fn(model, batch) -> scalar batch mean}``.
    batch_size : int, optional
    device : str or torch.device, optional

    Returns
    -------
    dict
        ``{name: mean over samples}``.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.ones(5, 1, 4), torch.zeros(5, 1, 4))
    >>> mse = supervised_loss(lambda p, t: ((p - t) ** 2).mean())
    >>> evaluate_metrics(torch.nn.Identity(), ds, {"mse": mse})
    {'mse': 1.0}
    """
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(metrics, 0.0)
    count = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        batch = _to_device(batch, device)
        n = _batch_len(batch)
        for name, fn in metrics.items():
            sums[name] += float(fn(model, batch)) * n
        count += n
    model.train(was_training)
    if count == 0:
        raise InvalidInputError("cannot evaluate on an empty dataset")
    return {k: v / count for k, v in sums.items()}


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train a model with checkpoints, resumption, validation, logging and plots.

    Parameters
    ----------
    model : torch.nn.Module
        The model (moved to ``config.device``).
    loss_fn : callable
        ``loss_fn(model, batch) -> scalar tensor``, the mean over the batch; ``batch`` is
        what the DataLoader yields (a tuple ``(x, y)`` for HDF5 datasets), already on the
        device. Under DDP ``model`` is the DDP wrapper: call it, do not reach into it.
    config : TrainConfig
        Settings.
    out_dir : path-like
        Run folder: ``checkpoint.pt``, ``model.pt``, ``metrics.json``, ``learning_curve.png``.
    metrics : mapping, optional
        ``{name: fn(model, batch)}`` evaluated on the validation set each epoch (batch
        means, averaged over samples), reported as ``val_<name>``.
    model_spec : ModelSpec or dict, optional
        ``kind`` and ``kwargs`` to rebuild the model from ``model.pt``
        (:func:`neurosolve.checkpoint.load_model`); default ``kind="custom"``.
    normalizers : mapping, optional
        ``{name: UnitGaussianNormalizer}`` stored in every checkpoint.

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(16, 1, 8)
    >>> ds = TensorDataset(x, 2 * x)
    >>> cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, val_fraction=0.25, progress=False,
    ...                   plot=False)
    >>> model = torch.nn.Conv1d(1, 1, 1)
    >>> trainer = Trainer(model, supervised_loss(torch.nn.functional.mse_loss), cfg,
    ...                   tempfile.mkdtemp())
    >>> history = trainer.fit(ds)
    >>> [h["epoch"] for h in history["epochs"]]
    [1, 2]
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        metrics: Mapping[str, LossFn] | None = None,
        model_spec: ModelSpec | Mapping[str, Any] | None = None,
        normalizers: Mapping[str, UnitGaussianNormalizer] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise InvalidInputError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.model = model
        self.loss_fn = loss_fn
        self.metrics = dict(metrics or {})
        if config.monitor != "loss" and config.monitor not in self.metrics:
            raise InvalidInputError(
                f"monitor {config.monitor!r} is neither 'loss' nor one of the metrics "
                f"{sorted(self.metrics)}"
            )
        if model_spec is None:
            model_spec = ModelSpec("custom", {})
        elif isinstance(model_spec, Mapping):
            model_spec = ModelSpec(model_spec["kind"], dict(model_spec.get("kwargs", {})))
        self.model_spec = model_spec
        self.normalizers = dict(normalizers or {})
        self.out_dir = Path(out_dir)
        # distributed setup
        self._owns_process_group = False
        self.rank, self.world_size, local_rank = self._init_distributed()
        self.device = _resolve_device(config.device, local_rank if self.world_size > 1 else None)
        self.amp = bool(config.amp)
        if self.amp and self.device.type != "cuda":
            logger.warning(
                "mixed precision (amp) needs CUDA; training on %s in full precision", self.device
            )
            self.amp = False
        if config.batch_size % self.world_size:
            raise InvalidInputError(
                f"batch_size {config.batch_size} (global) is not divisible by the "
                f"{self.world_size} processes"
            )
        self.model.to(self.device)
        for norm in self.normalizers.values():
            norm.to(self.device)

    # ----------------------------------------------------------------- distributed
    def _init_distributed(self) -> tuple[int, int, int | None]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return dist.get_rank(), dist.get_world_size(), local
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            if not dist.is_available():
                raise InvalidInputError("WORLD_SIZE > 1 but torch.distributed is not available")
            use_cuda = self.config.device.startswith("cuda") or (
                self.config.device == "auto" and torch.cuda.is_available()
            )
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            if use_cuda:
                torch.cuda.set_device(local_rank)  # before NCCL picks a device
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            self._owns_process_group = True
            return dist.get_rank(), dist.get_world_size(), local_rank
        return 0, 1, None

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs (rank 0)."""
        return self.rank == 0

    def _barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def _all_sum(self, values: list[float]) -> list[float]:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return t.tolist()

    @property
    def _comm_device(self) -> torch.device:
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    # ----------------------------------------------------------------- paths
    @property
    def checkpoint_path(self) -> Path:
        """``out_dir/checkpoint.pt``: the state to resume from."""
        return self.out_dir / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        """``out_dir/model.pt``: the best model on validation."""
        return self.out_dir / "model.pt"

    @property
    def metrics_path(self) -> Path:
        """``out_dir/metrics.json``."""
        return self.out_dir / "metrics.json"

    # ----------------------------------------------------------------- building blocks
    def _split(self, train: Dataset, val: Dataset | None) -> tuple[Dataset, Dataset | None]:
        if len(train) == 0:  # type: ignore[arg-type]
            raise InvalidInputError("the training set is empty")
        if val is not None:
            if len(val) == 0:  # type: ignore[arg-type]
                raise InvalidInputError("the validation set is empty")
            return train, val
        return holdout_split(train, self.config.val_fraction, self.config.seed)

    def _optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.config.optimizer == "adamw" else torch.optim.Adam
        return cls(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def _scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        c = self.config
        if c.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=c.lr, total_steps=max(total_steps, 2), pct_start=c.pct_start
            )
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
        return None

    def _config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def _save_state(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any,
        history: list[dict[str, Any]],
        best: dict[str, Any],
    ) -> None:
        extra = {
            "trainer": {
                "epoch": epoch,
                "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
                "scaler": None if scaler is None else scaler.state_dict(),
                "rng": _rng_state(self.device),
                "history": history,
                "best": best,
                "config": self._config_dict(),
                "world_size": self.world_size,
            }
        }
        save_checkpoint(
            self.checkpoint_path,
            kind=self.model_spec.kind,
            kwargs=self.model_spec.kwargs,
            state_dict=self.model.state_dict(),
            normalizers={k: v.state() for k, v in self.normalizers.items()},
            extra=extra,
        )

    def _save_model(self, epoch: int, values: Mapping[str, Any]) -> None:
        save_checkpoint(
            self.model_path,
            kind=self.model_spec.kind,
            kwargs=self.model_spec.kwargs,
            state_dict=self.model.state_dict(),
            normalizers={k: v.state() for k, v in self.normalizers.items()},
            extra={"epoch": epoch, "metrics": dict(values), "config": self._config_dict()},
        )

    def _check_resumable(self, saved: Mapping[str, Any]) -> None:
        mine = self._config_dict()
        theirs = saved.get("config", {})
        diff = [
            f"{k}: {theirs.get(k)!r} -> {mine[k]!r}"
            for k in mine
            if k not in _RESUME_FREE and theirs.get(k) != mine[k]
        ]
        if diff:
            raise InvalidInputError(
                f"{self.out_dir} holds a run with other settings ({'; '.join(diff)}); "
                "use another output folder or delete checkpoint.pt to start over"
            )

    def _loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        sampler = DistributedSampler(
            dataset,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.config.seed,
            drop_last=False,
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size // self.world_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    @torch.no_grad()
    def _validate(self, val: Dataset) -> dict[str, float]:
        fns: dict[str, LossFn] = {"loss": self.loss_fn, **self.metrics}
        return evaluate_metrics(
            self.model, val, fns, batch_size=self.config.batch_size, device=self.device
        )

    # ----------------------------------------------------------------- fit
    def fit(
        self, train_dataset: Dataset, val_dataset: Dataset | None = None, *, resume: bool = True
    ) -> dict[str, Any]:
        """Train, resuming from ``out_dir/checkpoint.pt`` when it exists.

        Parameters
        ----------
        train_dataset : Dataset
            Training samples.
        val_dataset : Dataset, optional
            Validation samples; default: a ``config.val_fraction`` split of the training
            set (fixed by ``config.seed``).
        resume : bool, optional
            Continue an interrupted run in ``out_dir`` (default). ``False`` starts over.

        Returns
        -------
        dict
            ``{"epochs": [per-epoch records], "best_epoch": int, "best": {...},
            "parameters": int}``; the same content as ``metrics.json``.

        Raises
        ------
        TrainingDivergedError
            On a NaN/Inf loss (the last good checkpoint is kept).
        InvalidInputError
            Empty datasets, or resuming a run made with other settings.
        """
        c = self.config
        train, val = self._split(train_dataset, val_dataset)
        steps_per_epoch = len(self._loader(train, 0))
        optimizer = self._optimizer()
        scheduler = self._scheduler(optimizer, c.epochs * steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda") if self.amp else None
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"epoch": None, "value": None}
        start_epoch = 0
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not resume:  # starting over: no stale results from an earlier run
                for name in ("checkpoint.pt", "model.pt", "metrics.json", "learning_curve.png"):
                    (self.out_dir / name).unlink(missing_ok=True)
        self._barrier()
        if resume and self.checkpoint_path.exists():
            ckpt = load_checkpoint(self.checkpoint_path, map_location=self.device)
            saved = (ckpt.get("extra") or {}).get("trainer")
            if saved is None or ckpt["kind"] != self.model_spec.kind:
                raise FileFormatError(
                    f"{self.checkpoint_path} is not a training checkpoint of a "
                    f"{self.model_spec.kind!r} model; use another output folder"
                )
            self._check_resumable(saved)
            self.model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(saved["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            if scaler is not None and saved.get("scaler"):
                scaler.load_state_dict(saved["scaler"])
            _set_rng_state(saved["rng"], self.device)
            history = list(saved["history"])
            best = dict(saved["best"])
            start_epoch = int(saved["epoch"])
            logger.info("resuming %s after epoch %d", self.out_dir, start_epoch)
        else:
            torch.manual_seed(c.seed)
            np.random.seed(c.seed % 2**32)  # noqa: NPY002
            random.seed(c.seed)

        train_model: nn.Module = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(self.model, device_ids=ids)

        parameters = sum(p.numel() for p in self.model.parameters())
        show = c.progress and self.is_main and sys.stderr.isatty()
        try:
            for epoch in range(start_epoch + 1, c.epochs + 1):
                record = self._train_epoch(
                    train_model, train, epoch, steps_per_epoch, optimizer, scheduler, scaler, show
                )
                if val is not None:
                    t0 = time.perf_counter()
                    values = self._validate(val)
                    record.update({f"val_{k}": v for k, v in values.items()})
                    record["val_seconds"] = time.perf_counter() - t0
                    current = values[c.monitor]
                else:
                    current = record["train_loss"]
                improved = (
                    val is None
                    or best["value"] is None
                    or (math.isfinite(current) and current < best["value"])
                )
                if improved:
                    best = {"epoch": epoch, "value": current}
                history.append(record)
                if self.is_main:
                    if improved:
                        self._save_model(epoch, record)
                    self._save_state(epoch, optimizer, scheduler, scaler, history, best)
                    self._write_logs(history, best, parameters)
                self._barrier()
                logger.info("epoch %d: %s", epoch, record)
            if start_epoch >= c.epochs and history and self.is_main:
                # Killed after the last checkpoint but before the logs: finish them now.
                self._write_logs(history, best, parameters)
        finally:
            # DDP's reducer holds the process group: release it first, so the group is torn
            # down by destroy_process_group below and not later by a garbage-collected
            # reducer (a gloo group destroyed after its peer exited can hang in the join of
            # its threads, seen once in 2-process CI runs)
            train_model = None
            if self._owns_process_group:
                import torch.distributed as dist

                dist.destroy_process_group()
                self._owns_process_group = False
        return self._summary(history, best, parameters)

    def _summary(
        self, history: list[dict[str, Any]], best: Mapping[str, Any], parameters: int
    ) -> dict[str, Any]:
        return {
            "model": {"kind": self.model_spec.kind, "kwargs": self.model_spec.kwargs},
            "parameters": parameters,
            "config": self._config_dict(),
            "world_size": self.world_size,
            "monitor": self.config.monitor,
            "best_epoch": best.get("epoch"),
            "best": dict(best),
            "epochs": history,
        }

    def _write_logs(
        self, history: list[dict[str, Any]], best: Mapping[str, Any], parameters: int
    ) -> None:
        _write_json_atomic(self._summary(history, best, parameters), self.metrics_path)
        if self.config.plot:
            _plot_history(
                history, self.out_dir / "learning_curve.png", f"{self.model_spec.kind} training"
            )

    def _train_epoch(
        self,
        model: nn.Module,
        train: Dataset,
        epoch: int,
        steps_per_epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any,
        show: bool,
    ) -> dict[str, Any]:
        from tqdm.auto import tqdm

        c = self.config
        self.model.train()
        loader = self._loader(train, epoch)
        total = 0.0
        count = 0
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        bar = tqdm(
            loader,
            total=len(loader),
            desc=f"epoch {epoch}/{c.epochs}",
            disable=not show,
            leave=False,
            file=sys.stderr,
        )
        for step, batch in enumerate(bar, start=1):
            batch = _to_device(batch, self.device)
            n = _batch_len(batch)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, enabled=self.amp):
                loss = self.loss_fn(model, batch)
            if loss.ndim != 0:
                raise InvalidInputError(
                    f"loss_fn must return a scalar (batch mean), got shape {tuple(loss.shape)}"
                )
            value = float(loss.detach())
            flag_sum, _ = self._all_sum([0.0 if math.isfinite(value) else 1.0, 0.0])
            if flag_sum > 0:
                last = (
                    f"the last good checkpoint ({self.checkpoint_path}, epoch {epoch - 1}) is kept"
                    if epoch > 1
                    else "no checkpoint was written yet"
                )
                what = value if not math.isfinite(value) else "NaN/Inf on another rank"
                raise TrainingDivergedError(
                    f"training diverged: loss is {what} at epoch {epoch}, step {step}; {last}. "
                    "Lower the learning rate (--lr) or enable gradient clipping"
                )
            if scaler is not None:
                scaler.scale(loss).backward()
                if c.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if c.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += value * n
            count += n
            if show:
                bar.set_postfix(loss=f"{value:.3e}")
        bar.close()
        seconds = time.perf_counter() - t0
        total, count = self._all_sum([total, float(count)])
        return {
            "epoch": epoch,
            "train_loss": total / max(count, 1.0),
            "lr": lr,
            "train_seconds": seconds,
            "steps": steps_per_epoch,
        }
