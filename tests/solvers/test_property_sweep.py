"""The solver property sweep, fixed-seed subset (the 2,000-case run: benchmarks/property_sweep.py).

Over every method of :func:`neurosolve.solvers.available`, float32 and float64, constant and
variable coefficients, systems with a grid and bare CSR matrices, SPD, indefinite and
non-symmetric matrices, and right-hand sides of ordinary and extreme (1e155 .. 1e-300) size:
"converged" implies the true relative residual, recomputed in float64 from the original matrix,
is at most rtol; non-symmetric input is refused; indefinite input is never plain "converged".
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "property_cases", Path(__file__).with_name("property_cases.py")
)
property_cases = sys.modules.setdefault("property_cases", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(property_cases)

CASES = property_cases.generate(208, seed=20261202)


def test_the_subset_covers_every_axis():
    from neurosolve.solvers import available

    assert len(CASES) >= 200
    assert {c.method for c in CASES} == set(available())
    assert {c.dtype for c in CASES} == {None, "float32", "float64"}
    assert {c.kind for c in CASES} == {"spd", "indefinite", "nonsymmetric"}
    assert {c.with_grid for c in CASES} == {True, False}
    assert {c.coefficients for c in CASES} == {"constant", "variable"}
    assert {len(c.shape) for c in CASES} == {2, 3}
    assert any(c.scale > 1e150 for c in CASES) and any(c.scale < 1e-150 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_convergence_claims_hold(case):
    outcome, violation = property_cases.check(case)
    assert violation is None, f"{case.id}: {outcome}: {violation}"
