"""Per-channel normalization of operator inputs and outputs, stored in checkpoints.

:class:`UnitGaussianNormalizer` standardizes each channel with one mean and one standard
deviation (so a normalized model stays resolution-agnostic); its ``state()`` is what the
trainer stores in every checkpoint and :func:`normalizers_from_state` rebuilds.
:class:`NormalizedOperator` wraps a trained operator with its normalizers so that it maps
physical inputs to physical outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["NormalizedOperator", "UnitGaussianNormalizer", "normalizers_from_state"]


class UnitGaussianNormalizer(nn.Module):
    """Per-channel standardization ``(x - mean) / (std + eps)``.

    Statistics are one number per channel (over samples and grid points), not one per grid
    point as in the original FNO code, so a normalized model stays resolution-agnostic.

    Parameters
    ----------
    mean, std : torch.Tensor
        Shape ``(channels,)``.
    eps : float, optional
        Added to ``std``.

    Examples
    --------
    >>> import torch
    >>> x = 3.0 + 2.0 * torch.randn(64, 1, 8, 8, dtype=torch.float64)
    >>> norm = UnitGaussianNormalizer.fit(x)
    >>> z = norm.encode(x)
    >>> round(float(z.mean()), 6), round(float(z.std()), 2)
    (0.0, 1.0)
    >>> bool(torch.allclose(norm.decode(z), x))
    True
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-6) -> None:
        super().__init__()
        mean = torch.as_tensor(mean).reshape(-1)
        std = torch.as_tensor(std).reshape(-1)
        if mean.shape != std.shape:
            raise InvalidInputError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} differ")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) or (std < 0).any():
            raise InvalidInputError("normalizer statistics must be finite with std >= 0")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.eps = float(eps)

    @classmethod
    def fit(
        cls,
        data: torch.Tensor | Dataset,
        *,
        index: int = 0,
        max_samples: int | None = None,
        eps: float = 1e-6,
    ) -> UnitGaussianNormalizer:
        """Per-channel statistics of a tensor ``(N, C, ...)`` or of item ``index`` of a dataset.

        Parameters
        ----------
        data : torch.Tensor or Dataset
            A batch tensor, or a dataset whose items are tuples ``(x, y, ...)`` of
            ``(C, *spatial)`` tensors.
        index : int, optional
            Which item of each dataset sample (0: input, 1: target).
        max_samples : int, optional
            Use at most this many dataset samples (the first ones).
        eps : float, optional
            Added to ``std``.

        Returns
        -------
        UnitGaussianNormalizer
        """
        total = None
        total_sq = None
        count = 0
        if isinstance(data, torch.Tensor):
            if data.ndim < 2:
                raise InvalidInputError(f"expected (N, C, ...) data, got shape {tuple(data.shape)}")
            chunks: Any = [data]
            channel_axis = 1
        else:
            n = len(data)  # type: ignore[arg-type]
            if max_samples is not None:
                n = min(n, int(max_samples))
            chunks = (data[i][index] for i in range(n))
            channel_axis = 0
        for t in chunks:
            t = t.detach().to(torch.float64).movedim(channel_axis, 0)
            flat = t.reshape(t.shape[0], -1)
            s = flat.sum(dim=1)
            sq = (flat * flat).sum(dim=1)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += flat.shape[1]
        if total is None or count == 0:
            raise InvalidInputError("cannot fit a normalizer to an empty dataset")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0.0)
        return cls(mean.float(), var.sqrt().float(), eps=eps)

    def _shape(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim < 2 or x.shape[1] != self.mean.numel():
            raise InvalidInputError(
                f"normalizer for {self.mean.numel()} channels got shape {tuple(x.shape)}"
            )
        view = (1, -1) + (1,) * (x.ndim - 2)
        mean = self.mean.to(device=x.device, dtype=x.dtype).view(view)
        std = self.std.to(device=x.device, dtype=x.dtype).view(view)
        return mean, std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / (std + eps)`` per channel (axis 1)."""
        mean, std = self._shape(x)
        return (x - mean) / (std + self.eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`."""
        mean, std = self._shape(z)
        return z * (std + self.eps) + mean

    def state(self) -> dict[str, Any]:
        """Plain dictionary stored in checkpoints."""
        return {
            "type": "unit_gaussian",
            "mean": self.mean.detach().cpu(),
            "std": self.std.detach().cpu(),
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        """Channel count."""
        return f"channels={self.mean.numel()}, eps={self.eps}"


def normalizers_from_state(
    states: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, UnitGaussianNormalizer]:
    """Rebuild the normalizers stored in a checkpoint's ``"normalizers"`` entry.

    Parameters
    ----------
    states : mapping or None
        ``{name: normalizer.state()}``.

    Returns
    -------
    dict
        ``{name: UnitGaussianNormalizer}`` (empty for ``None``).

    Examples
    --------
    >>> import torch
    >>> n = UnitGaussianNormalizer(torch.tensor([1.0]), torch.tensor([2.0]))
    >>> normalizers_from_state({"x": n.state()})["x"].std
    tensor([2.])
    """
    out: dict[str, UnitGaussianNormalizer] = {}
    for name, state in (states or {}).items():
        if not isinstance(state, Mapping) or state.get("type") != "unit_gaussian":
            raise FileFormatError(f"unknown normalizer {name!r} in checkpoint: {state!r}")
        out[name] = UnitGaussianNormalizer(state["mean"], state["std"], eps=state["eps"])
    return out


class NormalizedOperator(nn.Module):
    """An operator with its input and output normalization: ``decode(op(encode(x)))``.

    Parameters
    ----------
    operator : torch.nn.Module
        Maps normalized inputs to normalized outputs.
    x_normalizer, y_normalizer : UnitGaussianNormalizer, optional
        Input / output normalizers (``None``: identity).

    Examples
    --------
    >>> import torch
    >>> op = NormalizedOperator(torch.nn.Identity(),
    ...                         UnitGaussianNormalizer(torch.tensor([1.0]), torch.tensor([2.0])))
    >>> op(torch.tensor([[3.0]]))
    tensor([[1.0000]])
    """

    def __init__(
        self,
        operator: nn.Module,
        x_normalizer: UnitGaussianNormalizer | None = None,
        y_normalizer: UnitGaussianNormalizer | None = None,
    ) -> None:
        super().__init__()
        self.operator = operator
        self.x_normalizer = x_normalizer
        self.y_normalizer = y_normalizer

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Apply normalization, the operator, and de-normalization."""
        if self.x_normalizer is not None:
            x = self.x_normalizer.encode(x)
        y = self.operator(x, *args, **kwargs)
        if self.y_normalizer is not None:
            y = self.y_normalizer.decode(y)
        return y
