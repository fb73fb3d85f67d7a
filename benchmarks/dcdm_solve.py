"""DCDM against classical solvers on 3D obstacle problems it was not trained on.

Problems: 3D Poisson (Dirichlet box, 7-point) with random solid obstacles ("mixed" boxes and
balls) at 32^3 and 64^3 (128^3 with --large). The obstacle seeds differ from every geometry
the shipped model was trained or validated on. Every method solves with rtol 1e-6 on the
TRUE residual, measured and rechecked by the neurosolve harness (setup and solve timed
separately, an untimed warm-up first).

Reports per problem: iterations and total time (setup + solve) of DCDM, CG, IC(0)-PCG,
pyamg SA-PCG and RS-PCG, times as ratios to CG in the same process; DCDM's iteration
growth with size against CG's (the paper: DCDM iterations about independent of size).

    python benchmarks/dcdm_solve.py                    # 32^3, 64^3: a few minutes on 2 cores
    python benchmarks/dcdm_solve.py --large            # adds 128^3 (slow on a CPU)
    python benchmarks/dcdm_solve.py --device cuda      # DCDM (and torch CG) on a GPU
    python benchmarks/dcdm_solve.py --sizes 128 --name dcdm_solve_128   # 128^3 alone

Writes benchmarks/results/dcdm_solve.json and dcdm_solve.png (residual vs iteration and
vs time, iterations vs size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from neurosolve.harness import ProblemSpec, Suite, run_suite
from neurosolve.harness.report import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = "dcdm,cg,ic-pcg,amg-sa-pcg,amg-rs-pcg"
#: Geometry seeds far from the training data (training used seeds [0, i] / [1000003, i]).
SEED0 = 7001


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64", help="grid sizes n (n^3 cells)")
    p.add_argument("--large", action="store_true", help="add 128^3 (2M unknowns)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    p.add_argument("--geometries", type=int, default=1, help="obstacle geometries per size")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--maxiter", type=int, default=None)
    p.add_argument("--model", default=None, help="DCDM checkpoint (default: the shipped one)")
    p.add_argument("--k", type=int, default=2, help="DCDM: directions to A-orthogonalize against")
    p.add_argument("--device", default=None, help="torch device for DCDM and torch CG")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="dcdm_solve", help="stem of the JSON/PNG files")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def build_suite(args) -> Suite:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.large and 128 not in sizes:
        sizes.append(128)
    problems = []
    for n in sizes:
        for g in range(args.geometries):
            seed = SEED0 + g
            problems.append(
                ProblemSpec(
                    shape=(n, n, n),
                    obstacles="mixed",
                    seed=seed,
                    name=f"poisson3d-{n}-obstacles-s{seed}",
                )
            )
    return Suite("dcdm-solve", problems=tuple(problems))


def summarize(results, sizes_of) -> dict:
    by = {}
    for r in results.runs:
        by.setdefault(r.problem, {})[r.method] = r
    rows = []
    for problem, runs in by.items():
        base = runs.get("cg")
        row = {"problem": problem, "n": sizes_of[problem], "unknowns": None, "methods": {}}
        for method, r in runs.items():
            row["unknowns"] = r.n
            row["methods"][method] = {
                "iterations": r.iterations,
                "converged": r.converged,
                "true_residual": r.true_residual,
                "setup_seconds": r.setup_seconds,
                "solve_seconds": r.solve_seconds,
                "total_vs_cg": (
                    r.total_seconds / base.total_seconds
                    if base is not None and base.total_seconds > 0
                    else None
                ),
                "error": r.error,
            }
        rows.append(row)
    growth = {}
    for method in results.methods:
        pts = sorted(
            (row["n"], row["methods"][method]["iterations"])
            for row in rows
            if method in row["methods"] and row["methods"][method]["converged"]
        )
        if len(pts) >= 2:
            per_size = {}
            for n, it in pts:
                per_size.setdefault(n, []).append(it)
            mean = {n: float(np.mean(v)) for n, v in per_size.items()}
            lo, hi = min(mean), max(mean)
            growth[method] = {
                "iterations_by_size": mean,
                "growth_factor": mean[hi] / mean[lo] if mean[lo] else None,
                "from": lo,
                "to": hi,
            }
    return {"rows": rows, "iteration_growth": growth}


def plot(results, summary, path: Path) -> None:
    from matplotlib.figure import Figure

    problems = [row["problem"] for row in summary["rows"]]
    fig = Figure(figsize=(4.4 * (len(problems) + 1), 3.6), dpi=110)
    axes = fig.subplots(1, len(problems) + 1, squeeze=False)[0]
    colors = {m: f"C{i}" for i, m in enumerate(results.methods)}
    for ax, problem in zip(axes, problems, strict=False):
        for r in results.runs:
            if r.problem != problem or r.error or not r.residuals:
                continue
            ax.semilogy(
                r.residual_times
                if len(r.residual_times) == len(r.residuals)
                else range(len(r.residuals)),
                r.residuals,
                "-" if r.converged else "--",
                color=colors[r.method],
                label=f"{r.method} ({r.iterations} it)",
            )
        ax.axhline(results.rtol, color="0.5", ls=":", lw=0.8)
        ax.set_title(problem, fontsize=9)
        ax.set_xlabel("wall time since setup start (s)")
        ax.set_ylabel("||b - Ax|| / ||b||")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for method in results.methods:
        pts = sorted(
            (row["n"], row["methods"][method]["iterations"])
            for row in summary["rows"]
            if method in row["methods"]
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), "-o", color=colors[method], label=method)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n (grid n^3)")
    ax.set_ylabel("iterations to rtol")
    ax.set_title("iteration growth with size", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    suite = build_suite(args)
    sizes_of = {p.id: p.shape[0] for p in suite.problems}
    methods = [m for m in args.methods.split(",") if m.strip()]
    dcdm_options = {"k": args.k}
    if args.model:
        dcdm_options["model"] = args.model
    results = run_suite(
        suite,
        methods,
        rtol=args.rtol,
        maxiter=args.maxiter,
        device=args.device,
        method_options={"dcdm": dcdm_options},
        progress=not args.quiet and sys.stderr.isatty(),
    )
    summary = summarize(results, sizes_of)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "dcdm_solve",
        "rtol": args.rtol,
        "device": args.device or "cpu",
        "model": args.model or "shipped (src/neurosolve/models/dcdm3d.pt)",
        "k": args.k,
        "summary": summary,
        "results": results.to_dict(),
    }
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=1, default=str))
    plot(results, summary, args.out / f"{args.name}.png")
    print(markdown_table(results))
    print()
    print("| problem | method | iterations | total time / CG |")
    print("|---|---|---|---|")
    for row in summary["rows"]:
        for method, m in row["methods"].items():
            ratio = "-" if m["total_vs_cg"] is None else f"{m['total_vs_cg']:.2f}"
            print(f"| {row['problem']} | {method} | {m['iterations']} | {ratio} |")
    for method, g in summary["iteration_growth"].items():
        print(
            f"{method}: iterations {g['iterations_by_size']} "
            f"(x{g['growth_factor']:.2f} from {g['from']}^3 to {g['to']}^3)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
