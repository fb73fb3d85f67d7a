"""Relative L2 and H1 errors of fields: training losses and test metrics.

Fields are tensors ``(batch, channels, *spatial)`` sampled on a uniform grid of a box
with side lengths ``lengths`` (default: the unit box). Per sample, the norm runs over all
channels and grid points; the result is averaged over the batch (``reduction="mean"``),
so the value does not depend on the batch size.

The H1 norm is ``||v||_{H1}^2 = ||v||^2 + ||grad v||^2`` (L2 norms over the domain; the
cell volume cancels in the ratio). Two ways to take the gradient:

- ``method="fd"`` (default): finite differences, second-order central in the interior and
  one-sided first order at the edges (``torch.gradient``). Right for any boundary
  condition (Darcy's Dirichlet data is not periodic).
- ``method="spectral"``: Fourier differentiation via Parseval,
  ``||v||_{H1}^2 ~ sum_k (1 + |2 pi k / L|^2) |v_hat_k|^2``. Exact for periodic fields
  (Navier-Stokes on the torus); on non-periodic data the jump at the boundary of the
  periodic extension inflates the gradient part. This is the "FFT-weighted H1" of the
  FNO/MgNO reference codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from neurosolve.errors import InvalidInputError

__all__ = ["h1_norm", "relative_h1", "relative_l2"]


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise InvalidInputError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    if pred.ndim < 3:
        raise InvalidInputError(
            f"expected (batch, channels, *spatial) fields, got shape {tuple(pred.shape)}"
        )


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise InvalidInputError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def relative_l2(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Relative L2 error ``||pred - target|| / ||target||`` per sample, batch-averaged.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(batch, channels, *spatial)``.
    reduction : {"mean", "sum", "none"}
        Over the batch.

    Returns
    -------
    torch.Tensor
        Scalar, or ``(batch,)`` for ``reduction="none"``.

    Examples
    --------
    >>> import torch
    >>> t = torch.ones(2, 1, 8, 8)
    >>> float(relative_l2(1.1 * t, t))
    0.1...
    """
    _check(pred, target)
    b = pred.shape[0]
    diff = (pred - target).reshape(b, -1)
    ref = target.reshape(b, -1)
    return _reduce(_ratio(diff.norm(dim=1), ref.norm(dim=1)), reduction)


def h1_norm(
    v: torch.Tensor, *, method: str = "fd", lengths: Sequence[float] | None = None
) -> torch.Tensor:
    """Discrete H1 norm per sample (root mean square over the grid, ``(batch,)``).

    Parameters
    ----------
    v : torch.Tensor
        ``(batch, channels, *spatial)``.
    method : {"fd", "spectral"}
        Gradient by finite differences or by Fourier differentiation (see module notes).
    lengths : sequence of float, optional
        Side lengths of the domain (default 1 on every axis).

    Returns
    -------
    torch.Tensor
        ``sqrt(mean(v^2) + mean(|grad v|^2))`` per sample.

    Examples
    --------
    >>> import math, torch
    >>> x = torch.arange(64, dtype=torch.float64) / 64
    >>> v = torch.sin(2 * math.pi * x).reshape(1, 1, 64)
    >>> round(float(h1_norm(v, method="spectral")) ** 2, 4)   # (1 + 4 pi^2) / 2
    20.2392
    """
    if v.ndim < 3:
        raise InvalidInputError(f"expected (batch, channels, *spatial), got {tuple(v.shape)}")
    d = v.ndim - 2
    axes = tuple(range(2, v.ndim))
    shape = v.shape[2:]
    if lengths is None:
        lengths = (1.0,) * d
    if len(lengths) != d or any(not (math.isfinite(L) and L > 0) for L in lengths):
        raise InvalidInputError(f"lengths must be {d} positive numbers, got {lengths}")
    b = v.shape[0]
    if method == "fd":
        spacing = [float(L) / n for L, n in zip(lengths, shape, strict=True)]
        if min(shape) < 2:
            raise InvalidInputError(f"finite differences need >= 2 points per axis, got {shape}")
        grads = torch.gradient(v, spacing=spacing, dim=list(axes), edge_order=1)
        sq = v.pow(2).reshape(b, -1).mean(dim=1)
        for g in grads:
            sq = sq + g.pow(2).reshape(b, -1).mean(dim=1)
        return sq.sqrt()
    if method == "spectral":
        v_hat = torch.fft.fftn(v, dim=axes, norm="forward")  # Fourier coefficients
        weight = torch.ones(shape, dtype=v.real.dtype, device=v.device)
        for i, (L, n) in enumerate(zip(lengths, shape, strict=True)):
            k = torch.fft.fftfreq(n, d=float(L) / n, device=v.device, dtype=weight.dtype)
            k = 2 * math.pi * k
            view = [1] * d
            view[i] = n
            weight = weight + k.pow(2).reshape(view)
        # Parseval: mean over the grid of |v|^2 = sum of |coefficients|^2.
        sq = (weight * v_hat.abs().pow(2)).reshape(b, -1).sum(dim=1)
        return sq.sqrt()
    raise InvalidInputError(f"method must be 'fd' or 'spectral', got {method!r}")


def relative_h1(
    pred: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    *,
    method: str = "fd",
    lengths: Sequence[float] | None = None,
) -> torch.Tensor:
    """Relative H1 error ``||pred - target||_H1 / ||target||_H1``, batch-averaged.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(batch, channels, *spatial)``.
    reduction : {"mean", "sum", "none"}
        Over the batch.
    method : {"fd", "spectral"}
        Gradient by finite differences (default) or Fourier differentiation.
    lengths : sequence of float, optional
        Domain side lengths (default: unit box).

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import torch
    >>> t = torch.randn(3, 1, 16, 16)
    >>> float(relative_h1(1.25 * t, t))
    0.25...
    """
    _check(pred, target)
    num = h1_norm(pred - target, method=method, lengths=lengths)
    den = h1_norm(target, method=method, lengths=lengths)
    return _reduce(_ratio(num, den), reduction)
