"""The typed pieces of the solver contract: Status order, SolveInfo, Solver subclasses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurosolve.errors import InvalidInputError
from neurosolve.solvers import SolveInfo, Solver, SolveResult, Status, get_factory
from neurosolve.solvers.registry import BUILTIN_METHODS

CLASSICAL = [m for m in BUILTIN_METHODS if m not in ("dcdm", "mgpc-pcg")]


def test_status_severity_is_a_total_order():
    ranks = sorted(Status, key=lambda s: s.severity)
    assert ranks[0] is Status.NONFINITE and ranks[-1] is Status.CONVERGED
    assert [Status.from_severity(s.severity) for s in Status] == list(Status)
    assert Status.worst([Status.MAXITER, Status.BREAKDOWN, Status.CONVERGED]) is Status.BREAKDOWN
    assert Status.worst(iter([])) is Status.CONVERGED


def test_info_reads_like_a_mapping_of_its_set_fields():
    info = SolveInfo(method="cg", alphas=np.ones(3), extra={"custom": 1})
    assert info["method"] == "cg" and info.get("custom") == 1
    assert "alphas" in info and "betas" not in info and info.get("betas") is None
    assert sorted(info) == ["alphas", "custom", "method"] and len(info) == 3
    with pytest.raises(KeyError):
        info["betas"]
    assert dict(SolveInfo()) == {} and not SolveInfo()


def test_a_plain_mapping_becomes_a_record():
    result = SolveResult(
        x=np.zeros(2),
        status=Status.CONVERGED,
        iterations=1,
        residuals=np.ones(2),
        info={"alphas": [1.0], "mine": "x"},
    )
    assert isinstance(result.info, SolveInfo)
    assert result.info.alphas == [1.0] and result.info.extra == {"mine": "x"}


def test_with_info_copies_and_leaves_the_original():
    result = SolveResult(x=0.0, status=Status.CONVERGED, iterations=0, residuals=np.zeros(1))
    other = result.with_info(levels=3, cycle="W")
    assert other.info.levels == 3 and other.info["cycle"] == "W"
    assert "levels" not in result.info
    with pytest.raises(TypeError):
        result.with_info(no_such_field=1)
    assert dataclasses.replace(other.info, levels=4).levels == 4


@pytest.mark.parametrize("method", CLASSICAL)
def test_every_classical_method_is_a_solver(method):
    factory = get_factory(method)
    assert issubclass(factory, Solver)
    assert factory.name == method
    assert factory.solve is Solver.solve  # the one docstring and the one set of checks


def test_solver_checks_its_arguments_once():
    import scipy.sparse as sp

    solver = get_factory("cg")(sp.diags([1.0, 2.0]).tocsr())
    with pytest.raises(InvalidInputError, match="maxiter"):
        solver.solve(np.ones(2), maxiter=-1)
    with pytest.raises(InvalidInputError, match="rtol"):
        solver.solve(np.ones(2), rtol=float("nan"))
    with pytest.raises(InvalidInputError, match="not a fixed linear map"):
        solver.aspreconditioner()
