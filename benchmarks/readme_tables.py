"""Regenerate the benchmark tables of docs/results.md from the JSON files in benchmarks/results/.

Every section names the JSON file it was built from and the command that produced it.
Timings appear as ratios to a baseline measured in the same run, or as seconds labelled
with the machine / device recorded in the JSON. Missing files are skipped with a note.

    python benchmarks/readme_tables.py                  # markdown to stdout
    python benchmarks/readme_tables.py --out tables.md  # or to a file
    python benchmarks/readme_tables.py --update docs/results.md   # replace the generated part

``--update`` also replaces the target's "## Headline figures" section, when it has one, by
the README's, so the two copies cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
HEADLINE = "## Headline figures\n"

CUDA = "NVIDIA H100 (`--device cuda`)"

MGPC_V1 = (
    "**Measured with the earlier MGPC (V-cycle, 2 smoothing steps; commit 5ef7715, "
    "`git checkout 5ef7715` to rerun it), not yet re-measured with the shipped W-cycle model: "
    "no GPU was available since.**"
)

# (file, command[, note]) per benchmark, in README order
KRYLOV = [
    ("krylov_baselines.json", "python benchmarks/krylov_baselines.py"),
    (
        "krylov_baselines_128.json",
        "OMP_NUM_THREADS=1 python benchmarks/krylov_baselines.py --sizes-2d '' --sizes-3d 128 "
        "--obstacles 0 --no-warmup --out DIR",
    ),
    (
        "krylov_baselines_cuda.json",
        "python benchmarks/krylov_baselines.py --methods cg,scipy-cg --sizes-2d 512 "
        "--sizes-3d 64,128 --device cuda",
    ),
]
DCDM_SOLVE = [
    ("dcdm_solve.json", "python benchmarks/dcdm_solve.py"),
    ("dcdm_solve_128.json", "python benchmarks/dcdm_solve.py --sizes 128 --name dcdm_solve_128"),
]
DCDM_SEQUENCE = [("dcdm_sequence.json", "python benchmarks/dcdm_sequence.py")]
MGPC = [
    ("mgpc.json", "python benchmarks/mgpc.py"),
    ("mgpc_128.json", "python benchmarks/mgpc.py --sizes 128 --parts 3d --name mgpc_128"),
    (
        "mgpc_sequence64.json",
        "python benchmarks/mgpc.py --parts sequence --sequence-size 64 --name mgpc_sequence64",
    ),
    (
        "mgpc_ablation.json",
        "python benchmarks/mgpc.py --parts ablation --sizes 32,64,128 --name mgpc_ablation",
    ),
    (
        "mgpc_cuda.json",
        "python benchmarks/mgpc.py --sizes 64,128 --parts 3d --device cuda --name mgpc_cuda",
        MGPC_V1,
    ),
    (
        "mgpc_sequence_cuda.json",
        "python benchmarks/mgpc.py --parts sequence --device cuda --name mgpc_sequence_cuda",
        MGPC_V1,
    ),
]
CORE = [
    (
        "stencil_kernel.json",
        "python benchmarks/stencil_kernel.py --sizes 64,128 --threads 1 --repeats 5",
    ),
    ("mgpc_setup.json", "python benchmarks/mgpc_setup.py --sizes 32,64,128 --repeats 5"),
    (
        "mgpc_setup_2threads.json",
        "python benchmarks/mgpc_setup.py --sizes 32,64,128 --repeats 5 --threads 2 "
        "--name mgpc_setup_2threads",
        "The package's threads=2: the native kernels on both cores, torch's pool at one.",
    ),
    ("cg_per_iteration.json", "python benchmarks/cg_per_iteration.py"),
    ("thread_policy.json", "python benchmarks/thread_policy.py"),
    (
        "native_threads.json",
        "OMP_NUM_THREADS=1 python benchmarks/native_threads.py --repeats 7",
        "Each numba threading layer in its own process, on the idle machine.",
    ),
    (
        "native_threads_iterations.json",
        "OMP_NUM_THREADS=1 python benchmarks/native_threads.py --layers tbb --no-frames "
        "--iteration-sizes 64,128 --repeats 5 --out "
        "benchmarks/results/native_threads_iterations.json",
        "The tbb layer; one MGPC-PCG iteration from the slope of solves stopped at 2 and 6.",
    ),
    (
        "load_reproducibility.json",
        "OMP_NUM_THREADS=1 python benchmarks/load_reproducibility.py",
        "The anchor sequence twice (two separate processes) while a torch job with two "
        "threads ran in the background; `@auto` is the package's thread policy.",
    ),
]
ANCHOR = [
    (
        "anchor.json",
        "OMP_NUM_THREADS=1 python benchmarks/anchor.py --methods "
        "mgpc-pcg@1,mgpc-pcg@2,mgpc-pcg-mixed@1,mgpc-pcg-mixed@2,amg-sa-pcg,amg-rs-pcg,"
        "petsc-gamg-pcg,hypre-boomeramg-pcg,petsc-ic0-pcg --sizes 64,128 --frames 5,2 "
        "--repeat 2 --suite none --name anchor",
        "Default kernels (the native numba loops; compiling off), on the idle machine. PETSc "
        "3.18 from Debian's `python3-petsc4py`, run by the system python on the same matrices "
        "written to files; 1 thread per MPI rank. The compiled-kernel run of the previous "
        "version (10 / 3 frames, DCDM, CG and the obstacles3d suite too) is in the git history "
        "of this file.",
    ),
    (
        "anchor_loaded.json",
        "OMP_NUM_THREADS=1 python benchmarks/anchor.py --methods "
        "mgpc-pcg@1,mgpc-pcg@2,mgpc-pcg-mixed@1,mgpc-pcg-mixed@2,dcdm,amg-sa-pcg,amg-rs-pcg,cg,"
        "petsc-gamg-pcg,hypre-boomeramg-pcg,petsc-ic0-pcg --sizes 64,128 --frames 10,3 "
        "--repeat 2 --cap 64:dcdm=3,128:dcdm=0,128:cg=2 --name anchor",
        "The same code while a training job ran on the second core (load 2-2.8): kept for the "
        "load behaviour, not as the anchor (the 2-rank and 2-thread rows suffer most).",
    ),
    (
        "anchor_mgpc_eager.json",
        "OMP_NUM_THREADS=1 python benchmarks/anchor.py --methods "
        "mgpc-pcg@1,mgpc-pcg@2,mgpc-pcg-mixed@1,mgpc-pcg-mixed@2 --sizes 64,128 "
        "--frames 10,3 --repeat 2 --suite none --name anchor_mgpc_eager",
        "MGPC alone with the default eager kernels, in a separate run on the same idle "
        "machine: compare with the MGPC rows above.",
    ),
]
DARCY = [
    ("darcy_operators.json", "python benchmarks/darcy_operators.py"),
    (
        "darcy_operators_full_piecewise.json",
        "python benchmarks/darcy_operators.py --full --kinds piecewise --epochs 60 --device cuda",
    ),
]
#: The reduced FNO Navier-Stokes setting of the SFNO runs (``--train`` varies).
FNO32 = (
    "--epochs 10 --resolution 32 --sim-resolution 64 --sim-dt 1e-2 --record-every 1.0 "
    "--t-in 10 --t-out 10 --train {train} --test 20 --modes 8 8 5 --fno-modes 8 8 8 "
    "--width 20 --fc-width 80 --time-padding 5"
)
OPERATORS_PEER = [
    (
        "darcy_operators_peer32.json",
        "python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 32",
    ),
    (
        "darcy_operators_peer64.json",
        "python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 64 "
        "--train 200 --epochs 8",
    ),
    (
        "darcy_operators_peer64_400.json",
        "python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 64 "
        "--train 400 --epochs 15 --out benchmarks/results/darcy_operators_peer64_400.json",
    ),
    (
        "darcy_operators_peer32_mgno_c32p2.json",
        "python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 32 "
        '--mgno \'{"channels":32,"layers":4,"levels":6,"pre_smooth":2}\' '
        "--out benchmarks/results/darcy_operators_peer32_mgno_c32p2.json",
    ),
    (
        "darcy_operators_peer64_400_c32p2.json",
        "python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 64 "
        "--train 400 --epochs 15 "
        '--mgno \'{"channels":32,"layers":4,"levels":6,"pre_smooth":2}\' '
        "--out benchmarks/results/darcy_operators_peer64_400_c32p2.json",
    ),
    ("zero_shot.json", "python benchmarks/zero_shot.py"),
    (
        "zero_shot_64.json",
        "python benchmarks/zero_shot.py --darcy-train-resolution 64 --darcy-resolutions "
        "32,64,128,256 --darcy-test 20 --darcy-train 400 --darcy-epochs 15 "
        "--ns-train-resolution 64 --ns-resolutions 32,64,128,256 --ns-sim-resolution 256 "
        "--ns-test-sim-dt 5e-3 --ns-train 60 --ns-test 5 --ns-epochs 8 --ns-args '--t-out 10' "
        "--out benchmarks/results/zero_shot_64.json",
    ),
    (
        "darcy_mgno_paper_64.json",
        "python benchmarks/darcy_operators.py --recipe mgno-paper --kinds piecewise "
        "--resolution 64",
    ),
    (
        "darcy_mgno_paper_128.json",
        "python benchmarks/darcy_operators.py --recipe mgno-paper --kinds piecewise "
        "--resolution 128 --train 200 --test 50 --epochs 20",
    ),
    (
        "darcy_mgno_paper_64_rough.json",
        "python benchmarks/darcy_operators.py --recipe mgno-paper --kinds rough --resolution 64 "
        "--out benchmarks/results/darcy_mgno_paper_64_rough.json",
    ),
    (
        "darcy_mgno_paper_128_rough.json",
        "python benchmarks/darcy_operators.py --recipe mgno-paper --kinds rough --resolution 128 "
        "--train 200 --epochs 20 --out benchmarks/results/darcy_mgno_paper_128_rough.json",
    ),
    (
        "sfno_refiner_ablation_small.json",
        "python benchmarks/sfno_refiner.py --ablation --epochs 10",
    ),
    (
        "sfno_refiner_ablation_fno32.json",
        "python benchmarks/sfno_refiner.py --ablation --sfno-config reference "
        f"{FNO32.format(train=120)} --variants base,latent_padding=4,all_time_modes",
    ),
    (
        "sfno_refiner_ablation_fno32_tuned.json",
        "python benchmarks/sfno_refiner.py --ablation --sfno-config tuned "
        f"{FNO32.format(train=120)} --threads 1 "
        "--variants base,width=24,width=28,all_time_modes,latent_padding=4 "
        "--out benchmarks/results/sfno_refiner_ablation_fno32_tuned.json",
    ),
    (
        "sfno_refiner_ablation_fno32_tuned_seed1.json",
        "python benchmarks/sfno_refiner.py --ablation --sfno-config tuned --seed 1 "
        f"{FNO32.format(train=120)} --threads 1 --variants base,width=28 "
        "--out benchmarks/results/sfno_refiner_ablation_fno32_tuned_seed1.json",
    ),
    (
        "sfno_refiner_ablation_fno32_360.json",
        "python benchmarks/sfno_refiner.py --ablation --sfno-config tuned "
        f"{FNO32.format(train=360)} --threads 1 --sfno-kwargs '{{\"width\": 28}}' "
        "--variants all_time_modes --out benchmarks/results/sfno_refiner_ablation_fno32_360.json",
        "the lr 3e-3 rows: the same command with `--lr 3e-3 --variants base`",
    ),
    (
        "sfno_refiner_estimator_floor.json",
        "python benchmarks/sfno_refiner.py --estimator-floor --resolution 32 --sim-resolution 64 "
        "--sim-dt 1e-2 --record-every 1.0 --t-in 10 --t-out 10 --train 120 --test 4",
    ),
]
SFNO = [
    ("sfno_refiner.json", "python benchmarks/sfno_refiner.py"),
    ("sfno_refiner_hard.json", "python benchmarks/sfno_refiner.py --hard"),
    (
        "sfno_refiner_fno32.json",
        f"OMP_NUM_THREADS=1 python benchmarks/sfno_refiner.py {FNO32.format(train=120)} "
        "--threads 1 --out benchmarks/results/sfno_refiner_fno32.json",
    ),
    (
        "sfno_refiner_fno32_w28.json",
        "OMP_NUM_THREADS=1 python benchmarks/sfno_refiner.py --sfno-kwargs '{\"width\": 28}' "
        f"{FNO32.format(train=120)} --threads 1 "
        "--out benchmarks/results/sfno_refiner_fno32_w28.json",
    ),
    (
        "sfno_refiner_fno32_360_w28.json",
        "OMP_NUM_THREADS=1 python benchmarks/sfno_refiner.py --sfno-kwargs '{\"width\": 28}' "
        f"{FNO32.format(train=360)} --threads 1 "
        "--out benchmarks/results/sfno_refiner_fno32_360_w28.json",
    ),
    (
        "sfno_refiner_fno32_360_w28_supersample.json",
        "OMP_NUM_THREADS=1 python benchmarks/sfno_refiner.py --sfno-kwargs '{\"width\": 28}' "
        f"{FNO32.format(train=360)} --threads 1 --refine-supersample 1,2,4 "
        "--out benchmarks/results/sfno_refiner_fno32_360_w28_supersample.json",
    ),
    (
        "sfno_refiner_fno32_360_w28_steps300.json",
        "OMP_NUM_THREADS=1 python benchmarks/sfno_refiner.py --sfno-kwargs '{\"width\": 28}' "
        f"{FNO32.format(train=360)} --threads 1 --refine-steps 300 --refine-supersample 1,2 "
        "--out benchmarks/results/sfno_refiner_fno32_360_w28_steps300.json",
    ),
    (
        "sfno_refiner_full.json",
        "python benchmarks/sfno_refiner.py --full --train 200 --test 20 --sim-dt 2.5e-3 "
        "--device cuda",
    ),
]
GENERATION = [
    ("generation_throughput.json", "python benchmarks/generation_throughput.py"),
    (
        "generation_throughput_cuda.json",
        "python benchmarks/generation_throughput.py --device cuda --darcy-seconds 2 --repeats 1",
    ),
]


def g3(x) -> str:
    """Three significant digits; '-' for missing values."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if 1e3 <= abs(x) < 1e6:  # 3 significant digits without an exponent: 1680, not 1.68e+03
        return f"{float(f'{x:.3g}'):.0f}"
    return f"{x:.3g}"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_label(d: dict) -> str:
    """Describe the machine a result was measured on, from the fields the JSON records."""
    m = d.get("machine") or (d.get("harness") or {}).get("machine")
    m = m or (d.get("results") if isinstance(d.get("results"), dict) else {}).get("machine")
    if m:
        dev = m.get("device") or "cpu"
        name = m.get("device_name") or ""
        where = f"{dev} ({name})" if name else dev
        return (
            f"{where}; host {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores, "
            f"torch {m.get('torch', '?')}, torch threads {m.get('torch_threads', '?')}"
        )
    dev = d.get("device") or (d.get("setting") or {}).get("device") or "cpu"
    parts = [f"device {dev}"]
    if d.get("cpu_count"):
        parts.append(f"{d['cpu_count']} cores")
    if d.get("torch"):
        parts.append(f"torch {d['torch']}")
    if d.get("torch_threads"):
        parts.append(f"torch threads {d['torch_threads']}")
    return ", ".join(parts)


