"""The geometry network of MGPC: per-cell smoother weights and per-level over-correction.

:class:`MGPCNet` reads a level's stencil through the scale-free features of
:func:`level_features` and passes messages along the stencil's couplings, so one set of
weights serves 2D and 3D grids of any size; its outputs are bounded by sigmoids to the
ranges under which the cycle is SPD (see ``docs/mgpc.md``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurosolve.checkpoint import BaseModel
from neurosolve.errors import InvalidInputError

__all__ = ["CYCLES", "MGPCNet", "level_features"]

THETA_MIN, THETA_MAX = 0.05, 1.95
SCALE_MIN, SCALE_MAX = 0.5, 1.4  # s^2 < 2 keeps the W-cycle SPD
#: Cycle types: name -> cycle index (visits of the coarse level per coarse correction).
CYCLES = {"V": 1, "W": 2}


def level_features(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-invariant cell features of a stencil and the neighbour-averaging weights.

    Features (6 channels, the same in 2D and 3D): fluid mask; off-diagonal row sum,
    largest and mean coupling relative to the diagonal (``< 1`` sums reveal Dirichlet/air
    contact, uneven couplings reveal coefficient jumps); fraction of fluid neighbours;
    ``1 / (2 d)``. Dividing by the diagonal makes them independent of the grid spacing
    and of the coefficient's overall scale.

    Returns
    -------
    features : torch.Tensor, shape ``(G, 6, *S)``
    weights : torch.Tensor, shape ``(G, 2 d, *S)``
        ``|a_ij| / sum_j |a_ij|`` (rows summing to one), used to average neighbours: a
        stencil of :func:`~neurosolve.solvers.stencil.apply_stencil` with a zero diagonal.

    Examples
    --------
    >>> feats, weights = level_features(
    ...     torch.full((1, 1, 3), 2.0), torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]]),
    ...     torch.ones(1, 1, 3))
    >>> tuple(feats.shape), weights[0, :, 1].tolist()
    ((1, 6, 3), [0.5, 0.5])
    """
    feats, weights = _features(diagonal, couplings, fluid)
    return feats.reshape(*feats.shape[:2], *diagonal.shape[2:]), weights


