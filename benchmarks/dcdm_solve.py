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

``--acceptance`` runs the acceptance tables instead (DCDM and CG only, one process, one
thread), on two scene families none of the models saw in training:

- ``open-top``: a closed box with solid walls (zero flux) and an open top (AIR top layer),
  random solid obstacles, built by :func:`neurosolve.solvers.dcdm.ritz.scene_system` (the
  DCDM paper's smoke-in-a-box setting), ``--open-top`` scenes per size;
- ``obstacles3d``: the project's Dirichlet-box obstacle problems (``ProblemSpec`` with
  ``obstacles`` ``boxes`` / ``mixed`` as in the ``obstacles3d`` suite) at every size
  (obstacles are drawn in unit-cube coordinates: the same scene at every resolution).

It reports DCDM / CG iterations per scene and size, DCDM's growth from the smallest to the
largest size, and with ``--cost N`` the CPU time of one DCDM iteration in scipy CSR
matvecs of the same matrix at N^3 (min and median of ``--repeats`` timings)::

    python benchmarks/dcdm_solve.py --acceptance --sizes 32,64 --cost 64
    python benchmarks/dcdm_solve.py --acceptance --models shipped,my.pt --sizes 32
    python benchmarks/dcdm_solve.py --acceptance --sizes 128 --open-top 1 \\
        --obstacles mixed --name dcdm_acceptance_128

