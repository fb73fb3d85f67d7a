"""Commands ``neurosolve train sfno``, ``neurosolve train fno3d`` and ``neurosolve refine``.

Kept light: torch and the models are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["add_commands", "physics_from_params"]


def add_commands(groups: Any) -> None:
    """Register the SFNO / FNO3d training commands and ``neurosolve refine``."""
    for kind, help_text in (
        ("sfno", "spatiotemporal FNO (SFNO) on Navier-Stokes windows t_in -> t_out"),
        ("fno3d", "FNO-3D space-time baseline on Navier-Stokes windows"),
    ):
        p = groups.train.add_parser(kind, help=help_text, description=help_text)
        _train_arguments(p, kind)
        p.set_defaults(func=_train, kind=kind)

    r = groups.top.add_parser(
        "refine",
        help="Spectral-Refiner: fine-tune a trained SFNO on the residual estimator",
        description="Freeze a trained SFNO, replace its last spectral convolution by an "
        "untruncated one and optimise it, per test batch and in float64, on the H^-1 norm "
        "of the Navier-Stokes residual of its own prediction (no ground truth). The ground "
        "truth in the file is used only to report errors before and after.",
    )
    r.add_argument("model", type=Path, help="checkpoint of a trained SFNO (a run's model.pt)")
    r.add_argument("--data", type=Path, required=True, help="Navier-Stokes test set (.h5)")
    r.add_argument("--steps", type=int, default=100, help="Adam steps per batch (default 100)")
    r.add_argument("--lr", type=float, default=0.3, help="Adam learning rate (default 0.3)")
    r.add_argument("--batch-size", type=int, default=4, help="samples per refined batch")
    r.add_argument("--limit", type=int, default=None, help="refine only the first N samples")
    r.add_argument("--alpha", type=float, default=1.0, help="H^-1 weight shift (default 1)")
    r.add_argument("--time-order", type=int, default=4, help="finite-difference order in time")
    r.add_argument("--fill-scale", type=float, default=1e-6, help="initial high-mode weights")
    r.add_argument("--nu", type=float, default=None, help="override the file's viscosity")
    r.add_argument("--dt", type=float, default=None, help="override the snapshot spacing")
    r.add_argument("--forcing", default=None, help="override the file's forcing name")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    r.add_argument("--out", type=Path, default=None, help="write per-sample results (JSON)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_refine)


def _train_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--data", type=Path, required=True, help="training set (.h5)")
    p.add_argument("--val", type=Path, default=None, help="validation set (.h5)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", default="onecycle", choices=("onecycle", "cosine", "constant"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    default_modes = (12, 12, 5) if kind == "sfno" else (8, 8, 8)
    p.add_argument(
        "--modes",
        type=int,
        nargs=3,
        default=default_modes,
        metavar=("MX", "MY", "MT"),
        help=f"Fourier modes in x, y, t (default {' '.join(map(str, default_modes))})",
    )
    p.add_argument("--width", type=int, default=20)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--t-out", type=int, default=None, help="default: the dataset's")
    if kind == "sfno":
        p.add_argument("--latent-steps", type=int, default=None, help="default: t_out")
        p.add_argument(
            "--time-padding", type=int, default=0, help="zeros after the output time window"
        )
    else:
        p.add_argument("--padding", type=int, default=6, help="zero padding of the time axis")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def physics_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """Viscosity, forcing and snapshot spacing of a Navier-Stokes dataset's parameters.

    Parameters
    ----------
    params : dict
        ``read_info(path)["params"]`` of a ``navier-stokes`` dataset.

    Returns
    -------
    dict
        ``{"nu": float, "forcing": str or None, "dt": float, "drag": float}``: ``dt`` is
        the time between stored snapshots (the generator's ``record_every``).

    Raises
    ------
    FileFormatError
        If the parameters do not say what the estimator needs.

    Examples
    --------
    >>> physics_from_params({"nu": 1e-3, "forcing": "fno", "record_every": 0.25, "dt": 1e-3})
    {'nu': 0.001, 'forcing': 'fno', 'dt': 0.25, 'drag': 0.0}
    """
    missing = [k for k in ("nu", "record_every") if k not in params]
    if missing:
        raise FileFormatError(
            f"the dataset parameters do not record {', '.join(missing)} (not a Navier-Stokes "
            "dataset of this package?); pass --nu and --dt"
        )
    return {
        "nu": float(params["nu"]),
        "forcing": params.get("forcing", "fno"),
        "dt": float(params["record_every"]),
        "drag": float(params.get("drag", 0.0) or 0.0),
    }


def _train(args: argparse.Namespace) -> int:
    import torch

    from neurosolve.data.store import H5Dataset
    from neurosolve.operators import SFNO, FNO3d
    from neurosolve.operators.losses import relative_l2
    from neurosolve.operators.refine import relative_error
    from neurosolve.training import ModelSpec, TrainConfig, Trainer, supervised_loss

    train = H5Dataset(args.data)
    val = H5Dataset(args.val) if args.val is not None else None
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
        model = SFNO(**common, latent_steps=args.latent_steps, time_padding=args.time_padding)
    else:
        model = FNO3d(**common, t_in=t_in, padding=args.padding)
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

    trainer = Trainer(
        model,
        supervised_loss(relative_l2),
        config,
        args.out,
        metrics={"rel_l2": supervised_loss(relative_l2), "rel_h1": h1},
        model_spec=ModelSpec(args.kind, model.config()),
    )
    history = trainer.fit(train, val)
    best = history["epochs"][(history["best_epoch"] or len(history["epochs"])) - 1]
    summary = {k: v for k, v in best.items() if isinstance(v, (int, float))}
    print(f"{args.kind}: {history['parameters']} parameters, best epoch {history['best_epoch']}")
    print(json.dumps(summary, indent=1))
    print(f"model: {trainer.model_path}")
    return 0


def _refine(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from neurosolve.checkpoint import load_model
    from neurosolve.data.store import H5Dataset, read_info
    from neurosolve.operators.refine import relative_error, residual_estimator, spectral_refine

    info = read_info(args.data)
    if info["generator"] != "navier-stokes":
        raise FileFormatError(f"{args.data} holds {info['generator']!r} data, not navier-stokes")
    physics = {}
    try:
        physics = physics_from_params(info["params"])
    except FileFormatError:
        if args.nu is None or args.dt is None:
            raise
    for key in ("nu", "dt", "forcing"):
        if getattr(args, key) is not None:
            physics[key] = getattr(args, key)
    if args.batch_size < 1 or args.steps < 0:
        raise InvalidInputError("--batch-size must be >= 1 and --steps >= 0")
    from neurosolve.devices import resolve_device

    device = resolve_device(args.device)
    model, _ = load_model(args.model, kind="sfno", map_location=device)
    count = info["count"] if args.limit is None else min(args.limit, info["count"])
    dataset = H5Dataset(args.data, indices=list(range(count)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    rows: dict[str, list[float]] = {
        k: [] for k in ("l2_before", "l2_after", "h1_before", "h1_after", "est_before")
    }
    rows.update({"est_after": [], "est_true": [], "seconds": []})
    for x, y in loader:
        x = x.to(device)
        y = y.to(device=device, dtype=torch.float64)
        out = spectral_refine(
            model,
            x,
            dt=physics["dt"],
            nu=physics["nu"],
            forcing=physics["forcing"],
            t_out=y.shape[1],
            steps=args.steps,
            lr=args.lr,
            alpha=args.alpha,
            fill_scale=args.fill_scale,
            time_order=args.time_order,
            drag=physics.get("drag", 0.0),
            progress=not args.quiet,
        )
        truth = torch.cat([x[:, -1:].double(), y], dim=1)
        est_true = residual_estimator(
            truth,
            physics["dt"],
            nu=physics["nu"],
            forcing=physics["forcing"],
            alpha=args.alpha,
            time_order=args.time_order,
            drag=physics.get("drag", 0.0),
        )
        rows["l2_before"] += relative_error(out.initial_prediction, y).tolist()
        rows["l2_after"] += relative_error(out.prediction, y).tolist()
        rows["h1_before"] += relative_error(out.initial_prediction, y, s=1.0).tolist()
        rows["h1_after"] += relative_error(out.prediction, y, s=1.0).tolist()
        rows["est_before"] += out.estimator[0].tolist()
        rows["est_after"] += out.estimator[out.best_step].tolist()
        rows["est_true"] += est_true.tolist()
        rows["seconds"].append(out.seconds)
    means = {k: float(np.mean(v)) for k, v in rows.items() if k != "seconds"}
    means["seconds_per_batch"] = float(np.mean(rows["seconds"]))
    print(f"refined {count} samples of {args.data} ({args.steps} steps, lr {args.lr})")
    print("| quantity | before | after |")
    print("|---|---|---|")
    print(f"| relative L2 error | {means['l2_before']:.4e} | {means['l2_after']:.4e} |")
    print(f"| relative H1 error | {means['h1_before']:.4e} | {means['h1_after']:.4e} |")
    print(f"| estimator | {means['est_before']:.4e} | {means['est_after']:.4e} |")
    print(f"estimator of the ground truth: {means['est_true']:.4e}")
    if args.out is not None:
        result = {"model": str(args.model), "data": str(args.data), "physics": physics}
        result.update({"steps": args.steps, "lr": args.lr, "mean": means, "samples": rows})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=_json_default))
        print(f"wrote {args.out}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
