r"""Run methods on problems and measure what a numerical analyst reads.

For every (problem, method) the runner

1. optionally warms up (``warmup=True``): builds the solver and solves once, untimed,
   so first-call costs (imports, kernel compilation, allocator growth) are not charged
   to the method; this pass also measures the peak memory (with tracing, see below);
2. builds the solver again and times it (``setup_seconds``: hierarchy, factorization,
   model load, geometry forward pass), then times ``solve`` (``solve_seconds``), with the
   same ``rtol``/``atol``/``maxiter`` for every method;
   With ``repeat=N`` the timed setup and solve run ``N`` times; the record keeps the
   median (``setup_seconds``, ``solve_seconds``) and the minimum (``setup_seconds_min``,
   ``solve_seconds_min``) and the iterations of every repeat, and flags the run (with a
   warning) when they disagree;
3. recomputes the TRUE relative residual ``||b - A x|| / ||b||`` of the returned ``x``
   itself, in float64 with the scipy matrix, and accepts a method's claim of convergence
   only if ``||b - A x|| <= max(rtol ||b||, atol) * (1 + RECHECK_SLACK)``. A method that
   claims convergence but fails the recheck is recorded as NOT converged and flagged.

Peak memory over setup + solve is measured by
:class:`~neurosolve.harness.memory.MemoryProbe`. :func:`run_suite` runs everything under one
thread policy (``threads=``, see :mod:`neurosolve._util.threads`) and records it.

Errors raised by a method are recorded in its :class:`~neurosolve.harness.records.RunRecord`
(``error``), never propagated: one broken method does not stop a benchmark.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurosolve._util.progress import progress_bar
from neurosolve._util.threads import check_threads, torch_threads
from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError, UnknownNameError
from neurosolve.harness.memory import MemoryProbe
from neurosolve.harness.records import (
    BenchmarkResults,
    RunRecord,
    SequenceRecord,
    machine_info,
    now_utc,
)

__all__ = [
    "RECHECK_SLACK",
    "measure_solve",
    "recheck_residual",
    "run_problem",
    "run_sequence",
    "run_suite",
    "check_methods",
    "solver_options",
]

logger = logging.getLogger(__name__)

#: Relative slack of the harness's convergence recheck: the method's own residual and
#: the harness's float64 scipy residual differ by rounding (different summation order,
#: a float32 matvec); 1% above the threshold is still accepted.
RECHECK_SLACK = 0.01


def check_methods(methods: Iterable[str]) -> list[str]:
    """Validate method names against :func:`neurosolve.solvers.available`.

    Raises
    ------
    UnknownNameError
        Naming the unknown methods and listing the available ones.
    InvalidInputError
        If no method is given or a name repeats.

    Examples
    --------
    >>> check_methods(["cg", "amg-sa"])
    ['cg', 'amg-sa']
    """
    from neurosolve.solvers import available

    methods = [m.strip() for m in methods if m.strip()]
    if not methods:
        raise InvalidInputError("give at least one method")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise InvalidInputError(f"method(s) listed twice: {', '.join(repeated)}")
    known = available()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UnknownNameError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(known)}"
        )
    return methods


def _condition_from_info(info: dict[str, Any]) -> float | None:
    """Condition number estimate of the (preconditioned) operator, when the method allows.

    A method may report ``info["condition_estimate"]`` itself; CG-type methods that keep
    their Lanczos coefficients (``info["alphas"]``, ``info["betas"]``) get the estimate of
    :func:`neurosolve.solvers.krylov.condition_estimate` (Ritz values of the Lanczos
    matrix: a lower bound that sharpens as CG proceeds).
    """
    value = info.get("condition_estimate")
    if value is not None:
        return float(value)
    if "alphas" not in info or "betas" not in info:
        return None
    from neurosolve.solvers.krylov import condition_estimate

    try:
        value = condition_estimate(info)
    except (InvalidInputError, ValueError, np.linalg.LinAlgError) as exc:
        logger.info("no condition estimate: %s", exc)
        return None
    return float(value) if math.isfinite(value) else None


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _is_cuda(device: str | None) -> bool:
    return bool(device) and str(device).startswith("cuda")


def _sync(device: str | None) -> None:
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize(torch.device(device))


def solver_options(method: str, device: str | None, options: dict[str, Any] | None) -> dict:
    """The factory options of ``method``: ``options`` plus ``device`` if the factory takes one.

    Examples
    --------
    >>> solver_options("amg-sa", "cuda", {"strength": 0.25})
    {'strength': 0.25}
    """
    opts = dict(options or {})
    if device is not None and "device" not in opts and _takes_device(method):
        opts["device"] = device
    return opts


def _takes_device(method: str) -> bool:
    from neurosolve.solvers import takes_device

    try:
        return takes_device(method)
    except UnknownNameError:
        return False


def _build_and_solve(system, method, opts, *, rtol, atol, maxiter, callback=None):
    from neurosolve.solvers import make_solver

    solver = make_solver(method, system, **opts)
    return solver, solver.solve(system.b, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)


def run_problem(
    system,
    method: str,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    warmup: bool = True,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    problem: str | None = None,
    repeat: int = 1,
) -> RunRecord:
    """Solve ``system`` (its ``b``) with ``method`` and measure it.

    Parameters
    ----------
    system : neurosolve.data.systems.LinearSystem
        The problem; ``system.b`` is the right-hand side.
    method : str
        A name from :func:`neurosolve.solvers.available`.
    rtol, atol, maxiter
        The common stopping rule ``||b - A x|| <= max(rtol ||b||, atol)``.
    warmup : bool
        Run an untimed setup + solve first (also the pass that traces memory).
    device : str, optional
        Torch device handed to methods whose factory takes ``device``.
    options : dict, optional
        Extra keyword arguments for the method's factory.
    problem : str, optional
        Problem id for the record (default ``system.name``).
    repeat : int
        Timed setups and solves (after the warm-up); the record keeps the median and the
        minimum of each, and flags iteration counts that differ between repeats.

    Returns
    -------
    RunRecord
        Never raises for a failing method: the exception is stored in ``error``.

    Examples
    --------
    >>> from neurosolve.harness.suites import ProblemSpec
    >>> rec = run_problem(ProblemSpec(shape=(8, 8)).build(), "scipy-cg", rtol=1e-8)
    >>> rec.converged, rec.true_residual <= 1e-8
    (True, True)
    """
    return measure_solve(
        system,
        method,
        rtol=rtol,
        atol=atol,
        maxiter=maxiter,
        warmup=warmup,
        device=device,
        options=options,
        problem=problem,
        repeat=repeat,
    )[0]


def measure_solve(
    system,
    method: str,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    warmup: bool = True,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    problem: str | None = None,
    repeat: int = 1,
) -> tuple[RunRecord, np.ndarray | None]:
    """Like :func:`run_problem`, also returning the solution (float64, or None on error).

    Examples
    --------
    >>> from neurosolve.harness.suites import ProblemSpec
    >>> system = ProblemSpec(shape=(8, 8)).build()
    >>> rec, x = measure_solve(system, "amg-sa", rtol=1e-8, warmup=False)
    >>> x.shape == system.b.shape
    True
    """
    from neurosolve.solvers import stopping_threshold

    repeat = integer(repeat, "repeat", minimum=1)
    name = problem or getattr(system, "name", "") or "problem"
    if getattr(system, "b", None) is None:
        raise InvalidInputError(f"system {name!r} has no right-hand side (system.b is None)")
    b = np.asarray(system.b, dtype=np.float64)
    record = RunRecord(problem=name, method=method, n=int(system.A.shape[0]), nnz=int(system.A.nnz))
    threshold = stopping_threshold(float(np.linalg.norm(b)), rtol, atol)
    opts = solver_options(method, device, options)
    try:
        solve = _timed_solve(
            system,
            method,
            b,
            opts,
            rtol=rtol,
            atol=atol,
            maxiter=maxiter,
            warmup=warmup,
            device=device,
            repeat=repeat,
        )
    except Exception as exc:  # noqa: BLE001 -- one failing method must not stop the run
        logger.warning("%s on %s failed: %s: %s", method, name, type(exc).__name__, exc)
        record.status = "error"
        record.error = f"{type(exc).__name__}: {exc}"
        record.reason = record.error
        return record, None
    _fill_record(record, solve)
    _recheck(record, system, b, solve.x, threshold)
    logger.info(
        "%s / %s: %s after %d iterations, true residual %.2e, setup %.3g s, solve %.3g s",
        name,
        method,
        record.status,
        record.iterations,
        record.true_residual,
        record.setup_seconds,
        record.solve_seconds,
    )
    return record, solve.x


@dataclass
class _Solve:
    """The timed setups + solves of one run.

    The last result, its ``x`` in float64, the last repeat's clocks and callback stamps,
    every repeat's times and iterations, and the memory probes.
    """

    result: Any
    x: np.ndarray
    residuals: np.ndarray
    stamps: list[float]
    t0: float
    t1: float
    t2: float
    probes: list[MemoryProbe]
    setup_times: list[float]
    solve_times: list[float]
    iterations: list[int]


def _timed_solve(
    system, method, b, opts, *, rtol, atol, maxiter, warmup, device, repeat=1
) -> _Solve:
    """The (optional) untimed warm-up, then ``repeat`` timed setups and solves."""
    probes = []
    # Time stamps per iteration come from a callback unless the method keeps its own clock
    # (info["times"], as the warm-up or an earlier run showed): a callback receives a copy of
    # x_k, which a timed solve should not pay for (at 252k unknowns 1 ms an iteration, a
    # tenth of an MGPC solve). On a GPU it would also synchronize.
    stamp = not _is_cuda(device) and not _KEEPS_CLOCK.get(method, False)
    if warmup:
        probes.append(MemoryProbe(device, trace=True))
        with probes[-1]:
            _, warm = _build_and_solve(system, method, opts, rtol=rtol, atol=atol, maxiter=maxiter)
            _sync(device)
        _KEEPS_CLOCK[method] = _keeps_clock(warm)
        stamp = stamp and not _KEEPS_CLOCK[method]
    setups, solves, iterations = [], [], []
    for _ in range(repeat):
        result, stamps, (t0, t1, t2), probe = _timed_once(
            system, method, b, opts, rtol=rtol, atol=atol, maxiter=maxiter, device=device,
            stamp=stamp,
        )  # fmt: skip
        probes.append(probe)
        setups.append(t1 - t0)
        solves.append(t2 - t1)
        iterations.append(int(result.iterations))
        _KEEPS_CLOCK[method] = _keeps_clock(result)
        stamp = stamp and not _KEEPS_CLOCK[method]  # the next repeats need no callback
    x = _to_numpy(result.x)
    if x.size != b.size:
        raise InvalidInputError(f"the method returned x of shape {x.shape} for b of {b.shape}")
    residuals = np.asarray(result.residuals, dtype=np.float64)
    clocks = (stamps, t0, t1, t2, probes)
    return _Solve(result, x.reshape(b.shape), residuals, *clocks, setups, solves, iterations)


_KEEPS_CLOCK: dict[str, bool] = {}  # per method: its last result had its own clock


def _keeps_clock(result: Any) -> bool:
    """Whether ``result`` has its own time stamp for every entry of its residuals."""
    times = (result.info or {}).get("times")
    try:  # one clock, as _residual_times reads it (not one per column of a block)
        values = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    residuals = np.asarray(result.residuals)
    return times is not None and values.ndim == 1 and values.size == len(residuals)


def _timed_once(system, method, b, opts, *, rtol, atol, maxiter, device, stamp):
    """One timed setup and solve: the result, callback stamps, clocks and memory probe."""
    from neurosolve.solvers import make_solver

    stamps: list[float] = []

    def on_iteration(*args: Any, **kwargs: Any) -> None:
        stamps.append(time.perf_counter())

    # Without a callback the residual times come from the method's own info["times"]
    # (or are spread evenly over the solve).
    callback = on_iteration if stamp else None
    probe = MemoryProbe(device, trace=False)
    with probe:
        _sync(device)
        t0 = time.perf_counter()
        solver = make_solver(method, system, **opts)
        _sync(device)
        t1 = time.perf_counter()
        result = solver.solve(b, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
        _sync(device)
        t2 = time.perf_counter()
    return result, stamps, (t0, t1, t2), probe


def _fill_record(record: RunRecord, solve: _Solve) -> None:
    """Copy what the method reported (and the clocks and memory) into ``record``."""
    result, residuals = solve.result, solve.residuals
    record.setup_seconds = statistics.median(solve.setup_times)
    record.solve_seconds = statistics.median(solve.solve_times)
    record.setup_seconds_min = min(solve.setup_times)
    record.solve_seconds_min = min(solve.solve_times)
    record.repeats = len(solve.solve_times)
    record.repeat_iterations = list(solve.iterations)
    if len(set(solve.iterations)) > 1:
        record.flags.append(
            f"iteration counts differ across the {record.repeats} repeats: {solve.iterations}"
        )
        logger.warning("%s on %s: %s", record.method, record.problem, record.flags[-1])
    record.iterations = int(result.iterations)
    record.matvecs = int(result.matvecs)
    record.status = result.status.value
    record.reason = result.reason
    record.claimed_converged = bool(result.converged)
    threads = (result.info or {}).get("threads")
    record.threads = int(threads) if threads is not None else None
    if residuals.ndim > 1:  # a batch: the worst column
        residuals = residuals.max(axis=tuple(range(1, residuals.ndim)))
    record.residuals = [float(r) for r in residuals]
    record.residual_times = _residual_times(
        len(record.residuals),
        solve.stamps,
        (result.info or {}).get("times"),
        solve.t0,
        solve.t1,
        solve.t2,
    )
    record.condition_estimate = _condition_from_info(result.info or {})
    probes = [p for p in solve.probes if p.peak is not None]
    if probes:
        best = max(probes, key=lambda p: p.peak)
        record.peak_memory_bytes = best.peak
        record.memory_method = best.method


def recheck_residual(A: Any, b: np.ndarray, x: np.ndarray, threshold: float) -> tuple[float, bool]:
    """``||b - A x|| / ||b||`` in float64 and whether ``||b - A x|| <= threshold (1 + slack)``.

    The one rule every reported solution is judged by (the harness's, and PETSc's in
    ``benchmarks/anchor.py``); ``threshold`` is absolute (``stopping_threshold``).

    Examples
    --------
    >>> rel, ok = recheck_residual(np.eye(2), np.ones(2), np.array([1.0, 1.000001]), 1e-6)
    >>> round(rel, 9), ok
    (7.07e-07, True)
    """
    b = np.asarray(b, dtype=np.float64)
    rnorm = float(np.linalg.norm(b - A @ np.asarray(x, dtype=np.float64)))
    bnorm = float(np.linalg.norm(b))
    meets = math.isfinite(rnorm) and rnorm <= threshold * (1.0 + RECHECK_SLACK)
    return (rnorm / bnorm if bnorm > 0 else rnorm), meets


def _recheck(record: RunRecord, system, b: np.ndarray, x: np.ndarray, threshold: float) -> None:
    """The harness's own float64 residual with the scipy matrix; flags any disagreement."""
    record.true_residual, meets = recheck_residual(system.A, b, x, threshold)
    bnorm = float(np.linalg.norm(b))
    record.converged = record.claimed_converged and meets
    if record.claimed_converged and not meets:
        record.flags.append(
            f"claimed convergence but the true relative residual {record.true_residual:.3e} "
            f"misses the tolerance {threshold / bnorm if bnorm else threshold:.1e}"
        )
        logger.warning("%s on %s: %s", record.method, record.problem, record.flags[-1])
    elif not record.claimed_converged and meets:
        record.flags.append(
            f"reported {record.status} although the true residual meets the tolerance"
        )
    if record.residuals:
        last = record.residuals[-1]
        if math.isfinite(last) and math.isfinite(record.true_residual):
            ratio = max(last, 1e-300) / max(record.true_residual, 1e-300)
            if not 0.1 <= ratio <= 10.0 and max(last, record.true_residual) > 1e-14:
                record.flags.append(
                    f"the method's last reported residual {last:.3e} differs from the true "
                    f"residual {record.true_residual:.3e}"
                )


