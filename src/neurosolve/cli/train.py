"""The ``neurosolve train <model>`` commands: one subcommand per trainable model.

- ``train mgno`` / ``train fno``: supervised neural operators on an ``x -> y`` dataset
  (Darcy), through :func:`neurosolve.operators.supervised.train_operator`;
- ``train sfno`` / ``train fno3d``: spatio-temporal FNO and the FNO-3D baseline on
  Navier-Stokes snapshot windows;
- ``train dcdm``: the DCDM network on Ritz-vector right-hand sides;
- ``train mgpc``: the learned multigrid preconditioner, without labels.

Every command takes the shared "optimization" option group of
:func:`neurosolve.cli.options.add_optimization_arguments` and writes a run folder that a
rerun of the same command resumes. torch and the models are imported inside the commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from neurosolve._util.io import check_output, check_output_folder
from neurosolve._util.plotting import DEFAULT_DPI
from neurosolve.cli.options import (
    add_figure_options,
    add_optimization_arguments,
    add_overwrite,
    int_list,
    int_or_list,
)
from neurosolve.errors import InvalidInputError

__all__ = ["add_commands"]


def add_commands(top: argparse._SubParsersAction) -> None:
    """Register ``train`` and its models on the ``neurosolve`` subcommands."""
    parser = top.add_parser(
        "train",
        help="train a model (dcdm, mgno, fno, sfno, ...)",
        description="Train a model. Run 'neurosolve train <model> --help' for its options.",
    )
    train = parser.add_subparsers(dest="model", metavar="<model>")
    parser.set_defaults(func=lambda args: _missing(parser, "model"))
    _add_dcdm(train)
    _add_mgno(train)
    _add_fno(train)
    for kind in ("sfno", "fno3d"):
        _add_space_time(train, kind)
    _add_mgpc(train)
    for sub in dict.fromkeys(train.choices.values()):
        add_figure_options(sub.add_argument_group("figures (the learning curve)"))


def _missing(parser: argparse.ArgumentParser, what: str) -> int:
    parser.print_help(sys.stderr)
    print(f"\nerror: choose a {what}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------ train mgno / train fno


def _add_operator_options(p: argparse.ArgumentParser, *, lr: float) -> None:
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
    t = add_optimization_arguments(
        p, epochs=50, lr=lr, batch_size=8, schedule="onecycle", weight_decay=1e-4
    )
    t.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm")
    t.add_argument(
        "--loss",
        choices=("l2+h1", "h1", "l2"),
        default="l2+h1",
        help="training loss: relative L2 + H1, relative H1 or relative L2",
    )
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers")


def _add_mgno(train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "mgno",
        help="multigrid neural operator on an x -> y dataset (e.g. Darcy)",
        description="Train MgNO (He, Liu & Xu 2024) on a dataset file from 'neurosolve "
        "generate'. Writes DIR/model.pt (best on validation), DIR/checkpoint.pt, "
        "DIR/metrics.json and DIR/learning_curve.png; rerunning resumes. Runs under "
        "'torchrun --nproc_per_node N -m neurosolve train mgno ...' with DDP.",
    )
    _add_operator_options(p, lr=5e-4)
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


def _add_fno(train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "fno",
        help="2D Fourier neural operator on an x -> y dataset",
        description="Train FNO2d (Li et al. 2021) on a dataset file; same run folder "
        "layout and resumption as 'neurosolve train mgno'.",
    )
    _add_operator_options(p, lr=1e-3)
    m = p.add_argument_group("model")
    m.add_argument("--modes", type=int, default=12)
    m.add_argument("--width", type=int, default=32)
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--padding", type=int, default=8, help="zero padding cells (0: periodic)")
    m.add_argument("--no-grid", action="store_true", help="no coordinate input channels")
    p.set_defaults(func=_train_fno)


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


def _operator_data(args: argparse.Namespace, kind: str) -> tuple[Any, Any, dict[str, Any]]:
    from neurosolve.cli.datasets import load_dataset

    check_output_folder(args.out, inputs=(args.data, args.val))
    train, info = load_dataset(args.data, args.max_samples)
    val = None
    if args.val is not None:
        val, val_info = load_dataset(args.val)
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
    return train, val, info


def _run_training(args: argparse.Namespace, kind: str, kwargs: dict[str, Any]) -> int:
    from neurosolve.operators import train_operator

    train, val, info = _operator_data(args, kind)
    if kind == "mgno":
        kwargs["dim"] = len(info["x_shape"]) - 2
    kwargs.update(in_channels=int(info["x_shape"][1]), out_channels=int(info["y_shape"][1]))
    grid = tuple(int(n) for n in info["x_shape"][2:])
    if kind == "fno2d" and kwargs["padding"] > 0 and len(set(grid)) == 1:
        # the padding is a fixed fraction of the domain, so the trained model is the same
        # function on every grid (zero-shot at 64^2-256^2 from 32^2: 0.23-0.41 -> 0.035-0.044
        # relative L2, benchmarks/zero_shot.py)
        kwargs["padding_grid"] = grid[0]
    _, history = train_operator(
        kind,
        kwargs,
        train,
        _config(args),
        args.out,
        val_dataset=val,
        loss=args.loss,
        resume=not args.restart,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        out = Path(args.out)
        _print_summary(kind, history, out / "model.pt", out, args)
    return 0


def _print_summary(
    kind: str, history: dict[str, Any], model: Path, run_dir: Path, args: argparse.Namespace
) -> None:
    """The one summary every ``train`` command prints (and its figure in --format/--dpi)."""
    from neurosolve.training.history import plot_history

    epochs = history["epochs"]
    best = history.get("best_epoch")
    params = history["parameters"]
    print(f"trained {kind} ({params:,} parameters) for {len(epochs)} epochs")
    if epochs:
        record = epochs[best - 1] if best else epochs[-1]
        shown = {
            k: v
            for k, v in record.items()
            if k.startswith(("train_loss", "val_"))
            and not k.endswith("seconds")
            and isinstance(v, (int, float))
        }
        print(f"best epoch {best}: " + ", ".join(f"{k} {v:.4e}" for k, v in shown.items()))
        seconds = [h.get("train_seconds", 0.0) for h in epochs]
        print(f"seconds per epoch (training): {sum(seconds) / len(seconds):.2f}")
    curve = run_dir / "learning_curve.png"
    if epochs and (args.format != "png" or args.dpi != DEFAULT_DPI):
        curve = plot_history(epochs, curve, f"{kind} training", fmt=args.format, dpi=args.dpi)
    print(f"model written to {model} (run folder {run_dir})")
    print(f"wrote {run_dir / 'metrics.json'}, {curve}")


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


# --------------------------------------------------------------- train sfno / train fno3d

_SPACE_TIME_HELP = {
    "sfno": "spatio-temporal FNO (SFNO) on Navier-Stokes windows t_in -> t_out",
    "fno3d": "FNO-3D space-time baseline on Navier-Stokes windows",
}


def _add_space_time(train: argparse._SubParsersAction, kind: str) -> None:
    p = train.add_parser(kind, help=_SPACE_TIME_HELP[kind], description=_SPACE_TIME_HELP[kind])
    p.add_argument("--data", type=Path, required=True, help="training set (.h5)")
    p.add_argument("--val", type=Path, default=None, help="validation set (.h5)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    add_optimization_arguments(
        p, epochs=10, lr=1e-3, batch_size=8, schedule="onecycle", weight_decay=1e-4
    )
    m = p.add_argument_group("model")
    modes = (12, 12, 5) if kind == "sfno" else (8, 8, 8)
    m.add_argument(
        "--modes",
        type=int,
        nargs=3,
        default=modes,
        metavar=("MX", "MY", "MT"),
        help=f"Fourier modes in x, y, t (default: {' '.join(map(str, modes))})",
    )
    m.add_argument("--width", type=int, default=20)
    m.add_argument("--layers", type=int, default=4)
    m.add_argument("--t-out", type=int, default=None, help="default: the dataset's")
    if kind == "sfno":
        m.add_argument(
            "--latent-steps",
            type=int,
            default=None,
            help="latent time length (default: 10 with --sfno-config reference, else t_out)",
        )
        m.add_argument(
            "--time-padding", type=int, default=0, help="zeros after the output time window"
        )
        m.add_argument(
            "--sfno-config",
            choices=("reference", "first"),
            default="reference",
            help="architecture choices: the reference code's (input normalization, 8 time "
            "features, linear projection, ...; neurosolve.operators.sfno.REFERENCE_OPTIONS) or "
            "this package's first version (default: reference)",
        )
    else:
        m.add_argument("--padding", type=int, default=6, help="zero padding of the time axis")
    p.set_defaults(func=_train_space_time, kind=kind)


def _space_time_model(args: argparse.Namespace, train: Any) -> Any:
    from neurosolve.operators import SFNO, FNO3d
    from neurosolve.operators.sfno import REFERENCE_OPTIONS

    t_in, t_out = train.x_shape[0], train.y_shape[0]
    if len(train.x_shape) != 3 or len(train.y_shape) != 3:
        raise InvalidInputError(
            f"{args.data} does not hold (t, nx, ny) snapshot windows: x {train.x_shape}, "
            f"y {train.y_shape}"
        )
    t_out = args.t_out or t_out
    if t_out != train.y_shape[0]:
        raise InvalidInputError(
            f"--t-out {t_out} differs from the dataset's {train.y_shape[0]} target snapshots"
        )
    common = dict(modes=list(args.modes), width=args.width, layers=args.layers, t_out=t_out)
    if args.kind == "sfno":
        options = dict(REFERENCE_OPTIONS) if args.sfno_config == "reference" else {}
        if args.latent_steps is not None or "latent_steps" not in options:
            options["latent_steps"] = args.latent_steps
        return SFNO(**common, **options, time_padding=args.time_padding)
    return FNO3d(**common, t_in=t_in, padding=args.padding)


def _train_space_time(args: argparse.Namespace) -> int:
    import torch

    from neurosolve.data.store import H5Dataset
    from neurosolve.operators.losses import relative_l2
    from neurosolve.operators.refine import relative_error
    from neurosolve.training import ModelSpec, TrainConfig, Trainer, supervised_loss

    check_output_folder(args.out, inputs=(args.data, args.val))
    train = H5Dataset(args.data)
    val = H5Dataset(args.val) if args.val is not None else None
    model = _space_time_model(args, train)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
        val_fraction=0.0 if val is not None else 0.1,
    )

    def h1(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return relative_error(model(batch[0]), batch[1], s=1.0).mean()

    # The metric names of train mgno / fno: val_l2 and val_h1 (relative errors).
    trainer = Trainer(
        model,
        supervised_loss(relative_l2),
        config,
        args.out,
        metrics={"l2": supervised_loss(relative_l2), "h1": h1},
        model_spec=ModelSpec(args.kind, model.config()),
    )
    history = trainer.fit(train, val)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(args.kind, history, Path(trainer.model_path), Path(args.out), args)
    return 0


# ------------------------------------------------------------------------------ train dcdm


def _check_model_out(args: argparse.Namespace) -> None:
    """Check ``--out`` of ``train dcdm`` / ``train mgpc`` before any work.

    An existing model is replaced only with ``--overwrite``, or by a rerun of the same
    command (its run folder holds a checkpoint, and the trainer's resume check refuses any
    change of data or arguments).
    """
    run_dir = args.run_dir if args.run_dir is not None else Path(f"{args.out}.run")
    rerun = Path(run_dir).is_dir() and (Path(run_dir) / "checkpoint.pt").is_file()
    check_output(args.out, overwrite=args.overwrite or rerun, what="--out")
    if args.run_dir is not None:
        check_output_folder(args.run_dir, inputs=(args.out,), what="--run-dir")


def _add_dcdm(train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "dcdm",
        help="train the DCDM network (deep conjugate-direction solver)",
        description=(
            "Generate right-hand sides from Ritz vectors of Poisson matrices (one random "
            "obstacle geometry per sample, or one fixed geometry with --geometry-seed), "
            "weighted toward the low end of the spectrum, and train the DCDM network on "
            "the scale-invariant loss ||b - alpha A f(b)||^2. Data, checkpoints, "
            "metrics.json and learning_curve.png go to RUN_DIR (default OUT.run); rerun "
            "the same command to resume after an interruption."
        ),
    )
    p.add_argument("--out", required=True, help="where to write the trained model (.pt)")
    add_overwrite(p, "model file")
    p.add_argument("--run-dir", default=None, help="folder for data, checkpoints and curves")
    data = p.add_argument_group("data")
    data.add_argument("--dim", type=int, default=3, choices=(2, 3))
    data.add_argument("--resolution", type=int, default=16, help="cells per axis")
    data.add_argument("--samples", type=int, default=2000, help="training right-hand sides")
    data.add_argument("--val-samples", type=int, default=200)
    data.add_argument("--geometry", default="mixed", choices=("none", "boxes", "spheres", "mixed"))
    data.add_argument(
        "--geometry-seed",
        type=int,
        default=None,
        help="use ONE geometry for all samples (the reference's single training matrix)",
    )
    data.add_argument("--lanczos-steps", type=int, default=64, help="Lanczos steps per matrix")
    data.add_argument(
        "--low", type=float, default=0.5, help="fraction of Ritz vectors with the low-end weight"
    )
    data.add_argument("--low-weight", type=float, default=9.0)
    net = p.add_argument_group("network")
    net.add_argument("--width", type=int, default=16)
    net.add_argument(
        "--pairs", type=int_or_list, default=1, help="residual pairs per level (n or a,b)"
    )
    net.add_argument("--levels", type=int, default=1, help="pooling levels")
    net.add_argument(
        "--no-flags", action="store_true", help="residual-only input (as the reference)"
    )
    add_optimization_arguments(p, epochs=10, lr=1e-3, batch_size=8)
    p.set_defaults(func=_train_dcdm)


def _train_dcdm(args: argparse.Namespace) -> int:
    from neurosolve.solvers.dcdm.training import train_dcdm

    _check_model_out(args)
    result = train_dcdm(
        args.out,
        dim=args.dim,
        resolution=args.resolution,
        samples=args.samples,
        val_samples=args.val_samples,
        geometry=args.geometry,
        geometry_seed=args.geometry_seed,
        lanczos_steps=args.lanczos_steps,
        low=args.low,
        low_weight=args.low_weight,
        width=args.width,
        pairs=args.pairs,
        levels=args.levels,
        flags_input=not args.no_flags,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        progress=not args.quiet,
    )
    _print_summary("dcdm", result["history"], Path(result["model"]), Path(result["run_dir"]), args)
    return 0


# ------------------------------------------------------------------------------ train mgpc


def _add_mgpc(train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "mgpc",
        help="train the MGPC network (learned SPD multigrid preconditioner for PCG)",
        description=(
            "Train the geometry network of the MGPC preconditioner without labels: on random "
            "3D obstacle geometries and 2D variable-coefficient problems, minimize the A-norm "
            "error left by one optimally scaled preconditioned step on random and smooth "
            "vectors. Checkpoints, metrics.json and learning_curve.png go to RUN_DIR "
            "(default OUT.run); rerun the same command to resume after an interruption."
        ),
    )
    p.add_argument("--out", required=True, help="where to write the trained model (.pt)")
    add_overwrite(p, "model file")
    p.add_argument("--run-dir", default=None, help="folder for checkpoints and curves")
    data = p.add_argument_group("data")
    data.add_argument("--groups", type=int, default=64, help="training groups (one per step)")
    data.add_argument("--val-groups", type=int, default=8, help="validation groups")
    data.add_argument("--group-size", type=int, default=4, help="problems per group")
    data.add_argument("--vectors", type=int, default=4, help="test vectors per problem")
    data.add_argument(
        "--resolutions", type=int_list, default=[16], help="3D cells per axis (2D uses twice)"
    )
    data.add_argument("--dims", type=int_list, default=[3, 2], help="dimensions to train on")
    net = p.add_argument_group("network")
    net.add_argument("--width", type=int, default=8)
    net.add_argument("--layers", type=int, default=2)
    net.add_argument("--smoothing-steps", type=int, default=3, help="pre (= post) smoothing")
    net.add_argument(
        "--cycle", default="W", choices=("W", "V"), help="multigrid cycle the model is trained for"
    )
    add_optimization_arguments(p, epochs=8, lr=3e-3)
    p.set_defaults(func=_train_mgpc)


def _train_mgpc(args: argparse.Namespace) -> int:
    from neurosolve.solvers.mgpc import train_mgpc

    _check_model_out(args)
    result = train_mgpc(
        args.out,
        groups=args.groups,
        val_groups=args.val_groups,
        group_size=args.group_size,
        vectors=args.vectors,
        resolutions=args.resolutions,
        dims=args.dims,
        width=args.width,
        layers=args.layers,
        smoothing_steps=args.smoothing_steps,
        cycle=args.cycle,
        epochs=args.epochs,
        lr=args.lr,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        progress=not args.quiet,
    )
    _print_summary("mgpc", result["history"], Path(result["model"]), Path(result["run_dir"]), args)
    return 0
