"""The ``neurosolve`` command: the parser of every subcommand and the console entry point.

Each command group lives in its own module of this package (:mod:`~neurosolve.cli.data`,
:mod:`~neurosolve.cli.bench`, :mod:`~neurosolve.cli.solve`, :mod:`~neurosolve.cli.train`,
:mod:`~neurosolve.cli.evaluate`, :mod:`~neurosolve.cli.refine`), which defines
``add_commands(top)`` attaching its subparsers to the top-level subparsers; shared options
come from :mod:`~neurosolve.cli.options`. A command's ``func`` default takes the parsed
namespace and returns an exit code. Errors the user caused
(:class:`~neurosolve.errors.NeurosolveError`) are printed as one line and exit with status
2, never as a traceback. Heavy imports (numpy, torch, h5py) happen inside the command
functions, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from neurosolve._version import __version__
from neurosolve.cli import bench, data, datasets, evaluate, refine, solve, train
from neurosolve.cli.options import Parser, add_verbose
from neurosolve.errors import NeurosolveError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules that add subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = (train, data, datasets, bench, solve, evaluate, refine)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every command.

    Examples
    --------
    >>> parser = build_parser()
    >>> parser.parse_args(["solve", "A.mtx", "-q", "-v"]).quiet
    True
    """
    parser = Parser(
        prog="neurosolve",
        description="Learned PDE solvers, PDE data generation and a Krylov-style benchmark "
        "harness. Run 'neurosolve <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"neurosolve {__version__}")
    add_verbose(parser, top=True)
    top = parser.add_subparsers(dest="command", metavar="<command>")
    for module in COMMAND_MODULES:
        module.add_commands(top)
    _add_verbose_everywhere(parser)
    return parser


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    # -v/--verbose after the subcommand too (`neurosolve solve A.mtx -v`).
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                add_verbose(sub)
                _add_verbose_everywhere(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurosolve`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except NeurosolveError as exc:
        print(f"neurosolve: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "neurosolve: error: out of memory; use a smaller problem or fewer samples",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("neurosolve: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``neurosolve info F.h5 | head``): stop quietly, as Unix tools do.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"neurosolve: error: no space left on device{where}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous_showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # One line per warning for command-line users, not Python's file:line + source.
    print(f"neurosolve: warning: {message}", file=file or sys.stderr)
