"""MgNO: a neural operator whose linear operators are multigrid V-cycles.

He, Liu & Xu (ICLR 2024) define a neural operator layer like a fully connected layer
between function spaces, ``u <- act(W u + b)``, and parameterize the bounded linear
operator ``W`` between the channels ("neurons") by one multi-channel multigrid V-cycle.
This module implements that architecture from the description in the paper (see
``shared/PAPERS.md``); every layer works on any grid size, odd or even, square or not,
in 2D and 3D, because no layer stores a grid size: the coarse sizes and the output sizes
of the prolongations are computed from the input at run time.

The V-cycle :class:`MgConv` maps a right-hand side ``f`` (the layer input, ``c_in``
channels) to ``u`` (``c_out`` channels). On level ``l`` (fine to coarse):

1. smoothing: ``u <- u + S (f - A u)`` (``A``: u -> f and ``S``: f -> u are 3x3(x3)
   convolutions without bias; on the finest level the first step is ``u = S f``);
2. restriction by strided 3x3 convolutions: ``u_{l+1} = R_u u_l`` and
   ``f_{l+1} = R_f (f_l - A_l u_l)`` (the restricted residual);

then going up, ``u_l <- u_l + P u_{l+1}`` with a transposed convolution ``P`` (kernel 4,
stride 2) and optional post-smoothing. Boundary conditions enter through the padding of
every convolution: ``"zeros"`` (homogeneous Dirichlet, the Darcy setting),
``"circular"`` (periodic; the whole model is then translation-equivariant on the torus
for shifts by multiples of ``2**(levels-1)`` cells) or ``"reflect"``.

Differs from the reference code in: (1) sizes are never baked in (the reference has
resolution-specific variants); (2) the prolongation pads its coarse input with the same
boundary mode and crops, so it respects periodic / reflecting boundaries too (a plain
transposed convolution always assumes zeros); (3) one ``A`` per level, shared by the
smoothing steps and the residual restriction of that level (a discrete operator of the
level), with a separate ``S`` per smoothing step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.checkpoint import BaseModel
from neurosolve.errors import InvalidInputError

__all__ = ["MgConv", "MgNO"]

_PADDING = ("zeros", "circular", "reflect")
_ACTIVATIONS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def _pad(x: torch.Tensor, mode: str, width: int = 1) -> torch.Tensor:
    d = x.ndim - 2
    pads = (width,) * (2 * d)
    if mode == "zeros":
        return F.pad(x, pads)
    if mode == "reflect" and min(x.shape[2:]) <= width:
        mode = "replicate"  # reflection needs more cells than the pad width
    return F.pad(x, pads, mode=mode)


class _Conv(nn.Module):
    """3x3(x3) convolution (optionally strided) with a boundary padding mode."""

    def __init__(self, cin: int, cout: int, dim: int, padding: str, stride: int = 1) -> None:
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        # zero padding is done by the convolution itself (no padded copy)
        inner = 1 if padding == "zeros" else 0
        self.conv = conv(cin, cout, 3, stride=stride, padding=inner, bias=False)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "zeros":
            return self.conv(x)
        return self.conv(_pad(x, self.padding))


class _Prolong(nn.Module):
    """Transposed convolution (kernel 4, stride 2) to a fine grid of any given size.

    The coarse input is padded by one cell with the boundary mode, the transposed
    convolution runs without padding, and the fine grid is cropped at offset 3: on
    every axis this equals a transposed convolution with padding 1 whose missing
    neighbours follow the boundary condition; the crop length gives odd or even sizes.
    """

    def __init__(self, channels: int, dim: int, padding: str) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
        self.conv = conv(channels, channels, 4, stride=2, padding=0, bias=False)
        self.padding = padding

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        y = self.conv(_pad(x, self.padding))
        index = (slice(None), slice(None), *(slice(3, 3 + n) for n in size))
        return y[index]


class MgConv(nn.Module):
    """One multi-channel V-cycle ``f -> u``: the linear operator of an MgNO layer.

    Parameters
    ----------
    in_channels : int
        Channels of ``f`` (the layer input).
    out_channels : int
        Channels of ``u`` (the output).
    levels : int
        Grid levels (1: smoothing only).
    pre_smooth : int or sequence of int
        Smoothing steps per level going down (one number for every level but the
        coarsest, or one per level).
    post_smooth : int or sequence of int
        Smoothing steps per level going up (after the coarse-grid correction), finest
        level included; not applied on the coarsest level.
    coarse_smooth : int
        Smoothing steps on the coarsest level (overrides ``pre_smooth`` there).
    padding : {"zeros", "circular", "reflect"}
        Boundary handling of every convolution.
    dim : {2, 3}
        Spatial dimension.

    Examples
    --------
    >>> import torch
    >>> cycle = MgConv(1, 4, levels=3)
    >>> cycle(torch.randn(2, 1, 13, 20)).shape
    torch.Size([2, 4, 13, 20])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        levels: int = 4,
        pre_smooth: int | Sequence[int] = 1,
        post_smooth: int | Sequence[int] = 0,
        coarse_smooth: int = 2,
        padding: str = "zeros",
        dim: int = 2,
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise InvalidInputError(f"dim must be 2 or 3, got {dim}")
        if padding not in _PADDING:
            raise InvalidInputError(f"padding must be one of {_PADDING}, got {padding!r}")
        if int(levels) < 1:
            raise InvalidInputError(f"levels must be >= 1, got {levels}")
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise InvalidInputError("in_channels and out_channels must be >= 1")
        levels = int(levels)
        pre = _per_level(pre_smooth, levels, "pre_smooth")
        post = _per_level(post_smooth, levels, "post_smooth")
        if int(coarse_smooth) < 1:
            raise InvalidInputError(f"coarse_smooth must be >= 1, got {coarse_smooth}")
        pre[-1] = int(coarse_smooth)
        post[-1] = 0
        if pre[0] < 1:
            raise InvalidInputError("the finest level needs at least one pre-smoothing step")
        self.levels = levels
        self.dim = dim
        self.padding = padding
        self.pre = pre
        self.post = post
        cu, cf = int(out_channels), int(in_channels)
        self.A = nn.ModuleList(_Conv(cu, cf, dim, padding) for _ in range(levels))
        self.S_pre = nn.ModuleList(
            nn.ModuleList(_Conv(cf, cu, dim, padding) for _ in range(n)) for n in pre
        )
        self.S_post = nn.ModuleList(
            nn.ModuleList(_Conv(cf, cu, dim, padding) for _ in range(n)) for n in post
        )
        self.R_u = nn.ModuleList(_Conv(cu, cu, dim, padding, stride=2) for _ in range(levels - 1))
        self.R_f = nn.ModuleList(_Conv(cf, cf, dim, padding, stride=2) for _ in range(levels - 1))
        self.P = nn.ModuleList(_Prolong(cu, dim, padding) for _ in range(levels - 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Apply the V-cycle to ``f`` of shape ``(batch, in_channels, *spatial)``."""
        if f.ndim != self.dim + 2:
            raise InvalidInputError(
                f"MgConv({self.dim}D) expects (batch, channels, <{self.dim} axes>), "
                f"got shape {tuple(f.shape)}"
            )
        us: list[torch.Tensor] = []
        fs: list[torch.Tensor] = []
        u = self.S_pre[0][0](f)  # the first step, from u = 0
        for level in range(self.levels):
            A = self.A[level]
            for S in self.S_pre[level][1 if level == 0 else 0 :]:
                u = u + S(f - A(u))
            us.append(u)
            fs.append(f)
            if level < self.levels - 1:
                f = self.R_f[level](f - A(u))
                u = self.R_u[level](u)
        u = us[-1]
        for level in range(self.levels - 2, -1, -1):
            u = us[level] + self.P[level](u, us[level].shape[2:])
            A = self.A[level]
            for S in self.S_post[level]:
                u = u + S(fs[level] - A(u))
        return u


def _per_level(value: int | Sequence[int], levels: int, name: str) -> list[int]:
    if isinstance(value, int):
        out = [value] * levels
    else:
        out = [int(v) for v in value]
        if len(out) != levels:
            raise InvalidInputError(f"{name} needs {levels} entries (one per level), got {out}")
    if any(v < 0 for v in out):
        raise InvalidInputError(f"{name} must be >= 0, got {value}")
    return out


class MgNO(BaseModel):
    """Multigrid neural operator: layers ``u <- act(W_mg u + K u + b)``.

    ``W_mg`` is a :class:`MgConv` V-cycle, ``K u + b`` a pointwise (1x1) convolution with
    bias; a final 1x1 convolution maps to the output channels. No lifting, projection or
    coordinate channels (as in the paper).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output functions.
    channels : int
        Width of the hidden layers.
    layers : int
        Number of nonlinear layers.
    levels : int
        Multigrid levels of every V-cycle.
    pre_smooth, post_smooth, coarse_smooth : int or sequence of int
        Smoothing steps, see :class:`MgConv`.
    padding : {"zeros", "circular", "reflect"}
        Boundary handling (zeros: Dirichlet; circular: periodic).
    activation : {"gelu", "relu", "tanh", "silu", "identity"}
        Nonlinearity; ``"identity"`` with ``bias=False`` gives a linear operator.
    bias : bool
        Bias of the pointwise convolutions.
    dim : {2, 3}
        Spatial dimension.

    Examples
    --------
    >>> import torch
    >>> model = MgNO(1, 1, channels=8, layers=2, levels=3)
    >>> model(torch.randn(2, 1, 21, 16)).shape
    torch.Size([2, 1, 21, 16])
    >>> MgNO(1, 1, channels=24, layers=4, levels=6).num_parameters()
    572662
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        channels: int = 24,
        layers: int = 4,
        levels: int = 6,
        pre_smooth: int | Sequence[int] = 1,
        post_smooth: int | Sequence[int] = 0,
        coarse_smooth: int = 2,
        padding: str = "zeros",
        activation: str = "gelu",
        bias: bool = True,
        dim: int = 2,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise InvalidInputError(
                f"unknown activation {activation!r}; choose from {', '.join(_ACTIVATIONS)}"
            )
        if int(layers) < 1 or int(channels) < 1:
            raise InvalidInputError(f"layers and channels must be >= 1, got {layers}, {channels}")
        self.in_channels = int(in_channels)
        conv1 = nn.Conv2d if dim == 2 else nn.Conv3d
        self.dim = int(dim)
        self.cycles = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        cin = int(in_channels)
        for _ in range(int(layers)):
            self.cycles.append(
                MgConv(
                    cin,
                    int(channels),
                    levels=levels,
                    pre_smooth=pre_smooth,
                    post_smooth=post_smooth,
                    coarse_smooth=coarse_smooth,
                    padding=padding,
                    dim=dim,
                )
            )
            self.pointwise.append(conv1(cin, int(channels), 1, bias=bias))
            cin = int(channels)
        self.act = _ACTIVATIONS[activation]()
        self.project = conv1(int(channels), int(out_channels), 1, bias=bias)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, in_channels, *spatial)`` to ``(batch, out_channels, *spatial)``."""
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"MgNO expects (batch, {self.in_channels}, <{self.dim} axes>), "
                f"got shape {tuple(x.shape)}"
            )
        u = x
        for cycle, point in zip(self.cycles, self.pointwise, strict=True):
            u = self.act(cycle(u) + point(u))
        return self.project(u)
