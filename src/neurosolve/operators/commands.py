"""Commands ``neurosolve train mgno``, ``neurosolve train fno`` and ``neurosolve evaluate``.

This module stays light (the parser imports it): torch and the models are imported inside
the command functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]

# Datasets up to this size are loaded into memory for training (faster than HDF5 reads).
_IN_MEMORY_BYTES = 2 * 1024**3


def _add_training_options(p: argparse.ArgumentParser, *, lr: float) -> None:
    g = p.add_argument_group("data and run")
    g.add_argument("--data", required=True, metavar="FILE.h5", help="training dataset")
    g.add_argument(
        "--val",
        metavar="FILE.h5",
        help="validation dataset (default: hold out --val-fraction of the training file)",
    )
    g.add_argument("--out", required=True, metavar="DIR", help="run folder (resumed if present)")
    g.add_argument("--max-samples", type=int, help="use only the first N training samples")
    g.add_argument("--restart", action="store_true", help="start over instead of resuming")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=8, help="global batch size (default 8)")
    t.add_argument("--lr", type=float, default=lr, help=f"(peak) learning rate (default {lr})")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    t.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default="onecycle")
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm")
    t.add_argument(
        "--loss",
        choices=("l2+h1", "h1", "l2"),
        default="l2+h1",
        help="training loss: relative L2 + H1 (default), relative H1 or relative L2",
    )
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers")


def add_commands(groups: Any) -> None:
    """Attach ``train mgno``, ``train fno`` and ``evaluate``."""
    p = groups.train.add_parser(
        "mgno",
        help="multigrid neural operator on an x -> y dataset (e.g. Darcy)",
        description="Train MgNO (He, Liu & Xu 2024) on a dataset file from 'neurosolve "
        "generate'. Writes DIR/model.pt (best on validation), DIR/checkpoint.pt, "
        "DIR/metrics.json and DIR/learning_curve.png; rerunning resumes. Runs under "
        "'torchrun --nproc_per_node N -m neurosolve train mgno ...' with DDP.",
    )
    _add_training_options(p, lr=5e-4)
    m = p.add_argument_group("model")
    m.add_argument("--channels", type=int, default=24)
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--levels", type=int, default=6)
    m.add_argument("--pre-smooth", type=int, default=1, help="smoothing steps per level down")
    m.add_argument("--post-smooth", type=int, default=0, help="smoothing steps per level up")
    m.add_argument("--coarse-smooth", type=int, default=2, help="steps on the coarsest level")
    m.add_argument("--padding", choices=("zeros", "circular", "reflect"), default="zeros")
    m.add_argument("--activation", default="gelu")
    p.set_defaults(func=_train_mgno)

    p = groups.train.add_parser(
        "fno",
        help="2D Fourier neural operator on an x -> y dataset",
        description="Train FNO2d (Li et al. 2021) on a dataset file; same run folder "
        "layout and resumption as 'neurosolve train mgno'.",
    )
    _add_training_options(p, lr=1e-3)
    m = p.add_argument_group("model")
    m.add_argument("--modes", type=int, default=12)
    m.add_argument("--width", type=int, default=32)
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--padding", type=int, default=8, help="zero padding cells (0: periodic)")
    m.add_argument("--no-grid", action="store_true", help="no coordinate input channels")
    p.set_defaults(func=_train_fno)

    p = groups.top.add_parser(
        "evaluate",
        help="test errors of a trained operator (and its Krylov-style evaluation)",
        description="Evaluate a trained operator (a run's model.pt) on a dataset: relative "
        "L2 and H1 errors, a PNG of input/truth/prediction/error, and for Darcy data the "
        "Krylov-style evaluation: residual of the prediction in the discrete system, error "
        "against the exact discrete solution, and CG / AMG-PCG iterations saved when the "
        "prediction is the initial guess.",
    )
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("--data", required=True, metavar="FILE.h5")
    p.add_argument("--png", metavar="FILE.png", help="picture (default: next to MODEL.pt)")
    p.add_argument("--json", metavar="FILE.json", help="write all numbers there")
    p.add_argument(
        "--krylov",
        type=int,
        default=10,
        metavar="N",
        help="Krylov-style evaluation on the first N samples (0: off; default 10)",
    )
    p.add_argument("--methods", default="cg,amg-sa-pcg", help="classical methods, comma list")
    p.add_argument("--rtol", type=float, default=1e-8, help="tolerance of the classical solves")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)


def _load_dataset(path: str, max_samples: int | None = None):
    import torch
    from torch.utils.data import Subset, TensorDataset

    from neurosolve.data.store import H5Dataset, read_arrays, read_info
    from neurosolve.errors import InvalidInputError

    info = read_info(path)
    count = info["count"]
    if max_samples is not None:
        if max_samples < 1:
            raise InvalidInputError(f"--max-samples must be >= 1, got {max_samples}")
        count = min(count, max_samples)
    itemsize = 8 if info["dtype"] == "float64" else 4
    size = count * itemsize * (_prod(info["x_shape"][1:]) + _prod(info["y_shape"][1:]))
    if size <= _IN_MEMORY_BYTES:
        x, y = read_arrays(path, stop=count)
        return TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y).float()), info
    ds = H5Dataset(path)
    return (ds if count == len(ds) else Subset(ds, range(count))), info


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def _config(args: argparse.Namespace):
    from neurosolve.training import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        schedule=args.schedule,
        grad_clip=args.grad_clip,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        val_fraction=args.val_fraction if args.val is None else 0.0,
        progress=not args.quiet,
        num_workers=args.workers,
    )


def _run_training(args: argparse.Namespace, kind: str, kwargs: dict[str, Any]) -> int:
    from neurosolve.errors import InvalidInputError
    from neurosolve.operators import train_operator

    train, info = _load_dataset(args.data, args.max_samples)
    val = None
    if args.val is not None:
        val, val_info = _load_dataset(args.val)
        if (
            val_info["x_shape"][1] != info["x_shape"][1]
            or val_info["y_shape"][1] != info["y_shape"][1]
        ):
            raise InvalidInputError(
                f"{args.val} has other channels than {args.data}: x {val_info['x_shape']} vs "
                f"{info['x_shape']}, y {val_info['y_shape']} vs {info['y_shape']}"
            )
    spatial = len(info["x_shape"]) - 2
    if kind == "fno2d" and spatial != 2:
        raise InvalidInputError(f"FNO2d needs 2D data; {args.data} has {spatial} spatial axes")
    if kind == "mgno":
        kwargs["dim"] = spatial
    kwargs.update(in_channels=int(info["x_shape"][1]), out_channels=int(info["y_shape"][1]))
    config = _config(args)
    model, history = train_operator(
        kind,
        kwargs,
        train,
        config,
        args.out,
        val_dataset=val,
        loss=args.loss,
        resume=not args.restart,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        best = history["best_epoch"]
        record = history["epochs"][best - 1] if best else history["epochs"][-1]
        params = history["parameters"]
        print(f"trained {kind} ({params:,} parameters) for {len(history['epochs'])} epochs")
        shown = {
            k: v
            for k, v in record.items()
            if k.startswith(("train_loss", "val_")) and not k.endswith("seconds")
        }
        print(f"best epoch {best}: " + ", ".join(f"{k} {v:.4e}" for k, v in shown.items()))
        seconds = [h["train_seconds"] for h in history["epochs"]]
        print(f"seconds per epoch (training): {sum(seconds) / len(seconds):.2f}")
        out = Path(args.out)
        print(f"wrote {out / 'model.pt'}, {out / 'metrics.json'}, {out / 'learning_curve.png'}")
    return 0


def _train_mgno(args: argparse.Namespace) -> int:
    kwargs = {
        "channels": args.channels,
        "layers": args.layers,
        "levels": args.levels,
        "pre_smooth": args.pre_smooth,
        "post_smooth": args.post_smooth,
        "coarse_smooth": args.coarse_smooth,
        "padding": args.padding,
        "activation": args.activation,
    }
    return _run_training(args, "mgno", kwargs)


def _train_fno(args: argparse.Namespace) -> int:
    kwargs = {
        "modes": args.modes,
        "width": args.width,
        "layers": args.layers,
        "padding": args.padding,
        "grid": not args.no_grid,
    }
    return _run_training(args, "fno2d", kwargs)


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _evaluate(args: argparse.Namespace) -> int:
    from neurosolve.checkpoint import load_checkpoint
    from neurosolve.errors import InvalidInputError
    from neurosolve.harness.operator_eval import evaluate_operator
    from neurosolve.operators import load_operator

    if args.krylov < 0:
        raise InvalidInputError(f"--krylov must be >= 0, got {args.krylov}")
    op = load_operator(args.model, map_location=args.device)
    ckpt = load_checkpoint(args.model)
    dataset, info = _load_dataset(args.data)
    expected = ckpt["kwargs"].get("in_channels")
    if expected is not None and int(info["x_shape"][1]) != int(expected):
        raise InvalidInputError(
            f"{args.model} takes {expected} input channels; {args.data} has {info['x_shape'][1]}"
        )
    krylov = args.krylov
    if krylov and info["generator"] != "darcy":
        print(
            f"note: Krylov-style evaluation needs Darcy data; {args.data} holds "
            f"{info['generator']!r} data, skipped",
            file=sys.stderr,
        )
        krylov = 0
    f = float(info["params"].get("f", 1.0)) if isinstance(info.get("params"), dict) else 1.0
    png = args.png or str(Path(args.model).with_name(Path(args.model).stem + "_evaluation.png"))
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    result = evaluate_operator(
        op,
        dataset,
        batch_size=args.batch_size,
        device=args.device,
        krylov_samples=krylov,
        krylov_methods=methods,
        krylov_rtol=args.rtol,
        f=f,
        png=png,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    params = sum(p.numel() for p in op.parameters())
    epoch = (ckpt.get("extra") or {}).get("epoch")
    print(
        f"model: {ckpt['kind']} ({params:,} parameters) from {args.model}"
        + (f" (epoch {epoch})" if epoch else "")
    )
    print(
        f"test samples: {result['samples']}  relative L2: {result['rel_l2']:.4e}  "
        f"relative H1: {result['rel_h1']:.4e} (finite differences; spectral "
        f"{result['rel_h1_spectral']:.4e})"
    )
    print(
        f"inference: {1e3 * result['inference_seconds_per_sample']:.2f} ms per sample "
        f"(batch 1, {args.device})"
    )
    if "krylov" in result:
        k = result["krylov"]
        print(
            f"\nKrylov-style evaluation on {k['samples']} samples (rtol {args.rtol:g}): "
            f"prediction residual ||b-Au||/||b|| median {k['residual_median']:.3e}, "
            f"error vs exact discrete solution median {k['error_median']:.3e}"
        )
        print(
            "| method | iters from 0 | iters from prediction | saved | solve s from 0 | "
            "solve s from prediction | iters to prediction's residual / error | "
            "classical/operator time at prediction's residual / error |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, m in k["methods"].items():
            print(
                f"| {name} | {_fmt(m.get('iterations_cold'), '.1f')} | "
                f"{_fmt(m.get('iterations_warm'), '.1f')} | "
                f"{_fmt(m.get('iterations_saved'), '.1f')} | "
                f"{_fmt(m.get('seconds_cold'))} | {_fmt(m.get('seconds_warm'))} | "
                f"{_fmt(m.get('iterations_to_match'), '.1f')} / "
                f"{_fmt(m.get('iterations_to_match_error'), '.1f')} | "
                f"{_fmt(m.get('speedup_at_prediction_accuracy'))} / "
                f"{_fmt(m.get('speedup_at_prediction_error'))} |"
            )
    print(f"\nwrote {result['png']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0
