"""MGPC setup cost, phase by phase, in scipy-CSR-matvec equivalents (issue 13).

The scene is the closed box with an open top of the issue's changing-geometry sequence:
``Grid(boundary="neumann")`` walls, obstacles from ``obstacle_flags(..., "mixed",
boundary_air="top")`` (one AIR layer at the top of axis 0). Per size, the script times in
one process, with pinned threads:

- ``matvec``: one scipy CSR product ``A @ x`` (the unit of every other figure, wall and CPU
  time each divided by the same clock's matvec time);
- ``stencil_read``: :func:`~neurosolve.solvers.stencil.stencil_from_csr`;
- ``operator``: the whole :meth:`StencilOperator.from_matrix` (the read, and the tensors);
- ``coarsen``: the Galerkin hierarchy (``_coarsen``: ``coarsening_axes`` and
  ``galerkin_coarsen`` per level);
- ``network``: the smoother weights and over-correction factors (``_set_smoothers``);
- ``bounds``: the SPD bounds (``_set_bounds``);
- ``coarsest``: the coarsest level's dense matrix and inverse;
- ``build``: the whole ``Hierarchy.build``;
- ``setup``: ``MGPCSolver(...).setup_seconds`` (what a changing-geometry frame pays before
  its first PCG iteration; the input checks of ``prepare_system`` are not part of it; wall
  time only) and ``constructor``: the whole ``MGPCSolver(...)`` call, input checks included.

``--threads N`` is the package's ``threads=N``: the native kernels on N threads, torch's
own pool at one (as ``MGPCSolver`` runs); the unit stays scipy's CSR product, which runs on
one thread whatever N.

Every phase is repeated (``--repeats``, at least 3); min and median are recorded, and each
is divided by the min / median CSR matvec time measured in the same process. The same
script runs on older code (it only uses functions that have existed since the hierarchy
was written), which is how the before/after figures of the report were measured.

    python benchmarks/mgpc_setup.py                       # 32^3, 64^3, 128^3
    python benchmarks/mgpc_setup.py --sizes 32,64 --repeats 5 --name mgpc_setup_small
    python benchmarks/mgpc_setup.py --threads 2 --name mgpc_setup_2threads

Writes benchmarks/results/mgpc_setup.json (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64,128", help="3D sizes (comma-separated)")
    p.add_argument("--repeats", type=int, default=5, help="repeats per phase (>= 3)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="the package's threads: native kernels on this many, torch's pool at one",
    )
    p.add_argument("--seed", type=int, default=7, help="obstacle seed")
    p.add_argument("--model", default=None, help="MGPC checkpoint (default: the shipped one)")
    p.add_argument("--name", default="mgpc_setup", help="stem of the JSON file written")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error("--repeats must be at least 3")
    if args.threads < 1:
        p.error("--threads must be positive")
    return args


def pin_threads(threads: int) -> dict:
    """Pin torch's intra-op threads (and the BLAS/OpenMP environment, for the record)."""
    import torch

    torch.set_num_threads(threads)
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", ""),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", ""),
    }


def scene(n: int, seed: int):
    """The closed box with an open top: Neumann walls, obstacles, an AIR layer on top."""
    from neurosolve.data import obstacle_flags, poisson
    from neurosolve.data.grids import Grid

    flags = obstacle_flags((n, n, n), "mixed", seed, boundary_air="top")
    return poisson(Grid((n, n, n), flags=flags, boundary="neumann"))


