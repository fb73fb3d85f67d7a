"""Are the package's timings reproducible while another job runs? The anchor benchmark twice.

The issue's acceptance: "the same benchmark run twice on a machine with another job running
gives timings within 20% (the thread policy at work)". This script

1. starts ``--load-jobs`` background processes of a known kind (``--load``):
   ``torch`` -- float64 matrix products with torch's default thread count (an ML job whose
   OpenMP threads want every core), or ``numpy`` -- one-thread dense products;
2. runs ``benchmarks/anchor.py`` ``--runs`` times as separate processes, with the same
   arguments (the package's methods only, no PETSc), while that load runs;
3. stops the load and compares, for every size and method, the per-frame totals (setup +
   solve of the best repeat) of the runs: the spread is ``max / min - 1`` over the runs.

A method passes when its spread is at most ``--tolerance`` (default 0.2). The default
methods are ``mgpc-pcg@auto`` (the thread policy: one thread at these sizes) and
``mgpc-pcg@2`` (two threads pinned, what the policy avoids), so the JSON shows the policy's
effect rather than asserting it. Each run's own JSON (iteration counts, true residuals,
load averages) is kept next to the summary.

    python benchmarks/load_reproducibility.py                  # 64^3 x 4, 128^3 x 2 frames
    python benchmarks/load_reproducibility.py --sizes 32 --frames 2 --runs 2 --name smoke

Writes ``benchmarks/results/<name>.json`` (and ``<name>_run<k>.json``, ``<name>.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: The background jobs: a python snippet each, run until killed.
LOAD_SNIPPETS = {
    "torch": (
        "import torch\n"
        "a = torch.rand(600, 600, dtype=torch.float64)\n"
        "while True:\n"
        "    a = torch.tanh(a @ a / 600.0)\n"
    ),
    "numpy": (
        "import os\n"
        "os.environ['OPENBLAS_NUM_THREADS'] = '1'\n"
        "import numpy as np\n"
        "a = np.random.default_rng(0).random((400, 400))\n"
        "while True:\n"
        "    a = np.tanh(a @ a / 400.0)\n"
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128", help="sequence grids n (n^3), comma list")
    p.add_argument("--frames", default="4,2", help="frames per size, or one for all")
    p.add_argument("--methods", default="mgpc-pcg@auto,mgpc-pcg@2", help="anchor.py methods")
    p.add_argument("--repeat", type=int, default=2, help="anchor.py --repeat")
    p.add_argument("--runs", type=int, default=2, help="runs of the benchmark under load")
    p.add_argument("--load", choices=sorted(LOAD_SNIPPETS), default="torch")
    p.add_argument("--load-jobs", type=int, default=1, help="background processes")
    p.add_argument("--tolerance", type=float, default=0.2, help="allowed spread of runs")
    p.add_argument("--threads", type=int, default=1, help="anchor.py --threads")
    p.add_argument("--name", default="load_reproducibility", help="stem of the outputs")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error("--runs must be >= 2 (a spread needs two runs)")
    if args.load_jobs < 0:
        p.error("--load-jobs must be >= 0")
    if "petsc" in args.methods or "hypre" in args.methods:
        p.error("PETSc methods run in MPI processes of their own; compare the package's here")
    return args


def start_load(kind: str, jobs: int) -> list[subprocess.Popen]:
    """``jobs`` background processes running ``LOAD_SNIPPETS[kind]`` (killed by the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_SNIPPETS[kind]], env=env, stdout=subprocess.DEVNULL
        )
        for _ in range(jobs)
    ]
    time.sleep(2.0)  # let them import and reach their loop
    dead = [p.returncode for p in procs if p.poll() is not None]
    if dead:
        stop_load(procs)
        raise RuntimeError(f"a load process exited at once (exit codes {dead})")
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def anchor_command(args, run: int) -> list[str]:
    return [
        sys.executable,
        str(HERE / "anchor.py"),
        *("--sizes", args.sizes, "--frames", args.frames, "--methods", args.methods),
        *("--repeat", str(args.repeat), "--threads", str(args.threads), "--suite", "none"),
        *("--name", f"{args.name}_run{run}", "--out", str(args.out)),
    ]


