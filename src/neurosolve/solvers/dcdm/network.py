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

__all__ = ["DCDMNet", "flags_channel"]

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
        Number of pooling (coarsening) levels (reference: 1). ``0`` gives a plain CNN.
    in_channels : {1, 2}
        1: residual only (reference); 2: residual and the cell-type channel of
        :func:`flags_channel`.
    kernel : int
        Odd convolution size (reference: 3).
    activation : {"relu", "gelu", "silu"}
        Nonlinearity inside the residual pairs (reference: relu).
    skip : bool
        Add the input residual to the output (not in the reference; see the module notes).

    The constructor arguments are recorded by :class:`~neurosolve.checkpoint.BaseModel`
    (:meth:`config`), so a checkpoint rebuilds the network.

    Examples
    --------
    >>> net = DCDMNet(dim=2, width=4, levels=1)
    >>> net(torch.zeros(2, 1, 9, 7)).shape
    torch.Size([2, 1, 9, 7])
    >>> net.config()["width"]
    4
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
    ) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise InvalidInputError(f"dim must be 2 or 3, got {dim!r}")
        if int(width) < 1 or int(levels) < 0:
            raise InvalidInputError(f"need width >= 1 and levels >= 0, got {width}, {levels}")
        if in_channels not in (1, 2):
            raise InvalidInputError(f"in_channels must be 1 or 2, got {in_channels!r}")
        if kernel < 1 or kernel % 2 == 0:
            raise InvalidInputError(f"kernel must be a positive odd number, got {kernel!r}")
        if activation not in _ACTIVATIONS:
            raise InvalidInputError(
                f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}"
            )
        if isinstance(pairs, (int, np.integer)):
            pairs = [int(pairs)] * (levels + 1)
        pairs = [int(p) for p in pairs]
        if len(pairs) != levels + 1 or any(p < 0 for p in pairs):
            raise InvalidInputError(
                f"pairs must be one non-negative int or {levels + 1} of them, got {pairs}"
            )
        self.dim = int(dim)
        self.width = int(width)
        self.levels = int(levels)
        self.in_channels = int(in_channels)
        self.skip = bool(skip)
        conv = _Conv3d if dim == 3 else nn.Conv2d
        act = _ACTIVATIONS[activation]

        def stack(n: int) -> nn.Sequential:
            return nn.Sequential(*[_ResidualPair(conv, width, kernel, act) for _ in range(n)])

        self.lift = conv(in_channels, width, kernel, padding=kernel // 2)
        self.down = nn.ModuleList([stack(pairs[level]) for level in range(levels)])
        self.bottom = stack(pairs[levels])
        self.up = nn.ModuleList([stack(pairs[level]) for level in range(levels)])
        self.project = conv(width, 1, 1)
        if self.skip:
            # start as the identity: an untrained network gives CG's directions
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
        self._pool = F.avg_pool3d if dim == 3 else F.avg_pool2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to fields of shape ``(batch, in_channels, *grid)``.

        Returns a ``(batch, 1, *grid)`` field that vanishes wherever the geometry channel
        (when present) marks a non-fluid cell.
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"expected input of shape (batch, {self.in_channels}, *grid) with "
                f"{self.dim} spatial axes, got {tuple(x.shape)}"
            )
        y = self.lift(x)
        skips = []
        for level in range(self.levels):
            y = self.down[level](y)
            skips.append(y)
            y = self._pool(y, 2, ceil_mode=True)
        y = self.bottom(y)
        for level in reversed(range(self.levels)):
            skip = skips[level]
            y = F.interpolate(y, size=skip.shape[2:], mode="nearest") + skip
            y = self.up[level](y)
        out = self.project(y)
        if self.skip:
            out = out + x[:, :1]
        if self.in_channels == 2:
            out = out * (x[:, 1:2] == 1.0).to(out.dtype)
        return out

    def extra_repr(self) -> str:
        """The constructor arguments, shown by ``repr``."""
        return ", ".join(f"{k}={v}" for k, v in self.config().items())
