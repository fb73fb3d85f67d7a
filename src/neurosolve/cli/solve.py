"""The ``neurosolve solve`` command: solve one system from a file and check the answer.

It reads a matrix (``.mtx`` or ``.npz``), a right-hand side (``--rhs``, the file's own, or
ones) and optional grid information, solves with one method under the package's stopping
rule, and reports the harness's TRUE residual ``||b - A x||`` recomputed in float64, so a
method that claims convergence it did not reach is caught. The exit status is 0 when the
solve converged, 1 when it did not, 2 on bad input. numpy and the solvers are imported
inside the command.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurosolve._util.io import check_output
from neurosolve.cli.options import (
    add_device,
    add_method_options,
    add_overwrite,
    add_quiet,
    add_threads,
    add_tolerances,
    check_tolerances,
    parse_grid,
    parse_options,
)
from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["add_commands"]


def add_commands(top: argparse._SubParsersAction) -> None:
    """Register ``solve`` on the ``neurosolve`` subcommands."""
    solve = top.add_parser(
        "solve",
        help="solve one system from a .mtx/.npz file and report the true residual",
        description="Solve A x = b for a matrix in Matrix Market (.mtx) or .npz format. "
        "The right-hand side is --rhs, else the file's own, else the vector of ones. "
        "Exit status 0 when converged, 1 when not, 2 on bad input.",
    )
    solve.add_argument("system", type=Path, help="matrix file (.mtx or .npz)")
    solve.add_argument("--method", default="amg-sa-pcg", help="method name")
    add_tolerances(solve)
    solve.add_argument("--rhs", type=Path, default=None, help="right-hand side (.npy)")
    solve.add_argument("--out", type=Path, default=None, help="write the solution here (.npy)")
    solve.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write a summary (method, status, iterations, residual, seconds, threads) as JSON",
    )
    solve.add_argument(
        "--grid", default=None, help="grid of the unknowns, e.g. 64x64x64 (grid-based methods)"
    )
    solve.add_argument(
        "--flags", type=Path, default=None, help="cell flags (.npy) when solids are dropped"
    )
    add_device(solve, None, "torch device for torch methods (cuda); refused by CPU-only methods")
    add_threads(solve)
    add_overwrite(solve, "--out file")
    add_method_options(solve)
    add_quiet(solve, "no progress bar, only results")
    solve.set_defaults(func=_solve)


@dataclass
class _Problem:
    """What ``solve`` read from its files."""

    method: str
    system: Any
    b: Any
    rhs_source: str


@dataclass
class _Timed:
    """A finished solve and its wall times (seconds since an arbitrary origin)."""

    result: Any
    t0: float
    t1: float
    t2: float


def _solve(args: argparse.Namespace) -> int:
    from neurosolve.harness.runner import solver_options

    check_tolerances(args)
    if args.out is not None:
        check_output(args.out, inputs=_inputs(args), overwrite=args.overwrite, what="--out")
    problem = _read_problem(args)
    opts = solver_options(
        problem.method, args.device, parse_options(args.option).get(problem.method)
    )
    if args.device not in (None, "cpu", "auto") and "device" not in opts:
        # Silently solving on the CPU would hide that the option did nothing.
        raise InvalidInputError(
            f"method {problem.method} runs on the CPU only and takes no --device; drop "
            f"--device {args.device} or pick a torch method (cg, pcg-jacobi, dcdm, ...)"
        )
    opts["threads"] = args.threads
    timed = _run(problem, opts, args)
    return _report(problem, timed, args)


def _inputs(args: argparse.Namespace) -> list[Path]:
    """Every file ``solve`` reads: the matrix, its ``_b.mtx`` partner, --rhs, --flags."""
    system = Path(args.system)
    return [system, system.with_name(system.stem + "_b.mtx"), args.rhs, args.flags]


def _read_problem(args: argparse.Namespace) -> _Problem:
    from neurosolve.data import Grid, load_system
    from neurosolve.harness.runner import check_methods
    from neurosolve.solvers import needs_grid

    (method,) = check_methods([args.method])
    flags = _load_npy(args.flags, "cell flags") if args.flags else None
    grid = None
    if args.grid or flags is not None:
        grid = Grid(parse_grid(args.grid) if args.grid else flags.shape, flags=flags)
    system = load_system(args.system, grid=grid)
    if grid is None and needs_grid(method):
        raise InvalidInputError(
            f"method {method} works on structured grids: pass --grid NxN or NxNxN (unknowns in "
            "lexicographic order), plus --flags F.npy if solid cells were dropped; without a grid "
            "use cg, ic-pcg, amg-sa-pcg or amg-rs-pcg"
        )
    b, rhs_source = _right_hand_side(args, system)
    system.b = b
    return _Problem(method, system, b, rhs_source)


def _right_hand_side(args: argparse.Namespace, system: Any) -> tuple[Any, str]:
    import numpy as np

    if args.rhs is not None:
        b = _load_npy(args.rhs, "right-hand side")
        if b.dtype.kind == "c":
            # Dropping the imaginary part would solve another system (the API refuses too).
            raise InvalidInputError(
                f"right-hand side {args.rhs} is complex ({b.dtype}); the solvers take real "
                "systems: solve the real and imaginary parts separately"
            )
        if b.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"right-hand side {args.rhs} holds {b.dtype} values, not numbers"
            )
        b = b.astype(np.float64).ravel()
        if b.size != system.n:
            raise InvalidInputError(
                f"right-hand side {args.rhs} has {b.size} entries, the matrix has {system.n} rows"
            )
        rhs_source = str(args.rhs)
    elif system.b is not None:
        b, rhs_source = system.b, "from the system file"
    else:
        b, rhs_source = np.ones(system.n), "ones"
    if not np.all(np.isfinite(b)):
        raise InvalidInputError("the right-hand side contains NaN or Inf")
    return b, rhs_source


def _run(problem: _Problem, opts: dict[str, Any], args: argparse.Namespace) -> _Timed:
    from neurosolve._util.progress import progress_bar
    from neurosolve.solvers import make_solver

    method = problem.method
    bar = progress_bar(total=args.maxiter, desc=method, unit="it", enabled=not args.quiet)
    try:
        t0 = time.perf_counter()
        try:
            solver = make_solver(method, problem.system, **opts)
        except TypeError as exc:  # an option the method's factory does not take
            raise InvalidInputError(
                f"method {method!r} rejected its options {opts}: {exc}"
            ) from exc
        t1 = time.perf_counter()
        result = solver.solve(
            problem.b,
            rtol=args.rtol,
            atol=args.atol,
            maxiter=args.maxiter,
            callback=lambda *a, **k: bar.update(1),
        )
        t2 = time.perf_counter()
    finally:
        bar.close()
    return _Timed(result, t0, t1, t2)


def _report(problem: _Problem, timed: _Timed, args: argparse.Namespace) -> int:
    import numpy as np

    from neurosolve.solvers import stopping_threshold

    result, b, system = timed.result, problem.b, problem.system
    x = result.x.detach().cpu().double().numpy() if hasattr(result.x, "detach") else result.x
    x = np.asarray(x, dtype=np.float64).reshape(b.shape)
    rnorm = float(np.linalg.norm(b - system.A @ x))
    bnorm = float(np.linalg.norm(b))
    threshold = stopping_threshold(bnorm, args.rtol, args.atol)
    converged = result.converged and rnorm <= threshold * 1.01
    print(f"system: {args.system} (n={system.n}, nnz={system.A.nnz}), rhs: {problem.rhs_source}")
    print(f"method: {problem.method}")
    reason = result.reason
    if not reason.startswith(result.status.value):
        reason = f"{result.status.value}: {reason}"
    print(f"status: {reason}")
    print(f"iterations: {result.iterations} (matvecs {result.matvecs})")
    print(f"true relative residual: {rnorm / bnorm if bnorm else rnorm:.3e} (rtol {args.rtol:g})")
    print(f"setup seconds: {timed.t1 - timed.t0:.4g}  solve seconds: {timed.t2 - timed.t1:.4g}")
    if result.converged and not converged:
        print("WARNING: the method claimed convergence but the true residual misses the tolerance")
    if args.out is not None:
        _save_npy(args.out, x)
        print(f"solution: {args.out}")
    if getattr(args, "json", None) is not None:
        _save_summary(args, problem, timed, rnorm / bnorm if bnorm else rnorm, converged)
        print(f"summary: {args.json}")
    return 0 if converged else 1


def _threads(result: Any) -> dict[str, Any]:
    # The thread counts the solve ran under: torch's intra-op pool (as the solver's thread
    # policy set it, when torch is loaded), the --threads setting, and the OpenMP / BLAS
    # setting numpy and scipy follow.
    import os
    import sys

    torch = sys.modules.get("torch")
    used = (result.info or {}).get("threads")
    if used is None and torch is not None:
        used = torch.get_num_threads()
    return {
        "torch": int(used) if used is not None else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
    }


def _solve_summary(
    problem: _Problem, timed: _Timed, relative_residual: float, converged: bool
) -> dict[str, Any]:
    """The ``--json`` record of one solve (a plain dict of JSON types)."""
    result = timed.result
    return {
        "system": None,
        "n": int(problem.system.n),
        "nnz": int(problem.system.A.nnz),
        "rhs": problem.rhs_source,
        "method": problem.method,
        "status": result.status.value,
        "reason": result.reason,
        "converged": bool(converged),
        "claimed_converged": bool(result.converged),
        "iterations": int(result.iterations),
        "matvecs": int(result.matvecs),
        "final_relative_residual": float(relative_residual),
        "setup_seconds": float(timed.t1 - timed.t0),
        "solve_seconds": float(timed.t2 - timed.t1),
        "threads": _threads(result),
    }


def _save_summary(
    args: argparse.Namespace,
    problem: _Problem,
    timed: _Timed,
    relative_residual: float,
    converged: bool,
) -> None:
    import json

    from neurosolve._util.io import atomic_write_text

    summary = _solve_summary(problem, timed, relative_residual, converged)
    summary["system"] = str(args.system)
    summary["threads"]["setting"] = args.threads
    summary.update({"rtol": args.rtol, "atol": args.atol, "maxiter": args.maxiter})
    atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")


def _load_npy(path: Path, what: str) -> Any:
    # A .npy array, never unpickled; the error names `what`.
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileFormatError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise FileFormatError(f"{what} file {path} is a directory, not a file") from None
    except PermissionError:
        raise FileFormatError(f"{what} file {path}: permission denied") from None
    except (OSError, ValueError) as exc:
        # numpy's own text suggests allow_pickle=True, which would run code from the file.
        reason = "it holds Python objects" if "pickle" in str(exc) else "not a .npy array file"
        raise FileFormatError(f"cannot read {what} file {path}: {reason}") from exc


def _save_npy(path: Path, x: Any) -> None:
    import numpy as np

    from neurosolve._util.io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, x)

    atomic_write(path, write)
