"""The stencil kernel and the MGPC cycle against scipy's CSR matvec: eager, native, compiled.

Scenes: the closed box with an open top of benchmarks/mgpc.py's sequences (Neumann walls,
the top layer AIR, mixed obstacles; ``obstacle_flags(..., boundary_air="top")``), at 64^3
and 128^3. Every timing is a ratio to scipy's CSR matvec ``A @ x`` (float64) measured in the
same process, min and median of ``--repeats`` runs, for each thread count in its own process
(``OMP_NUM_THREADS`` and the BLAS threads fixed before torch starts). Three backends of the
package's kernels:

- ``eager``: torch operations only (native kernels and compiling off);
- ``native``: the numba loops of :mod:`neurosolve.solvers.native` (the CPU default);
- ``compiled``: ``NEUROSOLVE_COMPILE=1`` (inductor for large fields; below its size limit
  the native loops), with the product alone also timed under inductor only.

Parts:

1. one stencil product ``A u`` per backend and scipy CSR, float64 and float32;
2. one MGPC application (the cycle, on the PCG's layout) and one MGPC-PCG iteration
   (``history="cheap"``, rtol 1e-10), precision ``"full"`` (float64) and ``"mixed"``
   (float32 cycle in float64 flexible CG), per backend;
3. first-solve times: a process with empty caches times its first setup + solve, native
   (numba compiling its loops) and then compiled (inductor), each against the same
   repeated; a second process with the caches filled does the same (the cache hits).

    python benchmarks/stencil_kernel.py                      # 64^3 and 128^3, 1 and 2 threads
    python benchmarks/stencil_kernel.py --sizes 64 --threads 1 --repeats 5

Writes benchmarks/results/stencil_kernel.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
RTOL = 1e-10


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128", help="3D grid sizes (comma-separated)")
    p.add_argument("--threads", default="1,2", help="thread counts, one process each")
    p.add_argument("--repeats", type=int, default=7, help="repeats per timing (>= 5)")
    p.add_argument("--seed", type=int, default=0, help="obstacle seed of the scene")
    p.add_argument("--out", type=Path, default=RESULTS / "stencil_kernel.json")
    p.add_argument("--worker", choices=("cold", "warm"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def scene(n: int, seed: int):
    """The closed box with an open top and obstacles, ``n^3`` cells (mgpc_setup.py's scene)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mgpc_setup import scene as open_top_box

    return open_top_box(n, seed)


def timed(fn, repeats: int) -> dict:
    """Min and median seconds of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"min": float(np.min(times)), "median": float(np.median(times))}


def ratio(t: dict, unit: dict) -> dict:
    return {"min": t["min"] / unit["min"], "median": t["median"] / unit["median"]}


BACKENDS = ("eager", "native", "compiled")


@contextlib.contextmanager
def backend(name: str):
    """Switch the package's kernels to one backend (see the module), then back."""
    from neurosolve.solvers import native
    from neurosolve.solvers.compiled import set_compile

    use_native, use_compile = {
        "eager": (False, False),
        "native": (True, False),
        "compiled": (True, True),
        "inductor": (False, True),  # the product alone under inductor
    }[name]
    before = native.set_native(use_native), set_compile(use_compile)
    try:
        yield
    finally:
        native.set_native(before[0])
        set_compile(before[1])


def product_part(system, repeats: int) -> dict:
    """One stencil product per backend (and inductor alone), scipy CSR; float64 and float32."""
    import torch

    from neurosolve.solvers.stencil import StencilOperator

    out = {}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).replace("torch.", "")
        A = system.A.astype(np.float64 if dtype == torch.float64 else np.float32).tocsr()
        x = np.random.default_rng(1).standard_normal(system.n).astype(A.dtype)
        op = StencilOperator.from_system(system, dtype=dtype)
        v = op.to_internal(torch.as_tensor(x).reshape(-1, 1))
        rec = {"csr_seconds": timed(lambda A=A, x=x: A @ x, repeats)}
        with torch.no_grad():
            with backend("eager"):
                ref = op.apply_internal(v)
            scale = float(ref.abs().max())
            for kind in ("eager", "native", "inductor"):
                with backend(kind):
                    t0 = time.perf_counter()
                    got = op.apply_internal(v)
                    first = time.perf_counter() - t0
                    t = timed(lambda op=op, v=v: op.apply_internal(v), repeats)
                rec[f"{kind}_seconds"] = t
                rec[f"{kind}_first_call_seconds"] = first
                rec[f"{kind}_over_csr"] = ratio(t, rec["csr_seconds"])
                rec[f"{kind}_vs_eager_max_difference"] = float((got - ref).abs().max()) / scale
        out[name] = rec
    return out