def frame_totals(payload: dict) -> dict[tuple[int, str], dict]:
    """(grid, method label) -> per-frame total, setup, solve and iterations of one run."""
    out = {}
    for seq in payload["sequences"]:
        for block in seq["blocks"]:
            if "total_per_frame" in block:
                out[(seq["grid"][0], block["label"])] = {
                    k: block[k] for k in ("total_per_frame", "setup_per_frame", "solve_per_frame")
                } | {"iterations": block["iterations"], "torch_threads": block["torch_threads"]}
    return out


def compare(runs: list[dict], tolerance: float) -> list[dict]:
    """One row per (size, method): the runs' per-frame totals and their spread."""
    rows = []
    for key in sorted(runs[0]):
        found = [r[key] for r in runs if key in r]
        if len(found) < len(runs):
            continue
        totals = [f["total_per_frame"] for f in found]
        spread = max(totals) / min(totals) - 1.0
        rows.append(
            {
                "grid": key[0],
                "method": key[1],
                "torch_threads": found[0]["torch_threads"],
                "total_per_frame": totals,
                "setup_per_frame": [f["setup_per_frame"] for f in found],
                "solve_per_frame": [f["solve_per_frame"] for f in found],
                "iterations": [f["iterations"] for f in found],
                "spread": spread,
                "within_tolerance": spread <= tolerance,
            }
        )
    return rows


def table(rows: list[dict], tolerance: float) -> str:
    lines = [
        f"| grid | method | threads | seconds per frame (runs) | spread | within {tolerance:.0%} |",
        "|---:|---|---:|---|---:|---|",
    ]
    for r in rows:
        times = " / ".join(f"{t:.3g}" for t in r["total_per_frame"])
        ok = "yes" if r["within_tolerance"] else "no"
        lines.append(
            f"| {r['grid']}^3 | {r['method']} | {r['torch_threads']} | {times} | "
            f"{r['spread']:.1%} | {ok} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Seconds per frame of every run, grouped by size and method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 1.6 * len(rows)), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    runs = len(rows[0]["total_per_frame"]) if rows else 0
    width = 0.8 / max(runs, 1)
    for k in range(runs):
        xs = [i + (k - (runs - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [r["total_per_frame"][k] for r in rows], width, label=f"run {k + 1}")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['grid']}^3\n{r['method']}" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per frame (setup + solve)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = [round(v, 2) for v in os.getloadavg()]
    procs = start_load(args.load, args.load_jobs)
    runs, commands = [], []
    try:
        for run in range(1, args.runs + 1):
            cmd = anchor_command(args, run)
            commands.append(cmd[1:])
            print(f"run {run}/{args.runs} under load: {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            runs.append(json.loads((args.out / f"{args.name}_run{run}.json").read_text()))
    finally:
        stop_load(procs)
    rows = compare([frame_totals(p) for p in runs], args.tolerance)
    payload = {
        "benchmark": "load_reproducibility",
        "load": {"kind": args.load, "jobs": args.load_jobs, "snippet": LOAD_SNIPPETS[args.load]},
        "cpu_count": os.cpu_count(),
        "loadavg_before_load": load_before,
        "loadavg_runs": [[p["loadavg_start"], p["loadavg_end"]] for p in runs],
        "tolerance": args.tolerance,
        "commands": commands,
        "rows": rows,
    }
    out = args.out / f"{args.name}.json"
    out.write_text(json.dumps(payload, indent=1))
    title = f"{args.runs} runs, {args.load_jobs} x {args.load} load on {os.cpu_count()} CPUs"
    if rows:
        plot(rows, out.with_suffix(".png"), title)
    print(f"## load reproducibility ({title})\n\n{table(rows, args.tolerance)}")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
