"""The DCDM network: a small fully convolutional approximate inverse of a grid operator.

:class:`DCDMNet` maps a normalized residual field (and optionally the cell types, see
:func:`flags_channel`) to a field whose direction approximates ``A^{-1} r``; a U-Net of
residual convolution pairs that starts as the identity. Its architecture and how it
differs from the reference (Kaneda et al., ICML 2023) are written up in ``docs/dcdm.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.checkpoint import BaseModel
from neurosolve.data.grids import AIR, FLUID, SOLID
from neurosolve.errors import InvalidInputError

__all__ = ["DCDMNet", "flags_channel", "geometry_input", "BACKBONES"]

#: Backbones of :class:`DCDMNet`: a U-Net of residual pairs, or MgNO's V-cycle layers.
BACKBONES = ("unet", "mgno")

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def flags_channel(
    flags: np.ndarray | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Encode cell flags as the network's geometry channel.

    ``FLUID -> 1``, ``AIR -> 0``, ``SOLID -> -1`` (zero padding outside the grid then
    reads as air, the Dirichlet boundary).

    Parameters
    ----------
    flags : array of int, shape ``(..., *grid)``
        Cell types as in :mod:`neurosolve.data.grids`.
    device, dtype
        Where and how to return the channel.

    Returns
    -------
    torch.Tensor
        Same shape as ``flags``.

    Examples
    --------
    >>> import numpy as np
    >>> flags_channel(np.array([[0, 1, 2]], dtype=np.int8))
    tensor([[ 0.,  1., -1.]])
    """
    f = torch.as_tensor(np.asarray(flags) if not torch.is_tensor(flags) else flags)
    out = torch.zeros(f.shape, dtype=dtype, device=device)
    f = f.to(device)
    out[f == FLUID] = 1.0
    out[f == SOLID] = -1.0
    out[f == AIR] = 0.0
    return out


