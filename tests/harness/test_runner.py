import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from neurosolve.errors import InvalidInputError, UnknownNameError
from neurosolve.harness import runner as runner_module
from neurosolve.harness.runner import (
    check_methods,
    measure_solve,
    run_problem,
    run_sequence,
    run_suite,
)
from neurosolve.harness.suites import ProblemSpec, SequenceSpec, Suite, get_suite
from neurosolve.solvers import registry
from neurosolve.solvers.result import SolveResult, Status

SMOKE_METHODS = [
    "cg",
    "pcg-jacobi",
    "scipy-cg",
    "scipy-cg-jacobi",
    "ic-pcg",
    "amg-sa",
    "amg-rs",
    "amg-sa-pcg",
    "amg-rs-pcg",
]
SMOKE = get_suite("smoke")
_SYSTEMS = {}


def _system(spec):
    if spec.id not in _SYSTEMS:
        _SYSTEMS[spec.id] = spec.build()
    return _SYSTEMS[spec.id]


@pytest.mark.parametrize("method", SMOKE_METHODS)
@pytest.mark.parametrize("spec", SMOKE.problems, ids=lambda s: s.id)
def test_smoke_methods_converge_and_match_spsolve(spec, method):
    system = _system(spec)
    record, x = measure_solve(system, method, rtol=1e-8, warmup=False)
    assert record.error is None, record.error
    assert record.converged and record.claimed_converged and not record.flags
    assert record.true_residual <= 1e-8 * 1.01
    assert record.iterations >= 1 and len(record.residuals) == record.iterations + 1
    assert record.residuals[0] == pytest.approx(1.0)  # x0 = 0
    assert record.setup_seconds >= 0 and record.solve_seconds > 0
    # ||x - x*|| <= ||A^{-1}|| ||b - A x||: the harness's x really is the solution
    exact = spla.spsolve(system.A.tocsc(), system.b)
    lam_min = np.linalg.eigvalsh(system.A.toarray())[0]
    bound = record.true_residual * np.linalg.norm(system.b) / lam_min
    assert np.linalg.norm(x - exact) <= 1.01 * bound + 1e-14


def test_run_suite_records_every_pair_with_timings_and_memory():
    suite = Suite("two", problems=[ProblemSpec(shape=(24, 24)), ProblemSpec(shape=(8, 8, 8))])
    res = run_suite(suite, ["scipy-cg", "amg-sa-pcg"], rtol=1e-8, progress=False)
    assert [(r.problem, r.method) for r in res.runs] == [
        ("poisson2d-24", "scipy-cg"),
        ("poisson2d-24", "amg-sa-pcg"),
        ("poisson3d-8", "scipy-cg"),
        ("poisson3d-8", "amg-sa-pcg"),
    ]
    assert res.rtol == 1e-8 and res.machine.numpy == np.__version__
    for r in res.runs:
        assert r.converged
        assert r.peak_memory_bytes is not None and r.peak_memory_bytes >= 8 * r.n
        assert r.memory_method
        times = r.residual_times
        assert len(times) == len(r.residuals)
        assert times[0] == pytest.approx(r.setup_seconds)
        assert all(b >= a for a, b in zip(times, times[1:], strict=False))
        assert times[-1] <= r.total_seconds + 1e-9
    amg = {r.problem: r for r in res.runs if r.method == "amg-sa-pcg"}
    cg = {r.problem: r for r in res.runs if r.method == "scipy-cg"}
    assert amg["poisson2d-24"].iterations < cg["poisson2d-24"].iterations


class _Liar:
    """Claims convergence after one step without touching x."""

    setup_seconds = 0.0

    def __init__(self, A, **options):
        self.n = A.A.shape[0]

    def solve(self, b, *, x0=None, rtol=1e-6, atol=0.0, maxiter=None, callback=None):
        return SolveResult(
            x=np.zeros(self.n),
            status=Status.CONVERGED,
            iterations=1,
            residuals=np.array([1.0, 1e-12]),
        )


class _WrongShape(_Liar):
    def solve(self, b, **kwargs):
        result = super().solve(b, **kwargs)
        result.x = result.x[:-1]
        return result


class _Boom:
    setup_seconds = 0.0

    def __init__(self, A, **options):
        raise RuntimeError("kaboom")


class _Lanczos:
    """Plain CG in numpy that reports its step lengths, like a Krylov method would."""

    setup_seconds = 0.0

    def __init__(self, A, **options):
        self.A = A.A

    def solve(self, b, *, x0=None, rtol=1e-6, atol=0.0, maxiter=None, callback=None):
        x, r = np.zeros_like(b), b.copy()
        p, rr = r.copy(), r @ r
        alphas, betas, res = [], [], [1.0]
        for _ in range(maxiter or 10 * len(b)):
            Ap = self.A @ p
            alpha = rr / (p @ Ap)
            x += alpha * p
            r -= alpha * Ap
            rr_new = r @ r
            alphas.append(alpha)
            res.append(np.linalg.norm(b - self.A @ x) / np.linalg.norm(b))
            if callback:
                callback(x)
            if res[-1] <= rtol:
                break
            betas.append(rr_new / rr)
            p = r + betas[-1] * p
            rr = rr_new
        return SolveResult(
            x=x,
            status=Status.CONVERGED,
            iterations=len(alphas),
            residuals=np.array(res),
            matvecs=len(alphas),
            info={"alphas": np.array(alphas), "betas": np.array(betas + [0.0])},
        )


