"""The solver property sweep: 2,000 generated cases, and the number of violations.

Cases come from ``tests/solvers/property_cases.py`` (the CI test runs a fixed-seed subset
of 208): every method of ``neurosolve.solvers.available()`` in turn, float32 and float64
where the method takes ``dtype``, constant and variable coefficients, a LinearSystem with
its grid or the bare CSR matrix, SPD, indefinite (positive diagonal) and non-symmetric
matrices, 2D grids 6^2..12^2 and 3D grids 4^3..6^3, right-hand sides of ordinary size and
of 1e155, 1e200, 1e-162, 1e-300. The properties:

- status "converged" implies the true relative residual, recomputed in float64 from the
  original matrix and right-hand side, is at most rtol;
- non-symmetric input is refused (InvalidInputError);
- indefinite input is never plain "converged".

Prints a table (outcomes per method and matrix kind, violations) and writes
benchmarks/results/property_sweep.json.

    python benchmarks/property_sweep.py                  # 2,000 cases, about 5 minutes
    python benchmarks/property_sweep.py --cases 300 --seed 7
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load_cases():
    path = ROOT / "tests" / "solvers" / "property_cases.py"
    spec = importlib.util.spec_from_file_location("property_cases", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["property_cases"] = module
    spec.loader.exec_module(module)
    return module


def run(count: int, seed: int) -> dict:
    """Run ``count`` cases from ``seed``; the summary and every violation."""
    cases_module = _load_cases()
    cases = cases_module.generate(count, seed=seed)
    outcomes: dict[str, Counter] = defaultdict(Counter)
    seconds: Counter = Counter()
    violations = []
    start = time.perf_counter()
    for case in cases:
        t = time.perf_counter()
        outcome, violation = cases_module.check(case)
        seconds[case.method] += time.perf_counter() - t
        outcomes[case.method][f"{case.kind}:{outcome}"] += 1
        if violation is not None:
            violations.append({"case": case.id, "outcome": outcome, "violation": violation})
    return {
        "cases": count,
        "seed": seed,
        "violations": len(violations),
        "violation_list": violations,
        "outcomes": {m: dict(c) for m, c in sorted(outcomes.items())},
        "seconds_per_method": {m: round(s, 3) for m, s in sorted(seconds.items())},
        "total_seconds": round(time.perf_counter() - start, 2),
    }


def table(summary: dict) -> str:
    """The outcomes per method as a text table."""
    kinds = ("spd", "indefinite", "nonsymmetric")
    lines = [f"{'method':<16}" + "".join(f"{k:<48}" for k in kinds)]
    for method, counts in summary["outcomes"].items():
        cells = []
        for kind in kinds:
            parts = sorted((o.split(":", 1)[1], n) for o, n in counts.items() if o.startswith(kind))
            cells.append(", ".join(f"{o} {n}" for o, n in parts))
        lines.append(f"{method:<16}" + "".join(f"{c:<48}" for c in cells))
    lines.append(
        f"{summary['cases']} cases (seed {summary['seed']}), {summary['violations']} "
        f"violations, {summary['total_seconds']} s"
    )
    lines.extend(f"  VIOLATION {v['case']}: {v['violation']}" for v in summary["violation_list"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=RESULTS / "property_sweep.json")
    args = parser.parse_args(argv)
    summary = run(args.cases, args.seed)
    print(table(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