def _residual_times(count, stamps, method_times, t0, t1, t2) -> list[float]:
    """Wall seconds since the setup started at which each residual was reached.

    From the method's own per-iteration clock (``info["times"]``, seconds since its solve
    started) when it has one entry per residual, else from the harness's callback time
    stamps, else the solve time spread evenly over the iterations.
    """
    if count == 0:
        return []
    setup = t1 - t0
    if method_times is not None:
        values = np.asarray(method_times, dtype=np.float64).ravel()
        if values.size == count and np.all(np.isfinite(values)):
            return [setup + float(v) for v in values]
    if len(stamps) == count - 1:  # one callback per iteration
        return [setup] + [s - t0 for s in stamps]
    iters = max(count - 1, 1)
    return [setup + (t2 - t1) * k / iters for k in range(count)]


def run_sequence(
    systems: Sequence,
    methods: Sequence[str],
    *,
    name: str = "sequence",
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    warmup: bool = True,
    device: str | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    repeat: int = 1,
    _bar=None,
) -> list[SequenceRecord]:
    """Solve a list of systems in order with each method, a fresh setup every frame.

    This is the time-to-solution of a simulation whose matrix changes every time step:
    a method with an expensive setup (an AMG hierarchy) pays it every frame. The warm-up
    (when enabled) runs once per method, on the first frame only; ``repeat`` times every
    frame that many times (see :func:`run_problem`).

    Returns
    -------
    list of SequenceRecord
        One per method, frames in order.

    Examples
    --------
    >>> from neurosolve.harness.suites import SequenceSpec
    >>> frames = SequenceSpec(shape=(8, 8), frames=2, count=1, radius=0.2).build()
    >>> [rec.converged for rec in run_sequence(frames, ["scipy-cg"], progress=False)]
    [True]
    """
    methods = check_methods(methods)
    method_options = method_options or {}
    bar = _bar or progress_bar(total=len(systems) * len(methods), enabled=progress, desc=name)
    out = []
    try:
        for method in methods:
            record = SequenceRecord(sequence=name, method=method)
            for k, system in enumerate(systems):
                bar.set_postfix_str(f"{method} frame {k}", refresh=False)
                run = run_problem(
                    system,
                    method,
                    rtol=rtol,
                    atol=atol,
                    maxiter=maxiter,
                    warmup=warmup and k == 0,
                    device=device,
                    options=method_options.get(method),
                    problem=f"{name}-f{k}",
                    repeat=repeat,
                )
                run.frame = k
                record.frames.append(run)
                bar.update(1)
            out.append(record)
    finally:
        if _bar is None:
            bar.close()
    return out


