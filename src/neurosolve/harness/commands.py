"""The ``neurosolve bench`` and ``neurosolve solve`` commands.

``neurosolve bench`` runs methods on a suite and writes ``results.json``, ``results.md``
and residual plots; ``neurosolve solve`` solves one system from a file and reports the
harness's true residual. Heavy imports happen inside the command functions so building
the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["add_commands", "parse_grid", "parse_options"]

DEFAULT_METHODS = "cg,ic-pcg,amg-sa,amg-sa-pcg,amg-rs-pcg"


def parse_grid(text: str) -> tuple[int, ...]:
    """Parse a grid shape like ``64x64x64``.

    Examples
    --------
    >>> parse_grid("64x32")
    (64, 32)
    """
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"grid must look like 64x64 or 32x32x32, got {text!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InvalidInputError(f"grid must have 2 or 3 positive sizes, got {text!r}")
    return shape


def parse_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """Parse ``METHOD.KEY=VALUE`` strings into ``{method: {key: value}}``.

    Values are read as JSON when they parse (numbers, booleans, lists), else kept as text.

    Examples
    --------
    >>> parse_options(["dcdm.model=m.pt", "amg-sa-pcg.strength=0.25"])
    {'dcdm': {'model': 'm.pt'}, 'amg-sa-pcg': {'strength': 0.25}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise InvalidInputError(f"--option must look like METHOD.KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


def add_commands(groups) -> None:
    """Register ``bench`` and ``solve`` on ``groups.top``."""
    from neurosolve.harness.suites import suite_names

    bench = groups.top.add_parser(
        "bench",
        help="run solvers on a problem suite; write JSON, a table and residual plots",
        description="Run every method on every problem of a suite under one stopping rule "
        "(||b - Ax|| <= max(rtol ||b||, atol), rechecked by the harness in float64) and "
        "write results.json, results.md and residual plots to --out.",
    )
    source = bench.add_mutually_exclusive_group()
    source.add_argument(
        "--suite",
        default=None,
        help=f"built-in suite: {', '.join(suite_names())} (default smoke)",
    )
    source.add_argument(
        "--problems", type=Path, default=None, help="suite file (.json or .toml) to run instead"
    )
    bench.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated method names (default {DEFAULT_METHODS})",
    )
    _add_tolerances(bench)
    bench.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    bench.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up solve")
    _add_common(bench)
    bench.set_defaults(func=_bench)

    solve = groups.top.add_parser(
        "solve",
        help="solve one system from a .mtx/.npz file and report the true residual",
        description="Solve A x = b for a matrix in Matrix Market (.mtx) or .npz format. "
        "The right-hand side is --rhs, else the file's own, else the vector of ones. "
        "Exit status 0 when converged, 1 when not, 2 on bad input.",
    )
    solve.add_argument("system", type=Path, help="matrix file (.mtx or .npz)")
    solve.add_argument("--method", default="amg-sa-pcg", help="method name (default amg-sa-pcg)")
    _add_tolerances(solve)
    solve.add_argument("--rhs", type=Path, default=None, help="right-hand side (.npy)")
    solve.add_argument("--out", type=Path, default=None, help="write the solution here (.npy)")
    solve.add_argument(
        "--grid", default=None, help="grid of the unknowns, e.g. 64x64x64 (grid-based methods)"
    )
    solve.add_argument(
        "--flags", type=Path, default=None, help="cell flags (.npy) when solids are dropped"
    )
    _add_common(solve)
    solve.set_defaults(func=_solve)


def _add_tolerances(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance")
    parser.add_argument("--maxiter", type=int, default=None, help="iteration limit")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="torch device for torch methods (cuda)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="option for a method's factory, repeatable (e.g. dcdm.model=model.pt)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only results")


def _check_tolerances(args) -> None:
    import math

    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"--{name} must be finite and >= 0, got {value}")
    if args.maxiter is not None and args.maxiter < 1:
        raise InvalidInputError(f"--maxiter must be >= 1, got {args.maxiter}")


def _bench(args) -> int:
    from neurosolve.harness.report import markdown_table, sequence_table, write_report
    from neurosolve.harness.runner import check_methods, run_suite
    from neurosolve.harness.suites import get_suite, load_suite

    _check_tolerances(args)
    methods = check_methods(args.methods.split(","))
    suite = load_suite(args.problems) if args.problems else get_suite(args.suite or "smoke")
    results = run_suite(
        suite,
        methods,
        rtol=args.rtol,
        atol=args.atol,
        maxiter=args.maxiter,
        warmup=not args.no_warmup,
        device=args.device,
        method_options=parse_options(args.option),
        progress=not args.quiet,
    )
    paths = write_report(results, args.out)
    if results.runs:
        print(markdown_table(results))
    seq = sequence_table(results)
    if seq:
        print()
        print(seq)
    print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _solve(args) -> int:
    import time

    import numpy as np

    from neurosolve.data import load_system
    from neurosolve.data.grids import Grid
    from neurosolve.harness.runner import _solver_options, check_methods
    from neurosolve.solvers import make_solver
    from neurosolve.solvers.result import stopping_threshold

    _check_tolerances(args)
    (method,) = check_methods([args.method])
    flags = _load_npy(args.flags, "cell flags") if args.flags else None
    grid = None
    if args.grid or flags is not None:
        grid = Grid(parse_grid(args.grid) if args.grid else flags.shape, flags=flags)
    system = load_system(args.system, grid=grid)
    from neurosolve.solvers.registry import needs_grid

    if grid is None and needs_grid(method):
        raise InvalidInputError(
            f"method {method} works on structured grids: pass --grid NxN or NxNxN (unknowns in "
            "lexicographic order), plus --flags F.npy if solid cells were dropped; without a grid "
            "use cg, ic-pcg, amg-sa-pcg or amg-rs-pcg"
        )
    if args.rhs is not None:
        b = _load_npy(args.rhs, "right-hand side").astype(np.float64).ravel()
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
    system.b = b
    opts = _solver_options(method, args.device, parse_options(args.option).get(method))

    from tqdm.auto import tqdm

    bar = tqdm(
        total=args.maxiter,
        desc=f"{method}",
        unit="it",
        disable=args.quiet or not sys.stderr.isatty(),
    )
    try:
        t0 = time.perf_counter()
        try:
            solver = make_solver(method, system, **opts)
        except TypeError as exc:  # an option the method's factory does not take
            raise InvalidInputError(
                f"method {method!r} rejected its options {opts}: {exc}"
            ) from exc
        t1 = time.perf_counter()
        result = solver.solve(
            b,
            rtol=args.rtol,
            atol=args.atol,
            maxiter=args.maxiter,
            callback=lambda *a, **k: bar.update(1),
        )
        t2 = time.perf_counter()
    finally:
        bar.close()
    x = result.x.detach().cpu().double().numpy() if hasattr(result.x, "detach") else result.x
    x = np.asarray(x, dtype=np.float64).reshape(b.shape)
    rnorm = float(np.linalg.norm(b - system.A @ x))
    bnorm = float(np.linalg.norm(b))
    threshold = stopping_threshold(bnorm, args.rtol, args.atol)
    converged = result.converged and rnorm <= threshold * 1.01
    print(f"system: {args.system} (n={system.n}, nnz={system.A.nnz}), rhs: {rhs_source}")
    print(f"method: {method}")
    reason = result.reason
    if not reason.startswith(result.status.value):
        reason = f"{result.status.value}: {reason}"
    print(f"status: {reason}")
    print(f"iterations: {result.iterations} (matvecs {result.matvecs})")
    print(f"true relative residual: {rnorm / bnorm if bnorm else rnorm:.3e} (rtol {args.rtol:g})")
    print(f"setup seconds: {t1 - t0:.4g}  solve seconds: {t2 - t1:.4g}")
    if result.converged and not converged:
        print("WARNING: the method claimed convergence but the true residual misses the tolerance")
    if args.out is not None:
        _save_npy(args.out, x)
        print(f"solution: {args.out}")
    return 0 if converged else 1


def _load_npy(path: Path, what: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileFormatError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:
        # numpy's own text suggests allow_pickle=True, which would run code from the file.
        reason = "it holds Python objects" if "pickle" in str(exc) else "not a .npy array file"
        raise FileFormatError(f"cannot read {what} file {path}: {reason}") from exc


def _save_npy(path: Path, x) -> None:
    import os
    import tempfile

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, x)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
