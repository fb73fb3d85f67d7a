"""Fourier neural operator in 2D (Li et al., ICLR 2021), built on :class:`SpectralConv`.

Architecture: optional grid positional channels ``(x, y)`` appended to the input, a
pointwise lifting to ``width`` channels, ``layers`` Fourier layers
``v <- act(SpectralConv(v) + W v)`` (no activation after the last), and a two-layer
pointwise projection to the output channels.

For non-periodic problems (Darcy) the lifted field is zero-padded by ``padding`` cells at
the end of each axis before the Fourier layers and cropped afterwards, so the FFT's
periodic extension does not tie opposite boundaries together; set ``padding=0`` for
periodic data. The padding is a number of cells (as in the reference), so the model runs
at any resolution; the modes are clipped on grids too coarse to hold them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.errors import InvalidInputError
from neurosolve.operators.spectral import SpectralConv

__all__ = ["FNO2d", "grid_channels"]


def grid_channels(
    batch: int, shape: Sequence[int], *, device: Any = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Coordinate channels ``(batch, d, *shape)`` with values in ``[0, 1]`` per axis.

    Examples
    --------
    >>> grid_channels(1, (3, 2))[0, 0]
    tensor([[0.0000, 0.0000],
            [0.5000, 0.5000],
            [1.0000, 1.0000]])
    """
    axes = [torch.linspace(0.0, 1.0, n, device=device, dtype=dtype) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh).unsqueeze(0).expand(batch, -1, *shape)


class FNO2d(nn.Module):
    """2D Fourier neural operator.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output functions.
    modes : int or (int, int)
        Fourier modes kept per axis (``+-modes[0]`` on the first, ``modes[1]`` on the
        half-spectrum axis).
    width : int
        Channels of the Fourier layers.
    layers : int
        Number of Fourier layers.
    padding : int
        Zero padding (cells) at the end of each axis for non-periodic problems.
    grid : bool
        Append the coordinate channels to the input.
    projection : int
        Hidden channels of the projection.
    activation : {"gelu", "relu", "tanh"}
        Nonlinearity.

    Examples
    --------
    >>> import torch
    >>> model = FNO2d(1, 1, modes=4, width=8, layers=2)
    >>> model(torch.randn(2, 1, 15, 22)).shape
    torch.Size([2, 1, 15, 22])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        modes: int | Sequence[int] = 12,
        width: int = 32,
        layers: int = 4,
        padding: int = 8,
        grid: bool = True,
        projection: int = 128,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        modes = (int(modes), int(modes)) if isinstance(modes, int) else tuple(int(m) for m in modes)
        if len(modes) != 2:
            raise InvalidInputError(f"FNO2d needs 2 modes, got {modes}")
        acts = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise InvalidInputError(f"unknown activation {activation!r}; choose from {list(acts)}")
        if int(padding) < 0:
            raise InvalidInputError(f"padding must be >= 0, got {padding}")
        if int(layers) < 1 or int(width) < 1 or int(projection) < 1:
            raise InvalidInputError("layers, width and projection must be >= 1")
        self._config = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "modes": list(modes),
            "width": int(width),
            "layers": int(layers),
            "padding": int(padding),
            "grid": bool(grid),
            "projection": int(projection),
            "activation": activation,
        }
        self.padding = int(padding)
        self.grid = bool(grid)
        self.lift = nn.Conv2d(int(in_channels) + (2 if grid else 0), int(width), 1)
        self.spectral = nn.ModuleList(
            SpectralConv(int(width), int(width), modes) for _ in range(int(layers))
        )
        self.pointwise = nn.ModuleList(
            nn.Conv2d(int(width), int(width), 1) for _ in range(int(layers))
        )
        self.act = acts[activation]()
        self.project = nn.Sequential(
            nn.Conv2d(int(width), int(projection), 1),
            acts[activation](),
            nn.Conv2d(int(projection), int(out_channels), 1),
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments (what a checkpoint stores to rebuild the model)."""
        return dict(self._config)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, in_channels, nx, ny)`` to ``(batch, out_channels, nx, ny)``."""
        if x.ndim != 4 or x.shape[1] != self._config["in_channels"]:
            raise InvalidInputError(
                f"FNO2d expects (batch, {self._config['in_channels']}, nx, ny), "
                f"got shape {tuple(x.shape)}"
            )
        nx, ny = x.shape[-2:]
        if self.grid:
            coords = grid_channels(x.shape[0], (nx, ny), device=x.device, dtype=x.dtype)
            x = torch.cat([x, coords], dim=1)
        v = self.lift(x)
        if self.padding:
            v = F.pad(v, (0, self.padding, 0, self.padding))
        last = len(self.spectral) - 1
        for i, (spec, point) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            v = spec(v) + point(v)
            if i < last:
                v = self.act(v)
        if self.padding:
            v = v[..., :nx, :ny]
        return self.project(v)
