"""The ``neurosolve bench`` command: run solvers on a problem suite and write a report.

Every method runs on every problem of a built-in suite (``--suite``) or of a suite file
(``--problems``) under one stopping rule, rechecked by the harness in float64; the command
writes ``results.json``, ``results.md`` and the residual plots of
:func:`neurosolve.harness.report.write_report` to ``--out`` and prints the tables. The exit
status is 1 when a method raised an error on a problem (each one is named on stderr). The
harness is imported inside the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurosolve.cli.options import (
    add_device,
    add_figure_options,
    add_method_options,
    add_quiet,
    add_threads,
    add_tolerances,
    check_tolerances,
    parse_options,
)

__all__ = ["DEFAULT_METHODS", "DEFAULT_THREADS", "add_commands"]

#: Methods ``bench`` runs when ``--methods`` is not given.
DEFAULT_METHODS = "cg,ic-pcg,amg-sa,amg-sa-pcg,amg-rs-pcg"

#: torch threads of a ``bench`` run unless ``--threads`` says otherwise: a fixed count, so
#: that two runs (on a machine where other jobs may run) time the same thing.
DEFAULT_THREADS = 1


def add_commands(top: argparse._SubParsersAction) -> None:
    """Register ``bench`` on the ``neurosolve`` subcommands."""
    from neurosolve.harness.suites import suite_names

    bench = top.add_parser(
        "bench",
        help="run solvers on a problem suite; write JSON, a table and residual plots",
        description="Run every method on every problem of a suite under one stopping rule "
        "(||b - Ax|| <= max(rtol ||b||, atol), rechecked by the harness in float64) and "
        "write results.json, results.md and residual plots to --out. Exit status 1 when a "
        "method raised an error on a problem (each is named on stderr), 2 on bad input.",
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
    bench.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    add_tolerances(bench)
    bench.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    bench.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up solve")
    bench.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="time each setup + solve N times and report the median and the minimum; "
        "iteration counts that differ between repeats are flagged",
    )
    add_threads(
        bench,
        DEFAULT_THREADS,
        "torch intra-op threads for every setup and solve, recorded in results.json "
        "(machine.torch_threads, options.threads); auto: one thread below a measured problem "
        "size, torch's setting above it",
    )
    add_device(bench, None, "torch device for torch methods (cuda)")
    add_method_options(bench)
    add_quiet(bench, "no progress bar, only results")
    figures = bench.add_argument_group("figures (residual plots)")
    add_figure_options(figures)
    figures.add_argument(
        "--time-axis",
        choices=("auto", "log", "linear"),
        default="auto",
        help="scale of the time axis; auto: log when the times span more than two decades",
    )
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from neurosolve._util.io import check_output_folder
    from neurosolve._util.validate import integer
    from neurosolve.harness.report import markdown_table, sequence_table, write_report
    from neurosolve.harness.runner import check_methods, run_suite
    from neurosolve.harness.suite_files import load_suite
    from neurosolve.harness.suites import get_suite

    check_tolerances(args)
    integer(args.repeat, "--repeat")
    check_output_folder(args.out, inputs=(args.problems,))
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
        repeat=args.repeat,
        threads=args.threads,
    )
    log_time = {"auto": None, "log": True, "linear": False}[args.time_axis]
    paths = write_report(results, args.out, fmt=args.format, dpi=args.dpi, log_time=log_time)
    if results.runs:
        print(markdown_table(results))
    seq = sequence_table(results)
    if seq:
        print()
        print(seq)
    print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return _report_errors(results)


def _report_errors(results) -> int:
    """Exit status 1, naming each failed (problem, method), when any run raised an error."""
    import sys

    failed = [r for r in results.runs if r.error]
    failed += [f for s in results.sequences for f in s.frames if f.error]
    for r in failed:
        print(f"neurosolve: error: {r.method} failed on {r.problem}: {r.error}", file=sys.stderr)
    if failed:
        total = len(results.runs) + sum(len(s.frames) for s in results.sequences)
        print(f"neurosolve: {len(failed)} of {total} runs failed (exit status 1)", file=sys.stderr)
    return 1 if failed else 0
