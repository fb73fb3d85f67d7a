"""Every supported form of ``A`` as a torch operator for the Krylov iteration.

The torch solvers apply ``A`` through a small protocol (``apply_internal``,
``to_internal`` / ``from_internal``, ``diagonal_internal``, ``num_unknowns``, ``device``,
``dtype``). :func:`as_torch_operator` picks the implementation: the matrix-free
:class:`~neurosolve.solvers.stencil.StencilOperator` when the matrix is a 5/7-point stencil on
a known grid, torch sparse CSR otherwise, and a host adapter for a bare scipy
``LinearOperator``. :func:`float64_twin` gives the same operator in float64, with which a
float32 iteration verifies its convergence.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

from neurosolve._util.validate import float_dtype
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.krylov.preconditioners import apply_linear_operator
from neurosolve.solvers.stencil import SparseOperator, StencilOperator
from neurosolve.solvers.system import PreparedSystem, prepare_system

__all__ = ["as_torch_operator", "float64_twin"]

logger = logging.getLogger(__name__)


class _LinearOperatorAdapter:
    """A scipy LinearOperator behind the torch operator protocol (host round trip per use).

    Only for operators without an explicit matrix; on CUDA every product copies the vector
    to the host and back, so prefer a matrix, a LinearSystem or a StencilOperator there.
    """

    grid = None

    def __init__(self, operator: spla.LinearOperator, device: torch.device, dtype: torch.dtype):
        self.operator, self.device, self.dtype = operator, device, dtype
        self.num_unknowns = int(operator.shape[0])

    def to_internal(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def from_internal(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def apply_internal(self, v: torch.Tensor) -> torch.Tensor:
        out = apply_linear_operator(self.operator, v.detach().cpu().double().numpy())
        return torch.as_tensor(np.asarray(out), dtype=v.dtype, device=v.device).reshape(v.shape)

    def diagonal_internal(self) -> torch.Tensor:
        raise InvalidInputError(
            "the Jacobi preconditioner needs the diagonal of A, which a LinearOperator does "
            "not expose; pass the matrix instead"
        )

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_internal(x)


def as_torch_operator(
    A: Any,
    *,
    device: Any = None,
    dtype: torch.dtype = torch.float64,
    operator: str = "auto",
    prepared: PreparedSystem | None = None,
) -> Any:
    """Turn any supported ``A`` into a torch operator (stencil, sparse CSR or adapter).

    Parameters
    ----------
    A : LinearSystem, scipy sparse matrix, LinearOperator, ndarray or StencilOperator
        The operator (checked by :func:`~neurosolve.solvers.system.prepare_system` unless
        ``prepared`` is given).
    device, dtype
        Where and in which precision products are computed.
    operator : {"auto", "stencil", "csr"}
        ``"stencil"``: matrix-free :class:`StencilOperator` (needs a grid and a 5/7-point
        matrix); ``"csr"``: torch sparse CSR; ``"auto"``: the stencil when a grid is known
        and the matrix fits its pattern, else CSR.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> type(as_torch_operator(poisson((4, 4)))).__name__
    'StencilOperator'
    >>> type(as_torch_operator(poisson((4, 4)).A)).__name__
    'SparseOperator'
    """
    if operator not in ("auto", "stencil", "csr"):
        raise InvalidInputError(f"operator must be 'auto', 'stencil' or 'csr', got {operator!r}")
    dtype = float_dtype(dtype)
    device = resolve_device(device)
    p = prepared if prepared is not None else prepare_system(A)
    if p.torch_operator is not None:
        op = p.torch_operator
        if op.device == device and op.dtype == dtype:
            return op
        if isinstance(op, StencilOperator):
            return StencilOperator(
                op.grid,
                op.diagonal.to(device=device, dtype=dtype),
                op.neighbours.to(device=device, dtype=dtype),
            )
        return _LinearOperatorAdapter(p.operator, device, dtype)
    if p.matrix is None:
        if operator != "auto":
            raise InvalidInputError(
                f"operator={operator!r} needs an explicit matrix; got a LinearOperator"
            )
        return _LinearOperatorAdapter(p.operator, device, dtype)
    if operator in ("auto", "stencil") and p.grid is not None:
        try:
            return StencilOperator.from_matrix(p.matrix, p.grid, device=device, dtype=dtype)
        except InvalidInputError:
            if operator == "stencil":
                raise
            logger.info("matrix is not a 5/7-point stencil on its grid; using sparse CSR")
    elif operator == "stencil":
        raise InvalidInputError("operator='stencil' needs a grid: pass a LinearSystem with a grid")
    return SparseOperator(p.matrix, device=device, dtype=dtype)


def float64_twin(op: Any, prepared: PreparedSystem) -> Any:
    """The same operator in float64, from the ORIGINAL float64 coefficients.

    A float32 iteration verifies its convergence with this operator, so it must not be
    ``op`` cast back up: the float32-rounded coefficients describe a nearby matrix, whose
    residual can meet the tolerance while the residual of the given matrix does not. The
    twin is built from the float64 CSR matrix of ``prepared`` (as a stencil when ``op`` is
    one), or is the float64 torch operator the solver was given; ``op`` itself when it is
    float64 already.

    Examples
    --------
    >>> from neurosolve.data import poisson
    >>> system = poisson((4, 4))
    >>> op = as_torch_operator(system, dtype=torch.float32)
    >>> float64_twin(op, prepare_system(system)).dtype
    torch.float64
    """
    if op.dtype == torch.float64:
        return op
    given = prepared.torch_operator
    if given is not None and given.dtype == torch.float64:
        if given.device == op.device:
            return given
        if isinstance(given, StencilOperator):  # a copy: never move the caller's module
            return StencilOperator(
                given.grid, given.diagonal.to(op.device), given.neighbours.to(op.device)
            )
    if isinstance(op, StencilOperator):
        if prepared.matrix is not None:
            return StencilOperator.from_matrix(
                prepared.matrix, op.grid, device=op.device, dtype=torch.float64
            )
        return StencilOperator(op.grid, op.diagonal.double(), op.neighbours.double())
    if prepared.matrix is not None:
        return SparseOperator(prepared.matrix, device=op.device, dtype=torch.float64)
    return _LinearOperatorAdapter(prepared.operator, op.device, torch.float64)
