"""Navier-Stokes datasets: random initial vorticities and trajectories cut into windows.

:func:`navier_stokes_samples` is what ``neurosolve generate navier-stokes`` stores: the
initial vorticity of sample ``i`` is drawn from its own generator (a Gaussian random field
in the FNO convention, or decaying-turbulence random phases from
:func:`decaying_turbulence_vorticity`), the batch is integrated by
:class:`~neurosolve.data.navier_stokes.NavierStokes2d`, and the snapshots are split into an
input window ``x`` and a target window ``y``. A sample does not depend on the batch it is
generated in (see :mod:`neurosolve.data.navier_stokes.solver`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from neurosolve._util.validate import float_dtype, integer, positive
from neurosolve.data.navier_stokes.solver import NavierStokes2d
from neurosolve.data.navier_stokes.spectral import (
    _shell_index,
    dealias_mask,
    irfft2,
    rfft2,
    wavenumbers,
)
from neurosolve.data.random_fields import as_generators, default_sigma, gaussian_random_field
from neurosolve.errors import InvalidInputError

__all__ = ["decaying_turbulence_vorticity", "navier_stokes_samples"]

INITIAL_CONDITIONS: tuple[str, ...] = ("grf", "decaying")


def _k4exp(peak: float) -> Callable[[np.ndarray], np.ndarray]:
    def spectrum(k: np.ndarray) -> np.ndarray:
        r = k / peak
        return r**4 * np.exp(-2.0 * r**2)

    return spectrum


def decaying_turbulence_vorticity(
    resolution: int,
    batch: int | None = None,
    *,
    rng=None,
    spectrum: str | Callable[[np.ndarray], np.ndarray] = "k4exp",
    peak_wavenumber: float = 4.0,
    energy: float = 0.5,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Random-phase vorticity with a prescribed shell energy spectrum (decaying turbulence).

    Every mode kept by the 2/3 rule (:func:`dealias_mask`) gets a random phase (from the
    FFT of float64 white noise drawn from its sample's Generator) and an amplitude such that
    :func:`energy_spectrum` of the field equals ``C * E(m)`` exactly in every shell
    ``m >= 1`` that holds kept modes; ``C`` makes the total kinetic energy ``energy``.
    Modes outside the 2/3 band are zero.

    Parameters
    ----------
    resolution : int
        Grid size n (>= 4).
    batch : int, optional
        Number of fields (see :func:`neurosolve.data.random_fields.gaussian_random_field`
        for how ``rng`` and ``batch`` combine).
    rng : numpy.random.Generator, int, sequence of Generator or None
        Phase source.
    spectrum : "k4exp" or callable
        ``"k4exp"``: ``E(k) = (k/k_p)^4 exp(-2 (k/k_p)^2)``, peaked at ``k_p =
        peak_wavenumber`` (the classic decaying-turbulence spectrum). A callable maps an
        array of shell wavenumbers (float, >= 1) to non-negative energies, e.g. a power law
        ``lambda k: k ** -3.0 * (k >= 2)``.
    peak_wavenumber : float
        ``k_p`` for ``"k4exp"``.
    energy : float
        Total kinetic energy ``<|u|^2> / 2`` (> 0).
    device, dtype
        Where and in which dtype the fields are returned.

    Returns
    -------
    torch.Tensor
        ``(batch, n, n)``.

    Examples
    --------
    >>> w = decaying_turbulence_vorticity(32, 2, rng=np.random.default_rng(0))
    >>> w.shape
    torch.Size([2, 32, 32])
    >>> from neurosolve.data.navier_stokes import energy_spectrum
    >>> k, E = energy_spectrum(w)
    >>> [round(float(e), 12) for e in E.sum(-1)]
    [0.5, 0.5]
    """
    n = integer(resolution, "resolution", minimum=4)
    dtype = float_dtype(dtype)
    energy = positive(energy, "energy")
    if isinstance(spectrum, str):
        if spectrum != "k4exp":
            raise InvalidInputError(
                f"unknown spectrum {spectrum!r}; use 'k4exp' or a callable E(k)"
            )
        spectrum = _k4exp(positive(peak_wavenumber, "peak_wavenumber"))
    elif not callable(spectrum):
        raise InvalidInputError(f"spectrum must be 'k4exp' or a callable, got {spectrum!r}")
    gens, batch = as_generators(rng, batch)

    shell, weight = _shell_index(n, None)
    mask = dealias_mask(n)
    kept = mask.clone()
    kept[0, 0] = False
    nbins = int(shell.max()) + 1
    counts = torch.zeros(nbins, dtype=torch.float64)
    counts.index_add_(0, shell[kept], weight[kept])
    present = counts > 0
    ks = np.arange(nbins, dtype=np.float64)
    target = np.zeros(nbins)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = np.asarray(spectrum(ks[1:]), dtype=np.float64)
    if values.shape != ks[1:].shape or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInputError("spectrum(k) must return finite, non-negative values per shell")
    target[1:] = values
    target[~present.numpy()] = 0.0
    if target.sum() <= 0:
        raise InvalidInputError("the prescribed spectrum has no energy on the resolved shells")
    target *= energy / target.sum()
    e_shell = torch.from_numpy(target)
    # |w_k|^2 = 4 pi^2 |k|^2 |u_k|^2 and sum_shell weight |u_k|^2 / 2 = E(m)
    kx, ky = wavenumbers(n)
    four_pi2_k2 = 4.0 * math.pi**2 * (kx**2 + ky**2)
    per_mode = torch.where(kept, 2.0 * e_shell[shell] / counts[shell].clamp_min(1.0), 0.0)
    amplitude = torch.sqrt(per_mode * four_pi2_k2)

    out = torch.empty((batch, n, n), dtype=dtype, device=device)
    for i, g in enumerate(gens):
        noise_hat = rfft2(torch.from_numpy(g.standard_normal((n, n))))
        modulus = noise_hat.abs()
        phase = torch.where(modulus > 0, noise_hat / torch.where(modulus > 0, modulus, 1.0), 1.0)
        out[i] = irfft2(amplitude * phase, n).to(device=device, dtype=dtype)
    return out



