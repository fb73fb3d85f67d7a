"""The ``neurosolve refine`` command: the Spectral-Refiner on a trained spatio-temporal FNO.

It freezes a trained SFNO (spatio-temporal FNO), replaces its last spectral convolution by
an untruncated one and optimises it per test batch, in float64, on the H^-1 norm of the
Navier-Stokes residual of its own prediction (no ground truth), through
:func:`neurosolve.operators.refine.spectral_refine`. The ground truth in the file is used
only to report errors before and after. torch and the models are imported inside the
command.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from neurosolve._util.io import check_output
from neurosolve.cli.options import add_device, add_overwrite, add_quiet
from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["add_commands", "physics_from_params"]

#: Per-sample quantities ``refine`` records, in the order of its JSON output.
_ROWS = ("l2_before", "l2_after", "h1_before", "h1_after", "est_before", "est_after", "est_true")


def add_commands(top: argparse._SubParsersAction) -> None:
    """Register ``refine`` on the ``neurosolve`` subcommands."""
    r = top.add_parser(
        "refine",
        help="Spectral-Refiner: fine-tune a trained SFNO on the residual estimator",
        description="Freeze a trained SFNO (spatio-temporal FNO), replace its last spectral "
        "convolution by an untruncated one and optimise it, per test batch and in float64, "
        "on the H^-1 norm of the Navier-Stokes residual of its own prediction (no ground "
        "truth). The ground truth in the file is used only to report errors before and after.",
    )
    r.add_argument("model", type=Path, help="checkpoint of a trained SFNO (a run's model.pt)")
    r.add_argument("--data", type=Path, required=True, help="Navier-Stokes test set (.h5)")
    r.add_argument("--steps", type=int, default=100, help="Adam steps per batch")
    r.add_argument("--lr", type=float, default=0.3, help="Adam learning rate")
    r.add_argument("--batch-size", type=int, default=4, help="samples per refined batch")
    r.add_argument("--limit", type=int, default=None, help="refine only the first N samples")
    r.add_argument("--alpha", type=float, default=1.0, help="H^-1 weight shift")
    r.add_argument("--time-order", type=int, default=4, help="finite-difference order in time")
    r.add_argument("--fill-scale", type=float, default=1e-6, help="initial high-mode weights")
    r.add_argument("--nu", type=float, default=None, help="override the file's viscosity")
    r.add_argument("--dt", type=float, default=None, help="override the snapshot spacing")
    r.add_argument("--forcing", default=None, help="override the file's forcing name")
    add_device(r)
    r.add_argument("--out", type=Path, default=None, help="write per-sample results (JSON)")
    add_overwrite(r, "--out file")
    add_quiet(r)
    r.set_defaults(func=_refine)


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


def _physics(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
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
    return physics


def _refine(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from neurosolve.checkpoint import load_model
    from neurosolve.data.store import H5Dataset, read_info
    from neurosolve.devices import resolve_device

    if args.out is not None:
        check_output(
            args.out, inputs=(args.model, args.data), overwrite=args.overwrite, what="--out"
        )
    info = read_info(args.data)
    physics = _physics(args, info)
    if args.batch_size < 1 or args.steps < 0:
        raise InvalidInputError("--batch-size must be >= 1 and --steps >= 0")
    device = resolve_device(args.device)
    model, _ = load_model(args.model, kind="sfno", map_location=device)
    count = info["count"] if args.limit is None else min(args.limit, info["count"])
    dataset = H5Dataset(args.data, indices=list(range(count)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    rows: dict[str, list[float]] = {k: [] for k in (*_ROWS, "seconds")}
    for x, y in loader:
        _refine_batch(
            model, x.to(device), y.to(device=device, dtype=torch.float64), physics, args, rows
        )
    means = {k: float(np.mean(v)) for k, v in rows.items() if k != "seconds"}
    means["seconds_per_batch"] = float(np.mean(rows["seconds"]))
    _print_table(args, count, means)
    if args.out is not None:
        from neurosolve._util.io import atomic_write_text

        result = {"model": str(args.model), "data": str(args.data), "physics": physics}
        result.update({"steps": args.steps, "lr": args.lr, "mean": means, "samples": rows})
        atomic_write_text(args.out, json.dumps(result, indent=1, default=_json_default))
        print(f"wrote {args.out}")
    return 0


def _refine_batch(
    model: Any, x: Any, y: Any, physics: dict[str, Any], args: argparse.Namespace, rows: dict
) -> None:
    import torch

    from neurosolve.operators.refine import relative_error, residual_estimator, spectral_refine

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


def _print_table(args: argparse.Namespace, count: int, means: dict[str, float]) -> None:
    print(f"refined {count} samples of {args.data} ({args.steps} steps, lr {args.lr})")
    print("| quantity | before | after |")
    print("|---|---|---|")
    print(f"| relative L2 error | {means['l2_before']:.4e} | {means['l2_after']:.4e} |")
    print(f"| relative H1 error | {means['h1_before']:.4e} | {means['h1_after']:.4e} |")
    print(f"| estimator | {means['est_before']:.4e} | {means['est_after']:.4e} |")
    print(f"estimator of the ground truth: {means['est_true']:.4e}")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
