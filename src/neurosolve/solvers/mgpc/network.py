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
from neurosolve.solvers import native
from neurosolve.solvers.mgpc import classes

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
        slots = self.slot_outputs(diagonal, couplings, fluid, level)
        if slots is not None:  # the same values, each computed once
            theta = classes.expand_slots(slots[0], slots[1])
            assert theta is not None
            return theta.reshape(1, -1, *diagonal.shape[2:]), self.over_correction(level)
        dtype = self.lift.weight.dtype
        grid = tuple(diagonal.shape[2:])
        chunks = _chunks(grid, diagonal.device)
        maps = [self._layer_maps(k) for k in range(self.layers)]
        bucket = min(int(level), self.level_buckets - 1)
        head = (self.head.weight, self.head.bias + self.level_bias[bucket])
        theta = diagonal.new_empty((diagonal.shape[0], self.smoothing_steps, *grid), dtype=dtype)
        weights: dict[int, torch.Tensor] = {}
        stages = [_Stage(len(chunks)) for _ in range(self.layers)]  # the input of each layer
        # Stage k handles chunk t - k at step t: its neighbours' parts in chunk t - k + 1
        # came from stage k - 1 earlier in the same step.
        for t in range(len(chunks) + self.layers):
            if t < len(chunks):  # features, lift, the first layer's maps: cell by cell
                p0, p1 = chunks[t]
                feats, weights[t] = _chunk_features(diagonal, couplings, fluid, p0, p1, dtype)
                h = F.gelu(_mix(self.lift.weight, self.lift.bias, feats))
                stages[0].put(t, _mix(*maps[0], h, stages[0].spare_maps(h)), (p1 - p0, *grid[1:]))
            for k in range(self.layers):
                j = t - k - 1  # the neighbour sums of layer k, on chunk j
                if not 0 <= j < len(chunks):
                    continue
                out, padded = stages[k].take(j)
                h = F.gelu(_add_neighbours(out, weights[j], padded).flatten(2))
                stages[k].recycle(j, padded)
                if k + 1 < self.layers:
                    both = _mix(*maps[k + 1], h, stages[k + 1].spare_maps(h))
                    stages[k + 1].put(j, both, out.shape[2:])
                    continue
                p0, p1 = chunks[j]
                t_ = THETA_MIN + (THETA_MAX - THETA_MIN) * torch.sigmoid(_mix(*head, h))
                theta[:, :, p0:p1] = t_.unflatten(-1, out.shape[2:])
                del weights[j]
        return theta, self.over_correction(level)

    def _needs_grad(self, *inputs: torch.Tensor) -> bool:
        """Whether autograd records this pass (training: the dense form, which it can follow)."""
        if not torch.is_grad_enabled():
            return False
        return any(t.requires_grad for t in (*inputs, *self.parameters()))

    def _layer_maps(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``k``'s self and neighbour maps stacked, ``(2 width, width)``, and its bias."""
        smap, nmap = self.self_maps[k], self.nbr_maps[k]
        return torch.cat([smap.weight, nmap.weight]), torch.cat(
            [smap.bias, torch.zeros_like(smap.bias)]
        )

    def slot_outputs(
        self, diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor, level: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The smoother weights with each distinct value computed once, or ``None``.

        After ``k`` layers a cell's value depends only on the stencil rows within ``k``
        steps, so cells whose neighbourhoods repeat a predecessor's share its value
        (:func:`~neurosolve.solvers.mgpc.classes.value_classes`). Each layer runs on its distinct
        cells only, reading the previous layer's values through the shared slots: on a
        constant-coefficient matrix with obstacles 3% (64^3) of the finest level's cells,
        so almost all of the dense pass is skipped. The same arithmetic as the dense form,
        cell by cell (float32 rounding apart: the GEMMs are laid out differently).

        Returns ``(values, slot, heads)``: ``theta`` per slot ``(m, nu)``, each cell's slot
        ``(cells,)`` (C order) and each slot's cell ``(m,)`` (int32; cells of one slot have
        equal stencil rows). ``None`` (use :meth:`forward`) off the CPU, under autograd, for
        several matrices at once, on grids under 8,192 cells, and where the distinct cells
        are more than half (on a random-coefficient matrix nothing repeats and the dense
        form is cheaper).
        """
        cells = math.prod(diagonal.shape[2:])
        if (
            diagonal.shape[0] != 1
            or cells < _CLASS_MIN_CELLS
            or self.lift.weight.dtype != torch.float32
            or self._needs_grad(diagonal, couplings, fluid)
        ):
            return None
        found = classes.value_classes(diagonal, couplings, fluid, self.layers)
        if found is None or found[-1][1].numel() > _CLASS_FRACTION * cells:
            return None
        grid = tuple(diagonal.shape[2:])

        def rows(heads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Features ``(m, 6)`` and averaging weights ``(m, 2 d)`` of the cells ``heads``."""
            stencil = classes.cells_of(heads, diagonal, couplings, fluid)
            out = native.chunk_features(*stencil, 0, heads.numel())
            assert out is not None  # value_classes ran, so the native kernels are here
            return out[0][0].T, out[1].reshape(out[1].shape[1], -1).T.contiguous()

        feats, _ = rows(found[0][1])
        h = F.gelu(torch.addmm(self.lift.bias, feats, self.lift.weight.T))
        weight, bias = self._layer_maps(0)
        both = torch.addmm(bias, h, weight.T)
        for k in range(1, self.layers + 1):
            heads = found[k][1]
            out = classes.gather_neighbours(both, found[k - 1][0], heads, rows(heads)[1], grid)
            assert out is not None
            h = F.gelu(out)
            if k < self.layers:
                weight, bias = self._layer_maps(k)
                both = torch.addmm(bias, h, weight.T)
        bucket = min(int(level), self.level_buckets - 1)
        logits = torch.addmm(self.head.bias + self.level_bias[bucket], h, self.head.weight.T)
        theta = THETA_MIN + (THETA_MAX - THETA_MIN) * torch.sigmoid(logits)
        return theta, *found[-1]

    def over_correction(self, level: int) -> torch.Tensor:
        """The factor ``s`` (0-d, in ``[0.5, 1.4]``) of the correction from ``level``."""
        bucket = min(int(level), self.level_buckets - 1)
        return SCALE_MIN + (SCALE_MAX - SCALE_MIN) * torch.sigmoid(self.level_scale[bucket])


def _mix(
    weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The per-cell linear map ``weight @ h + bias`` of fields ``(G, C_in, cells)``.

    A GEMM (into ``out`` if given), then the bias added in place: ``addmm`` with a broadcast
    column bias copies it into the output first through a slow strided path (6x the GEMM).
    """
    if out is not None:
        torch.matmul(weight, h, out=out)
    elif h.shape[0] == 1:
        out = torch.mm(weight, h[0])[None]
    else:
        out = torch.matmul(weight, h)
    return out.add_(bias[:, None])


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


def _chunk_features(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    fluid: torch.Tensor,
    p0: int,
    p1: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_features` of planes ``p0:p1`` in ``dtype``: one native pass on the CPU."""
    if dtype == torch.float32:
        out = native.chunk_features(diagonal, couplings, fluid, p0, p1)
        if out is not None:
            return out
    return _features(*(x[:, :, p0:p1].to(dtype) for x in (diagonal, couplings, fluid)))


#: Largest fraction of distinct cells at which :meth:`MGPCNet.slot_outputs` runs.
_CLASS_FRACTION = 0.5
#: Fewest cells at which it runs: below, its passes cost more than the dense one saves.
_CLASS_MIN_CELLS = 8192
_CHUNK_CELLS = 1 << 15  # cells per chunk of the network's passes: activations stay in cache


def _chunks(grid: tuple[int, ...], device: torch.device) -> list[tuple[int, int]]:
    """Ranges of planes along the first axis holding about :data:`_CHUNK_CELLS` cells each.

    On the CPU only (there the chunks stay in cache); elsewhere one chunk, the whole grid:
    a GPU wants few, large kernels.
    """
    if device.type != "cpu":
        return [(0, grid[0])]
    plane = max(int(math.prod(grid[1:])), 1)
    step = max(1, _CHUNK_CELLS // plane)
    return [(p, min(p + step, grid[0])) for p in range(0, grid[0], step)]


class _Stage:
    """A layer's input, chunk by chunk: self parts, and neighbour parts with a halo plane.

    ``put(j, both, chunk)`` takes chunk ``j``'s maps ``(G, 2 width, cells)`` on the cells
    ``chunk = (T_j, *rest)``; the neighbour part goes into a field zero-padded on every
    side, whose first and last planes are the neighbouring chunks' adjacent planes (zero at
    the ends of the grid). ``take(j)`` (after ``put(j + 1)``) returns the self part and that
    padded field, and forgets them: only a few chunks are held at a time, so they stay in
    cache, and none is written after it is read (autograd can use them); without autograd,
    ``recycle`` hands the fields of a chunk once read to the next chunks.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.selfs: dict[int, torch.Tensor] = {}
        self.padded: dict[int, torch.Tensor] = {}
        self.spare: list[torch.Tensor] = []  # padded fields read already, to be reused
        self.spare_both: list[torch.Tensor] = []  # and the maps they came with
        self.maps: dict[int, torch.Tensor] = {}

    def recycle(self, j: int, padded: torch.Tensor) -> None:
        """Reuse chunk ``j``'s fields once read (not under autograd: it may need them).

        A fresh chunk-sized field costs page faults on every chunk; a reused one is warm.
        """
        both = self.maps.pop(j)
        if not (torch.is_grad_enabled() or both.requires_grad):
            self.spare.append(padded)
            self.spare_both.append(both)

    def spare_maps(self, h: torch.Tensor) -> torch.Tensor | None:
        """A used ``(G, 2 width, cells)`` field of the size of ``h``'s chunk, if one is left."""
        if self.spare_both and self.spare_both[-1].shape[-1] == h.shape[-1]:
            return self.spare_both.pop()
        return None

    def put(self, j: int, both: torch.Tensor, chunk: tuple[int, ...]) -> None:
        self.maps[j] = both
        both = both.unflatten(-1, chunk)
        width = both.shape[1] // 2
        self.selfs[j] = both[:, :width]
        nbr = both[:, width:]
        shape = nbr.shape[2:]
        size = (*nbr.shape[:2], *(n + 2 for n in shape))
        if self.spare and tuple(self.spare[-1].shape) == size:
            padded = self.spare.pop()  # its border (of the other axes) is zero already
        else:
            padded = nbr.new_empty(size)
            for a in range(1, len(shape)):  # the zero border of the other axes
                padded.select(2 + a, 0).zero_()
                padded.select(2 + a, shape[a] + 1).zero_()
        inner = tuple(slice(1, n + 1) for n in shape[1:])
        padded[(slice(None), slice(None), slice(1, shape[0] + 1), *inner)] = nbr
        if j > 0:  # the halo planes shared with the previous chunk
            before = self.padded[j - 1]
            padded[(slice(None), slice(None), 0, *inner)] = before[
                (slice(None), slice(None), -2, *inner)
            ]
            before[(slice(None), slice(None), -1, *inner)] = nbr[:, :, 0]
        else:
            padded.select(2, 0).zero_()
        if j == self.count - 1:
            padded.select(2, shape[0] + 1).zero_()
        self.padded[j] = padded

    def take(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.selfs.pop(j), self.padded.pop(j)


def _add_neighbours(out: torch.Tensor, weights: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
    """``out += sum_j w_j h(c + e_j)`` for fields ``(G, C, *S)``, in place; returns ``out``.

    ``padded`` is ``h`` with one more cell on every side (zero outside the grid, the
    neighbouring chunk's plane between chunks). The weights ``(G, 2 d, *S)`` are a
    zero-diagonal stencil in the layout of :func:`~neurosolve.solvers.stencil.apply_stencil`
    (channel ``2 a`` to ``-e_a``), applied to every channel at once.
    """
    if native.neighbour_sum(out, weights, padded):  # the CPU's one pass (no autograd)
        return out
    ndim = weights.dim() - 2
    shape = out.shape[2:]
    for a in range(ndim):
        for side, start in ((0, 0), (1, 2)):  # -e_a reads padded cell c, +e_a cell c + 2
            index = [slice(1, 1 + n) for n in shape]
            index[a] = slice(start, start + shape[a])
            view = padded[(slice(None), slice(None), *index)]
            out.addcmul_(weights[:, 2 * a + side : 2 * a + side + 1], view)
    return out


def _logit(value: float, low: float, high: float) -> float:
    """Inverse of ``low + (high - low) * sigmoid(t)``."""
    return math.log((value - low) / (high - value))
