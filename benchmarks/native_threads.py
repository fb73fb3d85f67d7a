"""Threads for the native kernels: numba's threading layers, their crossover, and MGPC frames.

The numba kernels of :mod:`neurosolve.solvers.native` run on one thread or, above
``PARALLEL_MIN_CELLS`` written cells, on several through one of numba's threading layers.
This benchmark measures what decides those settings, each threading layer in its own
process (``NUMBA_THREADING_LAYER``; ``OMP_NUM_THREADS`` and the BLAS threads fixed before
torch starts):

1. the 7-point smoothing pass ``u + w (f - A u)`` (float64 and float32) on one thread and
   on ``--threads`` threads, from 8^3 to 128^3 cells: the launch cost of a parallel call
   and the size above which it pays (the crossover behind ``PARALLEL_MIN_CELLS``);
2. the Krylov vector operations (a dot product, a CG step ``x += a p, r -= a q``, a
   float64 -> float32 cast) on the threads against torch's on one thread, 64^3 and 128^3;
3. MGPC-PCG frames (setup + solve, rtol 1e-6) on the closed box with an open top and
   moving spheres of ``benchmarks/anchor.py`` at ``--frame-size``^3, in scipy-CSR-matvec
   equivalents measured in the same process: one thread; ``--threads`` threads as the
   package runs them (kernels on the threads, torch's own pool at one thread); and the
   same with torch's pool at ``--threads`` threads as well (the two pools compete);
4. (``--iteration-sizes``) one MGPC-PCG iteration in CSR matvecs at those grids, on one
   thread and on ``--threads``, from the slope of solves stopped at 2 and 6 iterations.

Times are min and median of ``--repeats`` runs; quote them as ratios (the machine is
shared).

    python benchmarks/native_threads.py                       # every layer that loads
    python benchmarks/native_threads.py --layers tbb --repeats 9
    python benchmarks/native_threads.py --layers tbb --no-frames --iteration-sizes 64,128 \
        --out benchmarks/results/native_threads_iterations.json

Writes benchmarks/results/native_threads.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS = ("tbb", "workqueue", "omp")
SIZES = (8, 16, 24, 32, 48, 64, 96, 128)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default=",".join(LAYERS), help="numba threading layers")
    p.add_argument("--threads", type=int, default=2, help="threads of the parallel runs")
    p.add_argument("--repeats", type=int, default=7, help="repeats per timing (>= 3)")
    p.add_argument("--frame-size", type=int, default=64, help="grid of the MGPC frames")
    p.add_argument("--frames", type=int, default=3, help="frames of the sequence")
    p.add_argument("--no-frames", action="store_true", help="skip part 3")
    p.add_argument(
        "--iteration-sizes", default="", help="part 4 at these grids (comma list), e.g. 64,128"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "native_threads.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 3 or args.threads < 2:
        p.error("--repeats must be >= 3 and --threads >= 2")
    return args


def timed(fn, repeats: int, inner: int = 1) -> dict:
    """min and median seconds of ``fn`` (each sample the mean of ``inner`` calls)."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return {"min": float(np.min(samples)), "median": float(np.median(samples))}