class MGPCNet(BaseModel):
    """Geometry network of MGPC: smoother weights from a stencil, and the cycle's settings.

    A per-cell network with neighbour averaging (message passing along the stencil's
    couplings), so the same weights serve 2D and 3D grids of any size. Input: the
    features of :func:`level_features`; output per cell: ``smoothing_steps`` smoother
    weights ``theta`` in ``[0.05, 1.95]``. A learned bias per level (levels beyond
    ``level_buckets - 1`` share the last one) lets the weights differ between fine and
    coarse grids, and a learned over-correction factor ``s`` in ``[0.5, 1.4]`` per level
    bucket scales the coarse correction. The cycle type is part of the model because
    the weights are trained for it.

    Parameters
    ----------
    width : int
        Hidden channels.
    layers : int
        Message-passing layers.
    smoothing_steps : int
        Pre-smoothing steps (the same number of post-smoothing steps, adjoint order).
    level_buckets : int
        Number of distinct level biases and over-correction factors.
    cycle : {"W", "V"}
        Multigrid cycle: the coarse level's cycle is applied twice (W) or once (V) per
        coarse correction.

    The constructor arguments are recorded by :class:`~neurosolve.checkpoint.BaseModel`
    (:meth:`config`), so a checkpoint rebuilds the network.

    Examples
    --------
    >>> net = MGPCNet(width=8, layers=2)
    >>> d = torch.full((1, 1, 4, 4), 4.0)
    >>> nb = -torch.ones(1, 4, 4, 4)
    >>> theta, s = net(d, nb, torch.ones(1, 1, 4, 4), level=0)
    >>> tuple(theta.shape), bool(((theta >= 0.05) & (theta <= 1.95)).all())
    ((1, 3, 4, 4), True)
    >>> round(float(s.detach()), 2)
    1.3
    >>> net.config()["cycle"]
    'W'
    """

    in_features = 6

    def __init__(
        self,
        width: int = 8,
        layers: int = 2,
        smoothing_steps: int = 3,
        level_buckets: int = 4,
        cycle: str = "W",
    ) -> None:
        super().__init__()
        for name, value in (
            ("width", width),
            ("layers", layers),
            ("smoothing_steps", smoothing_steps),
            ("level_buckets", level_buckets),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if cycle not in CYCLES:
            raise InvalidInputError(f"cycle must be one of {sorted(CYCLES)}, got {cycle!r}")
        self.width, self.layers = int(width), int(layers)
        self.smoothing_steps, self.level_buckets = int(smoothing_steps), int(level_buckets)
        self.cycle = str(cycle)
        self.lift = nn.Linear(self.in_features, self.width)
        self.self_maps = nn.ModuleList(nn.Linear(self.width, self.width) for _ in range(layers))
        self.nbr_maps = nn.ModuleList(
            nn.Linear(self.width, self.width, bias=False) for _ in range(layers)
        )
        self.head = nn.Linear(self.width, self.smoothing_steps)
        self.level_bias = nn.Parameter(torch.zeros(self.level_buckets, self.smoothing_steps))
        self.level_scale = nn.Parameter(torch.zeros(self.level_buckets))
        with torch.no_grad():  # start at theta ~ 1.7 (Jacobi omega ~ 0.85), s = 1.3
            self.head.weight.mul_(0.1)
            self.head.bias.fill_(_logit(1.7, THETA_MIN, THETA_MAX))
            self.level_scale.fill_(_logit(1.3, SCALE_MIN, SCALE_MAX))

    def forward(
        self, diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor, level: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smoother weights ``(G, nu, *S)`` and the over-correction factor (0-d) of a level.

        The stencil is read in the network's precision (float32 for the shipped model: the
        outputs are bounded by sigmoids, and every value in their range keeps ``M`` SPD).
        Fields are ``(G, channels, cells)``, so every per-cell layer is one batched GEMM
        with its bias (a layer's self and neighbour maps stacked into one), and the
        neighbour average is accumulated into the self part in place.
        """
        dtype = self.lift.weight.dtype
        grid = diagonal.shape[2:]
        feats, weights = _features(diagonal.to(dtype), couplings.to(dtype), fluid.to(dtype))
        h = F.gelu(_mix(self.lift.weight, self.lift.bias, feats))
        for smap, nmap in zip(self.self_maps, self.nbr_maps, strict=True):
            both = _mix(
                torch.cat([smap.weight, nmap.weight]),
                torch.cat([smap.bias, torch.zeros_like(smap.bias)]),
                h,
            )  # (G, 2 width, cells): self part with its bias, then the neighbour part
            out = both[:, : self.width].unflatten(-1, grid)
            nbr = both[:, self.width :].unflatten(-1, grid)
            h = F.gelu(_add_neighbours(out, weights, nbr).flatten(2))
        bucket = min(int(level), self.level_buckets - 1)
        out = _mix(self.head.weight, self.head.bias + self.level_bias[bucket], h)
        theta = THETA_MIN + (THETA_MAX - THETA_MIN) * torch.sigmoid(out)
        return theta.unflatten(-1, grid), self.over_correction(level)

    def over_correction(self, level: int) -> torch.Tensor:
        """The factor ``s`` (0-d, in ``[0.5, 1.4]``) of the correction from ``level``."""
        bucket = min(int(level), self.level_buckets - 1)
        return SCALE_MIN + (SCALE_MAX - SCALE_MIN) * torch.sigmoid(self.level_scale[bucket])


def _mix(weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The per-cell linear map ``weight @ h + bias`` of fields ``(G, C_in, cells)``."""
    if h.shape[0] == 1:
        return torch.addmm(bias[:, None], weight, h[0])[None]
    return torch.baddbmm(bias[None, :, None], weight.expand(h.shape[0], -1, -1), h)


def _features(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`level_features` with the features flattened: ``(G, 6, cells)``, ``(G, 2 d, *S)``."""
    ndim = diagonal.dim() - 2
    size = couplings.abs()
    count = size.sign().sum(dim=1, keepdim=True)  # couplings present (a sum, not a count)
    safe = torch.where(fluid > 0, diagonal, 1.0)
    ratio = size / safe if size.requires_grad else size.div_(safe)
    total = ratio.sum(dim=1, keepdim=True)
    largest = ratio.amax(dim=1, keepdim=True)
    mean = total / count.clamp(min=1.0)
    feats = torch.cat([fluid, total, largest, mean, count / (2 * ndim), fluid / (2 * ndim)], dim=1)
    feats = feats.flatten(2) * fluid.flatten(2)
    norm = total.clamp(min=torch.finfo(ratio.dtype).tiny)
    weights = ratio / norm if ratio.requires_grad else ratio.div_(norm)
    return feats, weights


def _add_neighbours(out: torch.Tensor, weights: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``out += sum_j w_j h(c + e_j)`` for fields ``(G, C, *S)``, in place; returns ``out``.

    The weights ``(G, 2 d, *S)`` are a zero-diagonal stencil in the layout of
    :func:`~neurosolve.solvers.stencil.apply_stencil` (channel ``2 a`` to ``-e_a``), applied
    to every channel at once; neighbours outside the grid read the zero padding.
    """
    ndim = weights.dim() - 2
    padded = F.pad(h, (1, 1) * ndim)
    shape = h.shape[2:]
    inner = [slice(1, 1 + n) for n in shape]
    for a in range(ndim):
        for side, start in ((0, 0), (1, 2)):
            index = list(inner)
            index[a] = slice(start, start + shape[a])
            view = padded[(slice(None), slice(None), *index)]
            out.addcmul_(weights[:, 2 * a + side : 2 * a + side + 1], view)
    return out


def _logit(value: float, low: float, high: float) -> float:
    """Inverse of ``low + (high - low) * sigmoid(t)``."""
    return math.log((value - low) / (high - value))
