"""Option builders and parsing helpers shared by every ``neurosolve`` command.

The command modules of :mod:`neurosolve.cli` build their parsers from the pieces here, so an
option that several commands take (``--quiet/-q``, ``--device``, ``--overwrite``, the
stopping rule ``--rtol/--atol/--maxiter``, the optimization group of every ``train``
command) is spelled, defaulted and documented once. :class:`Parser` is the parser class of
the whole command tree: its subparsers inherit it, so every command gets the one
:class:`HelpFormatter` (defaults shown in ``--help``) and accepts ``-v/--verbose`` after the
subcommand as well as before it. This module imports only the standard library and the
package's error, validation and plotting-constant helpers (no matplotlib), so building the
parser stays cheap.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from neurosolve._util.limits import check_memory
from neurosolve._util.plotting import DEFAULT_DPI, FORMATS
from neurosolve._util.validate import integer, positive
from neurosolve.errors import InvalidInputError

__all__ = [
    "HelpFormatter",
    "Parser",
    "RawDescriptionHelpFormatter",
    "add_device",
    "add_figure_options",
    "add_method_options",
    "add_optimization_arguments",
    "add_overwrite",
    "add_quiet",
    "add_threads",
    "add_tolerances",
    "add_verbose",
    "check_tolerances",
    "int_list",
    "int_or_list",
    "parse_grid",
    "parse_options",
    "parse_threads",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The help formatter of every command: each option's help ends with its default.

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter` it also documents options
    written without help text, and it leaves out defaults that say nothing (``None``,
    ``False``) or that the help text already states.

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="demo", formatter_class=HelpFormatter)
    >>> _ = p.add_argument("--epochs", type=int, default=10)
    >>> _ = p.add_argument("--out", help="output file")
    >>> "--epochs EPOCHS  (default: 10)" in p.format_help()
    True
    """

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _shows_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").strip()
        if not _shows_default(action) or "%(default)" in text or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    if default is None or default is False or default is argparse.SUPPRESS or default == []:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, "*")


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """:class:`HelpFormatter` that keeps the description's own line breaks (``generate``)."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` as the default formatter.

    ``add_subparsers`` hands its class on to the subparsers, so every command of the tree
    is a :class:`Parser` and formats its help the same way.

    Examples
    --------
    >>> Parser(prog="demo").formatter_class is HelpFormatter
    True
    """

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def add_verbose(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Add ``-v/--verbose``: log diagnostics to stderr.

    On the top-level parser (``top=True``) the default is ``False``; on a subcommand the
    default is suppressed, so ``neurosolve -v CMD`` is not undone by the subcommand's own
    default and ``neurosolve CMD -v`` works as well.

    Examples
    --------
    >>> top = Parser(prog="demo")
    >>> add_verbose(top, top=True)
    >>> sub = top.add_subparsers(dest="command").add_parser("run")
    >>> add_verbose(sub)
    >>> [top.parse_args(a).verbose for a in (["run"], ["-v", "run"], ["run", "-v"])]
    [False, True, True]
    """
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log diagnostics to stderr",
    )


def add_quiet(parser: Any, text: str = "no progress bar") -> None:
    """Add ``-q/--quiet`` to a parser or an argument group.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_quiet(p)
    >>> p.parse_args(["-q"]).quiet, p.parse_args([]).quiet
    (True, False)
    """
    parser.add_argument("-q", "--quiet", action="store_true", help=text)


def add_device(
    parser: Any, default: str | None = "cpu", text: str = "torch device: cpu, cuda, cuda:N or auto"
) -> None:
    """Add ``--device`` (a torch device name) to a parser or an argument group.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_device(p)
    >>> p.parse_args([]).device
    'cpu'
    """
    parser.add_argument("--device", default=default, help=text)


def parse_threads(text: str) -> int | str:
    """Argument type of ``--threads``: ``auto`` or a count >= 1.

    Examples
    --------
    >>> parse_threads("auto"), parse_threads("2")
    ('auto', 2)
    """
    text = text.strip().lower()
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:  # argparse: "invalid value", exit status 2
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}")
    return int(text)


def add_threads(parser: Any, default: int | str = "auto", text: str | None = None) -> None:
    """Add ``--threads N|auto``: torch's intra-op threads for setup and solve.

    ``auto`` runs problems below a measured size on one thread and leaves torch's setting
    (``OMP_NUM_THREADS`` or the core count) above it; see :mod:`neurosolve._util.threads`.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_threads(p, 1)
    >>> p.parse_args([]).threads, p.parse_args(["--threads", "auto"]).threads
    (1, 'auto')
    """
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default=default,
        metavar="N|auto",
        help=text
        or "torch intra-op threads for setup and solve; auto: one thread below a measured "
        "problem size, torch's setting (OMP_NUM_THREADS or the cores) above it",
    )


def add_overwrite(parser: Any, what: str = "FILE.h5") -> None:
    """Add ``--overwrite``: replace an existing output file.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_overwrite(p)
    >>> p.parse_args(["--overwrite"]).overwrite
    True
    """
    parser.add_argument("--overwrite", action="store_true", help=f"replace an existing {what}")


def add_figure_options(parser: Any) -> None:
    """Add ``--format png|pdf|svg`` and ``--dpi``: how a command's figures are written.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_figure_options(p)
    >>> a = p.parse_args(["--format", "pdf"])
    >>> a.format, a.dpi
    ('pdf', 150.0)
    """
    parser.add_argument(
        "--format", choices=FORMATS, default="png", help="file format of the figures"
    )
    parser.add_argument(
        "--dpi", type=float, default=float(DEFAULT_DPI), help="resolution of the figures"
    )


def add_tolerances(parser: argparse.ArgumentParser) -> None:
    """Add the common stopping rule ``--rtol``, ``--atol`` and ``--maxiter``.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_tolerances(p)
    >>> a = p.parse_args(["--rtol", "1e-8"])
    >>> a.rtol, a.atol, a.maxiter
    (1e-08, 0.0, None)
    """
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance")
    parser.add_argument("--maxiter", type=int, default=None, help="iteration limit")


def check_tolerances(args: argparse.Namespace) -> None:
    """Check ``--rtol`` and ``--atol`` (finite, >= 0) and ``--maxiter`` (>= 1 when given).

    Raises
    ------
    InvalidInputError
        Naming the option and the value it got.

    Examples
    --------
    >>> check_tolerances(argparse.Namespace(rtol=float("nan"), atol=0.0, maxiter=None))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: --rtol must be finite, got nan
    """
    for name in ("rtol", "atol"):
        positive(getattr(args, name), f"--{name}", allow_zero=True)
    if args.maxiter is not None:
        integer(args.maxiter, "--maxiter")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--option METHOD.KEY=VALUE`` (repeatable): options for a method's factory.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> add_method_options(p)
    >>> parse_options(p.parse_args(["--option", "dcdm.model=m.pt"]).option)
    {'dcdm': {'model': 'm.pt'}}
    """
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="option for a method's factory, repeatable (e.g. dcdm.model=model.pt)",
    )