@pytest.fixture
def fake_methods(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register_method("liar", _Liar, description="claims convergence falsely")
    registry.register_method("boom", _Boom, description="raises in setup")
    registry.register_method("short-x", _WrongShape, description="returns a short x")
    registry.register_method("lanczos-cg", _Lanczos, description="numpy CG with coefficients")


def test_false_convergence_claim_is_caught(fake_methods):
    system = ProblemSpec(shape=(8, 8)).build()
    record = run_problem(system, "liar", rtol=1e-6)
    assert record.claimed_converged and not record.converged
    assert record.true_residual == pytest.approx(1.0)
    assert any("claimed convergence" in f for f in record.flags)
    assert any("differs from the true residual" in f for f in record.flags)


def test_failing_method_is_recorded_not_fatal(fake_methods):
    suite = Suite("s", problems=[ProblemSpec(shape=(8, 8))])
    res = run_suite(suite, ["boom", "scipy-cg"], progress=False)
    boom, good = res.runs
    assert boom.error == "RuntimeError: kaboom" and boom.status == "error"
    assert not boom.converged and math.isnan(boom.true_residual)
    assert good.converged and good.error is None


def test_wrong_solution_shape_is_an_error(fake_methods):
    record = run_problem(ProblemSpec(shape=(6, 6)).build(), "short-x", warmup=False)
    assert not record.converged and "shape (35,)" in record.error


def test_condition_estimate_from_cg_coefficients(fake_methods):
    system = ProblemSpec(shape=(12, 12)).build()
    record = run_problem(system, "lanczos-cg", rtol=1e-10, warmup=False)
    eig = np.linalg.eigvalsh(system.A.toarray())
    kappa = eig[-1] / eig[0]
    assert record.converged
    # Ritz values lie inside the spectrum and approach its ends as CG converges
    assert record.condition_estimate <= kappa * (1 + 1e-8)
    assert record.condition_estimate >= 0.9 * kappa


def test_check_methods():
    with pytest.raises(UnknownNameError, match="available"):
        check_methods(["cg", "not-a-method"])
    with pytest.raises(InvalidInputError, match="twice"):
        check_methods(["cg", "cg"])
    with pytest.raises(InvalidInputError):
        check_methods([" "])


def test_sequence_pays_setup_every_frame():
    frames = SequenceSpec(shape=(12, 12, 12), frames=3, count=1, radius=0.25).build()
    recs = run_sequence(frames, ["amg-sa-pcg", "scipy-cg"], name="seq", rtol=1e-8, progress=False)
    assert [r.method for r in recs] == ["amg-sa-pcg", "scipy-cg"]
    for rec in recs:
        assert [f.frame for f in rec.frames] == [0, 1, 2]
        assert [f.problem for f in rec.frames] == ["seq-f0", "seq-f1", "seq-f2"]
        assert rec.converged
        assert rec.total_seconds == pytest.approx(
            sum(f.setup_seconds + f.solve_seconds for f in rec.frames)
        )
    amg = recs[0]
    assert all(f.setup_seconds > 0 for f in amg.frames)
    assert len({f.n for f in amg.frames}) > 1  # the geometry really changes


def test_torch_cg_condition_estimate_reaches_the_harness():
    system = ProblemSpec(shape=(10, 10)).build()
    record = run_problem(system, "cg", rtol=1e-10, warmup=False)
    eig = np.linalg.eigvalsh(system.A.toarray())
    kappa = eig[-1] / eig[0]
    assert record.converged
    assert 0.9 * kappa <= record.condition_estimate <= kappa * (1 + 1e-6)


def test_device_goes_only_to_methods_that_take_it():
    suite = Suite("dev", problems=[ProblemSpec(shape=(8, 8))])
    res = run_suite(suite, ["cg", "scipy-cg"], device="cpu", warmup=False, progress=False)
    assert [r.error for r in res.runs] == [None, None]
    assert all(r.converged for r in res.runs)
    assert res.machine.device == "cpu"


class _Clocked:
    """Keeps its own per-iteration clock; records whether the harness passed a callback."""

    setup_seconds = 0.0
    callbacks: list = []

    def __init__(self, A, **options):
        self.A = A.A

    def solve(self, b, *, callback=None, **kwargs):
        type(self).callbacks.append(callback is not None)
        x = spla.spsolve(self.A.tocsc(), b)
        return SolveResult(
            x, Status.CONVERGED, 2, np.array([1.0, 1e-3, 1e-9]), info={"times": [0.0, 0.1, 0.2]}
        )


def test_timed_solves_skip_the_callback_when_the_method_keeps_its_clock(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register_method("clocked", _Clocked, description="own clock")
    _Clocked.callbacks = []
    record = run_problem(ProblemSpec(shape=(8, 8)).build(), "clocked", repeat=2)
    assert _Clocked.callbacks == [False, False, False]  # warm-up, two timed repeats
    assert record.residual_times[1] - record.residual_times[0] == pytest.approx(0.1)
    _Clocked.callbacks = []
    run_problem(ProblemSpec(shape=(8, 8)).build(), "clocked", warmup=False, repeat=2)
    assert _Clocked.callbacks == [False, False]  # known from the earlier run: no callback
    monkeypatch.setattr(runner_module, "_KEEPS_CLOCK", {})
    _Clocked.callbacks = []
    run_problem(ProblemSpec(shape=(8, 8)).build(), "clocked", warmup=False, repeat=2)
    assert _Clocked.callbacks == [True, False]  # nothing known yet: the callback, once
