"""Commands ``neurosolve generate``, ``neurosolve info`` and ``neurosolve merge``.

``generate`` writes a seeded, resumable HDF5 dataset with one of the generators of
:mod:`neurosolve.data.generate` (every generator keyword is an option or a ``--param``),
``info`` describes a dataset file and ``merge`` joins shard files into the file one process
would have written. numpy, h5py and torch are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from typing import Any

from neurosolve.cli.options import (
    RawDescriptionHelpFormatter,
    add_device,
    add_overwrite,
    add_quiet,
)

__all__ = ["add_commands", "format_info"]

# Generator options: flag -> (type, help, generators it applies to). Every option maps to
# the sample function's keyword of the same name (dashes become underscores); options left
# out keep the function's default. Anything not listed here goes through --param.
_OPTIONS: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "--dim": (int, "spatial dimension, 2 or 3", ("poisson", "darcy")),
    "--geometry": (str, "obstacles: none, boxes, spheres or mixed", ("poisson",)),
    "--rhs": (str, "right-hand side: random, smooth or divergence", ("poisson",)),
    "--boundary": (str, "outer boundary: dirichlet or neumann", ("poisson",)),
    "--boundary-air": (str, "AIR region: top or free-surface", ("poisson",)),
    "--obstacles": (int, "number of obstacles (default: random)", ("poisson",)),
    "--coefficient": (
        str,
        "coefficient a: constant, piecewise, lognormal or rough",
        ("poisson",),
    ),
    "--kind": (str, "coefficient kind: piecewise, lognormal or rough", ("darcy",)),
    "--f": (float, "constant forcing f", ("darcy",)),
    "--rtol": (float, "relative residual of the reference solve", ("poisson", "darcy")),
    "--nu": (float, "viscosity", ("navier-stokes",)),
    "--dt": (float, "time step of the simulation", ("navier-stokes",)),
    "--t-final": (float, "final time", ("navier-stokes",)),
    "--record-every": (float, "time between stored snapshots", ("navier-stokes",)),
    "--t-in": (int, "snapshots given as input (the rest are targets)", ("navier-stokes",)),
    "--sim-resolution": (
        int,
        "simulation grid (stored at --resolution by spectral downsampling; default: twice "
        "--resolution when that is given)",
        ("navier-stokes",),
    ),
    "--t-out": (int, "snapshots in the target window", ("navier-stokes",)),
    "--burn-in": (float, "time simulated before the first snapshot", ("navier-stokes",)),
    "--forcing": (str, "forcing: fno, kolmogorov or none", ("navier-stokes",)),
    "--initial": (str, "initial vorticity: grf or decaying", ("navier-stokes",)),
    "--sim-dtype": (str, "simulation dtype: float64 or float32", ("navier-stokes",)),
}


# Flags whose keyword differs from the flag name.
_KEYWORDS = {"--sim-dtype": "dtype"}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_commands(top: argparse._SubParsersAction) -> None:
    """Attach ``generate``, ``info`` and ``merge`` to the ``neurosolve`` subcommands."""
    _add_generate(top)
    _add_info(top)
    _add_merge(top)


def _add_generate(top: argparse._SubParsersAction) -> None:
    from neurosolve.data.generators import GENERATORS

    names = sorted(GENERATORS)
    gen = top.add_parser(
        "generate",
        help="generate a PDE dataset as HDF5 (" + ", ".join(names) + ")",
        description=textwrap.fill(
            "Generate a dataset file. Sample i draws from numpy's default_rng([seed, i]), so "
            "one seed gives byte-identical files and any shard can be made alone. The file "
            "appears under its name only when complete; an interrupted run leaves FILE.part, "
            "and rerunning the same command continues it to the same result.",
            width=88,
        )
        + "\n\ngenerators:\n"
        + "\n".join(f"  {n:15s} {GENERATORS[n].description}" for n in names),
        formatter_class=RawDescriptionHelpFormatter,
    )
    gen.add_argument("generator", metavar="GENERATOR", help="one of: " + ", ".join(names))
    gen.add_argument("--samples", type=int, required=True, metavar="N", help="dataset size")
    gen.add_argument("--resolution", type=int, metavar="R", help="grid cells per axis")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="seed")
    gen.add_argument("--out", required=True, metavar="FILE.h5", help="output file")
    gen.add_argument(
        "--shard",
        metavar="i/n",
        help="write only shard i (0-based) of n; join shards with 'neurosolve merge'",
    )
    gen.add_argument(
        "--chunk",
        type=int,
        metavar="B",
        help="samples computed per call (a batch; default per generator); resume and merge "
        "need the same value",
    )
    gen.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="storage dtype"
    )
    add_device(gen, None, "device for generators that simulate in torch (navier-stokes), e.g. cuda")
    add_overwrite(gen)
    add_quiet(gen, "no progress bar, no summary")
    gen.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other keyword of the sample function (VALUE read as JSON, else as text)",
    )
    _add_generator_options(gen)
    gen.set_defaults(func=_generate)


def _add_generator_options(gen: argparse.ArgumentParser) -> None:
    per_generator = gen.add_argument_group(
        "generator options (default: the generator's own; applies to the generators listed)"
    )
    for flag, (kind, text, which) in _OPTIONS.items():
        per_generator.add_argument(
            flag,
            type=kind,
            default=None,
            metavar={int: "N", float: "X"}.get(kind, "NAME"),
            help=f"{text} [{', '.join(which)}]",
        )


def _add_info(top: argparse._SubParsersAction) -> None:
    info = top.add_parser(
        "info",
        help="show what a dataset file holds",
        description="Print a dataset file's generator, parameters, seed, version, array "
        "shapes and dtype, and min/max/mean of each array.",
    )
    info.add_argument("file", metavar="FILE.h5")
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    info.add_argument("--no-stats", action="store_true", help="skip min/max/mean (fast)")
    info.set_defaults(func=_info)


def _add_merge(top: argparse._SubParsersAction) -> None:
    merge = top.add_parser(
        "merge",
        help="join shard files into one dataset",
        description="Join files written with 'neurosolve generate --shard i/n' into the file "
        "a single process would have written (byte-identical).",
    )
    merge.add_argument("shards", nargs="+", metavar="SHARD.h5")
    merge.add_argument("--out", required=True, metavar="FILE.h5")
    add_overwrite(merge)
    add_quiet(merge, "no progress bar, no summary")
    merge.set_defaults(func=_merge)


def _parse_param(text: str) -> tuple[str, Any]:
    from neurosolve.errors import InvalidInputError

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInputError(f"--param expects KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip().replace("-", "_"), value


def _collect_params(args: argparse.Namespace) -> dict[str, Any]:
    from neurosolve.errors import InvalidInputError

    params: dict[str, Any] = {}
    if args.resolution is not None:
        params["resolution"] = args.resolution
    for flag, (_, _, which) in _OPTIONS.items():
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if args.generator not in which:
            raise InvalidInputError(
                f"option {flag} does not apply to generator {args.generator!r} "
                f"(only to {', '.join(which)})"
            )
        key = _KEYWORDS.get(flag, _dest(flag))
        params[key] = None if flag == "--forcing" and value == "none" else value
    for text in args.param:
        key, value = _parse_param(text)
        params[key] = value
    return params


#: Rough wall seconds of one Navier-Stokes time step per simulated grid point and sample
#: (RK2, float64, one CPU thread; measured at 64^2 and 128^2 on the development machine).
NS_SECONDS_PER_GRID_STEP = 5e-7


def _navier_stokes_defaults(params: dict[str, Any]) -> dict[str, Any]:
    # A small stored grid should not pay for the 128^2 default simulation: without
    # --sim-resolution, simulate at twice the stored resolution (the library's 64 -> 128).
    resolution = params.get("resolution")
    if isinstance(resolution, int) and resolution > 0 and "sim_resolution" not in params:
        params["sim_resolution"] = 2 * resolution
    return params


def navier_stokes_work(params: dict[str, Any], samples: int) -> dict[str, Any]:
    """Time steps, grid and a rough wall time of a Navier-Stokes generation.

    Parameters
    ----------
    params : dict
        Full generator parameters (``GeneratorSpec.resolve``): ``sim_resolution``, ``dt``,
        ``t_final``, ``burn_in``, ``record_every``, ``t_in``, ``t_out``,
        ``include_initial`` and ``scheme`` are read.
    samples : int
        Trajectories to simulate.

    Returns
    -------
    dict
        ``steps`` (per trajectory), ``grid``, ``samples``, ``grid_steps`` (steps x grid
        points x samples) and ``seconds`` (one thread, :data:`NS_SECONDS_PER_GRID_STEP`).

    Examples
    --------
    >>> w = navier_stokes_work({"sim_resolution": 64, "dt": 0.01, "t_final": None,
    ...     "burn_in": 0.0, "record_every": 1.0, "t_in": 10, "t_out": 40}, samples=8)
    >>> w["steps"], w["grid_steps"]
    (5000, 163840000)
    """
    dt = float(params["dt"])
    if params.get("t_final") is not None:
        total = float(params["t_final"])
    else:
        t_out = params.get("t_out") or 40
        snapshots = int(params["t_in"]) + int(t_out) - int(bool(params.get("include_initial")))
        total = float(params.get("burn_in") or 0.0) + snapshots * float(params["record_every"])
    steps = math.ceil(total / dt - 1e-9)
    grid = int(params["sim_resolution"])
    grid_steps = steps * grid * grid * int(samples)
    per = NS_SECONDS_PER_GRID_STEP * (0.5 if params.get("scheme") == "ab2" else 1.0)
    return {
        "steps": steps,
        "grid": grid,
        "samples": int(samples),
        "grid_steps": grid_steps,
        "seconds": grid_steps * per,
    }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_estimate(args: argparse.Namespace, params: dict[str, Any]) -> None:
    import sys

    from neurosolve.data.generators import get_generator

    if args.generator != "navier-stokes" or args.quiet:
        return
    samples = int(args.samples)
    if args.shard:
        index, _, count = str(args.shard).partition("/")
        if count.strip().isdigit() and int(count) > 0:
            samples = math.ceil(samples / int(count))
    w = navier_stokes_work(get_generator(args.generator).resolve(params), samples)
    print(
        f"neurosolve: navier-stokes: {w['samples']} samples x {w['steps']} time steps x "
        f"{w['grid']}^2 grid = {w['grid_steps']:.2e} grid-steps; roughly "
        f"{_duration(w['seconds'])} on one CPU thread (less on a GPU; shrink with "
        "--sim-resolution, --dt, --t-out or --t-final)",
        file=sys.stderr,
        flush=True,
    )


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _generate(args: argparse.Namespace) -> int:
    from neurosolve.data.generate import generate
    from neurosolve.data.generators import get_generator
    from neurosolve.data.store import read_info

    get_generator(args.generator)  # unknown name: one clear line before anything else
    params = _collect_params(args)
    if args.generator == "navier-stokes":
        params = _navier_stokes_defaults(params)
        _print_estimate(args, params)
    path = generate(
        args.generator,
        args.out,
        samples=args.samples,
        seed=args.seed,
        params=params,
        shard=args.shard,
        chunk=args.chunk,
        progress=not args.quiet,
        dtype=args.dtype,
        overwrite=args.overwrite,
        device=args.device,
    )
    if not args.quiet:
        info = read_info(path)
        held = f"samples {info['first']}..{info['first'] + info['count'] - 1} of {info['samples']}"
        print(
            f"wrote {path}: {info['generator']} {held}, x {_shape(info['x_shape'])}, "
            f"y {_shape(info['y_shape'])}, {info['dtype']}, seed {info['seed']}"
        )
    return 0


def format_info(info: dict[str, Any]) -> str:
    """Render :func:`neurosolve.data.store.read_info` output as aligned text.

    Examples
    --------
    >>> text = format_info({"path": "d.h5", "generator": "darcy", "params": {"resolution": 8},
    ...     "seed": 0, "version": "0.1.0", "format_version": 1, "samples": 2, "first": 0,
    ...     "count": 2, "completed": 2, "complete": True, "chunk": 8, "dtype": "float32",
    ...     "x_shape": (2, 1, 8, 8), "y_shape": (2, 1, 8, 8)})
    >>> print(text.splitlines()[0])
    d.h5: neurosolve dataset (format 1), complete
    """
    lines = [
        f"{info['path']}: neurosolve dataset (format {info['format_version']}), "
        + ("complete" if info["complete"] else f"INCOMPLETE ({info['completed']} written)")
    ]
    last = info["first"] + info["count"] - 1
    rows = [
        ("generator", info["generator"]),
        ("parameters", json.dumps(info["params"], sort_keys=True)),
        ("seed", str(info["seed"])),
        ("version", f"neurosolve {info['version']}"),
        (
            "samples",
            f"{info['count']} (samples {info['first']}..{last} of {info['samples']}"
            + (", a shard" if info["count"] != info["samples"] else "")
            + f"; chunk {info['chunk']})",
        ),
    ]
    for name in ("x", "y"):
        text = f"{_shape(info[f'{name}_shape'])} {info['dtype']}"
        stats = info.get(f"{name}_stats")
        if stats:
            text += f"  min {stats['min']:.6g}  max {stats['max']:.6g}  mean {stats['mean']:.6g}"
        rows.append((name, text))
    lines += [f"  {key:<11s}{value}" for key, value in rows]
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from neurosolve.data.store import read_info

    info = read_info(args.file, stats=not args.no_stats)
    if args.json:
        print(json.dumps(info, indent=2, default=list))
    else:
        print(format_info(info))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from neurosolve.data.store import merge, read_info

    path = merge(args.shards, args.out, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        info = read_info(path)
        print(
            f"wrote {path}: {len(args.shards)} shards, {info['count']} samples, "
            f"x {_shape(info['x_shape'])}, y {_shape(info['y_shape'])}"
        )
    return 0
