"""Result records of a benchmark run, and their JSON form.

:class:`BenchmarkResults` holds the machine description, the settings shared by every
solve (``rtol``, ``atol``, ``maxiter``), one :class:`RunRecord` per (problem, method) and
one :class:`SequenceRecord` per (sequence, method). :func:`save_results` writes it as
JSON (atomically) and :func:`load_results` reads it back into the same dataclasses.
Non-finite floats (a diverged residual) are written as the strings ``"nan"``, ``"inf"``
and ``"-inf"`` so the file stays strict JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurosolve._util.io import atomic_write_text
from neurosolve.errors import FileFormatError

__all__ = [
    "MachineInfo",
    "RunRecord",
    "SequenceRecord",
    "BenchmarkResults",
    "machine_info",
    "save_results",
    "load_results",
]

#: Written into every results file; :func:`load_results` refuses other formats.
FORMAT = "neurosolve-benchmark"
FORMAT_VERSION = 1


@dataclass
class MachineInfo:
    """Where a benchmark ran: hardware, thread settings and library versions.

    ``torch_threads`` is torch's intra-op thread count when the run started (under the
    run's thread policy, e.g. ``bench --threads``).
    """

    cpu_model: str = ""
    cpu_count: int = 0
    torch_threads: int = 0
    omp_num_threads: str = ""
    platform: str = ""
    python: str = ""
    numpy: str = ""
    scipy: str = ""
    pyamg: str = ""
    torch: str = ""
    neurosolve: str = ""
    device: str = "cpu"
    device_name: str = ""


@dataclass
class RunRecord:
    """One solve of one problem by one method, as measured by the harness.

    Attributes
    ----------
    problem, method : str
        Problem id and method name.
    n, nnz : int
        Unknowns and stored non-zeros of ``A``.
    converged : bool
        The harness's verdict: the method said it converged AND the true residual,
        recomputed by the harness in float64 with the scipy matrix, meets the tolerance.
    claimed_converged : bool
        What the method itself reported.
    status, reason : str
        The method's :class:`~neurosolve.solvers.result.Status` value and message.
    iterations, matvecs : int
        As reported by the method.
    setup_seconds, solve_seconds : float
        Wall time measured by the harness around the solver's construction (hierarchy,
        factorization, model load, geometry forward pass) and around ``solve``; the
        median over the repeats.
    setup_seconds_min, solve_seconds_min : float or None
        The minimum over the repeats (None in files written before repeats existed).
    repeats : int
        Timed setups and solves behind the times (``bench --repeat``).
    repeat_iterations : list of int
        Iterations of each repeat (they should agree; a run where they do not is flagged).
    threads : int or None
        torch intra-op threads the solve ran under (None when the method does not load
        torch or does not report it).
    true_residual : float
        ``||b - A x|| / ||b||`` recomputed by the harness.
    peak_memory_bytes : int or None
        Peak memory of setup + solve (see :mod:`neurosolve.harness.runner`).
    memory_method : str
        How the peak was measured.
    residuals : list of float
        The method's true relative residual history, starting with the initial guess.
    residual_times : list of float
        Wall seconds since the start of the setup at which each residual was reached.
    condition_estimate : float or None
        Estimate of the (preconditioned) condition number from CG's Lanczos
        coefficients, when the method reports them.
    flags : list of str
        Problems the harness found (e.g. convergence claimed but not achieved).
    error : str or None
        ``"ExceptionType: message"`` when the method raised.
    frame : int or None
        Position in a sequence.
    """

    problem: str
    method: str
    n: int = 0
    nnz: int = 0
    converged: bool = False
    claimed_converged: bool = False
    status: str = ""
    reason: str = ""
    iterations: int = 0
    matvecs: int = 0
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    true_residual: float = math.nan
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    residuals: list[float] = field(default_factory=list)
    residual_times: list[float] = field(default_factory=list)
    condition_estimate: float | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    frame: int | None = None
    setup_seconds_min: float | None = None
    solve_seconds_min: float | None = None
    repeats: int = 1
    repeat_iterations: list[int] = field(default_factory=list)
    threads: int | None = None

    @property
    def total_seconds(self) -> float:
        """Setup plus solve seconds (medians over the repeats)."""
        return self.setup_seconds + self.solve_seconds

    @property
    def total_seconds_min(self) -> float:
        """Setup plus solve seconds of the fastest repeats (the medians when not recorded)."""
        setup = self.setup_seconds if self.setup_seconds_min is None else self.setup_seconds_min
        solve = self.solve_seconds if self.solve_seconds_min is None else self.solve_seconds_min
        return setup + solve


@dataclass
class SequenceRecord:
    """One method run over a sequence of systems, a fresh setup per frame."""

    sequence: str
    method: str
    frames: list[RunRecord] = field(default_factory=list)

    @property
    def setup_seconds(self) -> float:
        """Sum of the per-frame setup seconds."""
        return sum(r.setup_seconds for r in self.frames)

    @property
    def solve_seconds(self) -> float:
        """Sum of the per-frame solve seconds."""
        return sum(r.solve_seconds for r in self.frames)

    @property
    def total_seconds(self) -> float:
        """Setup plus solve over all frames."""
        return self.setup_seconds + self.solve_seconds

    @property
    def total_seconds_min(self) -> float:
        """Setup plus solve over all frames, each frame's fastest repeats."""
        return sum(r.total_seconds_min for r in self.frames)

    @property
    def converged(self) -> bool:
        """True when every frame converged (by the harness's verdict)."""
        return bool(self.frames) and all(r.converged for r in self.frames)

    @property
    def iterations(self) -> list[int]:
        """Iterations per frame."""
        return [r.iterations for r in self.frames]