def run_suite(
    suite,
    methods: Sequence[str],
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    maxiter: int | None = None,
    warmup: bool = True,
    device: str | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    on_record: Callable[[RunRecord], None] | None = None,
    repeat: int = 1,
    threads: int | str | None = None,
) -> BenchmarkResults:
    """Run every method on every problem and sequence of ``suite``.

    Parameters
    ----------
    suite : Suite or str
        A :class:`~neurosolve.harness.suites.Suite` or a built-in suite name.
    methods : sequence of str
        Method names (checked against :func:`neurosolve.solvers.available`).
    rtol, atol, maxiter
        The common stopping rule.
    warmup : bool
        Untimed warm-up (and memory tracing) pass before each timed solve.
    device : str, optional
        Torch device for torch-based methods.
    method_options : dict, optional
        ``{method: {option: value}}`` passed to the method factories.
    progress : bool
        Show a tqdm bar over (problem, method) (only on a terminal).
    on_record : callable, optional
        Called with each finished :class:`RunRecord` (e.g. to log as results arrive).
    repeat : int
        Timed setups and solves per (problem, method); median and minimum are recorded.
    threads : {"auto"} or int or None
        torch intra-op threads for the whole run (every setup, solve and warm-up; see
        :mod:`neurosolve._util.threads`): an int fixes the count, ``"auto"`` lets each
        solver choose by its size, ``None`` (default) leaves torch's setting. The count in
        effect is recorded in ``machine.torch_threads``, the setting in
        ``options["threads"]`` and each solve's count in :attr:`RunRecord.threads`.

    Returns
    -------
    BenchmarkResults

    Examples
    --------
    >>> from neurosolve.harness.suites import ProblemSpec, Suite
    >>> suite = Suite("tiny", problems=[ProblemSpec(shape=(8, 8))])
    >>> res = run_suite(suite, ["scipy-cg", "amg-sa"], rtol=1e-8, progress=False)
    >>> [(r.method, r.converged) for r in res.runs]
    [('scipy-cg', True), ('amg-sa', True)]
    """
    from neurosolve.harness.suites import Suite, get_suite

    if isinstance(suite, str):
        suite = get_suite(suite)
    if not isinstance(suite, Suite):
        raise InvalidInputError(f"suite must be a Suite or a suite name, got {type(suite)}")
    methods = check_methods(methods)
    method_options = method_options or {}
    repeat = integer(repeat, "repeat", minimum=1)
    threads = check_threads(threads)
    settings = {
        "rtol": rtol,
        "atol": atol,
        "maxiter": maxiter,
        "warmup": warmup,
        "device": device,
        "repeat": repeat,
    }
    import torch  # noqa: F401 -- loaded before the thread policy, so that it applies

    with torch_threads(threads):
        results = BenchmarkResults(
            suite=suite.name,
            rtol=float(rtol),
            atol=float(atol),
            maxiter=maxiter,
            methods=list(methods),
            machine=machine_info(device),
            created=now_utc(),
            options={
                "warmup": warmup,
                "method_options": method_options,
                "repeat": repeat,
                "threads": threads,
            },
        )
        _run_all(suite, methods, results, settings, method_options, progress, on_record)
    return results


def _run_all(suite, methods, results, settings, method_options, progress, on_record) -> None:
    """Every (problem, method) and (sequence, method) of ``suite`` into ``results``."""
    total = len(methods) * (len(suite.problems) + sum(s.frames for s in suite.sequences))
    with contextlib.closing(
        progress_bar(total=total, enabled=progress, lines=True, desc=f"bench {suite.name}")
    ) as bar:
        for spec in suite.problems:
            bar.set_postfix_str(f"building {spec.id}", refresh=True)
            system = spec.build()
            for method in methods:
                bar.set_postfix_str(f"{spec.id} {method}", refresh=True)
                record = run_problem(
                    system,
                    method,
                    options=method_options.get(method),
                    problem=spec.id,
                    **settings,
                )
                results.runs.append(record)
                if on_record is not None:
                    on_record(record)
                bar.update(1)
            del system
        for seq in suite.sequences:
            bar.set_postfix_str(f"building {seq.id}", refresh=True)
            results.sequences.extend(
                run_sequence(
                    seq.build(),
                    methods,
                    name=seq.id,
                    method_options=method_options,
                    _bar=bar,
                    **settings,
                )
            )
