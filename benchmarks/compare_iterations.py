"""Compare the iteration counts and statuses of two benchmark JSON files.

A refactoring that changes no numerics leaves every ``iterations``, ``status`` and
``converged`` entry of a benchmark's JSON unchanged. This script lists the entries that
differ (by their path in the file: problem, method, frame) and exits 1 when any does::

    python benchmarks/mgpc.py --out /tmp/after
    python benchmarks/compare_iterations.py benchmarks/results/mgpc.json /tmp/after/mgpc.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

KEYS = ("iterations", "column_iterations", "status", "converged", "converged_all")
LABELS = ("problem", "method", "name", "sequence", "frame")


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        parts = [
            str(item[k])
            for k in LABELS
            if isinstance(item.get(k), (str, int)) and not isinstance(item.get(k), bool)
        ]
        if parts:
            return ":".join(parts)
    return str(index)


def entries(data: Any, path: str = "") -> dict[str, Any]:
    """Every entry named in :data:`KEYS`, keyed by its path in the file."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if key in KEYS:
                out[f"{path}/{key}"] = value
            else:
                out.update(entries(value, f"{path}/{key}"))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.update(entries(value, f"{path}/{_label(value, i)}"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = p.parse_args(argv)
    a = entries(json.loads(args.before.read_text()))
    b = entries(json.loads(args.after.read_text()))
    keys = sorted(set(a) | set(b))
    differ = [k for k in keys if a.get(k) != b.get(k)]
    print(f"{len(keys)} entries compared, {len(differ)} differ")
    for k in differ:
        print(f"{k}: {a.get(k)} -> {b.get(k)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
