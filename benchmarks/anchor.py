"""Anchor benchmark: MGPC and the package's methods against PETSc GAMG, hypre and IC(0).

One run times, at rtol 1e-6 with one true-residual check for every method:

1. a changing-geometry sequence per size (default 64^3 with 10 frames, 128^3 with 3): a
   closed box with solid walls (Neumann outer boundary) and an open top (an AIR layer at
   the top along axis 0), with spheres moving through it, built by
   :func:`neurosolve.data.geometry.moving_obstacle_flags`; every frame is a new matrix,
   so every method pays its setup (AMG hierarchy, IC factorization, MGPC's network pass
   and coarsening) every frame; DCDM has no setup beyond loading its model;
2. the built-in ``obstacles3d`` suite.

Methods: the package's ``mgpc-pcg``, ``dcdm``, ``amg-sa-pcg`` and ``amg-rs-pcg`` (pyamg)
and ``cg`` (torch) run through :mod:`neurosolve.harness` (an untimed warm-up of setup and
2 iterations on the first frame, or on each suite problem, then a timed setup and solve
per frame); ``NAME@T`` runs one with ``T`` torch threads (default ``--threads``), and
``NAME@auto`` with the package's thread policy (``threads="auto"``).
``petsc-gamg-pcg``, ``hypre-boomeramg-pcg`` and ``petsc-ic0-pcg`` (block Jacobi ICC(0) in
parallel) run with each of ``--ranks`` MPI ranks, one thread each, in
benchmarks/petsc_solve.py under Debian's system python (its petsc4py needs the system
numpy), one process per configuration for a whole sequence (its start-up is reported, not
counted per frame); the matrices travel in PETSc's binary format, written here with numpy.
PETSc is skipped, with a note in the JSON and the output, when that python cannot import
petsc4py. ``--cap SIZE:METHOD=K`` limits a slow package method to the first K frames of a
sequence (0: not run); the table marks it.

The true relative residual ``||b - A x|| / ||b||`` of every returned ``x`` is recomputed in
float64 with the scipy matrix (by the harness for the package's methods, here for the
PETSc solutions); a solve counts as converged when the method says so and that residual
is within ``rtol`` (plus the harness's 1% rounding slack, RECHECK_SLACK). The load average
is recorded before every timed block (the 2-rank runs need an otherwise idle machine).

    python benchmarks/anchor.py --quick                 # tiny sizes, a smoke run in seconds
    python benchmarks/anchor.py --sizes 64 --frames 10 --cap 64:dcdm=1,64:cg=2 \
        --name anchor_before                            # the "before" run (machine loaded)
    python benchmarks/anchor.py --methods mgpc-pcg@1,mgpc-pcg@2,mgpc-pcg-mixed@1,\
    mgpc-pcg-mixed@2,dcdm,amg-sa-pcg,amg-rs-pcg,cg,petsc-gamg-pcg,hypre-boomeramg-pcg,\
    petsc-ic0-pcg --repeat 2 --cap 64:dcdm=3,128:dcdm=0,128:cg=2
                                                        # anchor.json: 64^3 x 10, 128^3 x 3,
                                                        # obstacles3d (2 idle cores)

Writes benchmarks/results/<name>.json and <name>.png and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from neurosolve.harness.records import machine_info, now_utc
from neurosolve.harness.runner import (
    RECHECK_SLACK,
    recheck_residual,
    run_problem,
    run_sequence,
)
from neurosolve.harness.suites import get_suite

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PETSC_SCRIPT = HERE / "petsc_solve.py"
#: Package methods, run by the harness: our name -> (registry name, factory options); no
#: extra residual products inside timed solves. ``mgpc-pcg-mixed``: the float32 cycle
#: inside float64 flexible PCG, where the installed MGPC has that option.
HARNESS_METHODS = {
    "mgpc-pcg": ("mgpc-pcg", {"history": "cheap"}),
    "mgpc-pcg-mixed": ("mgpc-pcg", {"history": "cheap", "precision": "mixed"}),
    "dcdm": ("dcdm", {}),
    "amg-sa-pcg": ("amg-sa-pcg", {"history": "cheap"}),
    "amg-rs-pcg": ("amg-rs-pcg", {"history": "cheap"}),
    "cg": ("cg", {"history": "cheap"}),
}
#: The methods run by default (every other name is run only when asked for).
DEFAULT_METHODS = ("mgpc-pcg", "dcdm", "amg-sa-pcg", "amg-rs-pcg", "cg")
#: PETSc configurations: our name -> petsc_solve.py --method.
PETSC_METHODS = {"petsc-gamg-pcg": "gamg", "hypre-boomeramg-pcg": "hypre", "petsc-ic0-pcg": "ic"}
#: Methods the MGPC target compares against (the classical anchors).
ANCHORS = ("petsc-gamg-pcg", "hypre-boomeramg-pcg", "petsc-ic0-pcg", "amg-sa-pcg", "amg-rs-pcg")
#: Iterations of the untimed warm-up solve of the package's methods (setup included).
WARMUP_ITERATIONS = 2
MAT_CLASSID, VEC_CLASSID = 1211216, 1211214  # PETSc's MAT_FILE_CLASSID, VEC_FILE_CLASSID


# ---------------------------------------------------------------- PETSc binary files


def write_petsc_mat(path, A) -> Path:
    """Write a sparse matrix in PETSc's binary format (``MatLoad`` reads it).

    Big-endian int32 header ``MAT_FILE_CLASSID, rows, cols, nnz``, then the row lengths
    and column indices (int32) and the values (float64), row by row.
    """
    A = sp.csr_matrix(A, dtype=np.float64)
    A.sum_duplicates()  # canonical CSR: sorted column indices, no repeats
    rows, cols = A.shape
    if max(rows, cols, A.nnz) >= 2**31:
        raise ValueError(f"matrix too large for PETSc's 32-bit indices: {A.shape}, {A.nnz} nnz")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.array([MAT_CLASSID, rows, cols, A.nnz], dtype=">i4").tofile(f)
        np.diff(A.indptr).astype(">i4").tofile(f)
        A.indices.astype(">i4").tofile(f)
        A.data.astype(">f8").tofile(f)
    os.replace(tmp, path)
    return path


def write_petsc_vec(path, v) -> Path:
    """Write a vector in PETSc's binary format (``VecLoad`` reads it)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.array([VEC_CLASSID, v.size], dtype=">i4").tofile(f)
        v.astype(">f8").tofile(f)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- problems


