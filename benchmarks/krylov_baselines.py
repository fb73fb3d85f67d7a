"""Classical Krylov baselines on Poisson problems, measured by the neurosolve harness.

Problems: 2D Poisson 256^2 and 512^2, 3D Poisson 32^3 and 64^3 (128^3 with --large),
3D 64^3 with box obstacles; rtol 1e-6 for every method (true-residual rule, rechecked by
the harness). Reports

1. iterations, setup and solve seconds per method, and the total time as a ratio to
   scipy CG (unpreconditioned) on the same problem, same process;
2. the ratio of torch CG's time per iteration to scipy CG's time per iteration;
3. the time of one matvec (scipy CSR, torch CSR, torch matrix-free stencil) against the
   memory-bandwidth bound: compulsory bytes per matvec (every matrix/stencil array, the
   input and the output touched once) divided by a STREAM-like copy bandwidth measured
   in this process just before (the faster of a numpy and a torch copy on the host; the
   torch copy on the device for torch operators on a GPU).

Writes benchmarks/results/krylov_baselines.json and two PNGs of residual histories.

    python benchmarks/krylov_baselines.py            # default: about 5 minutes on 2 idle cores
    python benchmarks/krylov_baselines.py --large    # adds 128^3 (2M unknowns; slow)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from neurosolve.harness import ProblemSpec, Suite, run_suite
from neurosolve.harness.report import plot_residuals

DEFAULT_METHODS = (
    "cg,scipy-cg,pcg-jacobi,scipy-cg-jacobi,ic-pcg,amg-sa,amg-rs,amg-sa-pcg,amg-rs-pcg"
)
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    p.add_argument("--sizes-2d", default="256,512", help="2D grid sizes (n for n^2)")
    p.add_argument("--sizes-3d", default="32,64", help="3D grid sizes (n for n^3)")
    p.add_argument("--obstacles", type=int, default=64, help="3D size with obstacles (0: none)")
    p.add_argument("--large", action="store_true", help="add 3D 128^3 (2M unknowns)")
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--device", default=None, help="torch device for torch methods")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up solves")
    p.add_argument("--repeats", type=int, default=5, help="repeats of each matvec timing")
    p.add_argument(
        "--bandwidth-mb", type=int, default=256, help="array size of the copy-bandwidth test"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def build_suite(args) -> Suite:
    sizes2 = [int(s) for s in args.sizes_2d.split(",") if s]
    sizes3 = [int(s) for s in args.sizes_3d.split(",") if s]
    if args.large and 128 not in sizes3:
        sizes3.append(128)
    problems = [ProblemSpec(shape=(n, n)) for n in sizes2]
    problems += [ProblemSpec(shape=(n, n, n)) for n in sizes3]
    if args.obstacles:
        n = args.obstacles
        problems.append(ProblemSpec(shape=(n, n, n), obstacles="boxes"))
    return Suite("krylov-baselines", problems=problems)


def _on_gpu(device) -> bool:
    return device is not None and str(device).startswith("cuda")


def _sync(device) -> None:
    if _on_gpu(device):
        import torch

        torch.cuda.synchronize()


def best_time(fn, repeats: int, device=None, min_seconds: float = 0.02) -> float:
    """Best over ``repeats`` of the mean time of ``fn`` (inner loop grows to min_seconds)."""
    fn()
    _sync(device)
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        if time.perf_counter() - t0 >= min_seconds or inner >= 1024:
            break
        inner *= 2
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def numpy_copy_bandwidth(mbytes: int = 256, repeats: int = 5) -> float:
    """STREAM-copy bandwidth in bytes/s: ``dst[:] = src`` counts read + write."""
    a = np.ones(mbytes * 2**20 // 8)
    b = np.empty_like(a)
    t = best_time(lambda: np.copyto(b, a), repeats)
    return 2 * a.nbytes / t


def torch_copy_bandwidth(device, mbytes: int = 256, repeats: int = 5) -> float:
    import torch

    a = torch.ones(mbytes * 2**20 // 8, dtype=torch.float64, device=device)
    b = torch.empty_like(a)
    t = best_time(lambda: b.copy_(a), repeats, device)
    return 2 * a.numel() * a.element_size() / t


def matvec_rows(spec: ProblemSpec, device, repeats: int, bw_numpy: float, bw_torch: float):
    """Matvec timings of one problem against the bandwidth bound."""
    import torch

    from neurosolve.solvers.stencil import SparseOperator, StencilOperator

    system = spec.build()
    A = system.A
    n, nnz = A.shape[0], A.nnz
    x = np.random.default_rng(0).standard_normal(n)
    rows = []

    def row(kind, seconds, nbytes, bandwidth):
        bound = nbytes / bandwidth
        rows.append(
            {
                "problem": spec.id,
                "operator": kind,
                "n": n,
                "nnz": nnz,
                "seconds": seconds,
                "bytes": nbytes,
                "bandwidth": bandwidth,
                "bound_seconds": bound,
                "ratio_to_bound": seconds / bound,
            }
        )

    csr_bytes = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes + 2 * n * 8
    row("scipy-csr", best_time(lambda: A @ x, repeats), csr_bytes, bw_numpy)

    dev = torch.device(device or "cpu")
    sparse = SparseOperator(A, device=dev)
    xt = torch.as_tensor(x, device=dev)
    mat = sparse.matrix
    t_bytes = (
        mat.values().numel() * 8
        + mat.col_indices().numel() * mat.col_indices().element_size()
        + mat.crow_indices().numel() * mat.crow_indices().element_size()
        + 2 * n * 8
    )
    row("torch-csr", best_time(lambda: sparse.apply_internal(xt), repeats, dev), t_bytes, bw_torch)

    stencil = StencilOperator.from_system(system, device=dev)
    internal = stencil.to_internal(xt)
    cells = internal.numel()
    s_bytes = (stencil.diagonal.numel() + stencil.neighbours.numel()) * 8 + 2 * cells * 8
    seconds = best_time(lambda: stencil.apply_internal(internal), repeats, dev)
    row("torch-stencil", seconds, s_bytes, bw_torch)
    return rows


def cg_ratio_rows(results) -> list[dict]:
    by = {(r.problem, r.method): r for r in results.runs}
    rows = []
    for problem in dict.fromkeys(r.problem for r in results.runs):
        torch_cg, scipy_cg = by.get((problem, "cg")), by.get((problem, "scipy-cg"))
        if not torch_cg or not scipy_cg or torch_cg.error or scipy_cg.error:
            continue
        if torch_cg.iterations == 0 or scipy_cg.iterations == 0:
            continue
        per_t = torch_cg.solve_seconds / torch_cg.iterations
        per_s = scipy_cg.solve_seconds / scipy_cg.iterations
        rows.append(
            {
                "problem": problem,
                "torch_cg_iterations": torch_cg.iterations,
                "scipy_cg_iterations": scipy_cg.iterations,
                "torch_seconds_per_iteration": per_t,
                "scipy_seconds_per_iteration": per_s,
                "ratio": per_t / per_s,
            }
        )
    return rows


def summary_table(results) -> str:
    by = {(r.problem, r.method): r for r in results.runs}
    lines = [
        "| problem | n | method | iterations | setup s | solve s | total / scipy-cg total | "
        "converged |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results.runs:
        base = by.get((r.problem, "scipy-cg"))
        ratio = (
            f"{r.total_seconds / base.total_seconds:.3g}"
            if base and not base.error and base.total_seconds > 0 and not r.error
            else "-"
        )
        conv = "error" if r.error else ("yes" if r.converged else f"no ({r.status})")
        lines.append(
            f"| {r.problem} | {r.n} | {r.method} | {r.iterations} | {r.setup_seconds:.3g} | "
            f"{r.solve_seconds:.3g} | {ratio} | {conv} |"
        )
    return "\n".join(lines)


def _log_record(r) -> None:
    if not sys.stderr.isatty():  # the progress bar covers terminals; logs get one line a run
        print(
            f"{r.problem} / {r.method}: {r.status}, {r.iterations} it, "
            f"setup {r.setup_seconds:.3g} s, solve {r.solve_seconds:.3g} s",
            file=sys.stderr,
            flush=True,
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    suite = build_suite(args)
    results = run_suite(
        suite,
        methods,
        rtol=args.rtol,
        warmup=not args.no_warmup,
        device=args.device,
        progress=not args.quiet,
        on_record=None if args.quiet else _log_record,
    )
    # On a shared machine the bandwidth drifts with the load: measure it right before the
    # matvecs of every problem, and report the ratio to that measurement.
    matvec, bandwidths = [], []
    for spec in suite.problems:
        bw_numpy = numpy_copy_bandwidth(args.bandwidth_mb, repeats=args.repeats)
        bw_torch = torch_copy_bandwidth(
            torch.device(args.device or "cpu"), args.bandwidth_mb, repeats=args.repeats
        )
        bandwidths.append({"problem": spec.id, "numpy_copy": bw_numpy, "torch_copy": bw_torch})
        # The bound is the machine's bandwidth: on the host the faster of the two copies
        # serves every operator; on a GPU the torch operators use the device copy.
        host = max(bw_numpy, bw_torch) if not _on_gpu(args.device) else bw_numpy
        torch_bw = host if not _on_gpu(args.device) else bw_torch
        matvec += matvec_rows(spec, args.device, args.repeats, host, torch_bw)
    ratios = cg_ratio_rows(results)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "krylov_baselines",
        "rtol": args.rtol,
        "device": str(args.device or "cpu"),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "bandwidth_bytes_per_second": bandwidths,
        "torch_cg_vs_scipy_cg": ratios,
        "matvec": matvec,
        # BenchmarkResults.from_dict(payload["harness"]) rebuilds the harness records
        "harness": results.to_dict(),
    }
    out_json = args.out / "krylov_baselines.json"
    tmp = out_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=False))
    os.replace(tmp, out_json)
    plots = [
        plot_residuals(results, args.out / "krylov_baselines_residuals_iteration.png"),
        plot_residuals(results, args.out / "krylov_baselines_residuals_time.png", x="time"),
    ]

    print(
        f"## Krylov baselines (rtol {args.rtol:g}, device {args.device or 'cpu'}, "
        f"torch threads {torch.get_num_threads()})\n"
    )
    print(summary_table(results))
    print("\n## torch CG vs scipy CG, time per iteration (same process)\n")
    print("| problem | iterations torch / scipy | torch s/it | scipy s/it | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in ratios:
        print(
            f"| {r['problem']} | {r['torch_cg_iterations']} / {r['scipy_cg_iterations']} | "
            f"{r['torch_seconds_per_iteration']:.3g} | {r['scipy_seconds_per_iteration']:.3g} | "
            f"{r['ratio']:.2f} |"
        )
    print("\n## matvec vs bandwidth bound (copy bandwidth measured before each problem)\n")
    print(
        "| problem | operator | MB moved | copy GB/s | measured ms | bound ms | measured / bound |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in matvec:
        print(
            f"| {r['problem']} | {r['operator']} | {r['bytes'] / 1e6:.1f} | "
            f"{r['bandwidth'] / 1e9:.1f} | {r['seconds'] * 1e3:.3g} | "
            f"{r['bound_seconds'] * 1e3:.3g} | {r['ratio_to_bound']:.2f} |"
        )
    flagged = [r for r in results.runs if r.error or r.flags]
    if flagged:
        print(
            "\nNotes:\n"
            + "\n".join(
                f"- {r.problem} / {r.method}: {r.error or '; '.join(r.flags)}" for r in flagged
            )
        )
    print(f"\nwrote {out_json}")
    for p in plots:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
