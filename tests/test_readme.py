"""The README's examples run as written: every Python block, and every CLI line at tiny sizes.

Python blocks are executed as they stand, one after another, in a scratch folder. Each
``neurosolve ...`` line of a ``bash`` block is run in order through :func:`neurosolve.cli.main`
with its sizes shrunk (samples, resolution, epochs, suite) so the whole file takes seconds;
files written by one line are read by the next, as a user following the README would.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from neurosolve.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"

#: option -> the tiny value the smoke run uses instead
TINY = {
    "--samples": "4",
    "--resolution": "16",
    "--epochs": "1",
}
#: what ``bench --suite NAME`` runs instead: one 10^3 problem with obstacles
TINY_SUITE = '{"name": "tiny", "problems": [{"shape": [10, 10, 10], "obstacles": "boxes"}]}'


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _cli_lines() -> list[str]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            # `pip install ... && neurosolve ...`: the neurosolve part is what the README runs
            command = line.split("&&")[-1].strip()
            if command.startswith("neurosolve "):
                lines.append(command)
    return lines


def shrink(argv: list[str]) -> list[str]:
    """``argv`` with the sizes of :data:`TINY` and ``--suite NAME`` as ``--problems tiny.json``."""
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word in TINY:
            out[i + 1] = TINY[word]
        if word == "--suite":
            out[i : i + 2] = ["--problems", "tiny.json"]
    return out


def test_shrink():
    argv = ["bench", "--suite", "demo", "--methods", "cg,dcdm", "--samples", "1000"]
    assert shrink(argv) == [
        "bench",
        "--problems",
        "tiny.json",
        "--methods",
        "cg,dcdm",
        "--samples",
        "4",
    ]


def test_readme_has_the_two_commands_first():
    text = README.read_text(encoding="utf-8")
    first = _blocks("bash")[0].strip().splitlines()
    assert text.index("```bash") < text.index("\n## ")
    assert len(first) == 2
    assert first[0].startswith("pip install") and "neurosolve bench" in first[0]
    assert first[1].startswith("pip install") and first[1].endswith("python -m pytest")


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    blocks = _blocks("python")
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.split()
    assert "converged" in printed and printed.count("True") == 2  # both examples' checks


def test_readme_cli_lines_run(tmp_path, monkeypatch, capsys):
    lines = _cli_lines()
    assert any(line.startswith("neurosolve train") for line in lines)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(TINY_SUITE)
    for line in lines:
        argv = shrink(shlex.split(line)[1:])
        if "--quiet" not in argv and "-q" not in argv:
            argv.append("--quiet")
        assert main(argv) == 0, f"README line failed: {line}\n{capsys.readouterr().err}"


LINKS = re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)\)", README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("link", LINKS)
def test_readme_links_exist(link):
    assert (README.parent / link).exists(), link