def header(name: str, command: str, d: dict, note: str = "") -> str:
    on = f"; measured on {CUDA}" if "--device cuda" in command else ""
    return (
        f"#### `benchmarks/results/{name}`\n\n"
        f"Command: `{command}`{on}  \nMachine: {machine_label(d)}\n"
        + (f"\n{note}\n" if note else "")
    )


# --------------------------------------------------------------------------- sections


def krylov_section(d: dict) -> str:
    sys.path.insert(0, str(HERE))
    from krylov_baselines import summary_table

    from neurosolve.harness.records import BenchmarkResults

    out = [summary_table(BenchmarkResults.from_dict(d["harness"]))]
    rows = [
        [
            r["problem"],
            r["torch_cg_iterations"],
            r["scipy_cg_iterations"],
            g3(r["ratio"]),
        ]
        for r in d.get("torch_cg_vs_scipy_cg", [])
    ]
    out.append("\ntorch CG time per iteration / scipy CG time per iteration:\n")
    out.append(table(["problem", "torch CG it", "scipy CG it", "torch / scipy per it"], rows))
    rows = [
        [r["problem"], r["operator"], r["n"], r["nnz"], g3(r["ratio_to_bound"])]
        for r in d.get("matvec", [])
    ]
    out.append("\nOne matvec against the memory-bandwidth bound (measured time / bound time):\n")
    out.append(table(["problem", "operator", "n", "nnz", "matvec / bound"], rows, "llrrr"))
    return "\n".join(out)


