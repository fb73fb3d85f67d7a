"""Run the bad-input table of ``tests/test_bad_input.py`` and print it as markdown.

Every row is executed (the CLI rows in-process through ``neurosolve.cli.main``, the API
rows as Python calls) and the table shows what the user actually saw, so the table in
``docs/robustness.md`` is measured, not written by hand::

    python scripts/bad_input_table.py > table.md
    python scripts/bad_input_table.py --check   # also fail (exit 1) when a row misbehaves

A row whose behaviour is a known gap (``xfail`` in the test) is marked "known gap".
"""

from __future__ import annotations

import argparse
import importlib.util
import re
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
    if bad_rows:
        print(f"\nrows that misbehave: {', '.join(bad_rows)}", file=sys.stderr)
    return 1 if (args.check and bad_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
