"""Training MGPC: random problem groups, the scale-invariant one-step loss, ``train_mgpc``.

Training is unsupervised on random obstacle geometries (3D) and variable-coefficient
problems (2D): :func:`mgpc_loss` is the ``A``-norm error left by one optimally scaled
preconditioned Richardson step on random and smooth vectors, which, like CG, ignores the
scale of ``M``; :func:`train_mgpc` runs the package's shared trainer on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.mgpc.hierarchy import Hierarchy
from neurosolve.solvers.mgpc.network import CYCLES, MGPCNet
from neurosolve.solvers.stencil import apply_stencil, stencil_from_csr

__all__ = ["mgpc_loss", "mgpc_samples", "train_mgpc"]

logger = logging.getLogger(__name__)


def _stencil_arrays(system: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diagonal ``(1, *S)``, couplings ``(2 d, *S)`` and fluid mask ``(1, *S)`` of a system."""
    diagonal, couplings = stencil_from_csr(system.A, system.grid)
    return diagonal[None], couplings, system.grid.fluid[None].astype(np.float64)


def mgpc_samples(
    rng: np.random.Generator,
    *,
    dim: int = 3,
    resolution: int = 16,
    group: int = 4,
    vectors: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training group: ``group`` random problems of one shape and test vectors.

    3D problems: random obstacle geometries (boxes, spheres, mixed; optional open top or
    free surface; Dirichlet or Neumann outer boundary). 2D problems: piecewise-constant
    coefficients of contrast ``10^U(0, 4)`` with some obstacles. Half of the vectors are
    white noise, half smooth (Gaussian-filtered noise), all zero off the fluid.

    Returns
    -------
    x : torch.Tensor, shape ``(group, 2 d + 2, *S)``
        Diagonal, the ``2 d`` couplings (the layout of
        :func:`~neurosolve.solvers.stencil.apply_stencil`), fluid mask (float64).
    v : torch.Tensor, shape ``(group, vectors, *S)``

    Examples
    --------
    >>> x, v = mgpc_samples(np.random.default_rng(0), dim=2, resolution=8, group=2)
    >>> tuple(x.shape), tuple(v.shape)
    ((2, 6, 8, 8), (2, 4, 8, 8))
    """
    from scipy.ndimage import gaussian_filter

    from neurosolve.data import obstacle_flags, poisson
    from neurosolve.data.geometry import contrast_coefficient

    shape = (int(resolution),) * int(dim)
    xs, vs = [], []
    for _ in range(int(group)):
        air = [None, None, "top", "free-surface"][int(rng.integers(4))]
        kind = (
            ["boxes", "spheres", "mixed", "none"][int(rng.integers(4))]
            if dim == 3
            else (["none", "boxes", "spheres"][int(rng.integers(3))])
        )
        flags = obstacle_flags(shape, kind, rng, boundary_air=air)
        coefficient = None
        if dim == 2 or rng.random() < 0.2:
            contrast = 10.0 ** rng.uniform(0.0, 4.0)
            coefficient = contrast_coefficient(shape, contrast, rng)
        boundary = "neumann" if rng.random() < 0.3 else "dirichlet"
        system = poisson(shape, flags=flags, coefficient=coefficient, boundary=boundary)
        d, nb, fl = _stencil_arrays(system)
        xs.append(np.concatenate([d, nb, fl], axis=0))
        vecs = []
        for k in range(int(vectors)):
            noise = rng.standard_normal(shape)
            if k % 2:
                noise = gaussian_filter(noise, sigma=rng.uniform(1.5, 4.0), mode="constant")
            noise = noise * fl[0]
            vecs.append(noise / max(float(np.linalg.norm(noise)), 1e-300))
        vs.append(np.stack(vecs))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(vs))


def _unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Diagonal, couplings and fluid mask of a group from :func:`mgpc_samples`."""
    ndim = x.dim() - 2
    return x[:, :1], x[:, 1 : 1 + 2 * ndim], x[:, 1 + 2 * ndim : 2 + 2 * ndim]


def mgpc_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    r"""Error left by one optimally scaled step ``v - alpha M A v``, in the ``A``-norm.

    For each problem ``g`` of a group, with vectors ``v_k`` and ``z_k = M A v_k``,

    .. math::

        L_g = \min_\alpha \frac{1}{K} \sum_k
              \frac{\|v_k - \alpha z_k\|_A^2}{\|v_k\|_A^2},

    solved in closed form for ``alpha``; the loss is the mean over problems. It is 0 when
    ``M A`` is a multiple of the identity on the vectors, and, like the CG convergence
    rate, does not depend on the scale of ``M``.

    Parameters
    ----------
    model : MGPCNet
    batch : (x, v)
        One group as produced by :func:`mgpc_samples`.

    Examples
    --------
    >>> x, v = mgpc_samples(np.random.default_rng(0), dim=2, resolution=16, group=2)
    >>> with torch.no_grad():
    ...     loss = float(mgpc_loss(MGPCNet(width=4, layers=1), (x, v)))
    >>> 0.0 < loss < 1.0
    True
    """
    x, v = batch[0], batch[1]
    dtype = next(model.parameters()).dtype
    x, v = x.to(dtype), v.to(dtype)
    diagonal, couplings, fluid = _unpack(x)
    hierarchy = Hierarchy.build(model, diagonal, couplings, fluid, max_coarse=64)
    Av = apply_stencil(diagonal, couplings, v)
    z = hierarchy.apply(Av)
    Az = apply_stencil(diagonal, couplings, z)
    G, K = v.shape[:2]
    vAv = (v * Av).reshape(G, K, -1).sum(-1)
    vAz = (v * Az).reshape(G, K, -1).sum(-1)
    zAz = (z * Az).reshape(G, K, -1).sum(-1)
    tiny = torch.finfo(dtype).tiny
    wgt = 1.0 / vAv.clamp(min=tiny)
    alpha = (vAz * wgt).sum(1) / (zAz * wgt).sum(1).clamp(min=tiny)
    a = alpha[:, None]
    err = (vAv - 2 * a * vAz + a * a * zAz) * wgt
    return err.mean()


def _group_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`mgpc_loss` on a DataLoader batch holding one group (leading axis 1)."""
    return mgpc_loss(model, (batch[0][0], batch[1][0]))


class _GroupDataset(torch.utils.data.Dataset):
    """Training groups drawn once from ``default_rng([seed, i])`` (one group per item)."""

    def __init__(self, specs: list[tuple[int, int]], seed: int, group: int, vectors: int):
        self.items = [
            mgpc_samples(
                np.random.default_rng([seed, i]), dim=d, resolution=r, group=group, vectors=vectors
            )
            for i, (d, r) in enumerate(specs)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, v = self.items[i]
        return x.float(), v.float()


def _specs(count: int, resolutions: Sequence[int], dims: Sequence[int]) -> list[tuple[int, int]]:
    """(dimension, resolution) of every group: dims alternate, 2D grids twice as fine."""
    out = []
    for i in range(count):
        d = int(dims[i % len(dims)])
        r = int(resolutions[(i // len(dims)) % len(resolutions)])
        out.append((d, r if d == 3 else 2 * r))
    return out


def train_mgpc(
    out: str | Path,
    *,
    groups: int = 64,
    val_groups: int = 8,
    group_size: int = 4,
    vectors: int = 4,
    resolutions: Sequence[int] = (16,),
    dims: Sequence[int] = (3, 2),
    width: int = 8,
    layers: int = 2,
    smoothing_steps: int = 3,
    cycle: str = "W",
    epochs: int = 8,
    lr: float = 3e-3,
    schedule: str = "cosine",
    seed: int = 0,
    device: str | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train an MGPC network with the shared trainer; the best model is copied to ``out``.

    Every training item is a group of ``group_size`` random problems of one shape (3D at
    ``resolutions``, 2D at twice those) with ``vectors`` test vectors each; validation
    groups use another seed (unseen geometries). Checkpoints, ``metrics.json`` and
    ``learning_curve.png`` go to ``run_dir`` (default ``<out>.run``); rerunning resumes.
    The best-on-validation model is copied to ``out``.

    Returns
    -------
    dict
        ``{"model": Path, "run_dir": Path, "history": ...}``.

    Examples
    --------
    Training a real model takes minutes (``scripts/train_mgpc_model.py``); a tiny run is
    ``train_mgpc(path, groups=2, val_groups=1, group_size=1, resolutions=(8,), dims=(2,),
    width=4, layers=1, epochs=1)``. Settings are checked before any work starts:

    >>> train_mgpc("model.pt", dims=(4,))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: dims must be 2 and/or 3, got (4,)
    """
    from neurosolve.training import TrainConfig, Trainer

    for name, value in (("groups", groups), ("val_groups", val_groups)):
        integer(value, name)
    if not resolutions or any(int(r) < 4 for r in resolutions):
        raise InvalidInputError(f"resolutions must be integers >= 4, got {resolutions}")
    if not dims or any(int(d) not in (2, 3) for d in dims):
        raise InvalidInputError(f"dims must be 2 and/or 3, got {dims}")
    if cycle not in CYCLES:
        raise InvalidInputError(f"cycle must be one of {sorted(CYCLES)}, got {cycle!r}")
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    train = _GroupDataset(_specs(groups, resolutions, dims), seed, group_size, vectors)
    val = _GroupDataset(
        _specs(val_groups, resolutions, dims), seed + 1_000_003, group_size, vectors
    )
    torch.manual_seed(seed)
    model = MGPCNet(width=width, layers=layers, smoothing_steps=smoothing_steps, cycle=cycle)
    config = TrainConfig(
        epochs=int(epochs),
        batch_size=1,
        lr=float(lr),
        optimizer="adam",
        schedule=schedule,
        seed=int(seed),
        device=str(device) if device is not None else "cpu",
        progress=progress,
        plot=True,
    )
    trainer = Trainer(
        model, _group_loss, config, run_dir, model_spec=dict(kind="mgpc", kwargs=model.config())
    )
    history = trainer.fit(train, val)
    return {"model": trainer.export_best(out), "run_dir": run_dir, "history": history}