def dcdm_solve_section(d: dict) -> str:
    rows_in = d["summary"]["rows"]
    methods = list(dict.fromkeys(m for r in rows_in for m in r["methods"]))
    rows = []
    for r in rows_in:
        row = [r["problem"], r["unknowns"]]
        for m in methods:
            s = r["methods"].get(m)
            if s is None:
                row.append("-")
                continue
            it = s["iterations"] if s["converged"] else f"{s['iterations']} (not conv.)"
            row.append(f"{it} / {g3(s['total_vs_cg'])}")
        rows.append(row)
    out = [
        f"rtol {g3(d.get('rtol'))}; each cell: iterations / total time (setup + solve) as a "
        "ratio to CG's in the same run.\n",
        table(["problem", "unknowns", *methods], rows),
    ]
    growth = d["summary"].get("iteration_growth") or {}
    if growth:
        rows = []
        for m, gr in growth.items():
            its = gr["iterations_by_size"]
            rows.append(
                [
                    m,
                    g3(its.get(str(gr["from"]), its.get(gr["from"]))),
                    g3(its.get(str(gr["to"]), its.get(gr["to"]))),
                    g3(gr["growth_factor"]),
                ]
            )
        lo, hi = next(iter(growth.values()))["from"], next(iter(growth.values()))["to"]
        out.append(f"\nIteration growth from {lo}^3 to {hi}^3:\n")
        out.append(table(["method", f"it {lo}^3", f"it {hi}^3", "growth"], rows))
    return "\n".join(out)


