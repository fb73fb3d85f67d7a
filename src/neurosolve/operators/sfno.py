"""Space-time Fourier neural operators for 2D Navier-Stokes: SFNO and the FNO3d baseline.

Both models map ``t_in`` vorticity snapshots to ``t_out`` future snapshots:

- input ``(batch, t_in, nx, ny)``: the package's channel layout with time as the channel axis,
  exactly what :func:`neurosolve.data.navier_stokes.navier_stokes_samples` and
  :class:`neurosolve.data.store.H5Dataset` produce;
- output ``(batch, t_out, nx, ny)``; ``t_out`` may be chosen per call.

Internally both models work on ``(batch, channels, nx, ny, t)``: time is the LAST axis, so the
three-dimensional :class:`~neurosolve.operators.spectral.SpectralConv` keeps ``+-modes_x``,
``+-modes_y`` and the first ``modes_t`` (real-FFT) time modes.

:class:`SFNO` (Cao, Brarda, Li, Xi, ICLR 2025) treats the input window as a function of
``(x, y, t)``: a space-time positional encoding is appended and lifted pointwise, the first
spectral convolution resamples time to a latent length, the middle layers are
``act(FFN(K v) + W v)``, and an output operator continues the trajectory from the last
input frame: it prepends that frame to the projected latent trajectory, applies a
one-channel spectral convolution whose inverse FFT has ``t_out + 1`` time steps, drops the
first step and adds the last input frame. That final one-channel convolution
(:attr:`SFNO.out_conv`) is the layer the Spectral-Refiner fine-tunes
(:mod:`neurosolve.operators.refine`).

:class:`FNO3d` is the original FNO space-time model (Li et al., ICLR 2021): the input window
is repeated along an output time axis of length ``t_out`` as channels, grid coordinates are
appended, and four 3D Fourier layers act on a time axis zero-padded against its
non-periodicity.

Differences from the reference code: no lifting normalisation layer (data are normalised by
the trainer's normalisers instead); the pointwise path of the resampling first layer is
interpolated linearly in time so that the skip connection exists on the latent grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from neurosolve.errors import InvalidInputError
from neurosolve.operators.spectral import SpectralConv

__all__ = ["SFNO", "FNO3d", "count_parameters"]


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


def _grid_encoding(
    nx: int, ny: int, nt: int, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Space-time positional encoding, shape (5, nx, ny, nt).

    Periodic features sin/cos(2 pi x), sin/cos(2 pi y) on the unit torus (x = i / nx) and the
    normalised time t in [0, 1] of the window.
    """
    x = torch.arange(nx, device=device, dtype=dtype) / nx
    y = torch.arange(ny, device=device, dtype=dtype) / ny
    t = torch.linspace(0.0, 1.0, nt, device=device, dtype=dtype)
    two_pi = 2.0 * math.pi
    gx = x.view(nx, 1, 1).expand(nx, ny, nt)
    gy = y.view(1, ny, 1).expand(nx, ny, nt)
    gt = t.view(1, 1, nt).expand(nx, ny, nt)
    return torch.stack(
        [
            torch.sin(two_pi * gx),
            torch.cos(two_pi * gx),
            torch.sin(two_pi * gy),
            torch.cos(two_pi * gy),
            gt,
        ]
    )


def _pointwise(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=1)


