"""Time to solution over a sequence of changing systems: DCDM against classical solvers.

In a fluid simulation the pressure matrix changes every time step (obstacles move), so a
method pays its setup on every frame: pyamg rebuilds its hierarchy, IC(0) refactorizes,
while DCDM only rebuilds its matrix-free stencil (its network is trained once). This
benchmark solves 10 consecutive 3D Poisson systems with moving spherical obstacles
(harness SequenceSpec), rtol 1e-6 on the true residual, a fresh setup every frame, and
reports the total setup, solve and time per method, as ratios to CG in the same process.

    python benchmarks/dcdm_sequence.py                 # 10 frames at 32^3 (a few minutes)
    python benchmarks/dcdm_sequence.py --size 64       # larger frames
    python benchmarks/dcdm_sequence.py --device cuda   # DCDM (and torch CG) on a GPU

Writes benchmarks/results/dcdm_sequence.json and dcdm_sequence.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurosolve.harness import run_sequence
from neurosolve.harness.records import BenchmarkResults, machine_info, now_utc
from neurosolve.harness.report import sequence_table
from neurosolve.harness.suites import SequenceSpec

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = "dcdm,cg,ic-pcg,amg-sa-pcg,amg-rs-pcg"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="grid size n (n^3 cells)")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=7101, help="seed of the obstacle trajectories")
    p.add_argument("--model", default=None, help="DCDM checkpoint (default: the shipped one)")
    p.add_argument("--device", default=None, help="torch device for DCDM and torch CG")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def plot(records, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=110)
    ax1, ax2 = fig.subplots(1, 2)
    for i, rec in enumerate(records):
        total, xs, ys = 0.0, [0], [0.0]
        for k, f in enumerate(rec.frames):
            total += f.total_seconds
            xs.append(k + 1)
            ys.append(total)
        ax1.plot(xs, ys, "-o" if rec.converged else "--x", ms=3, color=f"C{i}", label=rec.method)
    ax1.set_xlabel("frames solved")
    ax1.set_ylabel("cumulative setup + solve (s)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    names = [r.method for r in records]
    setup = [r.setup_seconds for r in records]
    solve = [r.solve_seconds for r in records]
    ax2.bar(names, setup, label="setup", color="0.6")
    ax2.bar(names, solve, bottom=setup, label="solve", color="C0")
    ax2.set_ylabel("total over all frames (s)")
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle("moving obstacles: fresh setup every frame")
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = SequenceSpec(shape=(args.size,) * 3, frames=args.frames, seed=args.seed)
    systems = spec.build()
    methods = [m for m in args.methods.split(",") if m.strip()]
    options = {"dcdm": {"model": args.model}} if args.model else {}
    records = run_sequence(
        systems,
        methods,
        name=spec.id,
        rtol=args.rtol,
        device=args.device,
        method_options=options,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    base = next((r for r in records if r.method == "cg"), None)
    summary = {}
    for r in records:
        summary[r.method] = {
            "converged_all": r.converged,
            "iterations": r.iterations,
            "setup_seconds": r.setup_seconds,
            "solve_seconds": r.solve_seconds,
            "total_seconds": r.total_seconds,
            "total_vs_cg": r.total_seconds / base.total_seconds if base else None,
        }
    results = BenchmarkResults(
        suite=spec.id,
        rtol=args.rtol,
        methods=methods,
        machine=machine_info(args.device),
        sequences=records,
        created=now_utc(),
        options={"model": args.model, "device": args.device},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "dcdm_sequence",
        "sequence": spec.id,
        "unknowns_per_frame": [s.n for s in systems],
        "summary": summary,
        "results": results.to_dict(),
    }
    (args.out / "dcdm_sequence.json").write_text(json.dumps(payload, indent=1, default=str))
    plot(records, args.out / "dcdm_sequence.png")
    print(sequence_table(results))
    print()
    print("| method | all converged | iterations per frame | setup s | solve s | total / CG |")
    print("|---|---|---|---:|---:|---:|")
    for method, s in summary.items():
        ratio = "-" if s["total_vs_cg"] is None else f"{s['total_vs_cg']:.2f}"
        print(
            f"| {method} | {s['converged_all']} | {s['iterations']} | "
            f"{s['setup_seconds']:.3g} | {s['solve_seconds']:.3g} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
