r"""Training the DCDM network: the scale-invariant unsupervised loss and ``train_dcdm``.

:func:`dcdm_loss` asks the network output to be a multiple of ``A^{-1} b`` (the best
multiple in closed form, so the loss ignores the output's scale), applying each sample's
operator by the one stencil kernel; :func:`train_dcdm` generates Ritz data and runs the
shared trainer. The loss is written out in ``docs/dcdm.md``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurosolve._util.validate import integer
from neurosolve.data.grids import FLUID
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.stencil import apply_stencil

__all__ = ["dcdm_loss", "dcdm_trajectory_loss", "batch_inputs", "train_dcdm", "GENERATOR_NAME"]

logger = logging.getLogger(__name__)

#: Name under which the DCDM training-data generator is registered with the store.
GENERATOR_NAME = "dcdm-ritz"


def batch_inputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and fluid mask from a data batch ``x = [rhs, flags(, walls)]``.

    Returns ``(inputs, fluid)`` where ``inputs`` is what the DCDM solver feeds the network
    for a residual equal to the right-hand side, and ``fluid`` a ``(B, 1, *grid)`` mask.
    A third channel of ``x`` marks samples whose domain boundary is a solid wall (data
    without it have Dirichlet boundaries).
    """
    from neurosolve.solvers.dcdm.solver import network_input

    geometry, fluid = _batch_geometry(model, x)
    return network_input(x[:, 0:1] * fluid, fluid, geometry), fluid


