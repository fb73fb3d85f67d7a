"""The ``neurosolve refine`` command: the Spectral-Refiner on a trained spatio-temporal FNO.

It freezes a trained SFNO (spatio-temporal FNO), replaces its last spectral convolution by
an untruncated one and optimises it per test batch, in float64, on the H^-1 norm of the
Navier-Stokes residual of its own prediction (no ground truth), through
:func:`neurosolve.operators.refine.spectral_refine`. The ground truth in the file is used
only to report errors before and after. The refined predictions (HDF5 or ``.npz``), the
refined output layer of every batch (a checkpoint) and a figure of the errors before and
after are saved, by default next to the model as ``MODEL_refined.h5/.pt/.png``. torch and
the models are imported inside the command.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from neurosolve._util.io import check_output
from neurosolve.cli.options import add_device, add_figure_options, add_overwrite, add_quiet
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
    r.add_argument(
        "--steps",
        type=int,
        default=300,
        help="Adam steps per batch (default 300: 100 stop short of the optimum on larger "
        "training sets, see README)",
    )
    r.add_argument("--lr", type=float, default=0.3, help="Adam learning rate")
    r.add_argument("--batch-size", type=int, default=4, help="samples per refined batch")
    r.add_argument("--limit", type=int, default=None, help="refine only the first N samples")
    r.add_argument("--alpha", type=float, default=1.0, help="H^-1 weight shift")
    r.add_argument("--time-order", type=int, default=4, help="finite-difference order in time")
    r.add_argument(
        "--supersample",
        type=int,
        default=1,
        help="refine on K times as many snapshots in time as the file holds (finer time "
        "derivative in the estimator)",
    )
    r.add_argument("--fill-scale", type=float, default=1e-6, help="initial high-mode weights")
    r.add_argument("--nu", type=float, default=None, help="override the file's viscosity")
    r.add_argument("--dt", type=float, default=None, help="override the snapshot spacing")
    r.add_argument("--forcing", default=None, help="override the file's forcing name")
    add_device(r)
    r.add_argument("--out", type=Path, default=None, help="write per-sample results (JSON)")
    add_overwrite(r, "--out file")
    saved = r.add_argument_group("saved results (default: next to MODEL, named MODEL_refined*)")
    saved.add_argument(
        "--predictions",
        type=Path,
        default=None,
        metavar="FILE.h5|FILE.npz",
        help="refined and initial predictions (HDF5, or numpy .npz by the suffix)",
    )
    saved.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="FILE.pt",
        help="checkpoint of the refined output layer of every batch",
    )
    saved.add_argument(
        "--figure", type=Path, default=None, help="figure of the errors before and after"
    )
    saved.add_argument(
        "--no-save", action="store_true", help="save none of the three (only print / --out)"
    )
    add_figure_options(saved)
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

    _check_outputs(args)
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
    kept = _Kept()
    for x, y in loader:
        y = y.to(device=device, dtype=torch.float64)
        out = _refine_batch(model, x.to(device), y, physics, args, rows)
        kept.add(out, y)
    means = {k: float(np.mean(v)) for k, v in rows.items() if k != "seconds"}
    means["seconds_per_batch"] = float(np.mean(rows["seconds"]))
    _print_table(args, count, means)
    if not args.no_save:
        _save_outputs(args, kept, physics, model)
    if args.out is not None:
        from neurosolve._util.io import atomic_write_text

        result = {"model": str(args.model), "data": str(args.data), "physics": physics}
        result.update({"steps": args.steps, "lr": args.lr, "mean": means, "samples": rows})
        atomic_write_text(args.out, json.dumps(result, indent=1, default=_json_default))
        print(f"wrote {args.out}")
    return 0


def _refine_batch(
    model: Any, x: Any, y: Any, physics: dict[str, Any], args: argparse.Namespace, rows: dict
) -> Any:
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
        supersample=args.supersample,
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
    return out


class _Kept:
    """What ``refine`` saves: the predictions, the truth and each batch's refined layer."""

    def __init__(self) -> None:
        self.refined: list[Any] = []
        self.initial: list[Any] = []
        self.truth: list[Any] = []
        self.layers: list[dict[str, Any]] = []

    def add(self, out: Any, y: Any) -> None:
        self.refined.append(out.prediction.detach().cpu().numpy())
        self.initial.append(out.initial_prediction.detach().cpu().double().numpy())
        self.truth.append(y.detach().cpu().numpy())
        state = out.model.out_conv.state_dict()
        self.layers.append({k: v.detach().cpu() for k, v in state.items()})

    def arrays(self) -> dict[str, Any]:
        import numpy as np

        return {
            "refined": np.concatenate(self.refined),
            "initial": np.concatenate(self.initial),
            "truth": np.concatenate(self.truth),
        }


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse any output onto an input, a non-file, or an existing file without --overwrite.

    The default ``MODEL_refined*`` files are this command's own and replaced on a rerun.
    """
    inputs = (args.model, args.data)
    if args.out is not None:
        check_output(args.out, inputs=inputs, overwrite=args.overwrite, what="--out")
    if args.no_save:
        return
    for option, given, suffix in (
        ("--predictions", args.predictions, ".h5"),
        ("--weights", args.weights, ".pt"),
        ("--figure", args.figure, ".png"),
    ):
        path = _default_path(args, given, suffix)
        check_output(path, inputs=inputs, overwrite=args.overwrite or given is None, what=option)


def _default_path(args: argparse.Namespace, given: Path | None, suffix: str) -> Path:
    if given is not None:
        return given
    return args.model.with_name(f"{args.model.stem}_refined{suffix}")


def _save_outputs(
    args: argparse.Namespace, kept: _Kept, physics: dict[str, Any], model: Any
) -> None:
    from neurosolve.checkpoint import save_checkpoint

    arrays = kept.arrays()
    predictions = _save_predictions(_default_path(args, args.predictions, ".h5"), arrays)
    print(f"refined predictions: {predictions}")
    state = {f"batch{b}.{k}": v for b, layer in enumerate(kept.layers) for k, v in layer.items()}
    weights = save_checkpoint(
        _default_path(args, args.weights, ".pt"),
        kind="sfno-refined-out-conv",
        kwargs=dict(model.config()) if hasattr(model, "config") else {},
        state_dict=state,
        extra={
            "source": str(args.model),
            "data": str(args.data),
            "batch_size": args.batch_size,
            "batches": len(kept.layers),
            "physics": physics,
            "steps": args.steps,
            "lr": args.lr,
        },
    )
    print(f"refined weights (output layer per batch): {weights}")
    figure = _plot_refinement(arrays, _default_path(args, args.figure, ".png"), args)
    print(f"figure: {figure}")


def _save_predictions(path: Path, arrays: dict[str, Any]) -> Path:
    import numpy as np

    from neurosolve._util.io import atomic_write

    if path.suffix.lower() == ".npz":
        return atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")

    def write(tmp: str) -> None:
        import h5py

        with h5py.File(tmp, "w") as f:
            for name, value in arrays.items():
                f.create_dataset(name, data=value)
            f.attrs["layout"] = "(sample, time, nx, ny); refined: after, initial: before"

    return atomic_write(path, write, suffix=".h5")


def _plot_refinement(arrays: dict[str, Any], path: Path, args: argparse.Namespace) -> Path:
    """Relative L2 error per snapshot before and after, and sample 0's last error field."""
    import numpy as np

    from neurosolve._util.plotting import (
        integer_ticks,
        legend_outside,
        new_figure,
        save_figure,
        symmetric_limit,
    )

    refined, initial, truth = arrays["refined"], arrays["initial"], arrays["truth"]
    fig, (ax_t, ax_b, ax_a) = new_figure(1, 3, width=3.8, height=3.3, layout="constrained")
    steps = np.arange(1, truth.shape[1] + 1)
    norm = np.linalg.norm(truth.reshape(*truth.shape[:2], -1), axis=-1)
    for name, pred, style in (("before", initial, "--"), ("after", refined, "-")):
        err = np.linalg.norm((pred - truth).reshape(*truth.shape[:2], -1), axis=-1) / norm
        ax_t.semilogy(steps, err.mean(axis=0), style, marker="o", ms=3, label=f"{name} (mean)")
    ax_t.set_xlabel("predicted snapshot")
    ax_t.set_ylabel("relative L2 error")
    ax_t.set_title(f"{truth.shape[0]} samples", fontsize=10)
    integer_ticks(ax_t.xaxis)
    ax_t.grid(True, which="both", alpha=0.3)
    legend_outside(ax_t, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    before, after = initial[0, -1] - truth[0, -1], refined[0, -1] - truth[0, -1]
    lim = symmetric_limit(before, after)
    for ax, field, name in ((ax_b, before, "before"), (ax_a, after, "after")):
        im = ax.imshow(field, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        rel = float(np.linalg.norm(field) / (np.linalg.norm(truth[0, -1]) or 1.0))
        ax.set_title(f"error {name} (sample 0, last)\nrel. L2 {rel:.2e}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=[ax_b, ax_a], shrink=0.85, label="prediction - truth")
    return save_figure(fig, path, fmt=args.format, dpi=args.dpi)


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