def sequence_rows(summary: dict) -> list[list]:
    rows = []
    for m, s in summary.items():
        its = s["iterations"]
        rows.append(
            [
                m,
                g3(s["converged_all"]),
                g3(sum(its) / len(its)) if its else "-",
                f"{min(its)}-{max(its)}" if its else "-",
                g3(s["setup_seconds"]),
                g3(s["solve_seconds"]),
                g3(s["total_vs_cg"]),
            ]
        )
    return rows


SEQ_HEADER = ["method", "converged", "it / frame (mean)", "it range", "setup s", "solve s"]


def dcdm_sequence_section(d: dict) -> str:
    n = len(d.get("unknowns_per_frame", []))
    return "\n".join(
        [
            f"Sequence `{d['sequence']}` ({n} frames, fresh setup every frame); setup and solve "
            "are totals over the frames.\n",
            table([*SEQ_HEADER, "total / CG"], sequence_rows(d["summary"]), "llrrrrr"),
        ]
    )


def mgpc_rows(results: list[dict]) -> list[list]:
    return [
        [
            r["method"],
            g3(r["converged"]),
            r["iterations"],
            g3(r["setup_seconds"]),
            g3(r["solve_seconds"]),
            g3(r.get("total_vs_cg")),
            g3(r.get("condition_estimate")),
        ]
        for r in results
    ]


MGPC_HEADER = ["method", "converged", "iterations", "setup s", "solve s", "total / CG", "cond est"]


def mgpc_section(d: dict) -> str:
    out = []
    for p in d.get("problems_3d") or []:
        out.append(f"3D `{p['problem']}` ({p['n']} unknowns):\n")
        out.append(table(MGPC_HEADER, mgpc_rows(p["results"]), "llrrrrr"))
        c = p.get("mgpc_cost") or {}
        if c:
            extra = ""
            if c.get("iteration_vs_cg_iteration") is not None:
                extra = f", one iteration = {g3(c['iteration_vs_cg_iteration'])} CG iterations"
            out.append(
                f"\nMGPC: {c['levels']} levels; one PCG iteration = "
                f"{g3(c['counted_matvecs_per_iteration'])} matvecs counted, "
                f"{g3(c['timed_matvecs_per_iteration'])} matvecs timed{extra}.\n"
            )
    for p in d.get("problems_2d") or []:
        out.append(f"2D `{p['problem']}` (contrast {g3(p['contrast'])}, {p['n']} unknowns):\n")
        out.append(table(MGPC_HEADER, mgpc_rows(p["results"]), "llrrrrr") + "\n")
    for p in d.get("anisotropic") or []:
        out.append(f"Anisotropic `{p['problem']}` ({p['n']} unknowns):\n")
        out.append(table(MGPC_HEADER, mgpc_rows(p["results"]), "llrrrrr") + "\n")
    seq = d.get("sequence")
    if seq:
        out.append(f"Sequence `{seq['sequence']}` (fresh setup every frame, totals):\n")
        out.append(table([*SEQ_HEADER, "total / CG"], sequence_rows(seq["summary"]), "llrrrrr"))
    ablation = d.get("ablation") or []
    if ablation:
        names = list(ablation[0]["results"])
        out.append(
            "Ablation: MGPC-PCG iterations (condition estimate of `M A`); the untrained network "
            "is the initialization (theta = 1.7 everywhere, s = 1.3).\n"
        )
        rows = [
            [
                f"`{p['problem']}`",
                *(
                    f"{p['results'][k]['iterations']} ({g3(p['results'][k]['condition_estimate'])})"
                    for k in names
                ),
            ]
            for p in ablation
        ]
        out.append(table(["problem", *names], rows, "l" + "r" * len(names)))
    return "\n".join(out)


def _ratio(x: dict | None) -> str:
    """``min / median`` of a ratio record."""
    return "-" if not x else f"{g3(x['min'])} / {g3(x['median'])}"