def _batch_geometry(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The network's geometry channels (or ``None``) and the fluid mask of a data batch."""
    from neurosolve.solvers.dcdm.network import geometry_input

    flags = x[:, 1:2]
    fluid = flags == FLUID
    geometry = None
    channels = int(getattr(model, "in_channels", 1))
    if channels >= 2:
        B = x.shape[0]
        walls = x[:, 2].reshape(B, -1)[:, 0] > 0.5 if x.shape[1] > 2 else False
        geometry = geometry_input(
            flags.round().to(torch.int64),
            walls,
            channels=channels - 1,
            ghost=int(getattr(model, "ghost", 0)),
            dtype=x.dtype,
        )
    return geometry, fluid


def dcdm_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """The scale-invariant DCDM loss, averaged over a batch.

    Parameters
    ----------
    model : torch.nn.Module
        The network (see :class:`~neurosolve.solvers.dcdm.network.DCDMNet`).
    batch : (x, y)
        ``x`` of shape ``(B, 2, *grid)``: right-hand side field and cell flags;
        ``y`` of shape ``(B, 2 d + 1, *grid)``: the operator's stencil fields.

    Returns
    -------
    torch.Tensor
        Scalar ``mean_i ||b_i - alpha_i A_i f(b_i)||^2 / ||b_i||^2``: 0 for an exact
        inverse, 1 for a direction orthogonal to ``b`` (no progress); it may exceed 1,
        since ``alpha`` minimizes the A-norm error rather than this residual.

    Examples
    --------
    >>> from neurosolve.solvers.dcdm.network import DCDMNet
    >>> from neurosolve.solvers.dcdm.ritz import ritz_samples
    >>> import numpy as np
    >>> x, y = ritz_samples([np.random.default_rng([0, 0])], dim=2, resolution=8,
    ...                     geometry="none", lanczos_steps=8)
    >>> batch = (torch.tensor(x).float(), torch.tensor(y).float())
    >>> loss = dcdm_loss(DCDMNet(dim=2, width=4), batch)
    >>> loss.item() > 0.0
    True
    """
    x, coefficients = batch[0], batch[1]
    inputs, fluid = batch_inputs(model, x)
    b = x[:, 0:1] * fluid
    f = model(inputs) * fluid
    coefficients = coefficients.to(f.dtype)
    Af = apply_stencil(coefficients[:, :1], coefficients[:, 1:], f)
    B = b.shape[0]
    fb = (f * b).reshape(B, -1).sum(dim=1)
    fAf = (f * Af).reshape(B, -1).sum(dim=1)
    tiny = torch.finfo(f.dtype).tiny
    alpha = fb / torch.clamp(fAf, min=tiny)
    residual = b - alpha.reshape(B, *[1] * (b.ndim - 1)) * Af
    bb = (b * b).reshape(B, -1).sum(dim=1)
    return ((residual * residual).reshape(B, -1).sum(dim=1) / torch.clamp(bb, min=tiny)).mean()


def dcdm_trajectory_loss(
    model: nn.Module, batch: Sequence[torch.Tensor], *, steps: int = 6, k: int = 2
) -> torch.Tensor:
    r"""The DCDM loss over the residuals the iteration itself produces.

    Runs ``steps`` DCDM steps on every sample from ``x = 0`` (network direction,
    A-orthogonalized against the last ``k`` directions, exact line search, as in
    :class:`~neurosolve.solvers.dcdm.solver.DCDMSolver`) and returns the mean over the
    steps of ``log(||r_{s+1}||^2 / ||r_s||^2)``: the log of the geometric-mean residual
    reduction per step, ``log(||r_steps||^2 / ||b||^2) / steps``, whose minimum is the
    fastest convergence. Each step's input residual and earlier directions are held fixed
    (detached), so the gradient of step ``s`` flows through its own network pass only:
    the network learns the residuals of later iterations (rough, once the smooth part is
    gone), which the one-step loss :func:`dcdm_loss` on right-hand sides never shows it.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    batch : (x, y)
        As for :func:`dcdm_loss`.
    steps : int
        Iterations unrolled (default 6).
    k : int
        Previous directions each new one is made A-orthogonal to (the solver's default 2).

    Returns
    -------
    torch.Tensor
        Scalar, at most 0 per step for a direction that is not orthogonal to the residual
        (an exact line search never increases the A-norm error; the residual norm may
        still grow, so a step can add a positive term).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data import poisson
    >>> from neurosolve.solvers.dcdm.network import DCDMNet
    >>> from neurosolve.solvers.dcdm.ritz import stencil_fields
    >>> system = poisson((8, 8))
    >>> rhs = system.grid.to_field(np.ones(system.n))
    >>> x = torch.from_numpy(np.stack([rhs, system.grid.flags.astype(float)]))[None]
    >>> y = torch.from_numpy(stencil_fields(system.A, system.grid.flags))[None]
    >>> net = DCDMNet(dim=2, width=4, in_channels=2).double()  # untrained: CG's directions
    >>> bool(dcdm_trajectory_loss(net, (x, y), steps=3) < 0)  # 3 CG steps reduce ||r||
    True
    """
    from neurosolve.solvers.dcdm.solver import network_input

    steps, k = integer(steps, "steps"), integer(k, "k", minimum=0)
    x, coefficients = batch[0], batch[1]
    geometry, fluid = _batch_geometry(model, x)
    mask = fluid.to(x.dtype)
    B = x.shape[0]
    tiny = torch.finfo(x.dtype).tiny

    def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (u * v).reshape(B, -1).sum(dim=1)

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(B, *[1] * (x.ndim - 1))

    coefficients = coefficients.to(x.dtype)
    r = x[:, 0:1] * mask
    rr = dot(r, r)
    live = rr > 0  # a zero right-hand side has nothing to learn
    directions: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    total = x.new_zeros(())
    for _ in range(steps):
        q = model(network_input(r, fluid, geometry)) * mask
        for P, AP, pAp in directions[-k:] if k else []:
            q = q - P * col(dot(q, AP) / pAp)
        Aq = apply_stencil(coefficients[:, :1], coefficients[:, 1:], q)
        qAq = torch.clamp(dot(q, Aq), min=tiny)
        r_next = r - col(dot(q, r) / qAq) * Aq
        rr_next = dot(r_next, r_next)
        ratio = torch.clamp(rr_next, min=tiny) / torch.clamp(rr, min=tiny)
        total = total + torch.where(live, torch.log(ratio), 0.0).sum() / max(int(live.sum()), 1)
        directions.append((q.detach(), Aq.detach(), qAq.detach()))
        r, rr = r_next.detach(), rr_next.detach()
        live = live & (rr > 0)
    return total / steps


def _load_weights(model: nn.Module, path: str | Path) -> None:
    """Copy the weights of the DCDM checkpoint at ``path`` into ``model`` (same shapes)."""
    from neurosolve.solvers.dcdm.solver import load_dcdm_model

    source = load_dcdm_model(path).state_dict()
    target = model.state_dict()
    if source.keys() != target.keys() or any(source[k].shape != target[k].shape for k in source):
        raise InvalidInputError(
            f"the weights of {path} do not fit this network (other parameter shapes)"
        )
    model.load_state_dict({k: v.detach().clone() for k, v in source.items()})


def _register_generator() -> None:
    """Make the Ritz-sample generator known to :mod:`neurosolve.data.generate`."""
    from neurosolve.data import generators as gen

    if GENERATOR_NAME not in gen.GENERATORS:
        gen.register_generator(
            GENERATOR_NAME,
            "neurosolve.solvers.dcdm.ritz:ritz_samples",
            chunk=8,
            positive=("resolution", "lanczos_steps", "low_weight"),
            description="DCDM training data: Ritz-weighted right-hand sides and their operators",
        )


def generate_dataset(
    path: str | Path,
    *,
    samples: int,
    seed: int,
    params: dict[str, Any],
    progress: bool = True,
) -> Path:
    """Write (or finish writing) a DCDM training set with :func:`ritz_samples` params."""
    from neurosolve.data.generate import generate

    _register_generator()
    return generate(
        GENERATOR_NAME, path, samples=samples, seed=seed, params=params, progress=progress
    )


def train_dcdm(
    out: str | Path,
    *,
    dim: int = 3,
    resolution: int = 16,
    samples: int = 2000,
    val_samples: int = 200,
    geometry: str = "mixed",
    geometry_seed: int | None = None,
    lanczos_steps: int = 64,
    low: float = 0.5,
    low_weight: float = 9.0,
    scenes: str | None = None,
    contrast_fraction: float = 0.0,
    contrast: float = 10.0,
    width: int = 16,
    pairs: int | Sequence[int] = 1,
    levels: int = 1,
    flags_input: bool = True,
    network: dict[str, Any] | None = None,
    init: str | Path | None = None,
    loss: str = "ritz",
    unroll: int = 6,
    epochs: int = 10,
    batch_size: int = 8,
    lr: float = 1e-3,
    schedule: str = "cosine",
    seed: int = 0,
    device: str | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate Ritz-vector data, train a DCDM network with the shared trainer, save it.

    Data (``train.h5``, ``val.h5``), the trainer's checkpoint, ``metrics.json`` and
    ``learning_curve.png`` go to ``run_dir`` (default ``<out>.run/``); rerunning the
    same call resumes both data generation and training. The best-on-validation model
    is copied to ``out``.

    Parameters
    ----------
    out : path-like
        Where the trained model checkpoint is written.
    dim, resolution, geometry, geometry_seed, lanczos_steps, low, low_weight
        Training data (see :func:`~neurosolve.solvers.dcdm.ritz.ritz_samples`).
    scenes, contrast_fraction, contrast
        Scene mix of the data (see :func:`~neurosolve.solvers.dcdm.ritz.ritz_samples`);
        ``None``: obstacle boxes with Dirichlet boundaries.
    samples, val_samples : int
        Training and validation right-hand sides (validation geometries use another
        seed, so they are unseen in training).
    width, pairs, levels, flags_input
        Network (see :class:`~neurosolve.solvers.dcdm.network.DCDMNet`);
        ``flags_input`` adds the cell-type channel.
    network : dict, optional
        Further :class:`~neurosolve.solvers.dcdm.network.DCDMNet` arguments
        (``in_channels``, ``ghost``, ``coarsest``, ``backbone``, ``mg_layers``, ...).
    init : path-like, optional
        A DCDM checkpoint whose weights start the training (fine-tuning); its parameter
        shapes must match the network's.
    loss : {"ritz", "trajectory"}
        ``"ritz"`` (default, the paper's): :func:`dcdm_loss`, one step on each
        right-hand side; ``"trajectory"``: :func:`dcdm_trajectory_loss` over ``unroll``
        DCDM steps from each right-hand side (about ``unroll`` times the cost per sample).
    unroll : int
        Steps of the trajectory loss (default 6).
    epochs, batch_size, lr, schedule, seed, device
        Optimization (Adam; see ``neurosolve.training.TrainConfig``).
    run_dir : path-like, optional
        Folder for data, checkpoints and curves.
    progress : bool
        Progress bars.

    Returns
    -------
    dict
        ``{"model": Path, "run_dir": Path, "history": ...}``.
    """
    from neurosolve.data.store import H5Dataset
    from neurosolve.solvers.dcdm.network import DCDMNet
    from neurosolve.training import TrainConfig, Trainer

    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")
    params = dict(
        dim=int(dim),
        resolution=int(resolution),
        geometry=geometry,
        geometry_seed=geometry_seed,
        lanczos_steps=int(lanczos_steps),
        low=float(low),
        low_weight=float(low_weight),
    )
    if scenes is not None:
        params.update(
            scenes=str(scenes), contrast_fraction=float(contrast_fraction), contrast=float(contrast)
        )
    for name, value in (("resolution", resolution), ("lanczos_steps", lanczos_steps)):
        if int(value) < 1:
            raise InvalidInputError(
                f"parameter {name!r} of generator 'dcdm-ritz' must be positive, got {value}"
            )
    for name, value in (("samples", samples), ("val_samples", val_samples)):
        integer(value, name)
    if loss == "ritz":
        loss_fn: Any = dcdm_loss
    elif loss == "trajectory":
        loss_fn = functools.partial(dcdm_trajectory_loss, steps=integer(unroll, "unroll"))
    else:
        raise InvalidInputError(f"loss must be 'ritz' or 'trajectory', got {loss!r}")
    # Build and validate the model and the optimizer settings BEFORE any folder or data
    # exist, so bad parameters are refused at once and leave nothing behind.
    torch.manual_seed(seed)
    kwargs = dict(
        dim=int(dim),
        width=int(width),
        # one entry per level, as the stored kwargs of the shipped model
        pairs=[int(pairs)] * (int(levels) + 1) if isinstance(pairs, int) else list(pairs),
        levels=int(levels),
        in_channels=2 if flags_input else 1,
    )
    kwargs.update(network or {})
    model = DCDMNet(**kwargs)
    if init is not None:
        _load_weights(model, init)
    config = TrainConfig(
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        weight_decay=0.0,
        optimizer="adam",
        schedule=schedule,
        seed=int(seed),
        device=str(device) if device is not None else "cpu",
        progress=progress,
    )
    if not math.isfinite(config.lr) or config.lr <= 0:
        raise InvalidInputError(f"lr must be finite and > 0, got {lr}")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_path = generate_dataset(
        run_dir / "train.h5", samples=samples, seed=seed, params=params, progress=progress
    )
    val_path = generate_dataset(
        run_dir / "val.h5",
        samples=val_samples,
        seed=seed + 1_000_003,
        params=params,
        progress=progress,
    )
    trainer = Trainer(
        model,
        loss_fn,
        config,
        run_dir,
        model_spec=dict(kind="dcdm", kwargs=model.config()),
    )
    history = trainer.fit(H5Dataset(train_path), H5Dataset(val_path))
    return {"model": trainer.export_best(out), "run_dir": run_dir, "history": history}
