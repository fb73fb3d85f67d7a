"""Fourier neural operators (Li et al., ICLR 2021): :class:`FNO2d` and space-time :class:`FNO3d`.

:class:`FNO2d` maps functions on a 2D grid to functions on it: optional grid positional
channels ``(x, y)`` appended to the input, a pointwise lifting to ``width`` channels,
``layers`` Fourier layers ``v <- act(SpectralConv(v) + W v)`` (no activation after the
last), and a two-layer pointwise projection. For non-periodic problems (Darcy) the lifted
field is zero-padded by ``padding`` cells at the end of each axis and cropped afterwards, so
the FFT's periodic extension does not tie opposite boundaries together (``padding=0`` for
periodic data); the padding is a number of cells, so the model runs at any resolution.

:class:`FNO3d` is the original FNO space-time model for ``t_in -> t_out`` Navier-Stokes
rollouts, the baseline of the spatio-temporal FNO (:mod:`neurosolve.operators.sfno`): the
input window is repeated along an output time axis of length ``t_out`` as channels, grid
coordinates are appended, and 3D Fourier layers act on a time axis zero-padded against its
non-periodicity. Inputs are ``(batch, t_in, nx, ny)``, outputs ``(batch, t_out, nx, ny)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.checkpoint import BaseModel
from neurosolve.errors import InvalidInputError
from neurosolve.operators.spectral import SpectralConv

__all__ = ["FNO2d", "FNO3d", "count_parameters", "grid_channels"]


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


class FNO2d(BaseModel):
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
    padding_grid : int, optional
        Make the padding a fixed fraction of the domain: ``padding`` cells on an axis of
        ``padding_grid`` cells, ``round(padding * n / padding_grid)`` on an axis of ``n``.
        The padded function then does not change with the resolution, which zero-shot
        evaluation on other grids needs (Darcy, trained at 32^2 with 8 cells: relative L2
        0.23 at 64^2 with 8 cells, 0.044 with 16). Default: ``padding`` cells on every grid.

    Examples
    --------
    >>> import torch
    >>> model = FNO2d(1, 1, modes=4, width=8, layers=2)
    >>> model(torch.randn(2, 1, 15, 22)).shape
    torch.Size([2, 1, 15, 22])
    >>> FNO2d(padding=8, padding_grid=32).padding_cells(64)
    16
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
        padding_grid: int | None = None,
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
        if padding_grid is not None and int(padding_grid) < 1:
            raise InvalidInputError(f"padding_grid must be >= 1, got {padding_grid}")
        self.in_channels = int(in_channels)
        self.padding = int(padding)
        self.padding_grid = None if padding_grid is None else int(padding_grid)
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

    def padding_cells(self, n: int) -> int:
        """Zero padding (cells) on an axis of ``n`` cells (see ``padding_grid``)."""
        if self.padding_grid is None:
            return self.padding
        return round(self.padding * n / self.padding_grid)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, in_channels, nx, ny)`` to ``(batch, out_channels, nx, ny)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"FNO2d expects (batch, {self.in_channels}, nx, ny), got shape {tuple(x.shape)}"
            )
        nx, ny = x.shape[-2:]
        if self.grid:
            coords = grid_channels(x.shape[0], (nx, ny), device=x.device, dtype=x.dtype)
            x = torch.cat([x, coords], dim=1)
        v = self.lift(x)
        pad_x, pad_y = self.padding_cells(nx), self.padding_cells(ny)
        if pad_x or pad_y:
            v = F.pad(v, (0, pad_y, 0, pad_x))
        last = len(self.spectral) - 1
        for i, (spec, point) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            v = spec(v) + point(v)
            if i < last:
                v = self.act(v)
        if pad_x or pad_y:
            v = v[..., :nx, :ny]
        return self.project(v)


def count_parameters(model: nn.Module) -> int:
    """Number of real trainable scalars (a complex weight counts twice).

    Parameters
    ----------
    model : torch.nn.Module
        Any module.

    Returns
    -------
    int
        Total count of real degrees of freedom among parameters that require a gradient.

    Examples
    --------
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    total = 0
    for p in model.parameters():
        if p.requires_grad:
            total += p.numel() * (2 if p.is_complex() else 1)
    return total


def _check_modes(modes: Sequence[int], name: str = "modes") -> tuple[int, int, int]:
    modes = tuple(int(m) for m in modes)
    if len(modes) != 3 or min(modes) < 1:
        raise InvalidInputError(
            f"{name} must be three positive integers (modes_x, modes_y, modes_t), got {modes}"
        )
    return modes  # type: ignore[return-value]