class _FeedForward(nn.Module):
    """Pointwise two-layer perceptron over channels."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = _pointwise(channels, hidden)
        self.fc2 = _pointwise(hidden, channels)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(v)))


class SFNO(nn.Module):
    """Spatiotemporal Fourier neural operator (maps between Bochner spaces).

    Parameters
    ----------
    modes : sequence of 3 int
        ``(modes_x, modes_y, modes_t)`` kept by every hidden spectral convolution:
        ``+-modes_x``, ``+-modes_y`` and the first ``modes_t`` real-FFT time modes.
    width : int
        Hidden channels.
    layers : int
        Number of spectral layers (the first one resamples time), at least 1.
    t_out : int
        Default number of output snapshots (``forward`` may ask for another).
    latent_steps : int, optional
        Length of the latent time axis; default ``t_out``.

    Other Parameters
    ----------------
    out_modes : sequence of 3 int, optional
        Modes of the one-channel output convolution; default ``modes``.
    fc_width : int
        Hidden width of the projection and of the feed-forward blocks (default 4 * width).
    time_padding : int
        Zeros appended to the time axis of the output operator's input (0: none), so that
        the predicted increment, which starts at 0 and grows, need not be periodic in time
        within the kept time modes.
    device, dtype
        Where the parameters live and their real dtype.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = SFNO(modes=(4, 4, 2), width=8, layers=2, t_out=5)
    >>> model(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 5, 16, 16])
    >>> model(torch.randn(2, 3, 16, 16), t_out=7).shape
    torch.Size([2, 7, 16, 16])
    """

    def __init__(
        self,
        modes: Sequence[int] = (12, 12, 5),
        width: int = 20,
        layers: int = 4,
        t_out: int = 40,
        latent_steps: int | None = None,
        *,
        out_modes: Sequence[int] | None = None,
        fc_width: int | None = None,
        time_padding: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.modes = _check_modes(modes)
        self.out_modes = _check_modes(out_modes if out_modes is not None else modes, "out_modes")
        self.width = _positive(width, "width")
        self.n_layers = _positive(layers, "layers")
        self.t_out = _positive(t_out, "t_out")
        self.latent_steps = _positive(
            latent_steps if latent_steps is not None else t_out, "latent_steps"
        )
        self.fc_width = _positive(fc_width if fc_width is not None else 4 * width, "fc_width")
        if int(time_padding) < 0:
            raise InvalidInputError(f"time_padding must be >= 0, got {time_padding}")
        self.time_padding = int(time_padding)
        channels_in = 1 + 5  # vorticity + positional encoding
        self.lift = _pointwise(channels_in, self.width)
        self.spectral = nn.ModuleList(
            [
                SpectralConv(self.width, self.width, self.modes, dtype=dtype, device=device)
                for _ in range(self.n_layers)
            ]
        )
        self.pointwise = nn.ModuleList(
            [_pointwise(self.width, self.width) for _ in range(self.n_layers)]
        )
        # the first layer has no feed-forward block (it resamples time); the others do
        self.ffn = nn.ModuleList(
            [_FeedForward(self.width, self.fc_width) for _ in range(self.n_layers - 1)]
        )
        self.proj1 = _pointwise(self.width, self.fc_width)
        self.proj2 = _pointwise(self.fc_width, 1)
        #: The output operator's one-channel spectral convolution (fine-tuned by the refiner).
        self.out_conv = SpectralConv(1, 1, self.out_modes, dtype=dtype, device=device)
        self.to(device=device, dtype=dtype)

    def config(self) -> dict:
        """Constructor arguments as plain values (what a checkpoint stores)."""
        return {
            "modes": list(self.modes),
            "width": self.width,
            "layers": self.n_layers,
            "t_out": self.t_out,
            "latent_steps": self.latent_steps,
            "out_modes": list(self.out_modes),
            "fc_width": self.fc_width,
            "time_padding": self.time_padding,
        }

    def forward(self, x: torch.Tensor, t_out: int | None = None) -> torch.Tensor:
        """Predict ``t_out`` snapshots after the input window.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, t_in, nx, ny)`` vorticity snapshots, oldest first.
        t_out : int, optional
            Number of future snapshots; default the constructor's ``t_out``.

        Returns
        -------
        torch.Tensor
            ``(batch, t_out, nx, ny)``.
        """
        _check_input(x, None)
        t_out = self.t_out if t_out is None else _positive(t_out, "t_out")
        latent = self.latent_features(x)
        return self.output_operator(x, latent, t_out)

    def latent_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the output operator: ``(batch, 1, nx, ny, latent_steps)``."""
        batch, t_in, nx, ny = x.shape
        w = x.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, nx, ny, t_in)
        pe = _grid_encoding(nx, ny, t_in, device=x.device, dtype=x.dtype)
        v = torch.cat([w, pe.unsqueeze(0).expand(batch, -1, -1, -1, -1)], dim=1)
        v = self.lift(v)
        shape = (nx, ny, self.latent_steps)
        skip = F.interpolate(v, size=shape, mode="trilinear", align_corners=True)
        v = self.spectral[0](v, out_shape=shape) + self.pointwise[0](skip)
        if self.n_layers > 1:
            v = F.gelu(v)
        for i in range(1, self.n_layers):
            v = self.ffn[i - 1](self.spectral[i](v)) + self.pointwise[i](v)
            if i < self.n_layers - 1:
                v = F.gelu(v)
        return self.proj2(F.gelu(self.proj1(v)))

    def output_time_grids(self, t_out: int) -> tuple[int, int]:
        """Time lengths (input, output) of :attr:`out_conv` for ``t_out`` snapshots.

        The input is ``[w_last, latent]`` plus ``time_padding`` zeros; the output covers the
        same (padded) time window with ``t_out + 1`` points before the padding, so the
        padding of the output is the input's scaled by ``(t_out + 1) / (latent + 1)``.
        """
        steps_in = self.latent_steps + 1
        pad_out = round(self.time_padding * (t_out + 1) / steps_in)
        return steps_in + self.time_padding, t_out + 1 + pad_out

    def output_operator(self, x: torch.Tensor, latent: torch.Tensor, t_out: int) -> torch.Tensor:
        """Continue from the last input frame: ``w_last + K_out([w_last, latent, 0])[1:]``."""
        last = x[:, -1].unsqueeze(1).unsqueeze(-1)  # (B, 1, nx, ny, 1)
        z = torch.cat([last, latent], dim=-1)
        if self.time_padding:
            # zeros after the window: the increment need not be periodic in time
            z = F.pad(z, (0, self.time_padding))
        nx, ny = x.shape[-2:]
        _, steps_out = self.output_time_grids(t_out)
        increment = self.out_conv(z, out_shape=(nx, ny, steps_out))[..., 1 : t_out + 1]
        return (last + increment).squeeze(1).permute(0, 3, 1, 2)


class FNO3d(nn.Module):
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
        Where the parameters live and their real dtype.

    Examples
    --------
    >>> model = FNO3d(modes=(4, 4, 3), width=8, layers=2, t_in=3, t_out=5)
    >>> model(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 5, 16, 16])
    """

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

    def config(self) -> dict:
        """Constructor arguments as plain values (what a checkpoint stores)."""
        return {
            "modes": list(self.modes),
            "width": self.width,
            "layers": self.n_layers,
            "t_in": self.t_in,
            "t_out": self.t_out,
            "padding": self.padding,
            "fc_width": self.fc_width,
        }

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