def box_sequence(n: int, frames: int, seed: int) -> list:
    """``frames`` systems of the closed box with an open top and moving spheres, ``n^3``."""
    from neurosolve.data import make_rhs, moving_obstacle_flags, poisson

    shape = (n, n, n)
    flags = moving_obstacle_flags(
        shape, frames, np.random.default_rng([seed, 0]), boundary_air="top"
    )
    out = []
    for k, f in enumerate(flags):
        system = poisson(shape, flags=f, boundary="neumann", name=f"box{n}-open-top-f{k}")
        system.b = np.asarray(make_rhs(system, "random", np.random.default_rng([seed, 2, k])))
        out.append(system)
    return out


def suite_systems(name: str) -> list:
    if name == "quick":  # tiny obstacle problems for a smoke run
        from neurosolve.harness.suites import ProblemSpec

        specs = [ProblemSpec(shape=(12, 12, 12), obstacles=k) for k in ("boxes", "spheres")]
    else:
        specs = list(get_suite(name).problems)
    return [spec.build() for spec in specs]


# ---------------------------------------------------------------- checks and records


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


#: The fields of a harness RunRecord kept per frame.
ROW_FIELDS = ("n", "iterations", "setup_seconds", "solve_seconds", "true_residual")
ROW_FIELDS += ("claimed_converged", "converged", "status", "error", "flags")


def harness_row(rec) -> dict:
    return {"name": rec.problem, **{k: getattr(rec, k) for k in ROW_FIELDS}}


