"""Seeded generator of solver property cases, shared by the test and the benchmark.

One :class:`Case` is a method of :func:`neurosolve.solvers.available` with a precision
(where the method takes ``dtype``), constant or variable coefficients, a system with its
grid or the bare CSR matrix, an SPD, indefinite (positive diagonal) or non-symmetric
matrix, a right-hand side (sometimes of 1e155 or 1e-300 magnitude) and a tolerance.
:func:`check` runs one case and returns the property it violates, or None:

- ``converged`` implies the true relative residual, recomputed in float64 from the
  ORIGINAL matrix and right-hand side, is at most ``rtol``;
- a non-symmetric matrix is refused with ``InvalidInputError``;
- an indefinite matrix is never plain ``converged``.

``tests/solvers/test_property_sweep.py`` runs a fixed-seed subset in CI;
``benchmarks/property_sweep.py`` runs 2,000 cases.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from neurosolve.data import LinearSystem, poisson
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import available, get_factory, make_solver, needs_grid, relative_residual

KINDS = ("spd", "spd", "indefinite", "nonsymmetric")
SCALES = (1.0, 1.0, 1.0, 1.0, 1e155, 1e200, 1e-162, 1e-300)
RTOLS = (1e-5, 1e-6, 1e-8)


@dataclass(frozen=True)
class Case:
    """One generated case (all a test needs to rebuild it)."""

    number: int
    method: str
    dtype: str | None
    coefficients: str
    with_grid: bool
    kind: str
    shape: tuple[int, ...]
    scale: float
    rtol: float
    seed: int

    @property
    def id(self) -> str:
        """A readable id: ``0007-cg-float32-variable-grid-spd-8x8``."""
        dims = "x".join(map(str, self.shape))
        where = "grid" if self.with_grid else "csr"
        scale = "" if self.scale == 1.0 else f"-b{self.scale:.0e}"
        return (
            f"{self.number:04d}-{self.method}-{self.dtype or 'host'}-{self.coefficients}-"
            f"{where}-{self.kind}-{dims}{scale}"
        )


def takes_dtype(method: str) -> bool:
    """Whether the factory of ``method`` has a ``dtype`` keyword."""
    return "dtype" in inspect.signature(get_factory(method)).parameters


def generate(count: int, seed: int = 0) -> list[Case]:
    """``count`` cases, methods in turn, everything else drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    methods = available()
    dtypes = {m: takes_dtype(m) for m in methods}
    cases = []
    for number in range(count):
        method = methods[number % len(methods)]
        three_d = method == "dcdm" or rng.random() < 0.4  # the shipped DCDM network is 3D
        if three_d:
            shape = (int(rng.integers(4, 7)),) * 3
        else:
            shape = (int(rng.integers(6, 13)), int(rng.integers(6, 13)))
        cases.append(
            Case(
                number=number,
                method=method,
                dtype=str(rng.choice(["float32", "float64"])) if dtypes[method] else None,
                coefficients=str(rng.choice(["constant", "variable"])),
                with_grid=bool(rng.random() < 0.6),
                kind=str(rng.choice(KINDS)),
                shape=shape,
                scale=float(rng.choice(SCALES)),
                rtol=float(rng.choice(RTOLS)),
                seed=int(rng.integers(2**31)),
            )
        )
    return cases


def build(case: Case) -> tuple[object, sp.csr_matrix, np.ndarray]:
    """The operator handed to the method, the original float64 matrix, and ``b``."""
    rng = np.random.default_rng(case.seed)
    coefficient = None
    if case.coefficients == "variable":
        coefficient = np.exp(rng.uniform(-2.0, 2.0, case.shape))
    system = poisson(case.shape, coefficient=coefficient)
    A = system.A.tocsr().astype(np.float64)
    if case.kind == "indefinite":
        # shift past a few of the lowest eigenvalues; the diagonal stays positive
        eigenvalues = np.linalg.eigvalsh(A.toarray())
        k = int(rng.integers(1, 4))
        sigma = eigenvalues[k - 1] + rng.uniform(0.2, 0.8) * (eigenvalues[k] - eigenvalues[k - 1])
        if sigma < 0.9 * float(A.diagonal().min()):
            A = (A - sigma * sp.eye(A.shape[0])).tocsr()
        else:  # a shift that far would turn the diagonal negative: an indefinite 2x2 block
            rows, cols = sp.triu(A, k=1).nonzero()
            i, j = rows[0], cols[0]
            A = A.tolil()
            A[i, j] = A[j, i] = -rng.uniform(1.5, 4.0) * np.sqrt(A[i, i] * A[j, j])
            A = A.tocsr()
        if not np.linalg.eigvalsh(A.toarray())[0] < 0:
            raise AssertionError(f"case {case.id}: the 'indefinite' matrix is definite")
    elif case.kind == "nonsymmetric":
        A = A.tolil()
        rows, cols = sp.triu(system.A, k=1).nonzero()
        pick = int(rng.integers(rows.size))
        A[rows[pick], cols[pick]] *= 1.0 + rng.uniform(0.05, 0.5)
        A = A.tocsr()
    b = rng.standard_normal(A.shape[0]) * case.scale
    operator = LinearSystem(A=A, grid=system.grid) if case.with_grid else A
    return operator, A, b


def check(case: Case) -> tuple[str, str | None]:
    """Run ``case``: its outcome (a status value or ``refused``) and a violation or None."""
    operator, A, b = build(case)
    options: dict[str, object] = {}
    if case.dtype is not None:
        options["dtype"] = case.dtype
    if case.method == "pcg":
        options["preconditioner"] = "jacobi"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyamg and scipy warn on indefinite matrices
            solver = make_solver(case.method, operator, **options)
            result = solver.solve(b, rtol=case.rtol)
    except InvalidInputError as exc:
        allowed = case.kind != "spd" or (needs_grid(case.method) and not case.with_grid)
        if allowed:
            return "refused", None
        return "refused", f"an SPD system was refused: {exc}"
    outcome = result.status.value
    if case.kind == "nonsymmetric":
        return outcome, "a non-symmetric matrix was not refused"
    if result.converged and case.kind == "indefinite":
        return outcome, "an indefinite matrix was reported plain 'converged'"
    if result.converged:
        x = np.asarray(result.x.detach().cpu() if hasattr(result.x, "detach") else result.x)
        true = relative_residual(A, x, b)
        if not true <= case.rtol:
            return outcome, f"converged, but the true relative residual is {true:.4e}"
    return outcome, None
