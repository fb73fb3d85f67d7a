"""MGPC (learned SPD multigrid preconditioner) against CG, pyamg RS/SA-PCG and DCDM.

Three parts, rtol 1e-6 on the true residual, every method through the harness:

1. 3D Poisson on obstacle geometries NOT seen in training (harness seeds 9001..), 32^3 and
   64^3 (128^3 with --large): iterations, setup and solve seconds, the condition estimate
   of the preconditioned operator (CG Lanczos coefficients), and the cost of one MGPC-PCG
   iteration in matrix-vector products (counted, and timed against one stencil product).
2. The 10-frame moving-obstacle sequence of the DCDM benchmark (harness ``SequenceSpec``,
   the same seed as benchmarks/dcdm_sequence.py): total setup + solve time per method with
   a fresh setup every frame.
3. 2D variable coefficients with contrast 1e2 and 1e4 (128^2): iterations against pyamg.
4. Anisotropic problems (semi-coarsening): 2D 128^2 with cell aspect ratios 1:3 and 1:10,
   3D 64^3 obstacles with 1:1:4, and layered media (coefficient 1 and 1e-3 in alternating
   layers: 4 cells thick at 128^2, 3 at 48^3); iterations against pyamg.
5. (``--parts ablation``) what the learning and the W-cycle contribute: iterations of the
   shipped model against its own weights in a V-cycle and against the untrained network
   (the initialization: theta = 1.7 everywhere, s = 1.3), on the problems of parts 1 and 3.

Timings are quoted as ratios to CG measured in the same process.

    python benchmarks/mgpc.py                  # 32^3, 64^3, sequence at 32^3, 2D, anisotropic
    python benchmarks/mgpc.py --large          # adds 128^3
    python benchmarks/mgpc.py --sizes 128 --parts 3d --name mgpc_128   # only 128^3
    python benchmarks/mgpc.py --device cuda    # torch methods on a GPU
    python benchmarks/mgpc.py --parts ablation --sizes 32,64,128 --name mgpc_ablation

Writes benchmarks/results/mgpc.json and mgpc.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from neurosolve.harness import run_sequence
from neurosolve.harness.records import machine_info, now_utc
from neurosolve.harness.runner import run_problem
from neurosolve.harness.suites import ProblemSpec, SequenceSpec

RESULTS = Path(__file__).resolve().parent / "results"
CHEAP = {"history": "cheap"}  # no extra residual products inside timed solves


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64", help="3D sizes (comma-separated)")
    p.add_argument("--large", action="store_true", help="add 128^3")
    p.add_argument("--size-2d", type=int, default=128)
    p.add_argument("--sequence-size", type=int, default=32)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--model", default=None, help="MGPC checkpoint (default: the shipped one)")
    p.add_argument("--device", default=None, help="torch device for mgpc-pcg, cg and dcdm")
    p.add_argument("--no-dcdm", action="store_true", help="leave DCDM out")
    p.add_argument(
        "--parts",
        default="3d,sequence,2d,anisotropic",
        help="parts to run (comma-separated): 3d, sequence, 2d, anisotropic, ablation",
    )
    p.add_argument("--name", default="mgpc", help="stem of the JSON/PNG files written")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def methods_and_options(args) -> tuple[list[str], dict[str, dict]]:
    methods = ["mgpc-pcg", "cg", "amg-rs-pcg", "amg-sa-pcg"]
    if not args.no_dcdm:
        from neurosolve.checkpoint import shipped_path

        if shipped_path("dcdm").is_file():
            methods.append("dcdm")
    options = {m: dict(CHEAP) for m in methods if m != "dcdm"}
    if args.model:
        options["mgpc-pcg"]["model"] = args.model
    return methods, options


def matvec_seconds(system, device, repeats: int = 20) -> float:
    """Median seconds of one stencil product ``A x`` (the unit of iteration cost)."""
    import torch

    from neurosolve.solvers.stencil import StencilOperator

    op = StencilOperator.from_system(system, device=device)
    x = torch.ones(system.n, dtype=torch.float64, device=op.device)
    v = op.to_internal(x.reshape(-1, 1))
    times = []
    for _ in range(repeats):
        if op.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        op.apply_internal(v)
        if op.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def record_dict(rec) -> dict:
    return {
        "method": rec.method,
        "converged": rec.converged,
        "iterations": rec.iterations,
        "setup_seconds": rec.setup_seconds,
        "solve_seconds": rec.solve_seconds,
        "total_seconds": rec.total_seconds,
        "true_residual": rec.true_residual,
        "condition_estimate": rec.condition_estimate,
        "error": rec.error,
    }


def mgpc_cost(system, args) -> dict:
    """Counted and timed cost of one MGPC-PCG iteration in stencil products."""
    from neurosolve.solvers import make_solver

    opts = {"history": "cheap", "device": args.device}
    if args.model:
        opts["model"] = args.model
    solver = make_solver("mgpc-pcg", system, **opts)
    res = solver.solve(system.b, rtol=args.rtol)
    per_iter = res.solve_seconds / max(res.iterations, 1)
    mv = matvec_seconds(system, args.device)
    counted = solver.hierarchy.matvec_equivalents() + 1.0  # the cycle + PCG's product
    return {
        "levels": solver.hierarchy.num_levels,
        "counted_matvecs_per_iteration": counted,
        "timed_matvecs_per_iteration": per_iter / mv,
        "network_and_hierarchy_seconds": solver.model_setup_seconds,
    }


def part_3d(args, methods, options, sizes) -> list[dict]:
    out = []
    for k, n in enumerate(sizes):
        spec = ProblemSpec(shape=(n, n, n), obstacles="mixed", seed=9001 + k)
        system = spec.build()
        rows = []
        for m in methods:
            rec = run_problem(
                system,
                m,
                rtol=args.rtol,
                device=args.device,
                options=options.get(m),
                warmup=n <= 64,
            )
            rows.append(record_dict(rec))
        entry = {
            "problem": spec.id,
            "n": system.n,
            "results": rows,
            "mgpc_cost": mgpc_cost(system, args),
        }
        cg = next(r for r in rows if r["method"] == "cg")
        for r in rows:
            r["total_vs_cg"] = r["total_seconds"] / cg["total_seconds"]
        mg = next(r for r in rows if r["method"] == "mgpc-pcg")
        entry["mgpc_cost"]["iteration_vs_cg_iteration"] = (
            mg["solve_seconds"] / max(mg["iterations"], 1)
        ) / (cg["solve_seconds"] / max(cg["iterations"], 1))
        out.append(entry)
        print_rows(spec.id, rows)
        c = entry["mgpc_cost"]
        print(
            f"  mgpc: {c['levels']} levels, {c['counted_matvecs_per_iteration']:.2f} matvecs per "
            f"iteration counted, {c['timed_matvecs_per_iteration']:.2f} timed\n"
        )
    return out


def compare(system, name: str, methods, options, args) -> list[dict]:
    """Every method except DCDM (its shipped model is 3D, uniform grids) on one system."""
    rows = [
        record_dict(
            run_problem(system, m, rtol=args.rtol, device=args.device, options=options.get(m))
        )
        for m in methods
        if m != "dcdm"
    ]
    cg = next(r for r in rows if r["method"] == "cg")
    for r in rows:
        r["total_vs_cg"] = r["total_seconds"] / cg["total_seconds"]
    print_rows(name, rows)
    return rows


def part_2d(args, methods, options) -> list[dict]:
    out = []
    for k, contrast in enumerate((1e2, 1e4)):
        spec = ProblemSpec(shape=(args.size_2d,) * 2, contrast=contrast, seed=9101 + k)
        system = spec.build()
        rows = compare(system, spec.id, methods, options, args)
        out.append({"problem": spec.id, "n": system.n, "contrast": contrast, "results": rows})
    return out


def anisotropic_systems(args) -> list[tuple[str, object]]:
    """Stretched grids and layered media (right-hand sides from fixed seeds)."""
    from neurosolve.data import obstacle_flags, poisson

    n2 = args.size_2d
    out = []
    for ratio in (3.0, 10.0):
        system = poisson((n2, n2), spacing=(1.0 / n2, ratio / n2))
        out.append((f"poisson2d-{n2}-aspect1:{ratio:g}", system))
    n3 = 64
    flags = obstacle_flags((n3,) * 3, "mixed", 9201)
    system = poisson((n3,) * 3, spacing=(1.0 / n3, 1.0 / n3, 4.0 / n3), flags=flags)
    out.append((f"poisson3d-{n3}-mixed-aspect1:1:4-s9201", system))
    for shape, thick in (((n2, n2), 4), ((48, 48, 48), 3)):
        a = np.ones(shape)
        a[(np.arange(shape[0]) // thick) % 2 == 1] = 1e-3
        name = f"poisson{len(shape)}d-{shape[0]}-layers{thick}-contrast1e3"
        out.append((name, poisson(shape, coefficient=a)))
    rng = np.random.default_rng(9202)
    for _, system in out:
        system.b = rng.standard_normal(system.n)
    return out


def part_anisotropic(args, methods, options) -> list[dict]:
    return [
        {"problem": name, "n": system.n, "results": compare(system, name, methods, options, args)}
        for name, system in anisotropic_systems(args)
    ]


def ablation_nets(args) -> dict:
    """The shipped (or --model) network, its weights in a V-cycle, and untrained networks."""
    from neurosolve.solvers.mgpc import MGPCNet, load_mgpc_model

    trained = load_mgpc_model(args.model)
    nets = {"trained W-cycle": trained}
    v_net = MGPCNet(**{**trained.config(), "cycle": "V"})
    v_net.load_state_dict(trained.state_dict())
    nets["trained V-cycle"] = v_net
    for cycle in ("W", "V"):
        nets[f"untrained {cycle}-cycle"] = MGPCNet(**{**trained.config(), "cycle": cycle})
    return nets


def part_ablation(args, sizes) -> list[dict]:
    from neurosolve.solvers import make_solver

    specs = [
        ProblemSpec(shape=(n, n, n), obstacles="mixed", seed=9001 + k) for k, n in enumerate(sizes)
    ]
    specs += [
        ProblemSpec(shape=(args.size_2d,) * 2, contrast=c, seed=9101 + k)
        for k, c in enumerate((1e2, 1e4))
    ]
    nets = ablation_nets(args)
    out = []
    print("### ablation: iterations (condition estimate) of MGPC-PCG\n")
    print("| problem | " + " | ".join(nets) + " |")
    print("|---|" + "---:|" * len(nets))
    for spec in specs:
        system = spec.build()
        row = {"problem": spec.id, "n": system.n, "results": {}}
        for name, net in nets.items():
            solver = make_solver("mgpc-pcg", system, model=net, device=args.device, **CHEAP)
            res = solver.solve(system.b, rtol=args.rtol)
            row["results"][name] = {
                "converged": bool(res.converged),
                "iterations": int(res.iterations),
                "condition_estimate": res.info.get("condition_estimate"),
                "cycle_matvec_equivalents": res.info["cycle_matvec_equivalents"],
            }
        out.append(row)
        cells = [
            f"{r['iterations']} ({r['condition_estimate']:.2f})" for r in row["results"].values()
        ]
        print(f"| {spec.id} | " + " | ".join(cells) + " |")
    print()
    return out


def part_sequence(args, methods, options) -> dict:
    spec = SequenceSpec(shape=(args.sequence_size,) * 3, frames=args.frames, seed=7101)
    systems = spec.build()
    records = run_sequence(
        systems,
        methods,
        name=spec.id,
        rtol=args.rtol,
        device=args.device,
        method_options=options,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    cg = next(r for r in records if r.method == "cg")
    summary = {}
    print(f"### {spec.id} (fresh setup every frame)\n")
    print("| method | all converged | iterations per frame | setup s | solve s | total / CG |")
    print("|---|---|---|---:|---:|---:|")
    for r in records:
        summary[r.method] = {
            "converged_all": r.converged,
            "iterations": r.iterations,
            "setup_seconds": r.setup_seconds,
            "solve_seconds": r.solve_seconds,
            "total_seconds": r.total_seconds,
            "total_vs_cg": r.total_seconds / cg.total_seconds,
            "cumulative_seconds": np.cumsum([f.total_seconds for f in r.frames]).tolist(),
        }
        print(
            f"| {r.method} | {r.converged} | {r.iterations} | {r.setup_seconds:.3g} | "
            f"{r.solve_seconds:.3g} | {r.total_seconds / cg.total_seconds:.2f} |"
        )
    print()
    return {"sequence": spec.id, "summary": summary}


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"### {title}\n")
    print("| method | converged | iterations | setup s | solve s | total / CG | cond est |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cond = "-" if r["condition_estimate"] is None else f"{r['condition_estimate']:.3g}"
        print(
            f"| {r['method']} | {r['converged']} | {r['iterations']} | "
            f"{r['setup_seconds']:.3g} | {r['solve_seconds']:.3g} | "
            f"{r['total_vs_cg']:.2f} | {cond} |"
        )
    print()


def plot(payload: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    if not payload["problems_3d"] + payload["problems_2d"]:
        return  # an ablation-only run has nothing to plot
    fig = Figure(figsize=(13, 3.8), dpi=110)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    problems = payload["problems_3d"] + payload["problems_2d"]
    methods = sorted({r["method"] for p in problems for r in p["results"]})
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        its = [
            next((r["iterations"] for r in p["results"] if r["method"] == m), 0) for p in problems
        ]
        ax1.bar(np.arange(len(problems)) + j * width, its, width, label=m, color=f"C{j}")
    ax1.set_xticks(np.arange(len(problems)) + 0.4 - width / 2)
    ax1.set_xticklabels(
        [p["problem"].replace("poisson", "") for p in problems], fontsize=7, rotation=20
    )
    ax1.set_yscale("log")
    ax1.set_ylabel("PCG iterations to rtol")
    ax1.legend(fontsize=7)
    for j, m in enumerate(methods):
        tot = [
            next((r["total_vs_cg"] for r in p["results"] if r["method"] == m), np.nan)
            for p in payload["problems_3d"]
        ]
        ax2.bar(np.arange(len(tot)) + j * width, tot, width, label=m, color=f"C{j}")
    ax2.set_xticks(np.arange(len(payload["problems_3d"])) + 0.4 - width / 2)
    ax2.set_xticklabels([p["problem"] for p in payload["problems_3d"]], fontsize=7)
    ax2.set_ylabel("setup + solve time / CG")
    ax2.axhline(1.0, color="0.5", lw=0.8)
    if payload["sequence"] is not None:
        seq = payload["sequence"]["summary"]
        for j, m in enumerate(methods):
            if m in seq:
                ys = [0.0, *seq[m]["cumulative_seconds"]]
                ax3.plot(range(len(ys)), ys, "-o", ms=3, color=f"C{j}", label=m)
        ax3.set_xlabel("frames solved")
        ax3.set_ylabel("cumulative setup + solve (s)")
        ax3.set_title(payload["sequence"]["sequence"], fontsize=9)
        ax3.legend(fontsize=7)
    fig.suptitle(f"MGPC vs baselines, rtol {payload['rtol']:g}")
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.large and 128 not in sizes:
        sizes.append(128)
    methods, options = methods_and_options(args)
    payload = {
        "benchmark": "mgpc",
        "rtol": args.rtol,
        "methods": methods,
        "machine": dataclasses.asdict(machine_info(args.device)),
        "created": now_utc(),
        "options": {"model": args.model, "device": args.device},
    }
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"3d", "sequence", "2d", "anisotropic", "ablation"}
    if unknown:
        raise SystemExit(
            f"unknown part(s) {sorted(unknown)}; choose from 3d, sequence, 2d, anisotropic, "
            "ablation"
        )
    payload["problems_3d"] = part_3d(args, methods, options, sizes) if "3d" in parts else []
    payload["sequence"] = part_sequence(args, methods, options) if "sequence" in parts else None
    payload["problems_2d"] = part_2d(args, methods, options) if "2d" in parts else []
    payload["anisotropic"] = (
        part_anisotropic(args, methods, options) if "anisotropic" in parts else []
    )
    payload["ablation"] = part_ablation(args, sizes) if "ablation" in parts else []
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(payload, indent=1, default=str))
    plot(payload, args.out / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