def stencil_kernel_section(d: dict) -> str:
    kinds = ("eager", "native", "compiled")
    rows, first = [], []
    for run in d["runs"]:
        warm, cold = run["second_process"], run["cold_process"]
        for size in [k for k in warm if k.endswith("^3")]:
            part = warm[size]
            for dtype, prod in part["product"].items():
                cells = [_ratio(prod[f"{k}_over_csr"]) for k in ("eager", "native", "inductor")]
                rows.append([size, run["threads"], f"product {dtype}", *cells, "-", "-"])
            for precision, m in part["mgpc"].items():
                its = "/".join(str(m[k]["iterations"][0]) for k in kinds)
                rows.append(
                    [
                        size,
                        run["threads"],
                        f"MGPC {precision} cycle",
                        *(_ratio(m[k]["apply_over_csr"]) for k in kinds),
                        "-",
                        "-",
                    ]
                )
                rows.append(
                    [
                        size,
                        run["threads"],
                        f"MGPC {precision} PCG iteration",
                        *(_ratio(m[k]["iteration_over_csr"]) for k in kinds),
                        its,
                        f"{m['native']['true_relative_residual']:.1e}",
                    ]
                )
        for kind in ("native", "compiled"):
            first.append(
                [
                    run["threads"],
                    kind,
                    g3(cold["first_solve"][kind]["first_seconds"]),
                    g3(warm["first_solve"][kind]["first_seconds"]),
                    g3(warm["first_solve"][kind]["again_seconds"]),
                ]
            )
    head = [
        "grid",
        "threads",
        "what",
        "eager",
        "native",
        "compiled",
        "iterations (eager/native/compiled)",
        "true rel. residual",
    ]
    return (
        "Times in units of one scipy CSR matvec of the same matrix and dtype, timed in the same "
        "process (min / median of the repeats); eager: torch operations; native: the numba "
        "loops (the CPU default); compiled: `NEUROSOLVE_COMPILE=1` (the product row: "
        "inductor alone). The second process reads the caches.\n\n"
        + table(head, rows, "lrlrrrrr")
        + "\n\nFirst 64^3 setup + solve (rtol 1e-10), seconds (native first, then compiled, "
        "in one process):\n\n"
        + table(
            ["threads", "backend", "empty caches", "second process", "repeated in-process"], first
        )
    )


def _setup_threads(threads: dict) -> str:
    """The thread setting of an ``mgpc_setup`` run (older runs pinned torch's count)."""
    if "package_threads" in threads:
        return f"threads={threads['package_threads']} (native kernels; torch's pool at one)"
    return f"{threads.get('torch_threads', '?')} torch thread(s)"


def mgpc_setup_section(d: dict) -> str:
    phases = ["stencil_read", "operator", "network", "coarsen", "coarsest", "build", "setup"]
    rows = []
    for size, part in d["sizes"].items():
        for clock in ("cpu", "wall"):
            if clock not in part:
                continue
            ph = part[clock]["phases"]
            rows.append(
                [f"{size}^3", clock]
                + [g3(ph[p]["min_matvecs"]) if p in ph else "-" for p in phases]
            )
    return (
        f"MGPC setup phases in CSR-matvec equivalents (min of {d['repeats']} repeats, "
        f"{_setup_threads(d['threads'])}, load average "
        f"{[round(x, 1) for x in d['load_average']]}; `build` is the hierarchy, `setup` the "
        "solver's whole setup as `solve` reports it, wall clock only):\n\n"
        + table(["grid", "clock", *phases], rows, "ll" + "r" * len(phases))
    )


def native_threads_section(d: dict) -> str:
    """The threading layers: the pass's crossover, the vector operations, MGPC frames."""
    threads = d["threads"]
    cross, vec, frames = [], [], []
    for layer, part in d["layers"].items():
        if "error" in part:
            cross.append([layer, "not measured: " + part["error"], "-", "-", "-"])
            continue
        speed = {(r["n"], r["dtype"]): r["speedup_min"] for r in part["passes"]}
        first = part["crossover_cells"]
        cross.append(
            [
                layer,
                g3(part["passes"][0]["parallel_s"]["min"] * 1e6),
                " / ".join(f"{g3(speed.get((n, 'float64'), float('nan')))}" for n in (32, 64, 128)),
                "-" if first["float64"] is None else f"{round(first['float64'] ** (1 / 3))}^3",
                "-" if part["parallel_min_cells"] is None else str(part["parallel_min_cells"]),
            ]
        )
        for r in part["vectors"]:
            vec.append([layer, f"{r['n']}^3", r["op"], g3(r["speedup_min"])])
        for label, by_precision in part.get("frames", {}).get("settings", {}).items():
            for precision, e in by_precision.items():
                frames.append(
                    [
                        layer,
                        label,
                        precision,
                        g3(e["frame_s"]["median"]),
                        g3(e["setup_s"]["median"]),
                        g3(e["solve_s"]["median"]),
                        g3(e["frame_matvecs_median"]),
                    ]
                )
    size = d.get("frame_size", "?")
    its = [
        [
            part["layer"],
            f"{r['n']}^3",
            r["threads"],
            r["precision"],
            g3(r["iteration_matvecs"]["min"]),
            g3(r["iteration_matvecs"]["median"]),
        ]
        for part in d["layers"].values()
        for r in part.get("iterations", [])
    ]
    if its and not frames:
        return "One MGPC-PCG iteration in CSR matvecs of the same process:\n\n" + table(
            ["layer", "grid", "threads", "precision", "min", "median"], its, "lrrlrr"
        )
    return (
        f"The 7-point smoothing pass on 1 and {threads} threads ({d['repeats']} repeats, min): "
        "the launch cost of a parallel call (8^3), the speed-up at 32^3 / 64^3 / 128^3 "
        "(float64), the smallest size from which the parallel pass is faster, and the "
        "package's threshold (`PARALLEL_MIN_CELLS`):\n\n"
        + table(
            [
                "layer",
                "parallel call at 8^3 (us)",
                "speed-up 32 / 64 / 128^3",
                "faster from",
                "threshold (cells)",
            ],
            cross,
            "lrrrr",
        )
        + f"\n\nKrylov vector operations on {threads} threads against torch's on one "
        "(speed-up, min):\n\n"
        + table(["layer", "entries", "operation", "speed-up"], vec, "lrlr")
        + f"\n\nMGPC-PCG frames at {size}^3 (closed box, open top, moving spheres; setup + "
        "solve to rtol 1e-6, medians; the last column in scipy CSR matvecs of the same "
        "process):\n\n"
        + table(
            ["layer", "threads", "precision", "frame s", "setup s", "solve s", "CSR matvecs"],
            frames,
            "lllrrrr",
        )
    )


