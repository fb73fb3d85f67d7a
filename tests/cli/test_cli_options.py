"""The command tree as a whole: -q everywhere, defaults in every --help, -v after the command."""

from __future__ import annotations

import argparse

import pytest

from neurosolve.cli import build_parser, main
from neurosolve.cli.options import HelpFormatter, _shows_default


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) for every parser of the tree, the top level included."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


COMMANDS = dict(_commands(build_parser()))


def _ids():
    return [" ".join(words) or "neurosolve" for words in COMMANDS]


@pytest.mark.parametrize("words", list(COMMANDS), ids=_ids())
def test_quiet_has_the_short_alias(words):
    parser = COMMANDS[words]
    quiet = [a for a in parser._actions if "--quiet" in a.option_strings]
    if quiet:
        assert quiet[0].option_strings == ["-q", "--quiet"]


def test_every_command_with_progress_takes_q():
    with_quiet = {" ".join(w) for w, p in COMMANDS.items() if "-q" in p._option_string_actions}
    assert {"generate", "merge", "bench", "solve", "evaluate", "refine"} <= with_quiet
    assert {f"train {m}" for m in ("dcdm", "mgno", "fno", "sfno", "fno3d", "mgpc")} <= with_quiet


def test_q_parses_as_quiet():
    args = build_parser().parse_args(["solve", "A.mtx", "-q"])
    assert args.quiet is True
    args = build_parser().parse_args(["train", "mgpc", "--out", "m.pt", "-q"])
    assert args.quiet is True


@pytest.mark.parametrize("words", list(COMMANDS), ids=_ids())
def test_help_shows_defaults(words):
    parser = COMMANDS[words]
    assert issubclass(parser.formatter_class, HelpFormatter)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if _shows_default(action):
            assert "default" in formatter._format_action(action), action.option_strings


def test_help_text_of_a_command_names_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "mgno", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS (default: 50)" in text
    assert "(peak) learning rate (default: 0.0005)" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "A.mtx"],
        ["train", "mgno", "--data", "d.h5", "--out", "run"],
        ["info", "d.h5"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_verbose_before_or_after_the_command(argv):
    parser = build_parser()
    assert parser.parse_args(argv).verbose is False
    assert parser.parse_args(["-v", *argv]).verbose is True
    assert parser.parse_args([*argv, "-v"]).verbose is True
    assert parser.parse_args([*argv, "--verbose"]).verbose is True


def test_every_command_accepts_verbose():
    for words, parser in COMMANDS.items():
        assert "-v" in parser._option_string_actions, words