def add_optimization_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    lr: float,
    batch_size: int | None = None,
    schedule: str = "cosine",
    weight_decay: float | None = None,
) -> argparse._ArgumentGroup:
    """The "optimization" option group of every ``train`` command.

    Adds ``--epochs``, ``--batch-size`` (when ``batch_size`` is given), ``--lr``,
    ``--weight-decay`` (when ``weight_decay`` is given), ``--schedule``, ``--seed``,
    ``--device`` and ``-q/--quiet``, with the given defaults. The group is returned so a
    command can add its own optimization options to it.

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
        opt.add_argument(
            "--batch-size",
            type=int,
            default=batch_size,
            help="samples per step (all processes together under DDP)",
        )
    opt.add_argument("--lr", type=float, default=lr, help="(peak) learning rate")
    if weight_decay is not None:
        opt.add_argument("--weight-decay", type=float, default=weight_decay)
    opt.add_argument("--schedule", default=schedule, choices=("cosine", "onecycle", "constant"))
    opt.add_argument("--seed", type=int, default=0)
    add_device(opt)
    add_quiet(opt, "no progress bars")
    return opt


def int_list(text: str) -> list[int]:
    """Argument type: a comma-separated list of integers.

    Examples
    --------
    >>> int_list("16,32")
    [16, 32]
    """
    return [int(p) for p in text.split(",") if p.strip()]


def int_or_list(text: str) -> int | list[int]:
    """Argument type: one integer, or a comma-separated list of several.

    Examples
    --------
    >>> int_or_list("2"), int_or_list("1,2")
    (2, [1, 2])
    """
    parts = int_list(text)
    return parts[0] if len(parts) == 1 else parts


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
    cells = 1.0
    for n in shape:
        cells *= n
    check_memory(64 * cells, f"--grid {text} ({cells:.3g} cells)")
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