def mgpc_part(system, repeats: int, csr: dict) -> dict:
    """One MGPC application and one MGPC-PCG iteration per precision and backend."""
    import torch

    from neurosolve.solvers.mgpc import MGPCSolver

    b = np.random.default_rng(2).standard_normal(system.n)
    out = {}
    for precision in ("full", "mixed"):
        rec = {}
        for kind in BACKENDS:
            with backend(kind):
                t0 = time.perf_counter()
                solver = MGPCSolver(system, history="cheap", precision=precision)
                setup = time.perf_counter() - t0
                op, M = solver.pcg.op, solver.preconditioner
                r = op.to_internal(torch.as_tensor(b).reshape(-1, 1))
                apply = timed(lambda M=M, r=r: M.internal(r, True), repeats)
                results = [solver.solve(b, rtol=RTOL) for _ in range(repeats)]
            per_it = [res.solve_seconds / max(res.iterations, 1) for res in results]
            it = {"min": float(np.min(per_it)), "median": float(np.median(per_it))}
            last = results[-1]
            true = float(np.linalg.norm(b - system.A @ last.x) / np.linalg.norm(b))
            rec[kind] = {
                "setup_seconds": setup,
                "apply_seconds": apply,
                "apply_over_csr": ratio(apply, csr),
                "iteration_seconds": it,
                "iteration_over_csr": ratio(it, csr),
                "iterations": [res.iterations for res in results],
                "converged": bool(last.converged),
                "true_relative_residual": true,
            }
        rec["levels"] = solver.hierarchy.num_levels
        rec["cycle_stencil_products"] = solver.hierarchy.matvec_equivalents()
        out[precision] = rec
    return out


def first_solve(system) -> dict:
    """Setup + solve of a process's first MGPC-PCG solve, then the same again, per backend.

    Native first (in a cold process: numba compiles its loops), then compiled (inductor
    compiles; the native loops are loaded by then).
    """
    from neurosolve.solvers.mgpc import MGPCSolver

    b = np.ones(system.n)
    out = {}
    for kind in ("native", "compiled"):
        times = []
        with backend(kind):
            for _ in range(2):
                t0 = time.perf_counter()
                solver = MGPCSolver(system, history="cheap")
                solver.solve(b, rtol=RTOL)
                times.append(time.perf_counter() - t0)
        out[kind] = {"first_seconds": times[0], "again_seconds": times[1]}
    return out


def worker(args) -> dict:
    import torch

    from neurosolve.harness.records import machine_info
    from neurosolve.solvers import stencil

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    record = {"threads": threads, "load_average_start": os.getloadavg()}
    record["first_solve"] = {"size": min(sizes), **first_solve(scene(min(sizes), args.seed))}
    kernels = [stencil.PRODUCT, stencil.RESIDUAL, stencil.SMOOTHING_STEP]
    record["kernel_first_call_seconds"] = {k.name: k.compile_seconds for k in kernels}
    if args.worker == "warm":
        for n in sizes:
            system = scene(n, args.seed)
            products = product_part(system, args.repeats)
            csr = products["float64"]["csr_seconds"]
            record[f"{n}^3"] = {
                "unknowns": system.n,
                "product": products,
                "mgpc": mgpc_part(system, args.repeats, csr),
            }
    record["load_average_end"] = os.getloadavg()
    record["machine"] = dataclasses.asdict(machine_info())
    return record


def run_worker(kind: str, threads: int, cache: str, args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "inductor")
    env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")  # cold: numba compiles too
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [sys.executable, __file__, "--worker", kind, "--sizes", args.sizes]
        cmd += ["--repeats", str(args.repeats), "--seed", str(args.seed), "--out", tmp.name]
        subprocess.run(cmd, env=env, check=True)
        return json.loads(Path(tmp.name).read_text())


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.repeats < 5:
        raise SystemExit("--repeats must be at least 5")
    if args.worker:
        args.out.write_text(json.dumps(worker(args), indent=2))
        return 0
    from neurosolve.harness.records import now_utc

    runs = []
    for threads in (int(t) for t in args.threads.split(",")):
        with tempfile.TemporaryDirectory(prefix="neurosolve-inductor-") as cache:
            cold = run_worker("cold", threads, cache, args)  # empty cache: compiles
            warm = run_worker("warm", threads, cache, args)  # a second process: cache hit
        runs.append({"threads": threads, "cold_process": cold, "second_process": warm})
        print(json.dumps(summary(warm, cold), indent=1))
    result = {"created": now_utc(), "rtol": RTOL, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


def summary(warm: dict, cold: dict) -> dict:
    """The figures people read: ratios to the CSR matvec (median), compile times."""
    out = {
        "threads": warm["threads"],
        "cold_process_first_solve": cold["first_solve"],
        "second_process_first_solve": warm["first_solve"],
    }
    for key, rec in warm.items():
        if not key.endswith("^3"):
            continue
        out[key] = {
            "product_over_csr": {
                dt: {
                    kind: p[f"{kind}_over_csr"]["median"]
                    for kind in ("eager", "native", "inductor")
                }
                for dt, p in rec["product"].items()
            },
            "mgpc": {
                prec: {
                    kind: {
                        "apply_over_csr": m[kind]["apply_over_csr"]["median"],
                        "iteration_over_csr": m[kind]["iteration_over_csr"]["median"],
                        "iterations": m[kind]["iterations"][0],
                    }
                    for kind in BACKENDS
                }
                for prec, m in rec["mgpc"].items()
            },
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
