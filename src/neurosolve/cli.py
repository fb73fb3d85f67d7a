"""The ``neurosolve`` command.

Each area of the package contributes its subcommands through a module that defines
``add_commands(groups: CommandGroups) -> None``; see :data:`COMMAND_MODULES`. A command
is an ``argparse`` subparser whose ``func`` default takes the parsed namespace and
returns an exit code. Errors the user caused (:class:`~neurosolve.errors.NeurosolveError`)
are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from neurosolve._version import __version__
from neurosolve.errors import NeurosolveError

__all__ = ["CommandGroups", "build_parser", "main"]

#: Modules that add subcommands, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "neurosolve.data.commands",
    "neurosolve.solvers.dcdm.commands",
    "neurosolve.harness.commands",
    "neurosolve.operators.commands",
    "neurosolve.operators.sfno_commands",
    "neurosolve.solvers.mgpc_commands",
)


@dataclass
class CommandGroups:
    """Where command modules attach their subparsers.

    Attributes
    ----------
    top : argparse._SubParsersAction
        ``neurosolve <command>``.
    train : argparse._SubParsersAction
        ``neurosolve train <model>``: one subparser per trainable model.
    """

    top: argparse._SubParsersAction
    train: argparse._SubParsersAction


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="neurosolve",
        description="Learned PDE solvers, PDE data generation and a Krylov-style benchmark "
        "harness. Run 'neurosolve <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"neurosolve {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics to stderr")
    top = parser.add_subparsers(dest="command", metavar="<command>")
    train_parser = top.add_parser(
        "train",
        help="train a model (dcdm, mgno, fno, sfno, ...)",
        description="Train a model. Run 'neurosolve train <model> --help' for its options.",
    )
    train = train_parser.add_subparsers(dest="model", metavar="<model>")
    train_parser.set_defaults(func=lambda args: _missing(train_parser, "model"))
    groups = CommandGroups(top=top, train=train)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(groups)
    return parser


def add_optimization_arguments(
    parser: argparse.ArgumentParser, *, epochs: int, lr: float, batch_size: int | None = None
) -> argparse._ArgumentGroup:
    """The "optimization" option group of the solver-network ``train`` commands.

    Adds ``--epochs``, ``--batch-size`` (when ``batch_size`` is given), ``--lr``,
    ``--schedule``, ``--seed``, ``--device`` and ``--quiet``, with the given defaults.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> _ = add_optimization_arguments(p, epochs=3, lr=1e-3)
    >>> a = p.parse_args(["--lr", "0.01"])
    >>> a.epochs, a.lr, a.schedule, a.quiet
    (3, 0.01, 'cosine', False)
    """
    opt = parser.add_argument_group("optimization")
    opt.add_argument("--epochs", type=int, default=epochs)
    if batch_size is not None:
        opt.add_argument("--batch-size", type=int, default=batch_size)
    opt.add_argument("--lr", type=float, default=lr)
    opt.add_argument("--schedule", default="cosine", choices=("cosine", "onecycle", "constant"))
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or auto")
    opt.add_argument("--quiet", action="store_true", help="no progress bars")
    return opt


def _missing(parser: argparse.ArgumentParser, what: str) -> int:
    parser.print_help(sys.stderr)
    print(f"\nerror: choose a {what}", file=sys.stderr)
    return 2


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
    except KeyboardInterrupt:
        print("neurosolve: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``neurosolve info F.h5 | head``): stop quietly, as Unix tools do.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        warnings.showwarning = previous_showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # One line per warning for command-line users, not Python's file:line + source.
    print(f"neurosolve: warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