def timed(fn: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``repeats`` calls of ``fn`` (after one warm-up call).

    The CPU time (of this process) is recorded next to the wall time: on a machine shared
    with other jobs, a preempted call's wall time grows, its CPU time much less.
    """
    fn()
    times = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    return times


def package_threads(threads: int):
    """The solver's own thread setting: kernels on ``threads``, torch's pool at one.

    ``MGPCSolver`` runs its setup so (``threads=`` of ``solve``); the phases called one by
    one here get the same. On code without the native kernels' thread blocks, torch's count.
    """
    import contextlib

    from neurosolve._util.threads import torch_threads

    try:
        from neurosolve.solvers.native import kernel_threads
    except ImportError:
        return torch_threads(threads)
    stack = contextlib.ExitStack()
    stack.enter_context(kernel_threads(threads))
    stack.enter_context(torch_threads(1))
    return stack


def phases(system, net, repeats: int, threads: int = 1) -> dict[str, list]:
    """Seconds per phase of the MGPC setup of ``system`` (lists of ``repeats`` timings)."""
    from neurosolve._util.threads import torch_threads
    from neurosolve.solvers.mgpc.solver import MGPCSolver

    A = system.A.tocsr()
    x = np.ones(A.shape[0])
    out: dict[str, list] = {}
    out["matvec"] = timed(lambda: A @ x, max(20, repeats))
    with package_threads(threads):
        _setup_phases(system, net, repeats, A, out)

    def construct():
        with torch_threads(threads):  # as solve(threads=...) runs it
            wall = MGPCSolver(system, model=net, history="cheap").setup_seconds
        setups.append((wall, float("nan")))  # setup_seconds is wall time only

    setups: list[tuple[float, float]] = []
    out["constructor"] = timed(construct, repeats)
    out["setup"] = setups[1:]  # the warm-up call's setup is dropped, as every warm-up
    return out


def _setup_phases(system, net, repeats: int, A, out: dict[str, list]) -> None:
    """The phases one by one, into ``out`` (``levels`` too)."""
    import torch

    from neurosolve.solvers.mgpc import hierarchy as hmod
    from neurosolve.solvers.stencil import StencilOperator, stencil_from_csr

    out["stencil_read"] = timed(lambda: stencil_from_csr(A, system.grid), repeats)
    out["operator"] = timed(lambda: StencilOperator.from_matrix(A, system.grid), repeats)
    op = StencilOperator.from_matrix(A, system.grid)
    d, c = op.diagonal[None, None], op.neighbours[None]
    f = op.fluid_mask[None, None].to(d.dtype)
    gamma = hmod.CYCLES[net.cycle]
    from neurosolve.solvers import native

    max_coarse = 64 if native.available() else 512  # MGPCSolver's default on the CPU

    def coarsen():
        return hmod._coarsen(hmod.Level(d, c, f), gamma, max_coarse, 12)

    with torch.no_grad():
        out["coarsen"] = timed(coarsen, repeats)
        levels = coarsen()
        out["network"] = timed(lambda: hmod._set_smoothers(net, levels), repeats)
        out["bounds"] = timed(lambda: hmod._set_bounds(levels), repeats)
        last = levels[-1]

        def coarsest():
            dense = hmod._dense_matrix(last.diagonal, last.couplings, last.fluid)
            return hmod.coarsest_inverse(dense)

        out["coarsest"] = timed(coarsest, repeats)
        build = hmod.Hierarchy.build
        out["build"] = timed(lambda: build(net, d, c, f, max_coarse=max_coarse), repeats)
    out["levels"] = [float(np.prod(lvl.shape)) for lvl in levels]


def summarize(raw: dict[str, list]) -> dict:
    """Min / median seconds and CSR-matvec equivalents of every phase, wall and CPU time."""
    clocks = {}
    for k, clock in enumerate(("wall", "cpu")):
        mv = [t[k] for t in raw["matvec"]]
        mv_min, mv_med = min(mv), statistics.median(mv)
        rows = {}
        for name, pairs in raw.items():
            if name in ("matvec", "levels"):
                continue
            times = [t[k] for t in pairs]
            if any(math.isnan(t) for t in times):
                continue
            rows[name] = {
                "min_seconds": min(times),
                "median_seconds": statistics.median(times),
                "min_matvecs": min(times) / mv_min,
                "median_matvecs": statistics.median(times) / mv_med,
                "repeats": len(times),
            }
        clocks[clock] = {
            "matvec_min_seconds": mv_min,
            "matvec_median_seconds": mv_med,
            "phases": rows,
        }
    return {
        "matvec_repeats": len(raw["matvec"]),
        "level_cells": [int(c) for c in raw["levels"]],
        **clocks,
    }


def git_commit(package: Path) -> str:
    """The commit of the package measured (empty outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = pin_threads(1)  # torch's pool; the kernels get --threads (package_threads)
    threads["package_threads"] = args.threads
    import neurosolve
    from neurosolve.harness.records import machine_info, now_utc
    from neurosolve.solvers.mgpc.solver import load_mgpc_model

    net = load_mgpc_model(args.model)
    package = Path(neurosolve.__file__).resolve().parent
    payload = {
        "benchmark": "mgpc_setup",
        "scene": "closed box, open top (Grid boundary='neumann', boundary_air='top', mixed)",
        "seed": args.seed,
        "repeats": args.repeats,
        "threads": threads,
        "machine": dataclasses.asdict(machine_info()),
        "load_average": list(os.getloadavg()),
        "created": now_utc(),
        "commit": git_commit(package),
        "package": str(package),
        "sizes": {},
    }
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        system = scene(n, args.seed)
        summary = summarize(phases(system, net, args.repeats, args.threads))
        summary["unknowns"] = int(system.n)
        summary["nnz"] = int(system.A.nnz)
        payload["sizes"][str(n)] = summary
        if not args.quiet:
            print(f"{n}^3: {system.n} unknowns; min / median in CSR matvecs (wall | CPU)")
            wall, cpu = summary["wall"], summary["cpu"]
            print(
                f"  {'matvec':13s} {wall['matvec_min_seconds']:.3g} s"
                f" | {cpu['matvec_min_seconds']:.3g} s"
            )
            for name, row in wall["phases"].items():
                crow = cpu["phases"].get(name)
                cpu_text = (
                    f"{crow['min_matvecs']:7.1f} {crow['median_matvecs']:7.1f}"
                    if crow
                    else " " * 15
                )
                print(
                    f"  {name:13s} {row['min_matvecs']:7.1f} {row['median_matvecs']:7.1f}"
                    f" | {cpu_text}   ({row['min_seconds']:.4g} s)"
                )
    payload["load_average_after"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