def geometry_input(
    flags: torch.Tensor,
    walls: torch.Tensor | bool,
    *,
    channels: int,
    ghost: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The geometry channels of the network input, with ``ghost`` boundary layers.

    The grid is padded by ``ghost`` layers of the cells that the domain boundary stands
    for (``SOLID`` for walls, zero flux; ``AIR`` for a Dirichlet boundary), so the
    network sees walls as solid and open faces as air instead of reading the zero padding
    of its convolutions as air everywhere.

    Parameters
    ----------
    flags : torch.Tensor of int, shape ``(B, 1, *grid)``
        Cell types as in :mod:`neurosolve.data.grids`.
    walls : bool or torch.Tensor of bool, shape ``(B,)``
        Whether the domain boundary of each sample is a solid wall (``Grid.boundary ==
        "neumann"``) rather than Dirichlet.
    channels : {1, 2}
        1: the signed channel of :func:`flags_channel`; 2: a fluid mask and a solid mask
        (air is neither).
    ghost : int
        Boundary layers to add on every side.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    torch.Tensor, shape ``(B, channels, *(grid + 2 * ghost))``

    Examples
    --------
    >>> flags = torch.tensor([[[1, 2]]])
    >>> geometry_input(flags, True, channels=2, ghost=1)
    tensor([[[0., 1., 0., 0.],
             [1., 0., 1., 1.]]])
    """
    flags = flags.to(torch.int64)
    batch, dim = flags.shape[0], flags.ndim - 2
    if ghost > 0:
        flags = F.pad(flags, (int(ghost),) * (2 * dim), value=-1)
        walls = torch.as_tensor(walls, device=flags.device).to(torch.bool).reshape(-1)
        outside = torch.where(walls, SOLID, AIR).expand(batch).reshape(batch, *[1] * (dim + 1))
        flags = torch.where(flags == -1, outside, flags)
    if channels == 1:
        return flags_channel(flags, device=flags.device, dtype=dtype)
    if channels != 2:
        raise InvalidInputError(f"geometry channels must be 1 or 2, got {channels!r}")
    return torch.cat([flags == FLUID, flags == SOLID], dim=1).to(dtype)


class _Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that calls oneDNN directly for float32 CPU inputs.

    PyTorch's CPU dispatch sends a batch of one 3D field (every DCDM iteration) to its
    slow im2col kernel, about 5x slower than oneDNN (mkldnn) on the same input; results
    agree to float32 rounding. Other devices and dtypes take the ordinary path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.padding_mode == "zeros"
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and hasattr(torch, "mkldnn_convolution")
        ):
            return torch.mkldnn_convolution(
                x.contiguous(),
                self.weight,
                self.bias,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
            )
        return super().forward(x)


class _ResidualPair(nn.Module):
    def __init__(self, conv: type[nn.Module], width: int, kernel: int, act: type[nn.Module]):
        super().__init__()
        self.conv1 = conv(width, width, kernel, padding=kernel // 2)
        self.conv2 = conv(width, width, kernel, padding=kernel // 2)
        self.act = act()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.act(self.conv2(self.act(self.conv1(y))))


class DCDMNet(BaseModel):
    """Fully convolutional approximate inverse used by :class:`~neurosolve.solvers.dcdm.DCDMSolver`.

    Parameters
    ----------
    dim : {2, 3}
        Spatial dimension.
    width : int
        Channels of every hidden convolution (reference: 16).
    pairs : int or sequence of int
        Residual conv pairs per level (one number for every level, or ``levels + 1``
        numbers from fine to coarse; the fine levels use them on the way down and up).
    levels : int
        Number of pooling (coarsening) levels with their own weights (reference: 1).
        ``0`` gives a plain CNN. With the ``"mgno"`` backbone: the coarse levels of
        every V-cycle.
    in_channels : {1, 2, 3}
        1: residual only (reference); 2: residual and the signed cell-type channel of
        :func:`flags_channel`; 3: residual, fluid mask and solid mask
        (:func:`geometry_input`).
    kernel : int
        Odd convolution size (reference: 3).
    activation : {"relu", "gelu", "silu"}
        Nonlinearity inside the residual pairs (reference: relu).
    skip : bool
        Add the input residual to the output (not in the reference; see the module notes).
    ghost : int
        Boundary layers the input carries around the grid (:func:`geometry_input`), at
        most ``kernel // 2``: the first convolution reads them in place of its zero
        padding, so the output (and every hidden field) has the grid's size, and with
        ghost cells that encode as zeros (a Dirichlet boundary) the network computes
        exactly what it computes with ``ghost=0``. ``0``: zero padding stands for the
        boundary (reads as air).
    coarsest : int
        ``0``: exactly ``levels`` poolings. ``> 0`` (U-Net): keep pooling, reusing the
        deepest level's weights, until the smallest side is at most ``coarsest``, so the
        receptive field spans the domain at every resolution.
    backbone : {"unet", "mgno"}
        U-Net of residual pairs, or ``mg_layers`` MgNO layers
        ``u <- act(V(u) + K u + b)`` (:class:`neurosolve.operators.mgno.MgConv`).
    mg_layers : int
        Number of MgNO layers (``backbone="mgno"``).

    The constructor arguments are recorded by :class:`~neurosolve.checkpoint.BaseModel`
    (:meth:`config`), so a checkpoint rebuilds the network; the arguments added after
    the first shipped model default to its behaviour.

    Examples
    --------
    >>> net = DCDMNet(dim=2, width=4, levels=1)
    >>> net(torch.zeros(2, 1, 9, 7)).shape
    torch.Size([2, 1, 9, 7])
    >>> net.config()["width"]
    4
    >>> DCDMNet(dim=2, width=4, in_channels=3, ghost=1)(torch.zeros(1, 3, 11, 9)).shape
    torch.Size([1, 1, 9, 7])
    """

    def __init__(
        self,
        dim: int = 3,
        width: int = 16,
        pairs: int | Sequence[int] = 1,
        levels: int = 1,
        in_channels: int = 1,
        kernel: int = 3,
        activation: str = "relu",
        skip: bool = True,
        ghost: int = 0,
        coarsest: int = 0,
        backbone: str = "unet",
        mg_layers: int = 2,
    ) -> None:
        super().__init__()
        pairs = _check_arguments(
            dim, width, pairs, levels, in_channels, kernel, activation, ghost, coarsest, backbone
        )
        self.dim = int(dim)
        self.width = int(width)
        self.levels = int(levels)
        self.in_channels = int(in_channels)
        self.skip = bool(skip)
        self.ghost = int(ghost)
        self.coarsest = int(coarsest)
        self.backbone = backbone
        conv = _Conv3d if dim == 3 else nn.Conv2d
        act = _ACTIVATIONS[activation]

        def stack(n: int) -> nn.Sequential:
            return nn.Sequential(*[_ResidualPair(conv, width, kernel, act) for _ in range(n)])

        # the ghost layers stand in for (part of) the lift's zero padding
        self.lift = conv(in_channels, width, kernel, padding=kernel // 2 - self.ghost)
        if backbone == "unet":
            self.down = nn.ModuleList([stack(pairs[level]) for level in range(levels)])
            self.bottom = stack(pairs[levels])
            self.up = nn.ModuleList([stack(pairs[level]) for level in range(levels)])
        else:
            from neurosolve.operators.mgno import MgConv

            layers = int(mg_layers)
            if layers < 1:
                raise InvalidInputError(f"mg_layers must be >= 1, got {mg_layers!r}")
            self.cycles = nn.ModuleList(
                MgConv(width, width, levels=levels + 1, dim=dim) for _ in range(layers)
            )
            self.pointwise = nn.ModuleList(conv(width, width, 1) for _ in range(layers))
            self.act = act()
        self.project = conv(width, 1, 1)
        if self.skip:
            # start as the identity: an untrained network gives CG's directions
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
        self._pool = F.avg_pool3d if dim == 3 else F.avg_pool2d

    def depth(self, shape: Sequence[int]) -> int:
        """Poolings applied to a grid of ``shape`` (``levels``, more with ``coarsest``).

        Examples
        --------
        >>> net = DCDMNet(levels=2, coarsest=4)
        >>> net.depth((32, 32, 32)), net.depth((128, 128, 128))
        (3, 5)
        """
        depth = self.levels
        if self.coarsest > 0 and self.levels > 0:
            side = min(int(n) for n in shape)
            while -(-side // 2**depth) > self.coarsest:
                depth += 1
        return depth

    def _unet(self, y: torch.Tensor) -> torch.Tensor:
        depth = self.depth(y.shape[2:])
        skips = []
        for level in range(depth):
            y = self.down[min(level, self.levels - 1)](y)
            skips.append(y)
            y = self._pool(y, 2, ceil_mode=True)
        y = self.bottom(y)
        for level in reversed(range(depth)):
            skip = skips[level]
            y = F.interpolate(y, size=skip.shape[2:], mode="nearest") + skip
            y = self.up[min(level, self.levels - 1)](y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to fields of shape ``(batch, in_channels, *grid)``.

        With ``ghost`` layers the input is ``2 * ghost`` cells larger per axis than the
        grid. Returns a ``(batch, 1, *grid)`` field that vanishes wherever the geometry
        channels (when present) mark a non-fluid cell.
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"expected input of shape (batch, {self.in_channels}, *grid) with "
                f"{self.dim} spatial axes, got {tuple(x.shape)}"
            )
        y = self.lift(x)
        g = self.ghost
        if g > 0:
            x = x[(slice(None), slice(None)) + (slice(g, -g),) * self.dim]
        if self.backbone == "unet":
            y = self._unet(y)
        else:
            for cycle, point in zip(self.cycles, self.pointwise, strict=True):
                y = self.act(cycle(y) + point(y))
        out = self.project(y)
        if self.skip:
            out = out + x[:, :1]
        if self.in_channels == 2:
            out = out * (x[:, 1:2] == 1.0).to(out.dtype)
        elif self.in_channels == 3:
            out = out * x[:, 1:2]
        return out

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


def _check_arguments(
    dim, width, pairs, levels, in_channels, kernel, activation, ghost, coarsest, backbone
) -> list[int]:
    """Validate the constructor arguments of :class:`DCDMNet`; the pairs per level."""
    if dim not in (2, 3):
        raise InvalidInputError(f"dim must be 2 or 3, got {dim!r}")
    if int(width) < 1 or int(levels) < 0:
        raise InvalidInputError(f"need width >= 1 and levels >= 0, got {width}, {levels}")
    if in_channels not in (1, 2, 3):
        raise InvalidInputError(f"in_channels must be 1, 2 or 3, got {in_channels!r}")
    if kernel < 1 or kernel % 2 == 0:
        raise InvalidInputError(f"kernel must be a positive odd number, got {kernel!r}")
    if activation not in _ACTIVATIONS:
        raise InvalidInputError(
            f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}"
        )
    if not 0 <= int(ghost) <= kernel // 2 or int(coarsest) < 0:
        raise InvalidInputError(
            f"need 0 <= ghost <= kernel // 2 and coarsest >= 0, got {ghost}, {coarsest}"
        )
    if backbone not in BACKBONES:
        raise InvalidInputError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if isinstance(pairs, (int, np.integer)):
        pairs = [int(pairs)] * (levels + 1)
    pairs = [int(p) for p in pairs]
    if len(pairs) != levels + 1 or any(p < 0 for p in pairs):
        raise InvalidInputError(
            f"pairs must be one non-negative int or {levels + 1} of them, got {pairs}"
        )
    return pairs