def passes(args, native) -> list[dict]:
    """Part 1: the smoothing pass on one thread and on the parallel entry."""
    import numba

    kernels = native._kernels
    rows = []
    for n in SIZES:
        for dtype in (np.float64, np.float32):
            rng = np.random.default_rng(n)
            d = (6 + rng.random((1, 1, n, n, n))).astype(dtype)
            c = (-rng.random((1, 6, n, n, n))).astype(dtype)
            u, f, w = (rng.random((1, 1, n, n, n)).astype(dtype) for _ in range(3))
            out = np.empty_like(u)
            call = (native.SMOOTHING, True, d, c, u, f, w, out)
            inner = max(1, int(4e6 // n**3))
            numba.set_num_threads(args.threads)
            serial = timed(lambda call=call: kernels["stencil3_serial"](*call), args.repeats, inner)
            par = timed(lambda call=call: kernels["stencil3"](*call), args.repeats, inner)
            rows.append(
                {
                    "n": n,
                    "cells": n**3,
                    "dtype": np.dtype(dtype).name,
                    "serial_s": serial,
                    "parallel_s": par,
                    "speedup_min": serial["min"] / par["min"],
                }
            )
            print(
                f"  pass {n:4d}^3 {np.dtype(dtype).name}: 1 thread {serial['min'] * 1e6:8.1f} us, "
                f"{args.threads} threads {par['min'] * 1e6:8.1f} us "
                f"({serial['min'] / par['min']:.2f}x)",
                flush=True,
            )
    return rows


def crossover(rows: list[dict]) -> dict:
    """Per dtype, the smallest size from which the parallel pass is faster at every size."""
    out = {}
    for dtype in ("float64", "float32"):
        sizes = [r for r in rows if r["dtype"] == dtype]
        first = None
        for r in sizes:
            if r["speedup_min"] > 1.0:
                first = r["cells"] if first is None else first
            else:
                first = None
        out[dtype] = first
    return out


def vectors(args, native, torch) -> list[dict]:
    """Part 2: the Krylov vector operations on the kernel threads against torch's.

    Timed whatever the layer's threshold (a layer whose threshold is above these sizes
    would leave them to torch in a solve: the rows say what the threads would give).
    """
    native._parallel_min_cells()
    threshold, native._min_cells = native._min_cells, 1
    try:
        return _vector_rows(args, native, torch)
    finally:
        native._min_cells = threshold


def _vector_rows(args, native, torch) -> list[dict]:
    rows = []
    for n in (64, 128):
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n**3, generator=g, dtype=torch.float64)
        y = torch.randn(n**3, generator=g, dtype=torch.float64)
        for name, (kernel, reference) in vector_ops(torch, x, y).items():
            with native.kernel_threads(args.threads):
                check = kernel()
                if check is None or check is False:
                    raise RuntimeError(f"the native {name} did not run at {n}^3")
                ours = timed(kernel, args.repeats, 20)
            theirs = timed(reference, args.repeats, 20)
            rows.append(
                {
                    "n": n,
                    "op": name,
                    "native_s": ours,
                    "torch_1_thread_s": theirs,
                    "speedup_min": theirs["min"] / ours["min"],
                }
            )
            print(
                f"  {name:5s} {n}^3: native {ours['min'] * 1e6:7.1f} us, torch "
                f"{theirs['min'] * 1e6:7.1f} us ({theirs['min'] / ours['min']:.2f}x)",
                flush=True,
            )
    return rows


def cg_step(x, y) -> None:
    """torch's form of a CG step (``x += a p``, ``r -= a q``), here on the vectors x, y."""
    y.add_(x, alpha=1e-9)
    y.add_(x, alpha=-1e-9)


def vector_ops(torch, x, y) -> dict:
    """Each operation as (native call, torch's one-thread call) on vectors ``x``, ``y``."""
    from neurosolve.solvers import native_vectors

    return {
        "dot": (lambda: native_vectors.dot(x, y), lambda: torch.vdot(x, y)),
        "step": (lambda: native_vectors.step(1e-9, x, y, x, y), lambda: cg_step(x, y)),
        "cast": (lambda: native_vectors.cast(x, torch.float32), lambda: x.to(torch.float32)),
    }


def frames(args, torch) -> dict:
    """Part 3: MGPC-PCG frames in CSR-matvec equivalents, three thread settings."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from anchor import box_sequence

    from neurosolve.solvers.mgpc.solver import MGPCSolver
    from neurosolve.solvers.registry import make_solver

    systems = box_sequence(args.frame_size, args.frames, 0)
    x = np.ones(systems[0].n)
    matvec = timed(lambda: systems[0].A @ x, args.repeats, 20)["min"]
    settings = {
        "1 thread": (1, False),
        f"{args.threads} threads": (args.threads, False),
        f"{args.threads} threads, torch pool too": (args.threads, True),
    }
    original = MGPCSolver._threads
    out: dict = {"csr_matvec_s": matvec, "settings": {}}
    for label, (threads, both) in settings.items():
        if both:  # the solver's pools as they were before: torch at the same count
            MGPCSolver._threads = lambda self: contextlib.nullcontext()
        try:
            for precision in ("full", "mixed"):
                rows = []
                for rep in range(args.repeats + 1):
                    for s in systems:
                        t0 = time.perf_counter()
                        solver = make_solver(
                            "mgpc-pcg", s, threads=threads, precision=precision, history="cheap"
                        )
                        t1 = time.perf_counter()
                        result = solver.solve(s.b, rtol=1e-6)
                        t2 = time.perf_counter()
                        if rep and not result.converged:
                            raise RuntimeError(f"{s.name} did not converge ({label})")
                        if rep:  # the first round warms the caches
                            rows.append((t1 - t0, t2 - t1, result.iterations))
                setup, solve = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
                total = setup + solve
                entry = {
                    "iterations": sorted({r[2] for r in rows}),
                    "setup_s": {"min": float(setup.min()), "median": float(np.median(setup))},
                    "solve_s": {"min": float(solve.min()), "median": float(np.median(solve))},
                    "frame_s": {"min": float(total.min()), "median": float(np.median(total))},
                    "frame_matvecs_median": float(np.median(total) / matvec),
                    "setup_matvecs_median": float(np.median(setup) / matvec),
                }
                out["settings"].setdefault(label, {})[precision] = entry
                print(
                    f"  {label:28s} {precision:5s}: frame {entry['frame_s']['median']:.4f} s "
                    f"(setup {entry['setup_s']['median']:.4f}, solve "
                    f"{entry['solve_s']['median']:.4f}; {entry['frame_matvecs_median']:.0f} "
                    f"CSR matvecs), iterations {entry['iterations']}",
                    flush=True,
                )
        finally:
            MGPCSolver._threads = original
    return out


def iterations(args) -> list[dict]:
    """Part 4: one MGPC-PCG iteration in CSR matvecs, by the slope of solves of 2 and 6.

    Solves to an unreachable tolerance stopped at 2 and at 6 iterations; the difference over
    4 is the cost of an iteration without the solve's fixed costs (min and median of
    ``--repeats`` solves on each of 2 frames), divided by the CSR matvec of the same matrix.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from anchor import box_sequence

    from neurosolve.solvers.registry import make_solver

    rows = []
    for n in (int(v) for v in args.iteration_sizes.split(",") if v):
        systems = box_sequence(n, 2, 0)
        x = np.ones(systems[0].n)
        matvec = timed(lambda systems=systems, x=x: systems[0].A @ x, args.repeats, 10)["min"]
        for threads in (1, args.threads):
            for precision in ("full", "mixed"):
                solvers = [
                    make_solver("mgpc-pcg", s, precision=precision, threads=threads)
                    for s in systems
                ]
                clock = {}
                for stop in (2, 6):
                    samples = []
                    for _ in range(args.repeats):
                        for s, solver in zip(systems, solvers, strict=True):
                            t0 = time.perf_counter()
                            solver.solve(s.b, rtol=1e-14, maxiter=stop)
                            samples.append(time.perf_counter() - t0)
                    clock[stop] = (float(np.min(samples)), float(np.median(samples)))
                per = [(clock[6][k] - clock[2][k]) / 4 / matvec for k in (0, 1)]
                rows.append(
                    {
                        "n": n,
                        "threads": threads,
                        "precision": precision,
                        "csr_matvec_s": matvec,
                        "iteration_matvecs": {"min": per[0], "median": per[1]},
                    }
                )
                print(
                    f"  iteration {n}^3, {threads} thread(s), {precision}: {per[0]:.1f} / "
                    f"{per[1]:.1f} CSR matvecs (min / median)",
                    flush=True,
                )
    return rows