def cg_per_iteration_section(d: dict) -> str:
    rows = []
    for prob in d["problems"]:
        for c in prob["cg"]:
            r = c["ratio_to_scipy"]
            rows.append(
                [
                    prob["problem"],
                    c["kind"],
                    c["threads"],
                    g3(c["per_iteration_s"]["min"] * 1e3),
                    g3(c["per_iteration_s"]["median"] * 1e3),
                    g3(r["per_iteration_s"]),
                    g3(r["amortized_s"]),
                ]
            )
    head = [
        "problem",
        "CG",
        "threads",
        "ms / iteration (min)",
        "(median)",
        "/ scipy (min)",
        "whole solve / scipy",
    ]
    return table(head, rows, "llrrrrr")


def thread_policy_section(d: dict) -> str:
    rows = [
        [
            r["size"],
            r["unknowns"],
            r["kind"],
            g3(r["seconds_1_thread"]["min"] * 1e3),
            g3(r["seconds_2_threads"]["min"] * 1e3),
            g3(r["ratio_2_to_1"]),
        ]
        for r in d["rows"]
    ]
    head = ["grid", "unknowns", "operator", "1 thread ms", "2 threads ms", "2 / 1"]
    return (
        table(head, rows, "rrlrrr")
        + f"\n\nOne thread below {d['serial_below_in_package']} unknowns in the package "
        f"(measured crossover: {d['crossover_size'] or 'none: 2 threads never paid'}; load "
        f"average {d['load_average_start']} at the start)."
    )


def load_reproducibility_section(d: dict) -> str:
    sys.path.insert(0, str(HERE))
    from load_reproducibility import table as spread_table

    load = d["load"]
    return (
        spread_table(d["rows"], d["tolerance"])
        + f"\n\nLoad: {load['jobs']} background {load['kind']} job(s) on {d['cpu_count']} CPUs "
        f"(load average before it started: {d['loadavg_before_load'][0]})."
    )


def anchor_section(d: dict) -> str:
    sys.path.insert(0, str(HERE))
    from anchor import report

    return report(d).replace("\n### ", "\n##### ").replace("## anchor benchmark", "Anchor:")


def budget_text(s: dict) -> str:
    """Batch, optimizer, schedule, learning rate and loss of a Darcy benchmark's setting."""
    return (
        f"batch {s['batch_size']}, {s['optimizer']} + {s['schedule']} lr {g3(s['lr'])}, "
        f"loss {s['loss']}"
    )


def darcy_section(d: dict) -> str:
    s = d["setting"]
    out = [
        f"Darcy {s['resolution']}x{s['resolution']}, {s['train']}/{s['val']}/{s['test']} "
        f"samples, {s['epochs']} epochs, {budget_text(s)}.\n"
    ]
    rows = [
        [
            r["data"],
            r["model"],
            f"{r['parameters']:,}",
            g3(r["test_rel_l2"]),
            g3(r["test_rel_h1"]),
            g3(r["epoch_time_vs_fno"]),
            r["best_epoch"],
        ]
        for r in d["results"]
    ]
    out.append(
        table(
            ["data", "model", "params", "rel L2", "rel H1", "s/epoch vs FNO", "best epoch"],
            rows,
            "llrrrrr",
        )
    )
    rows = []
    for r in d["results"]:
        k = r.get("krylov")
        if not k:
            continue
        cg, amg = k["methods"].get("cg", {}), k["methods"].get("amg-sa-pcg", {})
        rows.append(
            [
                r["data"],
                r["model"],
                g3(k["residual_median"]),
                g3(k["error_median"]),
                f"{g3(cg.get('iterations_cold'))} -> {g3(cg.get('iterations_warm'))}",
                f"{g3(amg.get('iterations_cold'))} -> {g3(amg.get('iterations_warm'))}",
                g3(cg.get("iterations_to_match_error")),
                g3(cg.get("speedup_at_prediction_error")),
                g3(amg.get("speedup_at_prediction_error")),
            ]
        )
    if rows:
        out.append(
            f"\nKrylov-style evaluation ({k['samples']} test samples, prediction as x0, "
            "rtol 1e-8; means over samples):\n"
        )
        out.append(
            table(
                [
                    "data",
                    "model",
                    "residual (median)",
                    "error vs exact (median)",
                    "CG it 0 -> pred",
                    "AMG-PCG it 0 -> pred",
                    "CG it to pred. error",
                    "CG time to pred. error / inference",
                    "AMG-PCG time (incl. setup) to pred. error / inference",
                ],
                rows,
                "llrrrrrrr",
            )
        )
    return "\n".join(out)


def peer_section(d: dict) -> str:
    st = d["setting"]
    steps = d.get("step_seconds") or {}
    rows = [
        [
            r["model"],
            r["parameters"],
            g3(r["test_rel_l2"]),
            g3(r["test_rel_h1"]),
            g3(r.get("rel_l2_vs_peer")),
            g3((steps.get(r["model"]) or {}).get("median_vs_peer")),
        ]
        for r in d["results"]
    ]
    head = [
        "model",
        "parameters",
        "test rel. L2",
        "test rel. H1",
        "L2 / peer",
        "training step / peer (median)",
    ]
    return (
        f"Darcy {st['resolution']}^2, {st['train']} / {st['val']} / {st['test']} samples, "
        f"{st['epochs']} epochs, batch {st['batch_size']}, {st['optimizer']} + "
        f"{st['schedule']} lr {st['lr']}, weight decay {st['weight_decay']}, loss "
        f"{st['loss']}; the peer is {d.get('peer') or 'neuraloperator (absent)'}'s FNO "
        "trained by the same trainer.\n\n"
        + table(head, rows)
        + ("\n\n" + "; ".join(d["acceptance"]) if d.get("acceptance") else "")
    )