@dataclass
class BenchmarkResults:
    """Everything one benchmark run measured.

    Examples
    --------
    >>> res = BenchmarkResults(suite="demo", rtol=1e-6, methods=["cg"],
    ...                        runs=[RunRecord("p", "cg", iterations=3)])
    >>> BenchmarkResults.from_dict(res.to_dict()) == res
    True
    """

    suite: str
    rtol: float
    atol: float = 0.0
    maxiter: int | None = None
    methods: list[str] = field(default_factory=list)
    machine: MachineInfo = field(default_factory=MachineInfo)
    runs: list[RunRecord] = field(default_factory=list)
    sequences: list[SequenceRecord] = field(default_factory=list)
    created: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (non-finite floats as strings)."""
        data = dataclasses.asdict(self)
        data = {"format": FORMAT, "format_version": FORMAT_VERSION, **data}
        return _encode(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResults:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        FileFormatError
            If ``data`` is not a neurosolve benchmark record of a known version.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise FileFormatError("not a neurosolve benchmark results file (format marker missing)")
        if data.get("format_version") != FORMAT_VERSION:
            raise FileFormatError(
                f"benchmark results format version {data.get('format_version')!r} is not "
                f"supported (expected {FORMAT_VERSION})"
            )
        data = _decode({k: v for k, v in data.items() if k not in ("format", "format_version")})
        try:
            machine = MachineInfo(**data.pop("machine", {}))
            runs = [RunRecord(**r) for r in data.pop("runs", [])]
            sequences = []
            for s in data.pop("sequences", []):
                frames = [RunRecord(**r) for r in s.pop("frames", [])]
                sequences.append(SequenceRecord(**s, frames=frames))
            return cls(**data, machine=machine, runs=runs, sequences=sequences)
        except TypeError as exc:
            raise FileFormatError(f"benchmark results have unexpected fields: {exc}") from exc


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _decode(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _decode(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, key) for v in value]
    # Only numeric fields can hold the non-finite markers; a method or problem named
    # "inf" stays a string.
    if isinstance(value, str) and value in _NONFINITE and key in _FLOAT_FIELDS:
        return _NONFINITE[value]
    return value


_FLOAT_FIELDS = {
    "rtol",
    "atol",
    "setup_seconds",
    "solve_seconds",
    "setup_seconds_min",
    "solve_seconds_min",
    "true_residual",
    "residuals",
    "residual_times",
    "condition_estimate",
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str | None = None) -> MachineInfo:
    """Describe this machine, its thread settings and the library versions.

    Parameters
    ----------
    device : str, optional
        The torch device the benchmark uses (``"cpu"`` when omitted).

    Examples
    --------
    >>> info = machine_info()
    >>> info.device, info.cpu_count > 0
    ('cpu', True)
    """
    import numpy
    import pyamg
    import scipy
    import torch

    from neurosolve._version import __version__

    device = str(device or "cpu")
    device_name = ""
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    return MachineInfo(
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS", ""),
        platform=platform.platform(),
        python=platform.python_version(),
        numpy=numpy.__version__,
        scipy=scipy.__version__,
        pyamg=pyamg.__version__,
        torch=torch.__version__,
        neurosolve=__version__,
        device=device,
        device_name=device_name,
    )


def now_utc() -> str:
    """Current UTC time in ISO 8601 (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def save_results(results: BenchmarkResults, path: str | Path) -> Path:
    """Write ``results`` as JSON to ``path`` atomically (temporary file, then rename).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> p = save_results(BenchmarkResults("demo", 1e-6), folder / "r.json")
    >>> load_results(p).suite
    'demo'
    """
    text = json.dumps(results.to_dict(), indent=1, allow_nan=False)
    return atomic_write_text(path, text)


def load_results(path: str | Path) -> BenchmarkResults:
    """Read a results file written by :func:`save_results`.

    Raises
    ------
    FileFormatError
        If the file is missing, not JSON, or not a neurosolve benchmark record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileFormatError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"cannot read benchmark results {path}: {exc}") from exc
    try:
        return BenchmarkResults.from_dict(data)
    except FileFormatError as exc:
        raise FileFormatError(f"{path}: {exc}") from exc