def summarize(block: dict) -> dict:
    """Totals per repeat, their min and median, and per-frame figures of the best repeat."""
    reps = block["repeats"]
    rows = [r for rep in reps for r in rep]
    errors = [r["error"] for r in rows if r.get("error")]
    if errors:
        block["error"] = f"{len(errors)} of {len(rows)} solves failed; first: {errors[0]}"
    if not rows or len(errors) == len(rows):
        return block  # nothing timed
    totals = [sum(r["setup_seconds"] + r["solve_seconds"] for r in rep) for rep in reps]
    best = reps[int(np.argmin(totals))]
    count = len(best)
    block.update(
        total_seconds_min=min(totals),
        total_seconds_median=float(np.median(totals)),
        setup_per_frame=sum(r["setup_seconds"] for r in best) / count,
        solve_per_frame=sum(r["solve_seconds"] for r in best) / count,
        total_per_frame=min(totals) / count,
        iterations=[r["iterations"] for r in best],
        max_true_residual=max(float(r["true_residual"]) for rep in reps for r in rep),
        converged_all=all(r["converged"] for rep in reps for r in rep),
    )
    return block


# ---------------------------------------------------------------- the package's methods


def split_method(spec: str) -> tuple[str, int | str | None]:
    """``"mgpc-pcg@2"`` -> ``("mgpc-pcg", 2)``; ``"@auto"``: the package's thread policy;
    without ``@`` the threads are ``None`` (``--threads``)."""
    method, _, threads = spec.partition("@")
    if threads == "auto":
        return method, "auto"
    return method, int(threads) if threads else None


def warm_up(system, method: str, opts: dict, args) -> float:
    """Untimed setup and a few iterations, so first-call costs (imports, kernel compilation,
    allocator growth) stay out of the timings without paying a whole extra solve."""
    t0 = time.perf_counter()
    run_problem(
        system, method, rtol=args.rtol, maxiter=WARMUP_ITERATIONS, warmup=False, options=opts
    )
    return time.perf_counter() - t0


def thread_option(threads: int | str) -> dict:
    """``{"threads": threads}`` where the package's solvers take a thread count.

    With the package's thread policy (``threads=`` on ``make_solver``, default ``"auto"``)
    the count pinned here would be overridden inside each solve; it is passed explicitly
    (``"auto"`` passes the policy itself).
    """
    try:
        import neurosolve._util.threads  # noqa: F401 -- present with the thread policy
    except ImportError:
        return {}
    return {"threads": threads if threads == "auto" else int(threads)}


def block_threads(threads: int | str | None, systems, args) -> int:
    """Torch threads of a block: the pinned count, or what ``"auto"`` picks for the first
    system (``--threads`` where the policy leaves torch's setting alone)."""
    if threads == "auto":
        from neurosolve._util.threads import resolve_threads

        return resolve_threads("auto", systems[0].n) or args.threads
    return threads or args.threads


def run_harness_block(spec: str, systems, args, *, sequence: bool) -> dict:
    """One package method over ``systems`` (``spec``: a name, ``@threads`` optional).

    A sequence is warmed up on its first frame, a suite on each of its problems.
    """
    import torch

    name, threads = split_method(spec)
    method, opts = HARNESS_METHODS[name]
    torch.set_num_threads(block_threads(threads, systems, args))
    opts = {**opts, **thread_option(threads or args.threads)}
    block = {
        "label": spec,
        "method": name,
        "engine": "neurosolve",
        "ranks": 1,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": loadavg(),
        "warmup_iterations": WARMUP_ITERATIONS,
        "options": opts,
        "repeats": [],
    }
    warm = systems[:1] if sequence else systems
    block["warmup_seconds"] = [warm_up(s, method, opts, args) for s in warm]
    for _ in range(args.repeat):
        if sequence:
            rec = run_sequence(
                systems,
                [method],
                name=systems[0].name.rsplit("-f", 1)[0],
                rtol=args.rtol,
                warmup=False,
                method_options={method: opts},
                progress=False,
            )[0]
            records = rec.frames
        else:
            records = [
                run_problem(s, method, rtol=args.rtol, warmup=False, options=opts) for s in systems
            ]
        block["repeats"].append([harness_row(x) for x in records])
    block["torch_threads_after"] = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    return summarize(block)


# ---------------------------------------------------------------- PETSc


