"""The size below which a solve runs on one torch thread: torch CG at 1 and 2 threads.

For 7-point Poisson problems from 16^3 to 128^3 (closed box) it times torch CG per iteration
(:func:`cg_per_iteration.time_per_iteration`: the solve of ``K`` iterations divided by ``K``,
its fixed costs included, as a solve pays them; min and median of ``--repeats``, 1 and 2
threads interleaved in one process) with both operators
a solve may use: the CSR matrix (``torch-csr``) and the matrix-free stencil
(``torch-stencil``). The crossover is the smallest size from which on a second thread is
faster for every operator by at least ``--margin`` (default 10%) at every larger size; the
policy's :data:`neurosolve._util.threads.SERIAL_BELOW` is that size's unknown count (one
above the largest size when a second thread never pays). The load average is recorded:
on a machine where other jobs run, a second thread waits for a core and the crossover moves
up. Writes ``benchmarks/results/thread_policy.json``.

    python benchmarks/thread_policy.py                       # 16^3..128^3, 5 repeats
    python benchmarks/thread_policy.py --sizes 16,32 --repeats 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from neurosolve._util.threads import SERIAL_BELOW
from neurosolve.data import poisson
from neurosolve.harness.records import machine_info, now_utc

HERE = Path(__file__).resolve().parent


def _per_iteration_module():
    spec = importlib.util.spec_from_file_location("cg_per_iteration", HERE / "cg_per_iteration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cg_per_iteration"] = module
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="16,24,32,48,64,96,128", help="grid sizes n (n^3)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of every timing")
    p.add_argument("--iterations", type=int, default=20, help="iterations K per solve")
    p.add_argument("--kinds", default="torch-csr,torch-stencil", help="operators to time")
    p.add_argument("--margin", type=float, default=0.1, help="required gain of 2 threads")
    p.add_argument("--out", type=Path, default=HERE / "results" / "thread_policy.json")
    return p.parse_args(argv)


def crossover(rows: list[dict[str, Any]], kinds: list[str], margin: float) -> int | None:
    """Smallest size n from which on 2 threads beat 1 by ``margin`` for every kind."""
    sizes = sorted({r["size"] for r in rows})
    wins = {}
    for n in sizes:
        ratios = [r["ratio_2_to_1"] for r in rows if r["size"] == n and r["kind"] in kinds]
        wins[n] = bool(ratios) and all(q <= 1.0 - margin for q in ratios)
    for i, n in enumerate(sizes):
        if all(wins[m] for m in sizes[i:]):
            return n
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    timing = _per_iteration_module()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k for k in args.kinds.split(",") if k.strip()]
    rows = []
    load_start = list(os.getloadavg())
    for n in sizes:
        system = poisson((n, n, n))
        b = np.random.default_rng(1).standard_normal(system.n)
        runs = timing.time_per_iteration(system, b, kinds, [1, 2], args.iterations, args.repeats)
        for kind in kinds:
            one, two = (
                next(r for r in runs if r["kind"] == kind and r["threads"] == t) for t in (1, 2)
            )
            row = {
                "size": n,
                "unknowns": int(system.n),
                "kind": kind,
                "seconds_1_thread": one["amortized_s"],
                "seconds_2_threads": two["amortized_s"],
                "ratio_2_to_1": two["amortized_s"]["min"] / one["amortized_s"]["min"],
                "load_average": list(os.getloadavg()),
            }
            rows.append(row)
            print(
                f"{n}^3 {kind:13s} 1 thread {one['amortized_s']['min'] * 1e3:8.3f} ms  "
                f"2 threads {two['amortized_s']['min'] * 1e3:8.3f} ms  "
                f"ratio {row['ratio_2_to_1']:.2f}  load {row['load_average'][0]:.1f}",
                flush=True,
            )
    n_cross = crossover(rows, kinds, args.margin)
    serial_below = n_cross**3 if n_cross is not None else (max(sizes) + 1) ** 3
    report = {
        "created": now_utc(),
        "machine": machine_info().__dict__,
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
        "repeats": args.repeats,
        "iterations_k": args.iterations,
        "margin": args.margin,
        "rows": rows,
        "crossover_size": n_cross,
        "serial_below_measured": serial_below,
        "serial_below_in_package": SERIAL_BELOW,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    where = f"{n_cross}^3" if n_cross is not None else f"none up to {max(sizes)}^3"
    print(f"crossover: {where}; SERIAL_BELOW measured {serial_below} (package {SERIAL_BELOW})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