def navier_stokes_samples(
    rngs: Sequence[np.random.Generator] | np.random.Generator,
    *,
    resolution: int = 64,
    sim_resolution: int = 128,
    nu: float = 1e-3,
    dt: float = 5e-3,
    t_final: float | None = None,
    record_every: float = 1.0,
    t_in: int = 10,
    t_out: int | None = None,
    burn_in: float = 0.0,
    include_initial: bool = False,
    forcing: str | None = "fno",
    initial: str = "grf",
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    peak_wavenumber: float = 4.0,
    energy: float = 0.5,
    diffusion: str = "cn",
    scheme: str = "rk2",
    drag: float = 0.0,
    device=None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Navier-Stokes trajectories split into input and target windows, one per generator.

    The initial vorticity of sample ``i`` is drawn at ``sim_resolution`` from ``rngs[i]``
    (a Gaussian random field, FNO convention, or decaying-turbulence random phases); the
    whole batch is simulated together and snapshots are recorded every ``record_every``
    time units after ``burn_in`` and stored at ``resolution`` (spectral down-sampling).
    Sample ``i`` is the same whatever batch it is generated in: bitwise on CPU with one
    intra-op thread, to rounding error otherwise (see the module notes).

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator or Generator
        One generator per sample (a single Generator means one sample).
    resolution, sim_resolution : int
        Stored and simulated grid sizes (>= 4).
    nu, dt, diffusion, scheme, drag : float, float, str, str, float
        Solver parameters (:class:`NavierStokes2d`; ``scheme="ab2"`` halves the cost).
        The FNO data used ``dt = 1e-4`` at 256^2; the scheme is second order and the
        flow at ``nu = 1e-3`` is smooth, so the default ``dt = 5e-3`` (advective CFL about
        0.14 at 128^2) is far cheaper for the same data: at 64^2, snapshots up to t = 10
        with ``dt = 1e-2`` differ from those with ``dt = 1.25e-3`` by 7e-7 (relative L2),
        and by 3e-6 with ``dt = 2e-2``. Turbulent settings (``nu = 1e-4``, decaying runs)
        need a smaller ``dt``; a :class:`CFLWarning` says when.
    t_final : float, optional
        End time; when given, ``t_out`` defaults to the snapshots after the input window
        (``(t_final - burn_in) / record_every - t_in``) and must agree with it otherwise.
        Without ``t_final`` and ``t_out``, ``t_out = 40`` (FNO: 10 -> 40 snapshots).
    record_every : float
        Time between snapshots (FNO: 1).
    t_in, t_out : int
        Snapshots in the input window ``x`` and the target window ``y`` (FNO: 10 and 40;
        ``t_out`` defaults as described under ``t_final``).
    burn_in : float
        Time simulated before the first snapshot (a whole multiple of ``record_every``).
    include_initial : bool
        Count the state at ``burn_in`` as the first snapshot.
    forcing : {"fno", "kolmogorov", None}
        Forcing (:class:`NavierStokes2d`).
    initial : {"grf", "decaying"}
        Initial vorticity: :func:`gaussian_random_field` with ``alpha, tau, sigma``, or
        :func:`decaying_turbulence_vorticity` with ``peak_wavenumber, energy``.
    alpha, tau, sigma : float
        GRF parameters. ``sigma=None`` means ``sqrt(2) * tau ** (alpha - 1)``: FNO's
        reference generator draws independent N(0, 1) real and imaginary parts for every
        mode and keeps the real part of the transform, which doubles the nominal covariance
        ``sigma^2 (-Laplacian + tau^2)^-alpha``; the extra ``sqrt(2)`` reproduces the
        variance of the FNO Navier-Stokes initial conditions.
    device, dtype, progress
        Simulation device and dtype (float64 default), progress bar.

    Returns
    -------
    x : numpy.ndarray
        ``(B, t_in, resolution, resolution)``.
    y : numpy.ndarray
        ``(B, t_out, resolution, resolution)``.

    Examples
    --------
    >>> rngs = [np.random.default_rng([0, i]) for i in range(2)]
    >>> x, y = navier_stokes_samples(rngs, resolution=16, sim_resolution=32, dt=0.05,
    ...                              record_every=0.5, t_in=2, t_out=3)
    >>> x.shape, y.shape
    ((2, 2, 16, 16), (2, 3, 16, 16))
    """
    if isinstance(rngs, np.random.Generator):
        rngs = [rngs]
    gens, batch = as_generators(list(rngs) if isinstance(rngs, Sequence) else rngs, None)
    resolution = integer(resolution, "resolution", minimum=4)
    sim_resolution = integer(sim_resolution, "sim_resolution", minimum=4)
    record_every = positive(record_every, "record_every")
    burn_in = positive(burn_in, "burn_in", allow_zero=True)
    t_in = integer(t_in, "t_in", minimum=1)
    t_out = _target_window(t_final, burn_in, record_every, t_in, t_out, include_initial)
    records = t_in + t_out - int(bool(include_initial))
    skip = _whole_records(burn_in, record_every)

    solver = NavierStokes2d(
        sim_resolution,
        nu=nu,
        dt=dt,
        forcing=forcing,
        device=device,
        dtype=dtype,
        diffusion=diffusion,
        scheme=scheme,
        drag=drag,
    )
    grf = {"alpha": alpha, "tau": tau, "sigma": sigma}
    decaying = {"peak_wavenumber": peak_wavenumber, "energy": energy}
    w0 = _initial_vorticity(initial, sim_resolution, gens, solver.device, grf, decaying)
    if batch != w0.shape[0]:  # pragma: no cover - as_generators guarantees it
        raise InvalidInputError("internal batch mismatch")
    traj = solver.simulate(
        w0,
        (skip + records) * record_every,
        record_every,
        progress=progress,
        out_resolution=resolution,
        include_initial=include_initial and skip == 0,
    )
    if skip > 0:
        # snapshot j of `traj` is the state at (j + 1) * record_every
        traj = traj[:, skip - 1 :] if include_initial else traj[:, skip:]
    traj = traj.cpu().numpy()
    return traj[:, :t_in].copy(), traj[:, t_in : t_in + t_out].copy()


def _target_window(
    t_final: float | None,
    burn_in: float,
    record_every: float,
    t_in: int,
    t_out: int | None,
    include_initial: bool,
) -> int:
    """``t_out``, checked against (or derived from) ``t_final`` when that is given."""
    available = None
    if t_final is not None:
        t_final = positive(t_final, "t_final")
        available = (t_final - burn_in) / record_every
        if available < 0 or abs(available - round(available)) > 1e-9 * max(1.0, available):
            raise InvalidInputError(
                f"t_final - burn_in ({t_final - burn_in:g}) must be a whole non-negative "
                f"multiple of record_every ({record_every:g})"
            )
        available = round(available) + int(bool(include_initial))
    if t_out is None:
        t_out = 40 if available is None else available - t_in
    t_out = integer(t_out, "t_out", minimum=1)
    if available is not None and available != t_in + t_out:
        raise InvalidInputError(
            f"t_final gives {available} snapshots but t_in + t_out = {t_in + t_out}"
        )
    return t_out


def _whole_records(burn_in: float, record_every: float) -> int:
    """Number of record intervals in the burn-in, which must be a whole multiple."""
    if burn_in > 0:
        b = burn_in / record_every
        if abs(b - round(b)) > 1e-9 * max(1.0, b):
            raise InvalidInputError(
                f"burn_in ({burn_in:g}) must be a whole multiple of record_every ({record_every:g})"
            )
    return round(burn_in / record_every)


def _initial_vorticity(
    initial: str,
    n: int,
    gens: list[np.random.Generator],
    device: torch.device,
    grf: dict,
    decaying: dict,
) -> torch.Tensor:
    """Initial vorticities ``(B, n, n)`` of kind ``initial``, one per generator."""
    if initial == "grf":
        alpha, tau, sigma = grf["alpha"], grf["tau"], grf["sigma"]
        if sigma is None:
            sigma = math.sqrt(2.0) * default_sigma(alpha, tau, 2)
        return gaussian_random_field(
            (n, n), alpha=alpha, tau=tau, sigma=sigma, rng=gens, device=device, dtype=torch.float64
        )
    if initial == "decaying":
        return decaying_turbulence_vorticity(n, rng=gens, device=device, **decaying)
    raise InvalidInputError(f"initial must be one of {INITIAL_CONDITIONS}, got {initial!r}")