def _positive(value: int, name: str) -> int:
    value = int(value)
    if value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value}")
    return value


def _check_input(x: torch.Tensor, t_in: int | None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidInputError(
            f"expected vorticity snapshots of shape (batch, t_in, nx, ny), got {shape}"
        )
    if t_in is not None and x.shape[1] != t_in:
        raise InvalidInputError(
            f"this model was built for t_in={t_in} input snapshots, got {x.shape[1]}"
        )


def _pointwise(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=1)


class FNO3d(BaseModel):
    """The original FNO space-time model (FNO-3D) for ``t_in -> t_out`` rollouts.

    Parameters
    ----------
    modes : sequence of 3 int
        ``(modes_x, modes_y, modes_t)`` of every spectral convolution.
    width : int
        Hidden channels.
    layers : int
        Number of Fourier layers.
    t_in : int
        Number of input snapshots (they are channels, so this is fixed).
    t_out : int
        Default number of output snapshots.

    Other Parameters
    ----------------
    padding : int
        Zeros appended to the time axis inside the Fourier layers (time is not periodic).
    fc_width : int
        Hidden width of the projection.
    device, dtype
        Where the parameters live and their real dtype; ``config()`` records the dtype,
        not the device (a checkpoint loads on the device its reader asks for).

    Examples
    --------
    >>> model = FNO3d(modes=(4, 4, 3), width=8, layers=2, t_in=3, t_out=5)
    >>> model(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 5, 16, 16])
    """

    # Where the parameters are first put is no part of the model: a checkpoint must not
    # rebuild it on a device that the loading machine may not have.
    unrecorded = ("device",)

    def __init__(
        self,
        modes: Sequence[int] = (8, 8, 8),
        width: int = 20,
        layers: int = 4,
        t_in: int = 10,
        t_out: int = 40,
        *,
        padding: int = 6,
        fc_width: int = 128,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.modes = _check_modes(modes)
        self.width = _positive(width, "width")
        self.n_layers = _positive(layers, "layers")
        self.t_in = _positive(t_in, "t_in")
        self.t_out = _positive(t_out, "t_out")
        if int(padding) < 0:
            raise InvalidInputError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.fc_width = _positive(fc_width, "fc_width")
        self.lift = _pointwise(self.t_in + 3, self.width)
        self.spectral = nn.ModuleList(
            [
                SpectralConv(self.width, self.width, self.modes, dtype=dtype, device=device)
                for _ in range(self.n_layers)
            ]
        )
        self.pointwise = nn.ModuleList(
            [_pointwise(self.width, self.width) for _ in range(self.n_layers)]
        )
        self.proj1 = _pointwise(self.width, self.fc_width)
        self.proj2 = _pointwise(self.fc_width, 1)
        self.to(device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, t_out: int | None = None) -> torch.Tensor:
        """Predict ``t_out`` snapshots after the input window.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, t_in, nx, ny)`` vorticity snapshots.
        t_out : int, optional
            Number of future snapshots; default the constructor's ``t_out``.

        Returns
        -------
        torch.Tensor
            ``(batch, t_out, nx, ny)``.
        """
        _check_input(x, self.t_in)
        t_out = self.t_out if t_out is None else _positive(t_out, "t_out")
        batch, t_in, nx, ny = x.shape
        v = x.view(batch, t_in, nx, ny, 1).expand(batch, t_in, nx, ny, t_out)
        gx = torch.arange(nx, device=x.device, dtype=x.dtype) / nx
        gy = torch.arange(ny, device=x.device, dtype=x.dtype) / ny
        gt = torch.linspace(0.0, 1.0, t_out, device=x.device, dtype=x.dtype)
        grid = torch.stack(
            [
                gx.view(nx, 1, 1).expand(nx, ny, t_out),
                gy.view(1, ny, 1).expand(nx, ny, t_out),
                gt.view(1, 1, t_out).expand(nx, ny, t_out),
            ]
        )
        v = torch.cat([v, grid.unsqueeze(0).expand(batch, -1, -1, -1, -1)], dim=1)
        v = self.lift(v)
        if self.padding:
            v = F.pad(v, (0, self.padding))
        for i in range(self.n_layers):
            v = self.spectral[i](v) + self.pointwise[i](v)
            if i < self.n_layers - 1:
                v = F.gelu(v)
        if self.padding:
            v = v[..., : -self.padding]
        v = self.proj2(F.gelu(self.proj1(v)))  # (B, 1, nx, ny, t_out)
        return v.squeeze(1).permute(0, 3, 1, 2)