def petsc_env(args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the project's packages must not shadow the system numpy
    if args.petsc_dir:
        env["PETSC_DIR"] = args.petsc_dir
    return env


def default_petsc_dir() -> str | None:
    if os.environ.get("PETSC_DIR"):
        return os.environ["PETSC_DIR"]
    found = sorted(glob.glob("/usr/lib/petscdir/petsc*/*-real"))
    return found[-1] if found else None


def probe_petsc(args) -> dict:
    """Can ``args.petsc_python`` import petsc4py? Returns versions or the reason it cannot."""
    code = (
        "import petsc4py; petsc4py.init([]); from petsc4py import PETSc; "
        "print('.'.join(map(str, PETSc.Sys.getVersion())), petsc4py.__version__)"
    )
    info = {"python": args.petsc_python, "petsc_dir": args.petsc_dir, "available": False}
    try:
        out = subprocess.run(
            [args.petsc_python, "-c", code],
            env=petsc_env(args),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["note"] = f"PETSc skipped: cannot run {args.petsc_python}: {exc}"
        return info
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        info["note"] = f"PETSc skipped: {args.petsc_python} cannot import petsc4py ({tail[0]})"
        return info
    petsc, p4p = out.stdout.split()
    info.update(available=True, petsc_version=petsc, petsc4py_version=p4p)
    mpiexec = shutil.which(args.mpiexec)
    info["mpiexec"] = mpiexec
    if mpiexec:
        ver = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60)
        info["mpiexec_version"] = (ver.stdout.strip().splitlines() or [""])[0]
    return info


def write_petsc_inputs(systems, folder: Path, args, *, warmup: str) -> Path:
    """PETSc binary files of every system and the manifest petsc_solve.py reads."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for k, s in enumerate(systems):
        items.append(
            {
                "name": s.name,
                "A": str(write_petsc_mat(folder / f"A{k}.dat", s.A)),
                "b": str(write_petsc_vec(folder / f"b{k}.dat", s.b)),
                "x": str(folder / f"x{k}-r{{repeat}}.npy"),
            }
        )
    manifest = {"rtol": args.rtol, "repeat": args.repeat, "warmup": warmup, "items": items}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1))
    return path


def petsc_command(args, method: str, ranks: int, manifest: Path, out: Path) -> list[str]:
    script = [args.petsc_python, str(PETSC_SCRIPT), str(manifest), "--method", method]
    script += ["--out", str(out)]
    if ranks == 1:
        return script
    return [args.mpiexec, "--allow-run-as-root", "-n", str(ranks), *script]


def run_petsc_block(label, ranks, systems, manifest: Path, args) -> dict:
    block = {
        "label": f"{label} np{ranks}",
        "method": label,
        "engine": "petsc",
        "ranks": ranks,
        "threads_per_rank": 1,
        "loadavg_before": loadavg(),
        "repeats": [],
    }
    out = manifest.with_name(f"result-{PETSC_METHODS[label]}-np{ranks}.json")
    cmd = petsc_command(args, PETSC_METHODS[label], ranks, manifest, out)
    block["command"] = " ".join(cmd)
    t0 = time.perf_counter()
    # its own process group, so that a timeout ends mpiexec and its ranks together
    proc = subprocess.Popen(
        cmd,
        env=petsc_env(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=args.petsc_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        block["error"] = f"no result within --petsc-timeout {args.petsc_timeout} s"
        return block
    block["process_seconds"] = time.perf_counter() - t0
    if proc.returncode != 0 or not out.is_file():
        block["error"] = f"exit {proc.returncode}: {(stderr or stdout).strip()[-800:]}"
        return block
    payload = json.loads(out.read_text())
    out.unlink()
    block["petsc"] = {k: v for k, v in payload.items() if k != "items"}
    # start-up: interpreter, MPI and PETSc initialization, outside the timed solves
    block["startup_seconds"] = block["process_seconds"] - payload["script_seconds"]
    block["import_and_init_seconds"] = payload["import_and_init_seconds"]
    block["load_seconds"] = sum(item["load_seconds"] for item in payload["items"])
    block["pc_description"] = payload["items"][0]["repeats"][-1].get("pc_description")
    for r in range(args.repeat):
        rows = [petsc_row(it, r, s, args) for it, s in zip(payload["items"], systems, strict=True)]
        block["repeats"].append(rows)
    return summarize(block)


def petsc_row(item: dict, r: int, system, args) -> dict:
    """One PETSc solve, its ``x`` read back and its true residual recomputed here."""
    run = item["repeats"][r]
    x = np.load(run["x"])
    os.unlink(run["x"])
    from neurosolve.solvers import stopping_threshold

    threshold = stopping_threshold(float(np.linalg.norm(system.b)), args.rtol, 0.0)
    true_residual, meets = recheck_residual(system.A, system.b, x, threshold)
    claimed = run["reason"] > 0
    return {
        "name": item["name"],
        "n": item["n"],
        "iterations": run["iterations"],
        "setup_seconds": run["setup_seconds"],
        "solve_seconds": run["solve_seconds"],
        "true_residual": true_residual,
        "petsc_true_residual": run["true_residual"],
        "claimed_converged": claimed,
        "converged": claimed and meets,
        "reason": run["reason"],
    }


# ---------------------------------------------------------------- parts


def run_blocks(systems, args, petsc: dict, folder: Path, *, sequence: bool, blocks, saved):
    """Every selected method on ``systems`` (a sequence, or the problems of a suite).

    Each finished block is appended to ``blocks`` and ``saved()`` is called, so a run
    stopped early keeps what it measured.
    """
    for spec in args.methods:
        method = split_method(spec)[0]
        if method in HARNESS_METHODS:
            grid = systems[0].grid.shape[0] if sequence else None
            count = args.cap.get((grid, method), len(systems)) if sequence else len(systems)
            if count == 0:
                blocks.append({"label": spec, "method": method, "engine": "neurosolve"})
                blocks[-1].update(ranks=1, skipped=f"not run at {grid}^3 (--cap)")
                continue
            blocks.append(run_harness_block(spec, systems[:count], args, sequence=sequence))
            if count < len(systems):
                blocks[-1]["capped"] = f"first {count} of {len(systems)} frames (--cap)"
            log_block(blocks[-1])
            saved()
    petsc_methods = [m for m in args.methods if m in PETSC_METHODS]
    if petsc_methods and petsc["available"]:
        manifest = write_petsc_inputs(systems, folder, args, warmup="first" if sequence else "each")
        for method in petsc_methods:
            for ranks in args.ranks:
                if ranks > 1 and not petsc.get("mpiexec"):
                    continue  # noted once in payload["petsc"]
                blocks.append(run_petsc_block(method, ranks, systems, manifest, args))
                log_block(blocks[-1])
                saved()
        shutil.rmtree(folder, ignore_errors=True)


def part_sequences(args, petsc: dict, workdir: Path, payload: dict, saved) -> None:
    for n, frames in zip(args.sizes, args.frames, strict=True):
        t0 = time.perf_counter()
        systems = box_sequence(n, frames, args.seed)
        build = time.perf_counter() - t0
        name = f"box{n}-open-top-{frames}frames"
        print(
            f"## {name}: {frames} frames, {np.mean([s.n for s in systems]):.0f} unknowns "
            f"on average (built in {build:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        seq = {"name": name, "grid": [n, n, n], "frames": frames}
        seq.update(unknowns=[s.n for s in systems], build_seconds=build, blocks=[])
        payload["sequences"].append(seq)
        folder = workdir / name
        run_blocks(systems, args, petsc, folder, sequence=True, blocks=seq["blocks"], saved=saved)
        del systems


def part_suite(args, petsc: dict, workdir: Path, payload: dict, saved) -> None:
    if args.suite == "none":
        return
    systems = suite_systems(args.suite)
    print(f"## suite {args.suite}: {[s.name for s in systems]}", file=sys.stderr, flush=True)
    payload["suite"] = {"name": args.suite, "problems": [s.name for s in systems], "blocks": []}
    folder = workdir / f"suite-{args.suite}"
    blocks = payload["suite"]["blocks"]
    run_blocks(systems, args, petsc, folder, sequence=False, blocks=blocks, saved=saved)


def log_block(block: dict) -> None:
    if "total_per_frame" not in block:
        print(f"  {block['label']}: {not_timed(block)}", file=sys.stderr, flush=True)
        return
    print(
        f"  {block['label']}: {block['total_per_frame']:.3g} s per frame (setup "
        f"{block['setup_per_frame']:.3g}), iterations {block['iterations']}, max true residual "
        f"{block['max_true_residual']:.2e}, load before {block['loadavg_before'][0]}",
        file=sys.stderr,
        flush=True,
    )


# ---------------------------------------------------------------- report


def not_timed(block: dict) -> str:
    """Why a block has no timings (an error, a skipped run, no frames)."""
    if "error" in block:
        return "error: " + block["error"][:200].replace("\n", " ").replace("|", "/")
    return block.get("skipped", "no timings")


def fastest_anchor(blocks: list[dict]) -> dict | None:
    found = [b for b in blocks if b["method"] in ANCHORS and b.get("converged_all")]
    return min(found, key=lambda b: b["total_per_frame"]) if found else None


def sequence_table(seq: dict) -> str:
    best = fastest_anchor(seq["blocks"])
    lines = [
        f"### {seq['name']} ({np.mean(seq['unknowns']):.0f} unknowns on average), "
        "seconds per frame, setup paid every frame",
        "",
        "| method | ranks x threads | iterations per frame | setup s | solve s | total s | "
        "total min / median (s) | / fastest anchor | max true residual | converged |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b in seq["blocks"]:
        threads = b.get("torch_threads", b.get("threads_per_rank", 1))
        if "total_per_frame" not in b:
            lines.append(f"| {b['label']} | {b['ranks']} x {threads} | {not_timed(b)} |")
            continue
        its = b["iterations"]
        its_text = str(its[0]) if min(its) == max(its) else f"{min(its)}-{max(its)}"
        ratio = f"{b['total_per_frame'] / best['total_per_frame']:.2f}" if best else "-"
        label = b["label"] + (f" ({len(its)} frames)" if "capped" in b else "")
        lines.append(
            f"| {label} | {b['ranks']} x {threads} | {its_text} | "
            f"{b['setup_per_frame']:.3g} | {b['solve_per_frame']:.3g} | "
            f"{b['total_per_frame']:.3g} | {b['total_seconds_min']:.3g} / "
            f"{b['total_seconds_median']:.3g} | {ratio} | {b['max_true_residual']:.1e} | "
            f"{'yes' if b['converged_all'] else 'NO'} |"
        )
    started = [b for b in seq["blocks"] if "startup_seconds" in b]
    if started:
        lines.append(
            "\nPETSc process start-up, once per configuration (not in the times above): "
            + ", ".join(f"{b['label']} {b['startup_seconds']:.2f} s" for b in started)
        )
    if best is not None:
        lines.append(f"\nfastest anchor (PETSc, hypre, pyamg): {best['label']}")
    for b in seq["blocks"]:
        if b["method"].startswith("mgpc") and best is not None and "total_per_frame" in b:
            lines.append(
                f"{b['label']} / fastest anchor: "
                f"{b['total_per_frame'] / best['total_per_frame']:.2f} (target <= 0.3)"
            )
    return "\n".join(lines)


def suite_table(suite: dict) -> str:
    lines = [
        f"### suite {suite['name']}: setup + solve seconds per problem (iterations)",
        "",
        "| method | " + " | ".join(suite["problems"]) + " | max true residual | converged |",
        "|---|" + "---:|" * len(suite["problems"]) + "---:|---|",
    ]
    for b in suite["blocks"]:
        if "total_per_frame" not in b:
            lines.append(f"| {b['label']} | {not_timed(b)} |")
            continue
        reps = b["repeats"]
        best = reps[
            int(
                np.argmin(
                    [sum(r["setup_seconds"] + r["solve_seconds"] for r in rep) for rep in reps]
                )
            )
        ]
        cells = [
            f"{r['setup_seconds']:.3g} + {r['solve_seconds']:.3g} ({r['iterations']})" for r in best
        ]
        lines.append(
            f"| {b['label']} | " + " | ".join(cells) + f" | {b['max_true_residual']:.1e} | "
            f"{'yes' if b['converged_all'] else 'NO'} |"
        )
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    """Seconds per frame by method, one panel per size (setup hatched), and the suite."""
    from matplotlib.figure import Figure

    panels = [(s["name"], s["blocks"], False) for s in payload["sequences"]]
    if payload["suite"] is not None:
        panels.append((f"suite {payload['suite']['name']}", payload["suite"]["blocks"], True))
    if not panels:
        return
    fig = Figure(figsize=(5.4 * len(panels), 4.8), dpi=110)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, blocks, summed) in zip(axes, panels, strict=True):
        ok = [b for b in blocks if "total_per_frame" in b]
        scale = np.array([len(b["iterations"]) if summed else 1 for b in ok])
        setup = np.array([b["setup_per_frame"] for b in ok]) * scale
        solve = np.array([b["solve_per_frame"] for b in ok]) * scale
        colors = [
            "C0" if b["method"].startswith("mgpc") else "C1" if b["engine"] == "petsc" else "C2"
            for b in ok
        ]
        y = np.arange(len(ok))
        ax.barh(y, setup, color=colors, hatch="///", edgecolor="white")
        ax.barh(y, solve, left=setup, color=colors)
        totals = setup + solve
        # one slow method (DCDM, CG) must not flatten the rest: clip the axis, label the bar
        limit = 4.0 * float(np.median(totals)) if len(ok) else 1.0
        clipped = totals.max(initial=0.0) > limit
        for k, total in enumerate(totals):
            at, text = (limit, f" {total:.3g} >") if total > limit else (total, f" {total:.3g}")
            ax.text(at, k, text, va="center", fontsize=7)
        if clipped:
            ax.set_xlim(0, limit * 1.25)
        ax.set_yticks(y)
        ax.set_yticklabels(
            [b["label"] + (f" ({len(b['iterations'])} fr.)" if "capped" in b else "") for b in ok],
            fontsize=7,
        )
        ax.invert_yaxis()
        ax.set_xlabel(
            ("seconds, all problems" if summed else "seconds per frame") + " (setup hatched)"
        )
        ax.set_title(title, fontsize=9)
    fig.suptitle(
        f"anchor benchmark, rtol {payload['rtol']:g}; torch threads {payload['torch_threads']} "
        "(NAME@T: T threads), PETSc one thread per MPI rank (npR: R ranks)"
    )
    fig.tight_layout()
    fig.savefig(path)


# ---------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="sequence grids n (n^3), comma list: 64,128")
    p.add_argument("--frames", default=None, help="frames per size, or one for all: 10,3")
    p.add_argument(
        "--methods",
        default=",".join([*DEFAULT_METHODS, *PETSC_METHODS]),
        help="comma list of " + ", ".join([*HARNESS_METHODS, *PETSC_METHODS]) + "; "
        "NAME@T runs a package method with T torch threads (e.g. mgpc-pcg@1,mgpc-pcg@2; "
        "@auto: the package's thread policy)",
    )
    p.add_argument("--ranks", default="1,2", help="MPI ranks of the PETSc runs, comma list")
    p.add_argument(
        "--cap",
        default="",
        help="SIZE:METHOD=K,...: a package method runs only the first K frames of the SIZE^3 "
        "sequence (0: not at all), for slow methods at large sizes; noted in JSON and table",
    )
    p.add_argument("--suite", default="obstacles3d", help="built-in suite to run too ('none')")
    p.add_argument("--repeat", type=int, default=1, help="timed repeats (min and median)")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--threads", type=int, default=1, help="torch threads (pinned, recorded)")
    p.add_argument("--seed", type=int, default=7301, help="seed of the moving obstacles")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument("--petsc-python", default="/usr/bin/python3", help="python with petsc4py")
    p.add_argument("--petsc-dir", default=default_petsc_dir(), help="PETSC_DIR for it")
    p.add_argument("--mpiexec", default="mpiexec")
    p.add_argument(
        "--petsc-timeout", type=float, default=3600.0, help="seconds per PETSc configuration"
    )
    p.add_argument("--workdir", type=Path, default=None, help="folder for the matrix files")
    p.add_argument("--name", default="anchor", help="stem of the JSON/PNG files")
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    args = p.parse_args(argv)
    if args.quick:  # tiny sizes unless given
        args.sizes, args.frames = args.sizes or "10,12", args.frames or "2"
        args.suite = "quick" if args.suite == "obstacles3d" else args.suite
    args.sizes, args.frames = args.sizes or "64,128", args.frames or "10,3"
    args.sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    frames = [int(v) for v in args.frames.split(",") if v.strip()]
    if len(frames) == 1:
        frames = frames * len(args.sizes)
    if len(frames) != len(args.sizes):
        p.error(f"--frames needs one value or one per size ({len(args.sizes)})")
    args.frames = frames
    args.ranks = [int(v) for v in args.ranks.split(",") if v.strip()]
    try:
        args.cap = {
            (int(size), method): int(k)
            for item in args.cap.split(",")
            if item.strip()
            for size, _, rest in [item.partition(":")]
            for method, _, k in [rest.partition("=")]
        }
    except ValueError:
        p.error(f"--cap takes SIZE:METHOD=K entries, got {args.cap!r}")
    if any(k < 0 or m not in HARNESS_METHODS for (_, m), k in args.cap.items()):
        p.error("--cap: K >= 0 (0: not run), and only the package's methods can be capped")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        parsed = [split_method(m) for m in args.methods]
    except ValueError:
        p.error(f"a thread count after '@' must be an integer or 'auto': {args.methods}")
    unknown = [m for m, _ in parsed if m not in HARNESS_METHODS and m not in PETSC_METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}")
    if any(t is not None and (m in PETSC_METHODS or (t != "auto" and t < 1)) for m, t in parsed):
        p.error(
            "'@threads' (>= 1 or 'auto') applies to the package's methods only (PETSc: --ranks)"
        )
    if len(set(args.methods)) != len(args.methods):
        p.error("a method is listed twice")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def kernel_backends() -> dict:
    """Which forms of the package's kernels ran: native (numba) loops, inductor compiling."""
    try:
        from neurosolve.solvers import native
    except ImportError:  # code from before the native kernels
        native = None
    from neurosolve.solvers.compiled import compile_enabled

    return {
        "native": bool(native is not None and native.available()),
        "compile": compile_enabled(),
    }


def options_record(args) -> dict:
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out["cap"] = {f"{size}:{method}": k for (size, method), k in args.cap.items()}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(before)  # a caller in the same process gets its setting back


def run(args) -> int:
    import torch

    petsc = (
        probe_petsc(args)
        if any(m in PETSC_METHODS for m in args.methods)
        else {"available": False, "note": "no PETSc method selected"}
    )
    if petsc["available"] and not petsc.get("mpiexec") and max(args.ranks) > 1:
        petsc["note"] = f"{args.mpiexec} not found: PETSc runs with 1 rank only"
    if petsc.get("note"):
        print(petsc["note"], file=sys.stderr, flush=True)
    payload = {
        "benchmark": "anchor",
        "created": now_utc(),
        "rtol": args.rtol,
        "recheck_slack": RECHECK_SLACK,
        "repeat": args.repeat,
        "methods": args.methods,
        "ranks": args.ranks,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "kernels": kernel_backends(),
        "machine": dataclasses.asdict(machine_info()),
        "petsc": petsc,
        "loadavg_start": loadavg(),
        "options": options_record(args),
    }
    payload.update(sequences=[], suite=None)
    out_json = args.out / f"{args.name}.json"

    def saved() -> None:
        save_json(payload, out_json)

    with tempfile.TemporaryDirectory(prefix="anchor-", dir=args.workdir) as tmp:
        part_sequences(args, petsc, Path(tmp), payload, saved)
        part_suite(args, petsc, Path(tmp), payload, saved)
    payload["loadavg_end"] = loadavg()
    payload["finished"] = now_utc()
    saved()
    plot(payload, out_json.with_suffix(".png"))
    print(report(payload))
    print(f"\nwrote {out_json} and {out_json.with_suffix('.png').name}")
    return 0


def save_json(payload: dict, path: Path) -> None:
    """Write atomically (after every block: a run stopped early keeps what it measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def report(payload: dict) -> str:
    head = (
        f"## anchor benchmark (rtol {payload['rtol']:g}, torch {payload['torch_version']} with "
        f"{payload['torch_threads']} thread(s), PETSc "
        f"{payload['petsc'].get('petsc_version', 'absent')}, 1 thread per MPI rank; "
        f"{payload['machine']['cpu_count']} CPUs, {payload['machine']['cpu_model']})"
    )
    parts = [head]
    if payload["petsc"].get("note"):
        parts.append(f"Note: {payload['petsc']['note']}")
    parts += [sequence_table(s) for s in payload["sequences"]]
    if payload["suite"] is not None:
        parts.append(suite_table(payload["suite"]))
    return "\n\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
