"""The strategies of the conjugate-gradient iteration: what distinguishes CG, PCG and FCG.

A :class:`~neurosolve.solvers.krylov.cg.Run` drives the iteration; its :class:`Variant`
says how the step length's numerator is formed, which extra inner products the method needs,
``beta`` and the next search direction: :class:`ConjugateGradient` for CG and PCG,
:class:`PolakRibiere` and :class:`TruncatedFlexible` for flexible CG. The column-wise inner
products and the one host transfer of an iteration (:func:`host_values`) live here too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from neurosolve.solvers import native_vectors

__all__ = [
    "ConjugateGradient",
    "PolakRibiere",
    "TruncatedFlexible",
    "Variant",
    "coldot",
    "coldots",
    "colnorm",
    "host_values",
]

Preconditioner = Callable[[torch.Tensor, bool], torch.Tensor] | None


def colnorm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every column of ``v`` (``(n, k)`` -> ``(k,)``)."""
    return torch.linalg.vector_norm(v, dim=0)


def coldot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u_j^T v_j`` for every column ``j`` (``(n, k)`` -> ``(k,)``)."""
    if u.shape[1] == 1:  # one fused kernel for a single right-hand side
        x, y = u.reshape(-1), v.reshape(-1)
        out = native_vectors.dot(x, y)  # inside a native-threads block: on its threads
        return out if out is not None else torch.vdot(x, y).reshape(1)
    return (u * v).sum(dim=0)


def coldots(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
    """``[coldot(u, v), coldot(u, w)]``, in one pass over ``u`` where the kernels take it."""
    if u.shape[1] == 1:
        both = native_vectors.dot2(u.reshape(-1), v.reshape(-1), w.reshape(-1))
        if both is not None:
            return [both[:1], both[1:]]
    return [coldot(u, v), coldot(u, w)]


def _axpy(y: torch.Tensor, x: torch.Tensor, a: Any) -> None:
    """``y += a * x`` in place; ``a`` is a Python/NumPy scalar (1 column) or a (k,) tensor."""
    if isinstance(a, torch.Tensor):
        y.addcmul_(x, a)
    else:
        y.add_(x, alpha=float(np.asarray(a).reshape(-1)[0]))


def host_values(values: list[torch.Tensor]) -> np.ndarray:
    """Per-column scalars on the host in float64: one synchronization for all of them."""
    return np.asarray(torch.stack(values).cpu().numpy(), dtype=np.float64)


class Variant(abc.ABC):
    """What distinguishes one CG method from another: the strategy of a run.

    A :class:`~neurosolve.solvers.krylov.cg.Run` calls these methods every iteration.

    Parameters
    ----------
    precond : callable or None
        ``precond(r, single) -> M r`` on the internal layout; ``None`` for no preconditioner.
    single : bool
        Whether the right-hand side is one vector (passed on to ``precond``).
    """

    #: The step lengths are Lanczos coefficients (kept in ``info`` as alphas / betas).
    lanczos: ClassVar[bool] = False

    def __init__(self, precond: Preconditioner, single: bool) -> None:
        self.precond, self.single = precond, single

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        """``z = M r`` (``r`` itself without a preconditioner)."""
        return r if self.precond is None else self.precond(r, self.single)

    @abc.abstractmethod
    def step_dots(self, p: torch.Tensor, Ap: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
        """The inner products of the step length: ``p^T A p`` first, then any others."""

    @abc.abstractmethod
    def numerator(self, dots: Any, rz: Any) -> Any:
        """The step length's numerator from ``step_dots`` and ``r_k^T z_k``.

        Both arguments are stacked per-column values, on the device (the step length the
        update uses) or on the host (the one recorded); the method only selects.
        """

    @abc.abstractmethod
    def residual_dots(self, z: torch.Tensor, Ap: torch.Tensor) -> list[torch.Tensor]:
        """Inner products of the new preconditioned residual that :meth:`beta` needs."""

    @abc.abstractmethod
    def beta(
        self, rz_new: np.ndarray, rz_safe: np.ndarray, alpha: np.ndarray, dots: np.ndarray
    ) -> np.ndarray | None:
        """``beta_k`` per column (``dots``: the values of ``residual_dots``), or None."""

    def direction(
        self, run: Any, z: torch.Tensor, Ap: torch.Tensor, pAp: np.ndarray, beta: Any
    ) -> torch.Tensor:
        """The next search direction ``p = z + beta p`` (``run.p`` is updated in place)."""
        beta = np.where(run.active_h, beta, 0.0)
        if run.k == 1:  # one fused pass: p = z + beta p
            if native_vectors.xpay(z.reshape(-1), run.p.reshape(-1), float(beta[0])):
                return run.p
            return torch.add(z, run.p, alpha=float(beta[0]), out=run.p)
        return torch.addcmul(z, run.p, run.on_device(beta), out=run.p)

    def restart(self) -> None:
        """Forget the directions kept across iterations (on a restart)."""
        return None  # a recurrence keeps only p, which the restart replaces


class ConjugateGradient(Variant):
    """CG and PCG (the preconditioner, if any, a fixed SPD map).

    ``alpha = r^T z / p^T A p`` and ``beta = r_{k+1}^T z_{k+1} / r_k^T z_k``; the step
    lengths are the Lanczos coefficients of the (preconditioned) operator.
    """

    lanczos = True

    def step_dots(self, p: torch.Tensor, Ap: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
        """``p^T A p``."""
        return [coldot(p, Ap)]

    def numerator(self, dots: Any, rz: Any) -> Any:
        """``r^T z``, kept from the previous iteration."""
        return rz

    def residual_dots(self, z: torch.Tensor, Ap: torch.Tensor) -> list[torch.Tensor]:
        """None needed."""
        return []

    def beta(
        self, rz_new: np.ndarray, rz_safe: np.ndarray, alpha: np.ndarray, dots: np.ndarray
    ) -> np.ndarray | None:
        """``r_{k+1}^T z_{k+1} / r_k^T z_k``."""
        return rz_new / rz_safe


class PolakRibiere(Variant):
    """Flexible CG with the Polak-Ribiere ``beta``, for preconditioners that vary.

    ``alpha = p^T r / p^T A p`` and ``beta = z_{k+1}^T (r_{k+1} - r_k) / (z_k^T r_k)``, with
    ``r_{k+1} - r_k = -alpha A p_k`` (no copy of ``r_k`` needed).
    """

    def step_dots(self, p: torch.Tensor, Ap: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
        """``p^T A p`` and ``p^T r``."""
        return coldots(p, Ap, r)

    def numerator(self, dots: Any, rz: Any) -> Any:
        """``p^T r``."""
        return dots[1]

    def residual_dots(self, z: torch.Tensor, Ap: torch.Tensor) -> list[torch.Tensor]:
        """``z^T A p``."""
        return [coldot(z, Ap)]

    def beta(
        self, rz_new: np.ndarray, rz_safe: np.ndarray, alpha: np.ndarray, dots: np.ndarray
    ) -> np.ndarray | None:
        """``-alpha z^T A p / (z_k^T r_k)``."""
        return -alpha * dots[0] / rz_safe


class TruncatedFlexible(PolakRibiere):
    """Notay's FCG(m): each new direction A-orthogonalized against the last ``m`` ones.

    Parameters
    ----------
    precond, single
        As for :class:`Variant`.
    truncation : int
        ``m``, the directions kept.
    """

    def __init__(self, precond: Preconditioner, single: bool, truncation: int) -> None:
        super().__init__(precond, single)
        self.truncation = truncation
        self.kept: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []

    def residual_dots(self, z: torch.Tensor, Ap: torch.Tensor) -> list[torch.Tensor]:
        """None: the direction comes from the explicit orthogonalization."""
        return []

    def beta(
        self, rz_new: np.ndarray, rz_safe: np.ndarray, alpha: np.ndarray, dots: np.ndarray
    ) -> np.ndarray | None:
        """None: no recurrence coefficient."""
        return None

    def direction(
        self, run: Any, z: torch.Tensor, Ap: torch.Tensor, pAp: np.ndarray, beta: Any
    ) -> torch.Tensor:
        """``p = z - sum_j (z^T A p_j / p_j^T A p_j) p_j`` over the kept directions."""
        self.kept.append((run.p, Ap, pAp))
        if len(self.kept) > self.truncation:
            self.kept.pop(0)
        coef = host_values([coldot(z, Apj) for _, Apj, _ in self.kept])
        p = z.clone()
        for (pj, _, pApj), cj in zip(self.kept, coef, strict=True):
            c = np.where(pApj > 0, cj / np.where(pApj > 0, pApj, 1.0), 0.0)
            _axpy(p, pj, -c if run.k == 1 else run.on_device(-c))
        return p

    def restart(self) -> None:
        """Forget the kept directions."""
        self.kept.clear()
