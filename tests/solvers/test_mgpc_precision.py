"""MGPC in mixed precision: a float32 cycle inside float64 flexible CG, to rtol 1e-10."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.data.geometry import contrast_coefficient
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.krylov import FlexibleCGSolver, PCGSolver
from neurosolve.solvers.mgpc import MGPCSolver

CASES = {
    # closed box with an open top (the benchmark scenes), obstacles
    "3d-16-openbox-obstacles": lambda: poisson(
        (16, 16, 16),
        flags=obstacle_flags((16,) * 3, "mixed", 5, boundary_air="top"),
        boundary="neumann",
    ),
    "3d-12x10x9-obstacles": lambda: poisson(
        (12, 10, 9), flags=obstacle_flags((12, 10, 9), "boxes", 6)
    ),
    "2d-40-contrast1e4": lambda: poisson(
        (40, 40), coefficient=contrast_coefficient((40, 40), 1e4, np.random.default_rng(7))
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mixed_precision_reaches_1e10_within_one_iteration_of_full(case):
    system = CASES[case]()
    b = np.random.default_rng(1).standard_normal(system.n)
    full = MGPCSolver(system, precision="full")
    mixed = MGPCSolver(system, precision="mixed")
    assert isinstance(full.pcg, PCGSolver) and not full.flexible
    assert isinstance(mixed.pcg, FlexibleCGSolver) and mixed.flexible
    assert all(lvl.diagonal.dtype == torch.float32 for lvl in mixed.hierarchy.levels)
    assert mixed.hierarchy.levels[-1].inverse.dtype == torch.float32
    r_full = full.solve(b, rtol=1e-10)
    r_mixed = mixed.solve(b, rtol=1e-10)
    assert r_full.converged and r_mixed.converged
    assert r_mixed.x.dtype == np.float64
    true = np.linalg.norm(b - system.A @ r_mixed.x) / np.linalg.norm(b)
    assert true <= 1e-10
    assert r_mixed.iterations <= r_full.iterations + 1, (r_mixed.iterations, r_full.iterations)


def test_mixed_cycle_is_the_full_cycle_to_float32_rounding():
    system = CASES["3d-12x10x9-obstacles"]()
    full = MGPCSolver(system, precision="full").aspreconditioner()
    mixed = MGPCSolver(system, precision="mixed").aspreconditioner()
    u = np.random.default_rng(2).standard_normal(system.n)
    a, b = full @ u, mixed @ u
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert 0 < rel <= 1e-5  # rounded (not the same map) and only rounded


def test_internal_layout_preconditioner_equals_the_one_on_unknowns():
    system = CASES["3d-12x10x9-obstacles"]()
    solver = MGPCSolver(system)
    op = solver.pcg.op
    assert solver.pcg.precond == solver.preconditioner.internal
    v = torch.as_tensor(np.random.default_rng(3).standard_normal((system.n, 2)))
    inside = op.from_internal(solver.preconditioner.internal(op.to_internal(v), False))
    torch.testing.assert_close(inside, solver.preconditioner(v), rtol=1e-14, atol=1e-14)


def test_precision_is_checked():
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        MGPCSolver(poisson((8, 8)), precision="half")
