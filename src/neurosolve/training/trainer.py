"""The one training loop of the package: :class:`Trainer` and the helpers it is built from.

:class:`Trainer` runs mini-batch training of any ``torch.nn.Module`` with a loss given as a
function ``loss_fn(model, batch) -> scalar tensor`` (supervised operators, the unsupervised
DCDM loss and MGPC's group loss use the same loop). Every epoch it checkpoints everything a
resumed run needs to end bit-identical to an uninterrupted one, keeps the best model on the
validation set as ``model.pt``, rewrites ``metrics.json`` and the learning curve, stops on a
NaN/Inf loss with :class:`~neurosolve.errors.TrainingDivergedError`, and under ``torchrun``
shards each GLOBAL batch over the ranks (files are written on rank 0 only).
:meth:`Trainer.export_best` copies the best model to its final place, and
:func:`evaluate_metrics` averages metrics over a dataset.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from neurosolve._util.io import atomic_write
from neurosolve._util.progress import log_line, progress_bar, progress_lines, show_progress
from neurosolve.checkpoint import load_checkpoint, save_checkpoint
from neurosolve.devices import resolve_device
from neurosolve.errors import FileFormatError, InvalidInputError, TrainingDivergedError
from neurosolve.training import distributed
from neurosolve.training.config import ModelSpec, TrainConfig
from neurosolve.training.history import epoch_line
from neurosolve.training.history import plot_history as _plot_history
from neurosolve.training.history import write_metrics as _write_json_atomic
from neurosolve.training.losses import LossFn
from neurosolve.training.split import holdout_split
from neurosolve.training.state import (
    RunState,
    check_resumable,
    check_same_run,
    dataset_fingerprint,
    rng_state,
    seed_everything,
    set_rng_state,
)

# _plot_history, _write_json_atomic and _to_device are looked up in this module at every
# call: tests/test_faults.py interrupts training there.

__all__ = ["Trainer", "evaluate_metrics"]

logger = logging.getLogger(__name__)

Batch = Any
#: Files of a run folder, removed when a run starts over.
RUN_FILES = ("checkpoint.pt", "model.pt", "metrics.json", "learning_curve.png")


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


def _resolve_device(name: str, local_rank: int | None) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and local_rank is not None and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


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
    >>> from neurosolve.training import supervised_loss
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


@dataclasses.dataclass
class _Optimization:
    """The optimizer, its learning-rate schedule and the AMP gradient scaler of one fit."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any


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
        ``{name: normalizer}`` stored in every checkpoint: modules with a ``state()``
        method returning plain values (for example
        :class:`neurosolve.operators.normalizers.UnitGaussianNormalizer`).

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> from neurosolve.training import supervised_loss
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
        normalizers: Mapping[str, nn.Module] | None = None,
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
        self._group = distributed.init_distributed(config.device)
        self.rank, self.world_size = self._group.rank, self._group.world_size
        local_rank = self._group.local_rank if self.world_size > 1 else None
        self.device = _resolve_device(config.device, local_rank)
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
    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs (rank 0)."""
        return self.rank == 0

    def _barrier(self) -> None:
        distributed.barrier(self.device, self.world_size)

    def _all_sum(self, values: list[float]) -> list[float]:
        return distributed.all_sum(values, self.device, self.world_size)

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

    def _optimization(self, total_steps: int) -> _Optimization:
        c = self.config
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        optimizer = cls(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler: Any = None
        if c.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=c.lr, total_steps=max(total_steps, 2), pct_start=c.pct_start
            )
        elif c.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(total_steps, 1)
            )
        scaler = torch.amp.GradScaler("cuda") if self.amp else None
        return _Optimization(optimizer, scheduler, scaler)

    def _config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def _normalizer_states(self) -> dict[str, Any]:
        return {k: v.state() for k, v in self.normalizers.items()}

    def _save_state(self, opt: _Optimization, run: RunState) -> None:
        extra = {
            "trainer": {
                "epoch": run.epoch,
                "optimizer": opt.optimizer.state_dict(),
                "scheduler": None if opt.scheduler is None else opt.scheduler.state_dict(),
                "scaler": None if opt.scaler is None else opt.scaler.state_dict(),
                "rng": rng_state(self.device),
                "history": run.history,
                "best": run.best,
                "config": self._config_dict(),
                "identity": {k: v for k, v in self._identity.items() if k != "model"},
                "world_size": self.world_size,
            }
        }
        save_checkpoint(
            self.checkpoint_path,
            kind=self.model_spec.kind,
            kwargs=self.model_spec.kwargs,
            state_dict=self.model.state_dict(),
            normalizers=self._normalizer_states(),
            extra=extra,
        )

    def _save_model(self, epoch: int, values: Mapping[str, Any]) -> None:
        save_checkpoint(
            self.model_path,
            kind=self.model_spec.kind,
            kwargs=self.model_spec.kwargs,
            state_dict=self.model.state_dict(),
            normalizers=self._normalizer_states(),
            extra={"epoch": epoch, "metrics": dict(values), "config": self._config_dict()},
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
        opt = self._optimization(c.epochs * steps_per_epoch)
        self._identity = {
            "model": dict(self.model_spec.kwargs),
            "train": dataset_fingerprint(train),
            "val": dataset_fingerprint(val),
        }
        self._prepare_out_dir(resume)
        run = self._resume(opt) if resume and self.checkpoint_path.exists() else None
        if run is None:
            seed_everything(c.seed)
            run = RunState()
        start_epoch = run.epoch
        train_model = distributed.wrap(self.model, self.device, self.world_size)
        parameters = sum(p.numel() for p in self.model.parameters())
        show = show_progress(c.progress and self.is_main)
        try:
            for epoch in range(start_epoch + 1, c.epochs + 1):
                record = self._train_epoch(train_model, train, epoch, steps_per_epoch, opt, show)
                self._end_epoch(record, val, opt, run, parameters)
            if start_epoch >= c.epochs and run.history and self.is_main:
                # Killed after the last checkpoint but before the logs: finish them now.
                self._write_logs(run, parameters)
        finally:
            # Drop the DDP wrapper (its reducer holds the process group) before the group is
            # destroyed: see neurosolve.training.distributed.
            train_model = None
            distributed.release(self._group)
        return self._summary(run, parameters)

    def _prepare_out_dir(self, resume: bool) -> None:
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not resume:  # starting over: no stale results from an earlier run
                for name in RUN_FILES:
                    (self.out_dir / name).unlink(missing_ok=True)
        self._barrier()

    def _resume(self, opt: _Optimization) -> RunState:
        ckpt = load_checkpoint(self.checkpoint_path, map_location=self.device)
        saved = (ckpt.get("extra") or {}).get("trainer")
        if saved is None or ckpt["kind"] != self.model_spec.kind:
            raise FileFormatError(
                f"{self.checkpoint_path} is not a training checkpoint of a "
                f"{self.model_spec.kind!r} model; use another output folder"
            )
        check_resumable(self._config_dict(), saved.get("config", {}), self.out_dir)
        theirs = dict(saved.get("identity") or {}, model=ckpt["kwargs"])
        check_same_run(self._identity, theirs, self.out_dir)
        self.model.load_state_dict(ckpt["state_dict"])
        opt.optimizer.load_state_dict(saved["optimizer"])
        if opt.scheduler is not None:
            opt.scheduler.load_state_dict(saved["scheduler"])
        if opt.scaler is not None and saved.get("scaler"):
            opt.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"], self.device)
        run = RunState.from_saved(saved)
        logger.info("resuming %s after epoch %d", self.out_dir, run.epoch)
        return run

    def _end_epoch(
        self,
        record: dict[str, Any],
        val: Dataset | None,
        opt: _Optimization,
        run: RunState,
        parameters: int,
    ) -> None:
        """Validate, keep the best model, checkpoint and write the logs after an epoch."""
        epoch = record["epoch"]
        if val is not None:
            t0 = time.perf_counter()
            values = self._validate(val)
            record.update({f"val_{k}": v for k, v in values.items()})
            record["val_seconds"] = time.perf_counter() - t0
            current = values[self.config.monitor]
        else:
            current = record["train_loss"]
        improved = (
            val is None
            or run.best["value"] is None
            or (math.isfinite(current) and current < run.best["value"])
        )
        if improved:
            run.best = {"epoch": epoch, "value": current}
        run.history.append(record)
        run.epoch = epoch
        if self.is_main:
            if improved:
                self._save_model(epoch, record)
            self._save_state(opt, run)
            self._write_logs(run, parameters)
        self._barrier()
        logger.info("epoch %d: %s", epoch, record)
        if self.is_main and progress_lines(self.config.progress):
            log_line(epoch_line(record, self.config.epochs))

    def _summary(self, run: RunState, parameters: int) -> dict[str, Any]:
        return {
            "model": {"kind": self.model_spec.kind, "kwargs": self.model_spec.kwargs},
            "parameters": parameters,
            "config": self._config_dict(),
            "world_size": self.world_size,
            "monitor": self.config.monitor,
            "best_epoch": run.best.get("epoch"),
            "best": dict(run.best),
            "epochs": run.history,
        }

    def _write_logs(self, run: RunState, parameters: int) -> None:
        _write_json_atomic(self._summary(run, parameters), self.metrics_path)
        if self.config.plot:
            _plot_history(
                run.history,
                self.out_dir / "learning_curve.png",
                f"{self.model_spec.kind} training",
            )

    def _train_epoch(
        self,
        model: nn.Module,
        train: Dataset,
        epoch: int,
        steps_per_epoch: int,
        opt: _Optimization,
        show: bool,
    ) -> dict[str, Any]:
        self.model.train()
        loader = self._loader(train, epoch)
        total = 0.0
        count = 0
        lr = opt.optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        bar = progress_bar(
            loader,
            enabled=show,
            total=len(loader),
            desc=f"epoch {epoch}/{self.config.epochs}",
            leave=False,
            file=sys.stderr,
        )
        for step, batch in enumerate(bar, start=1):
            batch = _to_device(batch, self.device)
            n = _batch_len(batch)
            value = self._train_step(model, batch, epoch, step, opt)
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

    def _train_step(
        self, model: nn.Module, batch: Batch, epoch: int, step: int, opt: _Optimization
    ) -> float:
        """One optimizer step on ``batch``; returns the loss (refuses a NaN/Inf loss)."""
        clip = self.config.grad_clip
        opt.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            loss = self.loss_fn(model, batch)
        if loss.ndim != 0:
            raise InvalidInputError(
                f"loss_fn must return a scalar (batch mean), got shape {tuple(loss.shape)}"
            )
        value = float(loss.detach())
        self._check_finite(value, epoch, step)
        if opt.scaler is not None:
            opt.scaler.scale(loss).backward()
            if clip is not None:
                opt.scaler.unscale_(opt.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
        else:
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            opt.optimizer.step()
        if opt.scheduler is not None:
            opt.scheduler.step()
        return value

    def _check_finite(self, value: float, epoch: int, step: int) -> None:
        """Stop every rank when the loss of any rank is NaN/Inf."""
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

    # ----------------------------------------------------------------- export
    def export_best(self, out: str | os.PathLike) -> Path:
        """Copy the best model of the run (``out_dir/model.pt``) to ``out``, atomically.

        ``out`` appears only complete (a copy interrupted half-way leaves no file under
        its name); nothing is copied when ``out`` is ``model.pt`` itself.

        Parameters
        ----------
        out : path-like
            Destination (parent folders are created).

        Returns
        -------
        pathlib.Path
            ``out``.

        Raises
        ------
        InvalidInputError
            If the run has not written ``model.pt`` (no finished epoch).

        Examples
        --------
        >>> import tempfile, torch
        >>> from torch.utils.data import TensorDataset
        >>> from neurosolve.training import supervised_loss
        >>> run = Path(tempfile.mkdtemp())
        >>> cfg = TrainConfig(epochs=1, batch_size=4, val_fraction=0, progress=False,
        ...                   plot=False)
        >>> trainer = Trainer(torch.nn.Linear(2, 2), supervised_loss(torch.nn.functional.mse_loss),
        ...                   cfg, run / "run")
        >>> _ = trainer.fit(TensorDataset(torch.ones(4, 2), torch.zeros(4, 2)))
        >>> trainer.export_best(run / "final" / "model.pt").is_file()
        True
        """
        best = self.model_path
        out = Path(out)
        if not best.is_file():
            raise InvalidInputError(f"training finished without writing {best}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if best.resolve() != out.resolve():
            # shutil.copyfile is looked up at the call: tests/test_faults.py interrupts it.
            atomic_write(out, lambda tmp: shutil.copyfile(best, tmp))
        return out
