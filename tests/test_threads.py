"""The thread policy: torch_threads, threads= on make_solver / solve, --threads and --repeat."""

import json

import numpy as np
import pytest
import torch

import neurosolve
from neurosolve._util.threads import SERIAL_BELOW, check_threads, resolve_threads, torch_threads
from neurosolve.cli import main
from neurosolve.data import poisson, save_system
from neurosolve.errors import InvalidInputError
from neurosolve.harness.records import load_results
from neurosolve.harness.runner import run_problem, run_suite
from neurosolve.harness.suites import SUITES, ProblemSpec, SequenceSpec, Suite
from neurosolve.solvers import make_solver, registry
from neurosolve.solvers.result import SolveResult, Status


@pytest.fixture
def two_threads():
    """torch at 2 intra-op threads for the test, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_sets_and_restores(two_threads):
    with torch_threads(1) as inside:
        assert inside == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("restored on the way out too")
    assert torch.get_num_threads() == 2
    with torch_threads(None) as inside:
        assert inside == 2


def test_auto_is_serial_below_the_measured_size_only(two_threads):
    with torch_threads("auto", SERIAL_BELOW - 1) as inside:
        assert inside == 1
    with torch_threads("auto", SERIAL_BELOW) as inside:
        assert inside == 2  # torch's own setting above the crossover
    assert resolve_threads("auto", None) is None


def test_inner_auto_keeps_the_outer_count_inner_count_applies(two_threads):
    with torch_threads(2):
        with torch_threads("auto", 10) as inner:
            assert inner == 2  # a small inner solve does not undo the outer setting
        with torch_threads(1) as inner:
            assert inner == 1
        assert torch.get_num_threads() == 2
    with torch_threads("auto", 10):
        with torch_threads("auto", 10**9) as inner:
            assert inner == 1


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "many", "0"])
def test_bad_thread_settings_are_refused(bad):
    with pytest.raises(InvalidInputError, match="threads"):
        check_threads(bad)
    with pytest.raises(InvalidInputError, match="threads"):
        make_solver("cg", poisson((4, 4)), threads=bad)


def test_make_solver_and_solve_take_threads(two_threads):
    system = poisson((8, 8))
    b = np.ones(system.n)
    solver = make_solver("cg", system, threads=2)
    assert solver.threads == 2
    assert solver.solve(b).info["threads"] == 2
    result = neurosolve.solve(system, b, method="pcg-jacobi", threads=1)
    assert result.converged and result.info["threads"] == 1
    assert torch.get_num_threads() == 2
    # the default: a small problem runs on one thread, whatever torch's setting is
    assert make_solver("cg", system).solve(b).info["threads"] == 1
    assert make_solver("scipy-cg", system, threads=2).solve(b).info["threads"] == 2


def test_solve_command_records_threads(tmp_path, capsys):
    path = save_system(tmp_path / "s.mtx", poisson((10, 10)))
    summary = tmp_path / "s.json"
    code = main(["solve", str(path), "--method", "cg", "--threads", "1", "--json", str(summary)])
    assert code == 0
    data = json.loads(summary.read_text())["threads"]
    assert data["torch"] == 1 and data["setting"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(path), "--threads", "zero"])
    assert exc.value.code == 2
    assert "--threads: must be 'auto' or an integer >= 1" in capsys.readouterr().err


class _Varying:
    """Converges in a different number of iterations every time it is built."""

    setup_seconds = 0.0
    built = 0

    def __init__(self, A, **options):
        self.A = A.A
        type(self).built += 1

    def solve(self, b, **kwargs):
        x = np.linalg.solve(self.A.toarray(), b)
        its = 3 + type(self).built % 2
        return SolveResult(x, Status.CONVERGED, its, np.geomspace(1.0, 1e-12, its + 1))


def test_repeat_records_median_and_min_and_flags_disagreeing_iterations(monkeypatch):
    system = ProblemSpec(shape=(8, 8)).build()
    record = run_problem(system, "cg", repeat=3, warmup=False)
    assert record.repeats == 3 and len(set(record.repeat_iterations)) == 1
    assert record.solve_seconds_min <= record.solve_seconds
    assert record.setup_seconds_min <= record.setup_seconds
    assert not record.flags and record.converged
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))
    registry.register_method("varying", _Varying, description="iterations vary")
    varying = run_problem(system, "varying", repeat=2, warmup=False)
    assert varying.repeat_iterations in ([3, 4], [4, 3])
    assert any("differ across the 2 repeats" in f for f in varying.flags)
    with pytest.raises(InvalidInputError, match="repeat"):
        run_problem(system, "cg", repeat=0)


def test_run_suite_records_its_thread_setting(two_threads):
    suite = Suite("t", problems=[ProblemSpec(shape=(8, 8))])
    res = run_suite(suite, ["cg", "scipy-cg"], progress=False, threads=1, warmup=False)
    assert res.machine.torch_threads == 1 and res.options["threads"] == 1
    assert [r.threads for r in res.runs] == [1, 1]
    assert torch.get_num_threads() == 2


def _tiny():
    return Suite(
        "tiny-threads",
        problems=[ProblemSpec(shape=(8, 8))],
        sequences=[SequenceSpec(shape=(8, 8), frames=2, count=1, radius=0.2)],
    )


def test_bench_repeat_and_threads_reach_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(SUITES, "tiny-threads", _tiny)
    out = tmp_path / "res"
    args = ["bench", "--suite", "tiny-threads", "--methods", "cg", "--out", str(out), "-q"]
    assert main([*args, "--repeat", "2", "--threads", "2", "--no-warmup"]) == 0
    printed = capsys.readouterr().out
    assert "median of 2 repeats" in printed and "solve s min" in printed
    res = load_results(out / "results.json")
    assert res.machine.torch_threads == 2
    assert res.options["threads"] == 2 and res.options["repeat"] == 2
    frames = [f for s in res.sequences for f in s.frames]
    assert all(r.repeats == 2 and len(r.repeat_iterations) == 2 for r in [*res.runs, *frames])
    # the default is a fixed count, recorded
    default = ["bench", "--suite", "tiny-threads", "--methods", "cg", "--no-warmup", "-q"]
    assert main([*default, "--out", str(tmp_path / "d")]) == 0
    assert load_results(tmp_path / "d" / "results.json").options["threads"] == 1
    assert main([*args, "--repeat", "0"]) == 2


def test_the_policy_limits_blas_threads_too():
    """numpy/scipy's OpenBLAS runs on the policy's count inside the block, as before after."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS, which the MGPC setup uses

    def blas_counts():
        info = threadpoolctl.threadpool_info()
        return [lib["num_threads"] for lib in info if lib["user_api"] == "blas"]

    before = blas_counts()
    if not before:
        pytest.skip("no BLAS library found by threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outside = blas_counts()
        with torch_threads(1):
            assert blas_counts() == [1] * len(before)
        assert blas_counts() == outside
    assert blas_counts() == before