def zero_shot_section(d: dict) -> str:
    parts = []
    for part, title in (("darcy", "Darcy"), ("navier_stokes", "Navier-Stokes")):
        if part not in d:
            continue
        models = d[part]["models"]
        grids = sorted({g["resolution"] for m in models.values() for g in m["grids"]})
        rows = [
            [name]
            + [
                g3(next((g["rel_l2"] for g in m["grids"] if g["resolution"] == n), None))
                for n in grids
            ]
            for name, m in models.items()
        ]
        parts.append(
            f"{title}, trained at {d[part]['train_resolution']}^2, relative L2 at each test "
            "grid:\n\n" + table(["model", *[f"{n}^2" for n in grids]], rows)
        )
    return "\n\n".join(parts)


def mgno_paper_section(d: dict) -> str:
    """``--recipe mgno-paper``: final errors and the test error every few epochs."""
    st = d["setting"]
    parts = [
        f"MgNO {st['mgno']}, {st['train']} training / {st['test']} test samples at "
        f"{st['resolution']}^2, {st['epochs']} epochs, {budget_text(st)}, weight decay "
        f"{g3(st['weight_decay'])}; no model selection (the last epoch):"
    ]
    rows = [
        [
            r["data"],
            r["parameters"],
            g3(r["final"]["test_rel_l2"]),
            g3(r["final"]["test_rel_h1"]),
            f"{g3(r['min_over_epochs_on_test']['test_rel_l2'])} "
            f"(epoch {r['min_over_epochs_on_test']['epoch']})",
            g3(r["seconds_per_epoch"]),
        ]
        for r in d["results"]
    ]
    parts.append(
        table(["data", "parameters", "rel. L2", "rel. H1", "min L2 on test", "s / epoch"], rows)
    )
    for r in d["results"]:
        curve = r["curve"]
        step = max(1, len(curve) // 8)
        picked = curve[step - 1 :: step]
        if picked[-1] is not curve[-1]:
            picked.append(curve[-1])
        parts.append(
            f"Learning curve ({r['data']}), test relative L2 by epoch:\n\n"
            + table(
                ["epoch", *[str(c["epoch"]) for c in picked]],
                [["rel. L2", *[g3(c["test_rel_l2"]) for c in picked]]],
            )
        )
    return "\n\n".join(parts)


def sfno_ablation_section(d: dict) -> str:
    # every row against the FNO3d of its own settings (a file may hold runs at several lr)
    fno = {
        json.dumps(r["settings"], sort_keys=True): r["rel_l2"]
        for r in d["rows"]
        if r["variant"] == "fno3d"
    }
    rows = []
    for r in d["rows"]:
        base = fno.get(json.dumps(r["settings"], sort_keys=True))
        ratio = g3(r["rel_l2"] / base) if base else "-"
        rows.append(
            [r["variant"], g3(r["settings"]["lr"]), r["parameters"], g3(r["rel_l2"]), ratio]
        )
    st = d["rows"][0]["settings"]
    return (
        f"{st['resolution']}^2 stored ({st['sim_resolution']}^2 simulated), {st['t_in']} -> "
        f"{st['t_out']} snapshots {st['record_every']} apart, {st['train']} trajectories, "
        f"{st['epochs']} epochs, seed {st.get('seed', 0)}:\n\n"
        + table(["variant", "lr", "parameters", "test rel. L2", "/ FNO3d (same lr)"], rows)
    )


def estimator_floor_section(d: dict) -> str:
    rows = [
        [r["spacing"], r["time_order"], g3(r["estimator_mean"]), g3(r["estimator_max"])]
        for r in d["rows"]
    ]
    return (
        "The residual estimator evaluated on the TRUE trajectories (its floor), by snapshot "
        "spacing and order of the time derivative:\n\n"
        + table(["snapshot spacing", "time order", "mean", "max"], rows)
    )


def sfno_section(d: dict) -> str:
    s = d["settings"]
    out = [
        f"Navier-Stokes nu={g3(s['nu'])}, {s['resolution']}^2 stored ({s['sim_resolution']}^2 "
        f"simulated), {s['t_in']} -> {s['t_out']} snapshots every {g3(s['record_every'])}; "
        f"{s['train']} train / {s['test']} test, {s['epochs']} epochs.\n"
    ]
    rows = [
        [
            r["method"],
            g3(r["rel_l2"]),
            g3(r["rel_h1"]),
            g3(r["estimator"]),
            r["parameters"] if r.get("parameters") is not None else "-",
            g3(r["train_seconds"]),
            g3(r["inference_vs_reference_solver"]),
        ]
        for r in d["table"]
    ]
    out.append(
        table(
            [
                "method",
                "rel L2",
                "rel H1",
                "estimator",
                "params",
                "train s",
                "inference / ref. solver",
            ],
            rows,
        )
    )
    c = d["claims"]
    steps = s.get("refine_steps") or 100
    lr = s.get("refine_lr") or 0.3
    out.append(f"\nRefinement settings: {steps} Adam steps, lr {g3(lr)}.")
    for factor, v in c.get("by_supersample", {}).items():
        if factor == "1":
            continue
        out.append(
            f"\nTime supersampling x{factor} (estimator on snapshots {g3(1 / int(factor))} of "
            f"the data's spacing apart): rel L2 {g3(c['rel_l2_before'])} -> "
            f"{g3(v['rel_l2_after'])} (x{g3(v['error_ratio_after_over_before'])}), "
            f"{100 * v['fraction_of_samples_improved']:.0f}% of samples improved."
        )
    out.append(
        f"\nRefinement (estimator only, no ground truth): rel L2 {g3(c['rel_l2_before'])} -> "
        f"{g3(c['rel_l2_after'])} (factor {g3(c['error_ratio_before_over_after'])}), "
        f"{100 * c['fraction_of_samples_improved']:.0f}% of samples improved; estimator "
        f"{g3(c['estimator_before'])} -> {g3(c['estimator_after'])} (ground truth: "
        f"{g3(c['estimator_of_ground_truth'])}).\n"
    )
    rows = [
        [
            name,
            g3(v["pearson_est_vs_abs_l2"]),
            g3(v["spearman_est_vs_abs_l2"]),
            g3(v["pearson_est_vs_rel_l2"]),
        ]
        for name, v in d["correlation"].items()
    ]
    out.append("Correlation of the estimator with the error over test samples:\n")
    out.append(
        table(["predictions", "pearson (abs L2)", "spearman (abs L2)", "pearson (rel L2)"], rows)
    )
    return "\n".join(out)


def generation_section(d: dict) -> str:
    rows = [
        [
            r["resolution"],
            r["batch"],
            g3(r["darcy"]["samples_per_s"]),
            g3(r["darcy_speedup"]),
            g3(r["navier_stokes"]["trajectory_steps_per_s"]),
            g3(r["ns_speedup"]),
        ]
        for r in d["rows"]
    ]
    out = [
        f"Best of {d.get('repeats')} rounds; speedups are against batch "
        f"{d['rows'][0].get('baseline_batch', 1)} at the same resolution in the same run.\n",
        table(
            [
                "resolution",
                "batch",
                "Darcy samples/s",
                "Darcy speedup",
                "NS trajectory-steps/s",
                "NS speedup",
            ],
            rows,
        ),
    ]
    e = d.get("darcy_end_to_end")
    if e:
        out.append(
            f"\nDarcy end to end (`generate`, HDF5 included, {e['samples']} samples at "
            f"{e['resolution']}^2): generate / bare sample function = "
            f"{g3(e['generate_over_bare'])}."
        )
    return "\n".join(out)


SECTIONS = [
    ("Krylov baselines", KRYLOV, krylov_section),
    ("DCDM solve", DCDM_SOLVE, dcdm_solve_section),
    ("DCDM sequence", DCDM_SEQUENCE, dcdm_sequence_section),
    ("MGPC", MGPC, mgpc_section),
    ("Solver core: kernels, setup, CG per iteration, threads", CORE, None),
    ("Anchor: MGPC against PETSc, hypre and pyamg", ANCHOR, anchor_section),
    ("Darcy operators (MgNO vs FNO)", DARCY, darcy_section),
    ("SFNO + Spectral-Refiner", SFNO, sfno_section),
    (
        "Neural operators: the peer library, zero-shot resolution, SFNO ablation",
        OPERATORS_PEER,
        None,
    ),
    ("Data generation throughput", GENERATION, generation_section),
]


SECTION_OF_FILE = {
    "stencil_kernel.json": stencil_kernel_section,
    "mgpc_setup.json": mgpc_setup_section,
    "mgpc_setup_2threads.json": mgpc_setup_section,
    "cg_per_iteration.json": cg_per_iteration_section,
    "thread_policy.json": thread_policy_section,
    "native_threads.json": native_threads_section,
    "native_threads_iterations.json": native_threads_section,
    "load_reproducibility.json": load_reproducibility_section,
    "darcy_operators_peer32.json": peer_section,
    "darcy_operators_peer64.json": peer_section,
    "darcy_operators_peer64_400.json": peer_section,
    "darcy_operators_peer32_mgno_c32p2.json": peer_section,
    "darcy_operators_peer64_400_c32p2.json": peer_section,
    "zero_shot.json": zero_shot_section,
    "zero_shot_64.json": zero_shot_section,
    "darcy_mgno_paper_64.json": mgno_paper_section,
    "darcy_mgno_paper_128.json": mgno_paper_section,
    "darcy_mgno_paper_64_rough.json": mgno_paper_section,
    "darcy_mgno_paper_128_rough.json": mgno_paper_section,
    "sfno_refiner_ablation_small.json": sfno_ablation_section,
    "sfno_refiner_ablation_fno32.json": sfno_ablation_section,
    "sfno_refiner_ablation_fno32_tuned.json": sfno_ablation_section,
    "sfno_refiner_ablation_fno32_tuned_seed1.json": sfno_ablation_section,
    "sfno_refiner_ablation_fno32_360.json": sfno_ablation_section,
    "sfno_refiner_estimator_floor.json": estimator_floor_section,
}


def build(results: Path = RESULTS) -> str:
    parts = [
        "<!-- generated by `python benchmarks/readme_tables.py` from benchmarks/results/*.json -->",
    ]
    for title, files, fn in SECTIONS:
        parts.append(f"\n### {title}\n")
        for name, command, *note in files:
            path = results / name
            if not path.exists():
                parts.append(f"_`benchmarks/results/{name}` is missing: skipped._\n")
                continue
            d = json.loads(path.read_text())
            parts.append(header(name, command, d, *note))
            parts.append((fn or SECTION_OF_FILE[name])(d) + "\n")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(parts)).rstrip() + "\n"