Writes benchmarks/results/dcdm_acceptance.json (or ``--name``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurosolve.harness import ProblemSpec, Suite, run_suite
from neurosolve.harness.report import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_METHODS = "dcdm,cg,ic-pcg,amg-sa-pcg,amg-rs-pcg"
#: Geometry seeds far from the training data (training used seeds [0, i] / [1000003, i]).
SEED0 = 7001
#: Seeds of the unseen open-top acceptance scenes.
SCENE_SEED0 = 9001


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
    p.add_argument("--name", default=None, help="stem of the JSON/PNG files")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--acceptance", action="store_true", help="the acceptance tables")
    p.add_argument("--models", default="shipped", help="acceptance: shipped or paths, comma-sep")
    p.add_argument("--open-top", type=int, default=2, help="acceptance: open-top scenes/size")
    p.add_argument("--obstacles", default="boxes,mixed", help="acceptance: obstacles3d kinds")
    p.add_argument("--cost", type=int, default=0, help="acceptance: cost at N^3 (0: none)")
    p.add_argument("--repeats", type=int, default=5, help="acceptance: cost repeats")
    args = p.parse_args(argv)
    if args.name is None:
        args.name = "dcdm_acceptance" if args.acceptance else "dcdm_solve"
    return args


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
    growth_by_method = {}
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
            growth_by_method[method] = {
                "iterations_by_size": mean,
                "growth_factor": mean[hi] / mean[lo] if mean[lo] else None,
                "from": lo,
                "to": hi,
            }
    return {"rows": rows, "iteration_growth": growth_by_method}


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


def scenes(n: int, geometries: int, obstacles: list[str]):
    """``(family, name, system)`` of every test scene at size ``n``."""
    from neurosolve.data.rhs import make_rhs
    from neurosolve.harness import ProblemSpec
    from neurosolve.solvers.dcdm.ritz import scene_system

    shape = (n, n, n)
    for g in range(geometries):
        seed = SCENE_SEED0 + g
        system = scene_system(shape, "open-top", np.random.default_rng([seed, 1]), geometry="mixed")
        system.b = make_rhs(system, "random", np.random.default_rng([seed, 2]))
        yield "open-top", f"open-top-s{seed}", system
    for kind in obstacles:
        spec = ProblemSpec(shape=shape, obstacles=kind)
        yield "obstacles3d", spec.id, spec.build()


def iterations(system, model, rtol: float, maxiter: int) -> dict:
    """DCDM (with ``model``) and CG on one system."""
    from neurosolve.solvers import solve
    from neurosolve.solvers.dcdm.solver import DCDMSolver

    cg = solve(system, method="cg", rtol=rtol, maxiter=maxiter)
    solver = DCDMSolver(system, model=model)
    start = time.perf_counter()
    dc = solver.solve(system.b, rtol=rtol, maxiter=maxiter)
    return {
        "cg": cg.iterations,
        "cg_converged": bool(cg.converged),
        "dcdm": dc.iterations,
        "dcdm_converged": bool(dc.converged),
        "dcdm_seconds": time.perf_counter() - start,
        "cg_over_dcdm": cg.iterations / max(dc.iterations, 1),
    }


def iteration_cost(n: int, model, repeats: int) -> dict:
    """One DCDM iteration (network direction + 2 stencil matvecs + orthogonalization) in CSR
    matvecs of the same matrix, min and median over ``repeats`` timings in this process."""
    from neurosolve.solvers.dcdm.solver import DCDMSolver

    system = next(s for fam, _, s in scenes(n, 1, []) if fam == "open-top")
    solver = DCDMSolver(system, model=model)
    x = np.random.default_rng(0).standard_normal(system.n)
    A = system.A.tocsr()

    def matvec_seconds() -> float:
        start = time.perf_counter()
        for _ in range(20):
            A @ x
        return (time.perf_counter() - start) / 20

    def iteration_seconds() -> float:
        result = solver.solve(system.b, rtol=0.0, atol=0.0, maxiter=6)
        return result.solve_seconds / max(result.iterations, 1)

    matvec_seconds(), iteration_seconds()  # warm-up
    mv, it = [], []
    for _ in range(repeats):
        mv.append(matvec_seconds())
        it.append(iteration_seconds())
    ratios = np.array(it) / np.array(mv)
    return {
        "n": n,
        "csr_matvec_seconds": {"min": min(mv), "median": float(np.median(mv))},
        "dcdm_iteration_seconds": {"min": min(it), "median": float(np.median(it))},
        "iteration_in_matvecs": {"min": float(ratios.min()), "median": float(np.median(ratios))},
    }


def growth(rows: list[dict], family: str) -> float | None:
    by_n: dict[int, list[int]] = {}
    for row in rows:
        if row["family"] == family and row["dcdm_converged"]:
            by_n.setdefault(row["n"], []).append(row["dcdm"])
    if len(by_n) < 2:
        return None
    lo, hi = min(by_n), max(by_n)
    return float(np.mean(by_n[hi]) / np.mean(by_n[lo]))


def acceptance(args) -> int:
    """The acceptance tables (see the module notes)."""
    from neurosolve.solvers.dcdm.solver import load_dcdm_model

    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    kinds = [k for k in args.obstacles.split(",") if k.strip()]
    maxiter = args.maxiter or 2000
    payload: dict = {"benchmark": "dcdm_acceptance", "rtol": args.rtol, "threads": 1}
    payload["models"] = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = load_dcdm_model(None if name == "shipped" else name)
        rows = []
        for n in sizes:
            for family, scene, system in scenes(n, args.open_top, kinds):
                row = {"family": family, "scene": scene, "n": n}
                row.update(iterations(system, model, args.rtol, maxiter))
                rows.append(row)
                print(
                    f"| {name} | {scene} | {n}^3 | {row['dcdm']} | {row['cg']} | "
                    f"{row['cg_over_dcdm']:.1f} |",
                    flush=True,
                )
        entry = {
            "config": model.config() if hasattr(model, "config") else None,
            "rows": rows,
            "growth": {f: growth(rows, f) for f in ("open-top", "obstacles3d")},
        }
        if args.cost:
            entry["cost"] = iteration_cost(args.cost, model, args.repeats)
            cost = entry["cost"]["iteration_in_matvecs"]
            print(f"{name}: one iteration at {args.cost}^3 = {cost} CSR matvecs")
        print(f"{name}: DCDM iteration growth {entry['growth']}")
        payload["models"][name] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=1, default=str))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.acceptance:
        return acceptance(args)
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
