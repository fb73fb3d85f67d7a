r"""The result of every solve, and the one stopping rule all methods share.

Every method in neurosolve, classical or learned, stops on the TRUE residual:

.. math:: \|b - A x\|_2 \le \max(\mathrm{rtol}\,\|b\|_2, \mathrm{atol})

and returns a :class:`SolveResult`. ``residuals`` always holds true relative residual
norms ``||b - A x_k|| / ||b||`` (one per iteration, starting with the initial guess), so
curves of different methods can be drawn on one plot.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SolveInfo",
    "SolveResult",
    "Status",
    "relative_residual",
    "safe_norm",
    "stopping_threshold",
]


class Status(enum.Enum):
    """Why a solve stopped. ``status.message`` explains it to a user."""

    CONVERGED = "converged"
    MAXITER = "maxiter"
    BREAKDOWN = "breakdown"
    STAGNATION = "stagnation"
    DIVERGED = "diverged"
    NONFINITE = "nonfinite"

    @property
    def message(self) -> str:
        """A sentence saying what happened and what to try next."""
        return _MESSAGES[self]

    @property
    def severity(self) -> int:
        """Rank of the status, 0 the most severe.

        The order is NONFINITE, BREAKDOWN, DIVERGED, STAGNATION, MAXITER, CONVERGED; a
        batch whose columns stopped for different reasons reports the most severe.

        Examples
        --------
        >>> Status.BREAKDOWN.severity < Status.MAXITER.severity < Status.CONVERGED.severity
        True
        """
        return _SEVERITY.index(self)

    @classmethod
    def from_severity(cls, rank: int) -> Status:
        """The status of rank ``rank`` (the inverse of :attr:`severity`).

        Examples
        --------
        >>> Status.from_severity(Status.DIVERGED.severity)
        <Status.DIVERGED: 'diverged'>
        """
        return _SEVERITY[int(rank)]

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        """The most severe of ``statuses`` (``CONVERGED`` when there are none).

        Examples
        --------
        >>> Status.worst([Status.CONVERGED, Status.MAXITER, Status.STAGNATION])
        <Status.STAGNATION: 'stagnation'>
        >>> Status.worst([])
        <Status.CONVERGED: 'converged'>
        """
        return min(statuses, key=lambda s: s.severity, default=cls.CONVERGED)


# Most severe first; Status.severity is the position in this tuple.
_SEVERITY = (
    Status.NONFINITE,
    Status.BREAKDOWN,
    Status.DIVERGED,
    Status.STAGNATION,
    Status.MAXITER,
    Status.CONVERGED,
)

_MESSAGES = {
    Status.CONVERGED: "converged: the true residual meets max(rtol*||b||, atol)",
    Status.MAXITER: (
        "maximum number of iterations reached before the tolerance; raise maxiter, "
        "use a stronger preconditioner, or loosen rtol"
    ),
    Status.BREAKDOWN: (
        "breakdown: a search direction had p^T A p <= 0; the matrix (or the "
        "preconditioner) is probably not symmetric positive definite"
    ),
    Status.STAGNATION: (
        "stagnation: the residual stopped decreasing; the tolerance may be below what "
        "the floating-point precision allows, or the method does not suit this matrix"
    ),
    Status.DIVERGED: "diverged: the residual grew far above its initial value",
    Status.NONFINITE: "NaN or Inf appeared in the iteration (check A, b and the preconditioner)",
}


@dataclass(eq=False)
class SolveInfo(Mapping):
    """Statistics of one solve, beyond what every method reports in :class:`SolveResult`.

    Each method fills the fields that apply to it; the others stay ``None``. The record
    reads like a read-only mapping of its set fields (``info["times"]``,
    ``info.get("condition_estimate")``, ``"alphas" in info``, ``dict(info)``), where an unset
    field counts as absent. Build a modified copy with :func:`dataclasses.replace` or
    :meth:`SolveResult.with_info`.

    Attributes
    ----------
    method : str
        Registry name of the method that produced the result.
    times : numpy.ndarray or list of numpy.ndarray
        Seconds since the start of the solve at each entry of ``residuals`` (a list, one
        array per column, for baselines solving a block column by column).
    column_status : list of str
        ``Status`` value of each column of a block.
    column_iterations : list of int
        Iterations of each column of a block.
    residual_replacements : list of int
        Torch Krylov methods: residual replacements per column (recurrence residual replaced
        by the true one after a false convergence).
    first_replacement : list of int
        Torch Krylov methods: iteration of each column's first replacement (-1 if none).
    history : str
        Torch Krylov methods: the residual history mode, ``"true"`` or ``"recurrence"``.
    verification_matvecs : int
        Torch Krylov methods: products with ``A`` spent on true-residual checks.
    device, dtype, operator, preconditioner : str
        Torch Krylov methods: where and in which precision the iteration ran, the class of
        the operator and the label of the preconditioner.
    threshold : float or numpy.ndarray
        Torch Krylov methods: the absolute stopping threshold (per column for a block).
    alphas, betas : numpy.ndarray
        CG and PCG: Lanczos coefficients (step lengths, ``(iterations,)`` or
        ``(iterations, k)``, NaN after a column stopped); see
        :func:`~neurosolve.solvers.krylov.condition_estimate`.
    restarts : int
        Baselines: restarts of the library's iteration after a false convergence.
    pyamg_residuals : numpy.ndarray
        Standalone AMG: pyamg's own residual history (absolute norms).
    levels : int
        Multigrid methods: levels of the hierarchy.
    operator_complexity : float
        Standalone AMG: the hierarchy's operator complexity.
    cycle : str
        Multigrid methods: ``"V"``, ``"W"`` or ``"F"``.
    cycle_matvec_equivalents : float
        MGPC: the cost of one cycle in products with ``A``.
    condition_estimate : float
        Estimate of the condition number of the (preconditioned) operator.
    network_calls : int
        Learned methods: evaluations of the network.
    k : int
        DCDM: directions kept for A-orthogonalization.
    detail : str
        What exactly went wrong, beyond the status's message (e.g. the iteration where
        ``p^T A p <= 0`` showed the matrix is not positive definite); part of
        :attr:`SolveResult.reason`.
    extra : dict
        Method-specific values without a field of their own (read through the same keys).
    """

    method: str | None = None
    times: Any = None
    column_status: list[str] | None = None
    column_iterations: list[int] | None = None
    residual_replacements: list[int] | None = None
    first_replacement: list[int] | None = None
    history: str | None = None
    verification_matvecs: int | None = None
    device: str | None = None
    dtype: str | None = None
    operator: str | None = None
    preconditioner: str | None = None
    threshold: Any = None
    alphas: np.ndarray | None = None
    betas: np.ndarray | None = None
    restarts: int | None = None
    pyamg_residuals: np.ndarray | None = None
    levels: int | None = None
    operator_complexity: float | None = None
    cycle: str | None = None
    cycle_matvec_equivalents: float | None = None
    condition_estimate: float | None = None
    network_calls: int | None = None
    k: int | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SolveInfo:
        """A record from ``{key: value}``; keys without a field go to :attr:`extra`.

        Examples
        --------
        >>> info = SolveInfo.from_mapping({"method": "cg", "custom": 3})
        >>> info.method, info["custom"], sorted(info)
        ('cg', 3, ['custom', 'method'])
        """
        if isinstance(values, SolveInfo):
            return values
        names = _INFO_FIELDS
        known = {key: value for key, value in values.items() if key in names}
        extra = {key: value for key, value in values.items() if key not in names}
        return cls(**known, extra=extra)

    def __getitem__(self, key: str) -> Any:
        if key in _INFO_FIELDS:
            value = getattr(self, key)
            if value is not None:
                return value
        elif key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        for name in _INFO_FIELDS:
            if getattr(self, name) is not None:
                yield name
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in _INFO_FIELDS:
            return getattr(self, key) is not None  # type: ignore[arg-type]
        return key in self.extra

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={_short(self[key])}" for key in self)
        return f"SolveInfo({shown})"


_INFO_FIELDS = frozenset(f.name for f in dataclasses.fields(SolveInfo)) - {"extra"}


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.size > 4:
        return f"<array {value.shape}>"
    return repr(value)


@dataclass
class SolveResult:
    """Outcome of :func:`neurosolve.solve` and of every solver in the package.

    Attributes
    ----------
    x : numpy.ndarray or torch.Tensor
        The approximate solution, same type, shape and device as the right-hand side.
    status : Status
        Why the solve stopped.
    iterations : int
        Iterations performed (for a batch: the maximum over the batch).
    residuals : numpy.ndarray
        True relative residual norms ``||b - A x_k|| / ||b||``, starting with the initial
        guess; shape ``(iterations + 1,)``, or ``(iterations + 1, batch)`` for a batch.
    setup_seconds, solve_seconds : float
        Wall time of the setup (hierarchy, factorization, model load) and of the solve.
    matvecs : int
        Products with ``A`` performed during the solve.
    info : SolveInfo
        Method-specific statistics (Lanczos coefficients, per-column status, timings...).
        A plain mapping given here is turned into a :class:`SolveInfo`.
    """

    x: Any
    status: Status
    iterations: int
    residuals: np.ndarray
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    matvecs: int = 0
    info: SolveInfo = field(default_factory=SolveInfo)

    def __post_init__(self) -> None:
        if not isinstance(self.info, SolveInfo):
            self.info = SolveInfo.from_mapping(self.info or {})

    def with_info(self, **fields: Any) -> SolveResult:
        """A copy of the result whose :attr:`info` has ``fields`` set (the rest kept).

        Examples
        --------
        >>> r = SolveResult(x=0.0, status=Status.CONVERGED, iterations=0,
        ...                 residuals=np.zeros(1), info={"method": "cg"})
        >>> r2 = r.with_info(method="mgpc-pcg", levels=3)
        >>> r2.info["method"], r2.info["levels"], r.info["method"]
        ('mgpc-pcg', 3, 'cg')
        """
        info = dataclasses.replace(self.info, extra=dict(self.info.extra), **fields)
        return dataclasses.replace(self, info=info)

    @property
    def converged(self) -> bool:
        """True only when the true residual met the tolerance."""
        return self.status is Status.CONVERGED

    @property
    def reason(self) -> str:
        """Human-readable explanation of :attr:`status` (and ``info.detail`` when set)."""
        detail = self.info.detail
        return f"{self.status.message} ({detail})" if detail else self.status.message

    @property
    def final_residual(self) -> float:
        """The last recorded true relative residual (max over a batch)."""
        last = np.asarray(self.residuals)[-1]
        return float(np.max(last))

    def __repr__(self) -> str:
        return (
            f"SolveResult(status={self.status.value}, iterations={self.iterations}, "
            f"final_residual={self.final_residual:.3e}, setup={self.setup_seconds:.3g}s, "
            f"solve={self.solve_seconds:.3g}s)"
        )


def stopping_threshold(bnorm: float, rtol: float, atol: float) -> float:
    """Absolute residual norm below which a solve counts as converged.

    Parameters
    ----------
    bnorm : float
        ``||b||_2``.
    rtol, atol : float
        Relative and absolute tolerances (non-negative, finite).

    Returns
    -------
    float
        ``max(rtol * bnorm, atol)``.

    Examples
    --------
    >>> stopping_threshold(10.0, 1e-6, 0.0)
    1e-05
    >>> stopping_threshold(0.0, 1e-6, 1e-12)
    1e-12
    """
    from neurosolve.errors import InvalidInputError

    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"{name} must be finite and >= 0, got {value!r}")
    return max(rtol * bnorm, atol)


def relative_residual(A: Any, x: np.ndarray, b: np.ndarray) -> float:
    """True relative residual ``||b - A x||_2 / ||b||_2`` computed in float64.

    Both norms are taken by :func:`safe_norm` (no overflow at 1e155, no underflow at
    1e-162). ``A`` may be anything with ``A @ x`` (scipy sparse matrix or LinearOperator, ndarray).
    A zero ``b`` gives the absolute residual instead.

    Examples
    --------
    >>> import numpy as np
    >>> relative_residual(np.eye(2), np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    """
    x64 = np.asarray(x, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    r = b64 - np.asarray(A @ x64, dtype=np.float64).reshape(b64.shape)
    bnorm = safe_norm(b64)
    rnorm = safe_norm(r)
    return rnorm / bnorm if bnorm > 0 else rnorm


def safe_norm(v: Any) -> float:
    """The 2-norm of ``v`` in float64, without overflow or underflow of the squares.

    ``numpy.linalg.norm`` squares the entries, so a vector with entries of 1e155 has an
    infinite norm and one with entries of 1e-170 a zero norm. Here the entries are first
    divided by a power of two near their largest magnitude (an exact scaling), then the
    norm is scaled back. NaN or Inf entries give NaN or Inf.

    Examples
    --------
    >>> safe_norm(np.array([3e200, 4e200]))
    5e+200
    >>> safe_norm(np.array([3e-300, 4e-300]))
    5e-300
    >>> safe_norm(np.zeros(3))
    0.0
    """
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 0:
        return 0.0
    m = float(np.max(np.abs(a)))
    if not np.isfinite(m):
        return float("nan") if np.isnan(a).any() else float("inf")
    if m == 0.0:
        return 0.0
    _, exponent = np.frexp(m)
    scaled = np.ldexp(a, -int(exponent))
    return float(np.ldexp(np.sqrt(np.dot(scaled, scaled)), int(exponent)))