def worker(args) -> dict:
    """One threading layer's measurements (this process runs that layer)."""
    import numba
    import torch

    from neurosolve.solvers import native

    if not native.available():
        raise RuntimeError("the native kernels are not available (numba missing?)")
    torch.set_num_threads(1)
    numba.set_num_threads(args.threads)
    layer = numba.threading_layer()
    print(f"layer {layer}: {args.threads} threads", flush=True)
    rows = passes(args, native)
    result = {
        "layer": layer,
        "threads": args.threads,
        "parallel_min_cells": native.PARALLEL_MIN_CELLS.get(layer),
        "passes": rows,
        "crossover_cells": crossover(rows),
        "vectors": vectors(args, native, torch),
    }
    if not args.no_frames:
        result["frames"] = frames(args, torch)
    if args.iteration_sizes:
        result["iterations"] = iterations(args)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    from neurosolve.harness.records import machine_info, now_utc

    payload = {
        "benchmark": "native_threads",
        "created": now_utc(),
        "machine": dataclasses.asdict(machine_info()),
        "threads": args.threads,
        "repeats": args.repeats,
        "frame_size": args.frame_size,
        "loadavg_start": list(os.getloadavg()),
        "layers": {},
    }
    for layer in args.layers.split(","):
        env = {
            **os.environ,
            "NUMBA_THREADING_LAYER": layer,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        command = [sys.executable, __file__, *(argv or sys.argv[1:]), "--worker", layer]
        print(f"== {layer}", flush=True)
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = run.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        if run.returncode != 0 or not lines:
            tail = run.stderr.strip().splitlines()[-1:] or ["no output"]
            print(f"  {layer}: not measured ({tail[0]})", flush=True)
            payload["layers"][layer] = {"error": tail[0]}
            continue
        payload["layers"][layer] = json.loads(lines[-1])
    payload["loadavg_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
