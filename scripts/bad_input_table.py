"""Run the bad-input table of ``tests/test_bad_input.py`` and print it as markdown.

Every row is executed (the CLI rows in-process through ``neurosolve.cli.main``, the API
rows as Python calls) and the table shows what the user actually saw, so the table in
``docs/robustness.md`` is measured, not written by hand::

    python scripts/bad_input_table.py > table.md
    python scripts/bad_input_table.py --check   # also fail (exit 1) when a row misbehaves

A row whose behaviour is a known gap (``xfail`` in the test) is marked "known gap".
The last table lists the tests of ``tests/test_hostile_input.py`` (cases that need a setup
around the command: a full disk, a second writer, a resumed run), each with the first line
of its docstring ("case: behaviour") and the outcome of running it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_cases():
    spec = importlib.util.spec_from_file_location(
        "bad_input_cases", ROOT / "tests" / "test_bad_input.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _cell(text: str, folder: Path, limit: int = 220) -> str:
    text = text.replace(str(folder) + "/", "").replace(str(folder), ".")
    text = text.replace(str(ROOT) + "/", "")
    text = re.sub(r"\b(in|out\d+)/", "", " ".join(text.split()))
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    """Print the tables; with ``--check`` return 1 when a row without a known gap fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a row misbehaves")
    args = parser.parse_args(argv)
    cases = _load_cases()
    bad_rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = cases.make_inputs(folder / "in")
        print("| Bad input | Command | Exit | What the user sees | OK |")
        print("|---|---|---|---|---|")
        for i, case in enumerate(cases.CLI_CASES):
            out_dir = folder / f"out{i}"
            out_dir.mkdir()
            argv_i = cases.fill(case.argv, inputs, out_dir)
            code, out, err = cases.run_cli(argv_i)
            try:
                cases.check_cli(case, code, out, err, out_dir)
                ok = "yes"
            except AssertionError:
                ok = "**known gap**" if case.xfail else "**NO**"
                if not case.xfail:
                    bad_rows.append(case.id)
            seen = cases.what_user_sees(case, code, out, err)
            if "Traceback" in err:
                last = [line for line in err.splitlines() if line.strip()][-1]
                seen = f"traceback ending in: {last}"
            command = _cell("neurosolve " + " ".join(argv_i), folder)
            print(
                f"| {case.bad} | `{command}` | {code} | {_cell(seen, folder)} | {ok} |",
                flush=True,
            )
        print()
        print("| Bad input | Python call | Raises | OK |")
        print("|---|---|---|---|")
        for case in cases.API_CASES:
            exc = cases.run_api(case, inputs)
            if exc is None:
                seen, good = "nothing", False
            else:
                seen = f"{type(exc).__name__}: {exc}"
                good = isinstance(exc, case.error) and re.search(case.message, str(exc))
                good = good and not any(t in str(exc) for t in cases.FORBIDDEN)
            ok = "yes" if good else ("**known gap**" if case.xfail else "**NO**")
            if not good and not case.xfail:
                bad_rows.append(case.id)
            print(f"| {case.bad} | `{case.code}` | {_cell(seen, folder)} | {ok} |", flush=True)
    bad_rows += _hostile_table()
    if bad_rows:
        print(f"\nrows that misbehave: {', '.join(bad_rows)}", file=sys.stderr)
    return 1 if (args.check and bad_rows) else 0


HOSTILE = ROOT / "tests" / "test_hostile_input.py"


def _hostile_cases() -> list[tuple[str, str, str]]:
    """(test name, case, behaviour) from the docstrings of the hostile-input tests."""
    tree = ast.parse(HOSTILE.read_text(encoding="utf-8"))
    cases = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            first = (ast.get_docstring(node) or node.name).splitlines()[0]
            case, _, behaviour = first.partition(": ")
            cases.append((node.name, case, behaviour.rstrip(".")))
    return cases


def _hostile_table() -> list[str]:
    """Run the hostile-input tests, print their table, return the names that failed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(HOSTILE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    outcome: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = re.search(r"::(test_\w+)(?:\[\S*\])? (PASSED|FAILED|SKIPPED|ERROR)", line)
        if match:
            name, word = match.groups()
            if outcome.get(name, "PASSED") == "PASSED":  # one failed parameter fails the row
                outcome[name] = word
    print()
    print("| Case (needs a setup) | Behaviour | Test | OK |")
    print("|---|---|---|---|")
    failed = []
    for name, case, behaviour in _hostile_cases():
        word = outcome.get(name, "NOT RUN")
        ok = {"PASSED": "yes", "SKIPPED": "skipped here"}.get(word, "**NO**")
        if ok == "**NO**":
            failed.append(name)
        print(f"| {_cell(case, ROOT)} | {_cell(behaviour, ROOT)} | `{name}` | {ok} |")
    return failed


if __name__ == "__main__":
    sys.exit(main())
