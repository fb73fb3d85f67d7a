"""Torch CG against scipy CG, time per iteration, on the same matrix in the same process.

The matrix is the 7-point Poisson matrix of a closed box (Dirichlet on every face) at 64^3
and 128^3 by default. Three CG runs on it:

- ``scipy``: :func:`scipy.sparse.linalg.cg` on the scipy CSR matrix;
- ``torch-csr``: :func:`neurosolve.solvers.krylov.cg` given the bare CSR matrix, so the
  operator it uses by default for a CSR input (:class:`~neurosolve.solvers.stencil.SparseOperator`,
  torch sparse CSR);
- ``torch-stencil``: the same given the :class:`~neurosolve.data.systems.LinearSystem` with
  its grid, so the matrix-free :class:`~neurosolve.solvers.stencil.StencilOperator`.

Each run does a fixed number ``K`` of iterations (``rtol`` far below reach, ``maxiter``
set) at 1 and at 2 torch threads, ``--repeats`` times, interleaved. Two figures per run:

- ``per_iteration``: the seconds of single iterations (a time stamp per iteration: scipy's
  callback, torch's ``info["times"]``), min and median over every iteration of every
  repeat; on a machine where other jobs run the minimum is an uninterrupted iteration;
- ``amortized``: the whole solve divided by ``K`` (fixed costs such as torch's final
  float64 residual check included), min and median over the repeats.

A matvec section times the products alone: scipy CSR, torch CSR with int64 indices on an
``(n, 1)`` block (the operator before this benchmark), torch CSR with int32 indices as a
vector (``mv``, the operator now), and scipy's product on numpy views of torch memory
(``torch.from_numpy``, no copy). Writes ``benchmarks/results/cg_per_iteration.json``.

    python benchmarks/cg_per_iteration.py                 # 64^3 and 128^3, 5 repeats
    python benchmarks/cg_per_iteration.py --sizes 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

from neurosolve.data import poisson
from neurosolve.harness.records import machine_info, now_utc
from neurosolve.solvers import make_solver

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("scipy", "torch-csr", "torch-stencil")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128", help="grid sizes n (n^3 unknowns)")
    p.add_argument("--threads", default="1,2", help="torch thread counts")
    p.add_argument("--repeats", type=int, default=5, help="repeats of every timing")
    p.add_argument("--iterations", type=int, default=60, help="iterations K per solve")
    p.add_argument("--kinds", default=",".join(KINDS), help="which CG runs")
    p.add_argument("--out", type=Path, default=RESULTS / "cg_per_iteration.json")
    return p.parse_args(argv)


def cg_seconds(
    kind: str, system: Any, b: np.ndarray, iterations: int, threads: int
) -> tuple[float, np.ndarray]:
    """Wall seconds of ``iterations`` CG iterations of run ``kind`` and of each iteration.

    The per-iteration seconds come from a time stamp per iteration: scipy's callback (an
    append, nothing else), torch's own ``info["times"]``. ``torch-*`` builds its solver with
    ``threads`` (the package's thread policy); ``scipy`` ignores it (its CSR product is
    serial). Setup is not included.
    """
    if kind == "scipy":
        stamps: list[float] = []
        t0 = time.perf_counter()
        _, info = spla.cg(
            system.A,
            b,
            rtol=1e-30,
            atol=0.0,
            maxiter=iterations,
            callback=lambda xk: stamps.append(time.perf_counter()),
        )
        seconds = time.perf_counter() - t0
        if info != iterations:  # scipy returns the iteration count when it did not converge
            raise RuntimeError(f"scipy: stopped with info={info} before {iterations} iterations")
        return seconds, np.diff(np.array([t0, *stamps]))
    A = system if kind == "torch-stencil" else system.A
    solver = make_solver("cg", A, threads=threads, stagnation_window=10**6)
    t0 = time.perf_counter()
    result = solver.solve(b, rtol=1e-30, maxiter=iterations)
    seconds = time.perf_counter() - t0
    if result.iterations != iterations:
        raise RuntimeError(f"{kind}: {result.iterations} iterations instead of {iterations}")
    return seconds, np.diff(np.asarray(result.info["times"]))


def _summary(values: Any) -> dict[str, float]:
    values = [float(v) for v in values]
    return {"min": min(values), "median": statistics.median(values)}


def time_per_iteration(
    system: Any, b: np.ndarray, kinds: list[str], threads: list[int], k: int, repeats: int
) -> list[dict[str, Any]]:
    """Seconds per iteration of every (kind, threads), repeats interleaved.

    ``per_iteration_s``: min and median over the single iterations of every repeat (on a
    loaded machine the minimum is an iteration no other job interrupted); ``amortized_s``:
    the whole solve of ``k`` iterations divided by ``k``, min and median over the repeats.
    """
    runs = [(kind, t) for t in threads for kind in kinds]
    totals: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    each: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    for kind, t in runs:  # untimed warm-up of every path
        cg_seconds(kind, system, b, 2, t)
    for _ in range(repeats):
        for kind, t in runs:
            seconds, per = cg_seconds(kind, system, b, k, t)
            totals[(kind, t)].append(seconds / k)
            each[(kind, t)].extend(per.tolist())
    return [
        {
            "kind": kind,
            "threads": t,
            "per_iteration_s": _summary(each[(kind, t)]),
            "amortized_s": _summary(totals[(kind, t)]),
        }
        for kind, t in runs
    ]


def _timeit(fn, repeats: int) -> dict[str, float]:
    fn()
    values = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        values.append(time.perf_counter() - t0)
    return _summary(values)


def time_matvecs(A: Any, threads: list[int], repeats: int) -> list[dict[str, Any]]:
    """Seconds of one product by each route (min and median of ``5 * repeats``)."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(A.shape[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)

        def csr(index):
            return torch.sparse_csr_tensor(
                torch.from_numpy(A.indptr.astype(index)),
                torch.from_numpy(A.indices.astype(index)),
                torch.from_numpy(A.data),
                size=A.shape,
            )

        t64, t32 = csr(np.int64), csr(np.int32)
    routes = {
        "scipy-csr": lambda: A @ x.numpy(),
        "torch-csr-int64-block": lambda: t64 @ x[:, None],
        "torch-csr-int32-mv": lambda: torch.mv(t32, x),
        "scipy-on-torch-memory": lambda: torch.from_numpy(A @ x.numpy()),
    }
    out = []
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for name, fn in routes.items():
                out.append({"route": name, "threads": t, "seconds": _timeit(fn, 5 * repeats)})
    finally:
        torch.set_num_threads(before)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    kinds = [k for k in args.kinds.split(",") if k.strip()]
    report: dict[str, Any] = {
        "created": now_utc(),
        "machine": machine_info().__dict__,
        "load_average": list(os.getloadavg()),
        "repeats": args.repeats,
        "problems": [],
    }
    for n in sizes:
        system = poisson((n, n, n))
        b = np.random.default_rng(1).standard_normal(system.n)
        k = args.iterations
        entry = {
            "problem": f"poisson3d-{n}",
            "n": int(system.n),
            "nnz": int(system.A.nnz),
            "iterations_k": k,
            "cg": time_per_iteration(system, b, kinds, threads, k, args.repeats),
            "matvec": time_matvecs(system.A, threads, args.repeats),
        }
        scipy = {r["threads"]: r for r in entry["cg"] if r["kind"] == "scipy"}
        for r in entry["cg"]:
            ref = scipy[r["threads"]]
            r["ratio_to_scipy"] = {
                key: r[key]["min"] / ref[key]["min"] for key in ("per_iteration_s", "amortized_s")
            }
        report["problems"].append(entry)
        for r in entry["cg"]:
            print(
                f"{entry['problem']} {r['kind']:14s} threads={r['threads']} "
                f"per iteration min {r['per_iteration_s']['min'] * 1e3:.3f} ms "
                f"median {r['per_iteration_s']['median'] * 1e3:.3f} ms "
                f"(x{r['ratio_to_scipy']['per_iteration_s']:.2f} scipy); amortized min "
                f"{r['amortized_s']['min'] * 1e3:.3f} ms "
                f"(x{r['ratio_to_scipy']['amortized_s']:.2f})",
                flush=True,
            )
        for r in entry["matvec"]:
            print(
                f"{entry['problem']} matvec {r['route']:22s} threads={r['threads']} "
                f"min {r['seconds']['min'] * 1e3:.3f} ms "
                f"median {r['seconds']['median'] * 1e3:.3f} ms",
                flush=True,
            )
    report["load_average_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