def with_readme_headline(text: str, readme: str) -> str:
    """``text`` with its headline section replaced by the README's (unchanged if either lacks one).

    The section runs from :data:`HEADLINE` to the next ``## `` heading; the README's pointer
    line to docs/results.md is dropped from the copy.
    """
    if HEADLINE not in text or HEADLINE not in readme:
        return text

    def bounds(t: str) -> tuple[int, int]:
        start = t.index(HEADLINE)
        end = t.find("\n## ", start + len(HEADLINE))
        return start, len(t) if end < 0 else end

    a, b = bounds(readme)
    lines = [line for line in readme[a:b].split("\n") if "](docs/results.md)" not in line]
    start, end = bounds(text)
    return text[:start] + "\n".join(lines).rstrip() + "\n" + text[end:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    p.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    p.add_argument(
        "--update",
        type=Path,
        default=None,
        help="a Markdown file whose text from the 'generated by' marker on is replaced",
    )
    args = p.parse_args(argv)
    text = build(args.results)
    if args.update:
        old = args.update.read_text()
        marker = "<!-- generated by `python benchmarks/readme_tables.py`"
        if marker not in old:
            p.error(f"{args.update} has no line starting with {marker}")
        old = with_readme_headline(old, README.read_text()) if README.is_file() else old
        args.update.write_text(old[: old.index(marker)] + text)
    elif args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
