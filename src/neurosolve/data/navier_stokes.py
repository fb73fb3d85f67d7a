r"""2D incompressible Navier-Stokes in vorticity form on the periodic unit square.

The solver integrates

.. math::

    \partial_t \omega + u \cdot \nabla \omega = \nu \Delta \omega - \mu \omega + f,
    \qquad u = (\partial_y \psi, -\partial_x \psi), \qquad -\Delta \psi = \omega,

on :math:`[0, 1)^2` (``mu`` is an optional linear drag, 0 by default) with a
pseudo-spectral method: the nonlinear term is computed on the grid from the modes kept by
the 2/3 rule and truncated to them again (see :func:`dealias_mask`); the linear term is
diagonal in Fourier space.

Time stepping (every variant is second order in time; ``tests/data/test_navier_stokes.py``
measures it):

- ``diffusion="cn"`` (default, the scheme of the FNO data): Crank-Nicolson for the linear
  term and Heun's predictor-corrector (explicit trapezoid, RK2) for advection and forcing::

      w* = [(1 + dt L/2) w_n + dt N(w_n)] / (1 - dt L/2)
      w_{n+1} = [(1 + dt L/2) w_n + dt/2 (N(w_n) + N(w*))] / (1 - dt L/2)

  with ``L = -nu 4 pi^2 |k|^2 - mu`` and ``N(w) = f - u . grad w``.
- ``diffusion="etd"``: exponential time differencing, ETDRK2 of Cox & Matthews (2002)::

      a = E w_n + dt phi1(dt L) N(w_n)
      w_{n+1} = a + dt phi2(dt L) (N(a) - N(w_n))

  with ``E = exp(dt L)``, ``phi1(z) = (e^z - 1) / z``, ``phi2(z) = (e^z - 1 - z) / z^2``.
  The linear part and a constant forcing are integrated exactly, so unforced single-shell
  flows (Taylor-Green) decay as the exact solution to rounding error and laminar steady
  states (Kolmogorov flow) stay put.
- ``scheme="ab2"`` replaces the two-stage explicit part by two-step Adams-Bashforth (one
  nonlinear evaluation per step, so half the cost): CN-AB2
  ``w_{n+1} = [(1 + dt L/2) w_n + dt (3/2 N_n - 1/2 N_{n-1})] / (1 - dt L/2)``, or ETD2
  ``w_{n+1} = E w_n + dt phi1 N_n + dt phi2 (N_n - N_{n-1})``; the first step of each
  :meth:`NavierStokes2d.simulate` call is the two-stage one.

Differences from the FNO data generator (which uses the same CN + Heun scheme): the
nonlinear term is formed from the dealiased vorticity as well as truncated afterwards (FNO
masks only the result, so aliases of the undamped high modes of the initial condition
enter); the 2/3 mask is ``3 |k| < n`` (identical for n = 64, 128, 256); stored snapshots are
spectral truncations, not point subsamples of the fine grid; GRF initial conditions use
float64 numpy white noise (per-sample seeding) with FNO's effective variance (see
:func:`navier_stokes_samples`).

Conventions
-----------
Fields are real tensors ``(..., n, n)``; entry ``[..., i, j]`` is the value at
``(x, y) = (i / n, j / n)`` (axis -2 is x, axis -1 is y). Spectral arrays hold Fourier
coefficients in the ``rfft2`` layout ``(..., n, n // 2 + 1)`` normalized as
``torch.fft.rfft2(w, norm="forward")`` (so ``w(x) = sum_k w_hat_k exp(2 pi i k . x)``);
the linear helpers below do not depend on the normalization, :func:`advection_term` does
(it takes ``norm=``). Wavenumbers are integers ``k``; derivatives carry the ``2 pi``.

Batch invariance: a sample simulated in a batch and the same sample simulated alone agree
to rounding error (about 1e-16 relative per step). The solver transforms along one axis at
a time (``rfft`` on y, then ``fft`` on x) because, on CPU with one intra-op thread
(``torch.set_num_threads(1)`` / ``OMP_NUM_THREADS=1``), that makes them bitwise identical,
which MKL's 2D batched transforms are not. With several threads MKL's complex-to-real
transform can take a different code path for different batch sizes and change the last
bits; GPU FFT libraries give no promise either. Looping over samples would restore
bitwise equality but costs 3-10x with two threads, so it is not done.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neurosolve.data.random_fields import as_generators, default_sigma, gaussian_random_field
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError

__all__ = [
    "CFLWarning",
    "NavierStokes2d",
    "advection_term",
    "cfl_number",
    "dealias_mask",
    "decaying_turbulence_vorticity",
    "downsample_spectral",
    "energy_spectrum",
    "fno_forcing",
    "grid_coordinates",
    "irfft2",
    "kolmogorov_forcing",
    "navier_stokes_samples",
    "resample_spectral",
    "rfft2",
    "spectral_derivative",
    "spectral_laplacian",
    "stream_function",
    "velocity_from_vorticity",
    "wavenumbers",
]

logger = logging.getLogger(__name__)

_REAL_DTYPES = (torch.float32, torch.float64)
_FORCINGS = ("fno", "kolmogorov", "none")


class CFLWarning(UserWarning):
    """The advective Courant number of a simulation exceeds the solver's limit."""


# ----------------------------------------------------------------------------- validation
def _positive(value, name: str, *, allow_zero: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a real number, got {value!r}") from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    if out < 0 or (out == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {out}")
    return out


def _size(value, name: str, minimum: int = 4) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _real_dtype(dtype) -> torch.dtype:
    if dtype not in _REAL_DTYPES:
        raise InvalidInputError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _square_size(w: torch.Tensor, name: str) -> int:
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise InvalidInputError(f"{name} must have shape (..., n, n), got {tuple(w.shape)}")
    return int(w.shape[-1])


def _spectral_size(w_hat: torch.Tensor) -> int:
    """Grid size n of an rfft2-layout array (..., n, n // 2 + 1)."""
    if w_hat.ndim < 2 or not w_hat.is_complex():
        raise InvalidInputError(
            f"expected complex Fourier coefficients (..., n, n // 2 + 1), got "
            f"{w_hat.dtype} of shape {tuple(w_hat.shape)}"
        )
    n = int(w_hat.shape[-2])
    if w_hat.shape[-1] != n // 2 + 1:
        raise InvalidInputError(
            f"Fourier coefficients must have shape (..., n, n // 2 + 1), got {tuple(w_hat.shape)}"
        )
    return n


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64


def _real_of(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32


# ----------------------------------------------------------------------- spectral helpers
def rfft2(w: torch.Tensor, norm: str = "forward") -> torch.Tensor:
    """Real 2D FFT over the last two axes, one axis at a time (batch-invariant on CPU).

    Same values as ``torch.fft.rfft2(w, norm=norm)`` up to rounding.

    Examples
    --------
    >>> w = torch.randn(3, 8, 8, dtype=torch.float64)
    >>> torch.allclose(rfft2(w), torch.fft.rfft2(w, norm="forward"))
    True
    """
    return torch.fft.fft(torch.fft.rfft(w, dim=-1, norm=norm), dim=-2, norm=norm)


def irfft2(w_hat: torch.Tensor, n: int | None = None, norm: str = "forward") -> torch.Tensor:
    """Inverse of :func:`rfft2` onto an ``n x n`` grid (default ``w_hat.shape[-2]``).

    Examples
    --------
    >>> w = torch.randn(2, 6, 6, dtype=torch.float64)
    >>> torch.allclose(irfft2(rfft2(w)), w)
    True
    """
    n = int(w_hat.shape[-2]) if n is None else int(n)
    return torch.fft.irfft(torch.fft.ifft(w_hat, dim=-2, norm=norm), n=n, dim=-1, norm=norm)


def wavenumbers(n: int, *, device=None, dtype: torch.dtype = torch.float64):
    """Integer wavenumbers of an ``n x n`` grid in the ``rfft2`` layout.

    Returns
    -------
    kx : torch.Tensor
        Shape ``(n, 1)``: ``0, 1, ..., -1`` (``numpy.fft.fftfreq(n, 1 / n)``).
    ky : torch.Tensor
        Shape ``(1, n // 2 + 1)``: ``0, 1, ..., n // 2``.

    Examples
    --------
    >>> kx, ky = wavenumbers(4)
    >>> kx.flatten().tolist(), ky.flatten().tolist()
    ([0.0, 1.0, -2.0, -1.0], [0.0, 1.0, 2.0])
    """
    n = _size(n, "n", minimum=2)
    kx = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype).reshape(n, 1)
    ky = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=dtype).reshape(1, -1)
    return kx, ky


def dealias_mask(n: int, *, device=None) -> torch.Tensor:
    """Orszag's 2/3 rule on the ``rfft2`` layout: keep ``|k_x|, |k_y| < n / 3``.

    A quadratic product of kept modes has wavenumbers up to ``2K``; its aliases land at
    ``2K - n``, outside the kept band exactly when ``3K < n``. (The FNO data's mask
    ``|k| <= (2/3)(n/2)`` is the same for n = 64, 128, 256 but keeps one aliased band when 3
    divides n.)

    Examples
    --------
    >>> m = dealias_mask(8)
    >>> m.shape, int(m.sum())
    (torch.Size([8, 5]), 15)
    """
    kx, ky = wavenumbers(n, device=device)
    return (3 * kx.abs() < n) & (3 * ky.abs() < n)


@functools.lru_cache(maxsize=32)
def _operators(n: int, device: torch.device, dtype: torch.dtype):
    """Cached spectral multipliers for an n x n grid (real dtype ``dtype``)."""
    kx, ky = wavenumbers(n, device=device, dtype=dtype)
    k2 = kx**2 + ky**2
    four_pi2_k2 = 4.0 * math.pi**2 * k2
    inv_lap = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, four_pi2_k2, 1.0), 0.0)
    # odd derivatives: zero the Nyquist modes (their derivative is not a real field's)
    nyq_x = (2 * kx.abs() == n) if n % 2 == 0 else torch.zeros_like(kx, dtype=torch.bool)
    nyq_y = (2 * ky.abs() == n) if n % 2 == 0 else torch.zeros_like(ky, dtype=torch.bool)
    cdtype = _complex_of(dtype)
    dx = (2j * math.pi * torch.where(nyq_x, 0.0, kx)).to(cdtype).expand(n, n // 2 + 1)
    dy = (2j * math.pi * torch.where(nyq_y, 0.0, ky)).to(cdtype).expand(n, n // 2 + 1)
    mask = dealias_mask(n, device=device)
    maskf = mask.to(dtype)
    # multipliers giving (u, v, w_x, w_y) from the dealiased vorticity in one stacked product
    vel_grad = torch.stack(
        (maskf * dy * inv_lap, -maskf * dx * inv_lap, maskf * dx, maskf * dy)
    ).contiguous()
    out_mask = maskf.clone()
    out_mask[0, 0] = 0.0  # u . grad w = div(u w) has zero mean; drop the rounding residue
    return {
        "k2": k2,
        "lap": -four_pi2_k2,
        "inv_lap": inv_lap,
        "dx": dx.contiguous(),
        "dy": dy.contiguous(),
        "mask": mask,
        "vel_grad": vel_grad,
        "out_mask": out_mask,
    }


def _ops(w_hat: torch.Tensor, n: int | None = None):
    n = _spectral_size(w_hat) if n is None else n
    return _operators(n, w_hat.device, _real_of(w_hat.dtype))


def spectral_derivative(f_hat: torch.Tensor, order: tuple[int, int] = (1, 0)) -> torch.Tensor:
    """Spectral derivative ``d^a/dx^a d^b/dy^b`` of Fourier coefficients, ``order=(a, b)``.

    Nyquist modes are zeroed when ``a`` or ``b`` is odd.

    Examples
    --------
    >>> x, y = grid_coordinates(16, dtype=torch.float64)
    >>> d = irfft2(spectral_derivative(rfft2(torch.sin(2 * math.pi * x)), (1, 0)))
    >>> torch.allclose(d, 2 * math.pi * torch.cos(2 * math.pi * x))
    True
    """
    a, b = (int(o) for o in order)
    if a < 0 or b < 0:
        raise InvalidInputError(f"derivative orders must be >= 0, got {order}")
    ops = _ops(f_hat)
    out = f_hat
    if a:
        out = out * ops["dx"] ** a
    if b:
        out = out * ops["dy"] ** b
    return out


def spectral_laplacian(f_hat: torch.Tensor) -> torch.Tensor:
    """Laplacian in Fourier space: ``-4 pi^2 |k|^2 f_hat``.

    Examples
    --------
    >>> x, y = grid_coordinates(8, dtype=torch.float64)
    >>> w = torch.cos(2 * math.pi * (x + 2 * y))
    >>> torch.allclose(irfft2(spectral_laplacian(rfft2(w))), -4 * math.pi**2 * 5 * w)
    True
    """
    return f_hat * _ops(f_hat)["lap"]


def stream_function(w_hat: torch.Tensor) -> torch.Tensor:
    """Stream function ``psi_hat`` solving ``-Laplacian psi = w`` (zero-mean ``psi``).

    Examples
    --------
    >>> x, y = grid_coordinates(8, dtype=torch.float64)
    >>> psi = irfft2(stream_function(rfft2(torch.sin(2 * math.pi * x))))
    >>> torch.allclose(psi, torch.sin(2 * math.pi * x) / (4 * math.pi**2))
    True
    """
    return w_hat * _ops(w_hat)["inv_lap"]


def velocity_from_vorticity(w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier coefficients of the velocity ``(u, v) = (psi_y, -psi_x)`` from the vorticity.

    The velocity is divergence free and has zero mean; its curl ``v_x - u_y`` is ``w``
    minus its mean.

    Examples
    --------
    >>> x, y = grid_coordinates(16, dtype=torch.float64)
    >>> u_hat, v_hat = velocity_from_vorticity(rfft2(torch.cos(2 * math.pi * y)))
    >>> torch.allclose(irfft2(u_hat), -torch.sin(2 * math.pi * y) / (2 * math.pi))
    True
    """
    ops = _ops(w_hat)
    psi = w_hat * ops["inv_lap"]
    return psi * ops["dy"], -psi * ops["dx"]


def advection_term(
    w_hat: torch.Tensor, *, dealias: bool = True, norm: str = "forward"
) -> torch.Tensor:
    """Fourier coefficients of the nonlinear term ``u . grad w``, pseudo-spectrally.

    With ``dealias=True`` the 2/3 rule is applied to the input and to the result, so the
    kept modes of the result are those of the exact (Galerkin-truncated) product. The mean
    mode of the result is 0.

    Parameters
    ----------
    w_hat : torch.Tensor
        Complex ``(..., n, n // 2 + 1)``.
    dealias : bool
        Apply the 2/3 rule.
    norm : str
        FFT normalization of ``w_hat`` (``"forward"`` = Fourier coefficients).

    Examples
    --------
    >>> x, y = grid_coordinates(16, dtype=torch.float64)
    >>> w = torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y)  # one |k| shell
    >>> float(irfft2(advection_term(rfft2(w))).abs().max()) < 1e-14
    True
    """
    n = _spectral_size(w_hat)
    return _advection(w_hat, _ops(w_hat, n), n, dealias=dealias, norm=norm)


def _advection(w_hat, ops, n, *, dealias=True, norm="forward"):
    if dealias:
        mult, out_mask = ops["vel_grad"], ops["out_mask"]
    else:
        psi = ops["inv_lap"]
        mult = torch.stack((ops["dy"] * psi, -ops["dx"] * psi, ops["dx"], ops["dy"]))
        out_mask = torch.ones_like(ops["out_mask"])
        out_mask[0, 0] = 0.0
    # (u, v, w_x, w_y) in one stacked inverse transform, the product, one forward transform.
    # (Transforming only the non-zero k_y columns along x was measured: no reliable gain.)
    shape = (4,) + (1,) * (w_hat.ndim - 2) + tuple(mult.shape[-2:])
    fields = irfft2(w_hat.unsqueeze(0) * mult.reshape(shape), n, norm=norm)
    product = fields[0] * fields[2] + fields[1] * fields[3]
    return rfft2(product, norm=norm) * out_mask


def _resample_hat(w_hat: torch.Tensor, m: int) -> torch.Tensor:
    """Fourier coefficients of an n-grid field moved to an m-grid (forward norm).

    Modes with ``|k_x|, |k_y| <= (min(n, m) - 1) // 2`` are copied; the rest, including the
    Nyquist modes of the smaller grid, are zero.
    """
    n = int(w_hat.shape[-2])
    if m == n:
        return w_hat
    K = (min(n, m) - 1) // 2
    out = w_hat.new_zeros((*w_hat.shape[:-2], m, m // 2 + 1))
    out[..., : K + 1, : K + 1] = w_hat[..., : K + 1, : K + 1]
    if K > 0:
        out[..., m - K :, : K + 1] = w_hat[..., n - K :, : K + 1]
    return out


def resample_spectral(w: torch.Tensor, size: int) -> torch.Tensor:
    """Resample periodic fields ``(..., n, n)`` to ``(..., size, size)`` by Fourier modes.

    Keeps the modes ``|k_x|, |k_y| < min(n, size) / 2`` (the Nyquist modes of the smaller
    grid are dropped, so the result is the exact grid sampling of a real trigonometric
    polynomial) and evaluates them on the new grid. Down-sampling a field whose modes are
    all below ``size / 2`` returns its point values on the coarse grid exactly.

    Examples
    --------
    >>> x, y = grid_coordinates(32, dtype=torch.float64)
    >>> w = torch.sin(2 * math.pi * (3 * x - y))
    >>> xc, yc = grid_coordinates(8, dtype=torch.float64)
    >>> torch.allclose(resample_spectral(w, 8), torch.sin(2 * math.pi * (3 * xc - yc)))
    True
    """
    if not isinstance(w, torch.Tensor) or w.is_complex() or not w.is_floating_point():
        raise InvalidInputError("resample_spectral expects a real floating torch.Tensor")
    n = _square_size(w, "field")
    size = _size(size, "size", minimum=2)
    if size == n:
        return w.clone()
    return irfft2(_resample_hat(rfft2(w), size), size)


def downsample_spectral(w: torch.Tensor, size: int) -> torch.Tensor:
    """Spectral down-sampling of periodic fields ``(..., n, n)`` to ``size <= n``.

    See :func:`resample_spectral` (which also up-samples).

    Examples
    --------
    >>> downsample_spectral(torch.zeros(2, 3, 16, 16), 8).shape
    torch.Size([2, 3, 8, 8])
    """
    if isinstance(w, torch.Tensor) and w.ndim >= 2:
        size = _size(size, "size", minimum=2)
        if size > w.shape[-1]:
            raise InvalidInputError(
                f"downsample_spectral: size {size} exceeds the field size {w.shape[-1]}; "
                f"use resample_spectral to up-sample"
            )
    return resample_spectral(w, size)


def grid_coordinates(n: int, *, device=None, dtype: torch.dtype = torch.float64):
    """Grid coordinates ``x = i / n``, ``y = j / n`` as two ``(n, n)`` tensors (ij indexing).

    Examples
    --------
    >>> x, y = grid_coordinates(4)
    >>> x[:, 0].tolist(), y[0].tolist()
    ([0.0, 0.25, 0.5, 0.75], [0.0, 0.25, 0.5, 0.75])
    """
    n = _size(n, "n", minimum=1)
    t = torch.arange(n, device=device, dtype=dtype) / n
    return torch.meshgrid(t, t, indexing="ij")


def cfl_number(w_hat: torch.Tensor, dt: float) -> float:
    """Advective Courant number ``dt * n * (max|u| + max|v|)`` of vorticity coefficients.

    The maximum runs over the whole batch.

    Examples
    --------
    >>> x, y = grid_coordinates(32, dtype=torch.float64)
    >>> w = 2 * math.pi * torch.cos(2 * math.pi * y)  # u = -sin(2 pi y), v = 0
    >>> round(cfl_number(rfft2(w), 0.01), 6)
    0.32
    """
    n = _spectral_size(w_hat)
    u_hat, v_hat = velocity_from_vorticity(w_hat)
    u = irfft2(torch.stack((u_hat, v_hat)), n)
    speed = u[0].abs().max() + u[1].abs().max()
    return float(dt) * n * float(speed)


# ---------------------------------------------------------------------------- forcings
def fno_forcing(n: int, *, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """FNO's forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` on an ``n x n`` grid.

    Examples
    --------
    >>> f = fno_forcing(8)
    >>> f.shape, round(float(f[0, 0]), 6)
    (torch.Size([8, 8]), 0.1)
    """
    x, y = grid_coordinates(n, device=device, dtype=dtype)
    s = 2 * math.pi * (x + y)
    return 0.1 * (torch.sin(s) + torch.cos(s))


def kolmogorov_forcing(
    n: int,
    *,
    wavenumber: int = 4,
    amplitude: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kolmogorov forcing in vorticity form, ``-2 pi k A cos(2 pi k y)``.

    It is the curl of the body force ``A sin(2 pi k y)`` in the x direction. With viscosity
    ``nu`` and drag ``mu`` the laminar steady state is
    ``w = -2 pi k A cos(2 pi k y) / (nu (2 pi k)^2 + mu)``.

    Examples
    --------
    >>> f = kolmogorov_forcing(16, wavenumber=2)
    >>> round(float(f[0, 0]), 6) == round(-4 * math.pi, 6)
    True
    """
    k = _size(wavenumber, "wavenumber", minimum=1)
    amplitude = float(amplitude)
    if not math.isfinite(amplitude):
        raise InvalidInputError(f"forcing amplitude must be finite, got {amplitude}")
    _, y = grid_coordinates(n, device=device, dtype=dtype)
    return -2 * math.pi * k * amplitude * torch.cos(2 * math.pi * k * y)


def _as_field(value, name: str, device, dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor or numpy array, got {type(value)}")
    if value.is_complex() or not (value.is_floating_point() or value.dtype == torch.int64):
        raise InvalidInputError(f"{name} must hold real numbers, got {value.dtype}")
    value = value.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(value).all()):
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    return value


# ------------------------------------------------------------------- initial conditions
def _shell_index(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Shell number round(|k|) and full-spectrum multiplicity of each rfft2 entry."""
    kx, ky = wavenumbers(n, device=device)
    shell = torch.round(torch.sqrt(kx**2 + ky**2)).to(torch.long)
    weight = torch.full_like(shell, 2, dtype=torch.float64)
    weight[:, 0] = 1.0  # k_y = 0 column has no mirror in the stored half
    if n % 2 == 0:
        weight[:, -1] = 1.0  # k_y = n/2 column is its own mirror
    return shell, weight


def energy_spectrum(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shell-summed kinetic energy spectrum of vorticity fields ``(..., n, n)``.

    ``E[m] = sum over round(|k|) = m of |u_hat_k|^2 / 2`` with ``u_hat`` the Fourier
    coefficients of the velocity (``|u_hat_k|^2 = |w_hat_k|^2 / (4 pi^2 |k|^2)``), so that
    ``E.sum(-1)`` is the mean kinetic energy ``<|u|^2> / 2``.

    Returns
    -------
    k : torch.Tensor
        Shell wavenumbers ``0, 1, ..., m_max`` (long).
    E : torch.Tensor
        ``(..., m_max + 1)``, float64.

    Examples
    --------
    >>> x, y = grid_coordinates(16, dtype=torch.float64)
    >>> k, E = energy_spectrum(2 * math.pi * 3 * torch.sin(2 * math.pi * 3 * x))
    >>> int(E.argmax()), round(float(E.sum()), 6)  # u = (0, -sin): energy 1/4
    (3, 0.25)
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise InvalidInputError("energy_spectrum expects a real floating torch.Tensor")
    n = _square_size(w, "vorticity")
    w_hat = rfft2(w.to(torch.float64))
    ops = _operators(n, w_hat.device, torch.float64)
    shell, weight = _shell_index(n, w_hat.device)
    density = 0.5 * weight * (w_hat.abs() ** 2) * ops["inv_lap"]
    nbins = int(shell.max()) + 1
    flat = density.reshape(*density.shape[:-2], -1)
    E = flat.new_zeros((*flat.shape[:-1], nbins))
    E.index_add_(-1, shell.flatten(), flat)
    return torch.arange(nbins, device=w.device), E


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
    >>> k, E = energy_spectrum(w)
    >>> [round(float(e), 12) for e in E.sum(-1)]
    [0.5, 0.5]
    """
    n = _size(resolution, "resolution")
    dtype = _real_dtype(dtype)
    energy = _positive(energy, "energy")
    if isinstance(spectrum, str):
        if spectrum != "k4exp":
            raise InvalidInputError(
                f"unknown spectrum {spectrum!r}; use 'k4exp' or a callable E(k)"
            )
        spectrum = _k4exp(_positive(peak_wavenumber, "peak_wavenumber"))
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


# ------------------------------------------------------------------------------ solver
@dataclass
class _StepCoefficients:
    dt: float
    a: torch.Tensor  # CN: (1 + dt L/2) / (1 - dt L/2) ; ETD: exp(dt L)
    b: torch.Tensor  # CN: dt / (1 - dt L/2)           ; ETD: dt phi1(dt L)
    c: torch.Tensor | None = None  # ETD: dt phi2(dt L)


def _phi_functions(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi1(z) = (e^z - 1) / z and phi2(z) = (e^z - 1 - z) / z^2, accurate near z = 0."""
    small = z.abs() < 1e-3
    zs = torch.where(small, 1.0, z)
    phi1 = torch.where(small, 1 + z / 2 + z**2 / 6 + z**3 / 24, torch.expm1(zs) / zs)
    taylor2 = 0.5 + z / 6 + z**2 / 24 + z**3 / 120 + z**4 / 720
    phi2 = torch.where(small, taylor2, (torch.expm1(zs) - zs) / zs**2)
    return phi1, phi2


class NavierStokes2d:
    """Pseudo-spectral solver of 2D incompressible Navier-Stokes (vorticity form, unit torus).

    See the module docstring for the equations, the time stepping (second order) and the
    conventions. One solver object holds the grid, the parameters and the precomputed
    spectral operators; :meth:`simulate` integrates any batch of initial vorticities.

    Parameters
    ----------
    resolution : int
        Simulation grid size n (>= 4).
    nu : float
        Kinematic viscosity (> 0).
    dt : float
        Time step (> 0). :meth:`simulate` shortens it, if needed, so that each record
        interval holds a whole number of steps.
    forcing : {"fno", "kolmogorov", None} or callable or array
        Time-independent vorticity forcing f: ``"fno"`` = ``0.1 (sin 2 pi (x + y) + cos 2 pi
        (x + y))``; ``"kolmogorov"`` = :func:`kolmogorov_forcing`; ``None`` unforced; a
        callable ``f(x, y)`` of the grid coordinates (``(n, n)`` tensors); or an ``(m, m)``
        array / tensor (spectrally resampled to n). Its mean is removed (vorticity on the
        torus has zero mean).
    device : torch.device or str, optional
        Device of the simulation.
    dtype : torch.dtype
        float64 (default) or float32.

    Other Parameters
    ----------------
    diffusion : {"cn", "etd"}
        Crank-Nicolson (FNO data) or exponential time differencing of the linear term.
    scheme : {"rk2", "ab2"}
        Explicit part: two-stage (Heun / ETDRK2, FNO data) or two-step Adams-Bashforth
        (CN-AB2 / ETD2), which needs one nonlinear evaluation per step instead of two
        (half the cost) at the price of a larger error constant and a smaller stability
        region. Both are second order.
    drag : float
        Linear drag coefficient mu >= 0 (often 0.1 with Kolmogorov forcing).
    forcing_wavenumber, forcing_amplitude : int, float
        Parameters of the Kolmogorov forcing (default 4 and 1).
    dealias : bool
        Apply the 2/3 rule (default True).
    max_cfl : float
        Warn (:class:`CFLWarning`) when the advective Courant number
        ``dt n (max|u| + max|v|)`` exceeds it, checked at the start and at every record
        (default 0.5; Heun's method is only marginally stable for pure advection, so runs
        near the limit rely on viscosity).

    Examples
    --------
    >>> ns = NavierStokes2d(32, nu=1e-3, dt=1e-2)
    >>> w0 = gaussian_random_field((32, 32), 2, rng=np.random.default_rng(0),
    ...                            dtype=torch.float64)
    >>> traj = ns.simulate(w0, t_final=0.5, record_every=0.25)
    >>> traj.shape
    torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        resolution: int,
        *,
        nu: float = 1e-3,
        dt: float = 1e-4,
        forcing: str | Callable | torch.Tensor | np.ndarray | None = "fno",
        device=None,
        dtype: torch.dtype = torch.float64,
        diffusion: str = "cn",
        scheme: str = "rk2",
        drag: float = 0.0,
        forcing_wavenumber: int = 4,
        forcing_amplitude: float = 1.0,
        dealias: bool = True,
        max_cfl: float = 0.5,
    ) -> None:
        self.n = _size(resolution, "resolution")
        self.nu = _positive(nu, "nu")
        self.dt = _positive(dt, "dt")
        self.drag = _positive(drag, "drag", allow_zero=True)
        self.max_cfl = _positive(max_cfl, "max_cfl")
        self.dtype = _real_dtype(dtype)
        self.device = resolve_device(device)
        if diffusion not in ("cn", "etd"):
            raise InvalidInputError(f"diffusion must be 'cn' or 'etd', got {diffusion!r}")
        if scheme not in ("rk2", "ab2"):
            raise InvalidInputError(f"scheme must be 'rk2' or 'ab2', got {scheme!r}")
        self.diffusion = diffusion
        self.scheme = scheme
        self.dealias = bool(dealias)
        self._ops = _operators(self.n, self.device, self.dtype)
        self.forcing_name, self.forcing = self._build_forcing(
            forcing, forcing_wavenumber, forcing_amplitude
        )
        self.forcing_hat = None if self.forcing is None else rfft2(self.forcing)
        if self.forcing_hat is not None:
            self.forcing_hat[..., 0, 0] = 0.0
            self.forcing = irfft2(self.forcing_hat, self.n)
        # L, real (n, n // 2 + 1), kept in float64: the step coefficients are built from it
        lap64 = _operators(self.n, self.device, torch.float64)["lap"]
        self.linear = self.nu * lap64 - self.drag

    # --------------------------------------------------------------------------- setup
    def _build_forcing(self, forcing, wavenumber, amplitude):
        n, dev, dt = self.n, self.device, self.dtype
        if forcing is None or (isinstance(forcing, str) and forcing == "none"):
            return "none", None
        if isinstance(forcing, str):
            if forcing == "fno":
                return "fno", fno_forcing(n, device=dev, dtype=dt)
            if forcing == "kolmogorov":
                f = kolmogorov_forcing(
                    n, wavenumber=wavenumber, amplitude=amplitude, device=dev, dtype=dt
                )
                return "kolmogorov", f
            raise InvalidInputError(
                f"unknown forcing {forcing!r}; use one of {_FORCINGS}, a callable f(x, y) "
                f"or an array"
            )
        if callable(forcing):
            x, y = grid_coordinates(n, device=dev, dtype=dt)
            value = _as_field(forcing(x, y), "forcing(x, y)", dev, dt)
            if value.shape != (n, n):
                raise InvalidInputError(
                    f"forcing(x, y) must return an ({n}, {n}) field, got {tuple(value.shape)}"
                )
            return "callable", value
        value = _as_field(forcing, "forcing", dev, dt)
        if value.ndim != 2:
            raise InvalidInputError(f"forcing array must be (m, m), got {tuple(value.shape)}")
        _square_size(value, "forcing")
        return "array", resample_spectral(value, n) if value.shape[-1] != n else value

    def __repr__(self) -> str:
        return (
            f"NavierStokes2d(resolution={self.n}, nu={self.nu:g}, dt={self.dt:g}, "
            f"forcing={self.forcing_name!r}, diffusion={self.diffusion!r}, "
            f"scheme={self.scheme!r}, drag={self.drag:g}, "
            f"device={str(self.device)!r}, dtype={self.dtype})"
        )

    def _coefficients(self, dt: float) -> _StepCoefficients:
        L = self.linear
        if self.diffusion == "cn":
            denom = 1.0 / (1.0 - 0.5 * dt * L)
            a, b, c = (1.0 + 0.5 * dt * L) * denom, dt * denom, None
        else:
            phi1, phi2 = _phi_functions(dt * L)
            a, b, c = torch.exp(dt * L), dt * phi1, (dt * phi2).to(self.dtype)
        return _StepCoefficients(dt, a.to(self.dtype), b.to(self.dtype), c)

    # ---------------------------------------------------------------------- transforms
    def to_spectral(self, w) -> torch.Tensor:
        """Fourier coefficients of vorticity ``(n, n)`` / ``(B, n, n)`` (resampled to n).

        The result always has a batch axis and zero mean mode.
        """
        w = _as_field(w, "vorticity", self.device, self.dtype)
        if w.ndim == 2:
            w = w.unsqueeze(0)
        if w.ndim != 3:
            raise InvalidInputError(f"vorticity must be (n, n) or (B, n, n), got {tuple(w.shape)}")
        m = _square_size(w, "vorticity")
        if m < 2:
            raise InvalidInputError(f"vorticity grid must be at least 2 x 2, got {m}")
        w_hat = _resample_hat(rfft2(w), self.n)
        w_hat[..., 0, 0] = 0.0
        return w_hat

    def to_physical(self, w_hat: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Grid values of Fourier coefficients, on the ``size`` grid (default n)."""
        size = self.n if size is None else _size(size, "size", minimum=2)
        return irfft2(_resample_hat(w_hat, size), size)

    # ------------------------------------------------------------------------ stepping
    def nonlinear(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Explicit part ``N(w) = f - u . grad w`` in Fourier space."""
        adv = _advection(w_hat, self._ops, self.n, dealias=self.dealias)
        return -adv if self.forcing_hat is None else self.forcing_hat - adv

    def _step(self, w_hat: torch.Tensor, c: _StepCoefficients, n_prev=None):
        """One step; returns ``(w_{n+1}, N(w_n))`` (the latter feeds the next AB2 step)."""
        n0 = self.nonlinear(w_hat)
        if n_prev is not None:  # two-step schemes (scheme="ab2")
            if self.diffusion == "cn":
                return c.a * w_hat + c.b * (1.5 * n0 - 0.5 * n_prev), n0
            return c.a * w_hat + c.b * n0 + c.c * (n0 - n_prev), n0
        if self.diffusion == "cn":
            base = c.a * w_hat
            predictor = base + c.b * n0
            return base + (0.5 * c.b) * (n0 + self.nonlinear(predictor)), n0
        stage = c.a * w_hat + c.b * n0
        return stage + c.c * (self.nonlinear(stage) - n0), n0

    def _advance(self, w_hat, c, steps, n_prev):
        multistep = self.scheme == "ab2"
        for _ in range(steps):
            w_hat, n_last = self._step(w_hat, c, n_prev)
            n_prev = n_last if multistep else None
        return w_hat, n_prev

    def step(self, w_hat: torch.Tensor, steps: int = 1, dt: float | None = None) -> torch.Tensor:
        """Advance Fourier coefficients ``(B, n, n // 2 + 1)`` by ``steps`` steps of ``dt``.

        Examples
        --------
        >>> ns = NavierStokes2d(16, nu=0.01, dt=0.01, forcing=None, diffusion="etd")
        >>> x, y = grid_coordinates(16)
        >>> w1 = ns.to_physical(ns.step(ns.to_spectral(torch.sin(2 * math.pi * x)), 10))
        >>> decay = math.exp(-0.01 * 4 * math.pi**2 * 0.1)
        >>> torch.allclose(w1[0], decay * torch.sin(2 * math.pi * x), rtol=0, atol=1e-14)
        True
        """
        steps = _size(steps, "steps", minimum=0)
        c = self._coefficients(self.dt if dt is None else _positive(dt, "dt"))
        return self._advance(w_hat, c, steps, None)[0]

    def _check_cfl(self, w_hat: torch.Tensor, dt: float, t: float, warned: bool) -> bool:
        if warned:
            return True
        cfl = cfl_number(w_hat, dt)
        if cfl > self.max_cfl:
            warnings.warn(
                f"advective CFL number {cfl:.3g} exceeds {self.max_cfl:g} at t={t:g} "
                f"(dt={dt:g}, n={self.n}); the run may be inaccurate or blow up, reduce dt",
                CFLWarning,
                stacklevel=3,
            )
            return True
        return False

    def simulate(
        self,
        w0,
        t_final: float,
        record_every: float | None = None,
        progress: bool = False,
        *,
        out_resolution: int | None = None,
        include_initial: bool = False,
        t_start: float = 0.0,
    ) -> torch.Tensor:
        """Integrate initial vorticities and record snapshots.

        Parameters
        ----------
        w0 : torch.Tensor or numpy.ndarray
            Initial vorticity ``(n', n')`` or ``(B, n', n')``; resampled spectrally when
            ``n' != n``; its mean is removed.
        t_final : float
            Integration time (> 0), a whole multiple of ``record_every``.
        record_every : float, optional
            Time between snapshots (default ``t_final``: only the final state).
        progress : bool
            Show a tqdm bar (only when stderr is a terminal).
        out_resolution : int, optional
            Grid of the returned snapshots (spectral resampling; default n).
        include_initial : bool
            Prepend the snapshot at time 0.
        t_start : float
            Time added to the times quoted in warnings and errors (for callers that
            continue a run).

        Returns
        -------
        torch.Tensor
            ``(B, T, m, m)`` with ``T = t_final / record_every`` (+1 with the initial
            state): snapshot ``j`` is the state at ``(j + 1) * record_every``.
        """
        t_final = _positive(t_final, "t_final")
        record_every = t_final if record_every is None else _positive(record_every, "record_every")
        ratio = t_final / record_every
        records = round(ratio)
        if records < 1 or abs(ratio - records) > 1e-9 * max(1.0, ratio):
            raise InvalidInputError(
                f"t_final ({t_final:g}) must be a whole multiple of record_every ({record_every:g})"
            )
        steps_per_record = max(1, math.ceil(record_every / self.dt - 1e-9))
        dt = record_every / steps_per_record
        if abs(dt - self.dt) > 1e-12 * self.dt:
            logger.info("dt shortened from %g to %g (whole steps per record)", self.dt, dt)
        m = self.n if out_resolution is None else _size(out_resolution, "out_resolution", 2)
        c = self._coefficients(dt)

        w_hat = self.to_spectral(w0)
        batch = w_hat.shape[0]
        total = records + int(bool(include_initial))
        out = torch.empty((batch, total, m, m), dtype=self.dtype, device=self.device)
        j = 0
        if include_initial:
            out[:, 0] = self.to_physical(w_hat, m)
            j = 1
        warned = self._check_cfl(w_hat, dt, t_start, False)

        from tqdm.auto import tqdm

        show = bool(progress) and sys.stderr.isatty()
        with tqdm(
            total=records * steps_per_record, disable=not show, unit="step", desc="navier-stokes"
        ) as bar:
            n_prev = None  # AB2 history (the first step is the RK2 one)
            for r in range(records):
                w_hat, n_prev = self._advance(w_hat, c, steps_per_record, n_prev)
                t = t_start + (r + 1) * record_every
                if not bool(torch.isfinite(w_hat).all()):
                    raise InvalidInputError(
                        f"the simulation became non-finite by t={t:g} (dt={dt:g}, n={self.n}, "
                        f"CFL at the last check may have been too large); reduce dt"
                    )
                warned = self._check_cfl(w_hat, dt, t, warned)
                out[:, j] = self.to_physical(w_hat, m)
                j += 1
                bar.update(steps_per_record)
        return out


# ------------------------------------------------------------------------------ samples
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
    resolution = _size(resolution, "resolution")
    sim_resolution = _size(sim_resolution, "sim_resolution")
    record_every = _positive(record_every, "record_every")
    burn_in = _positive(burn_in, "burn_in", allow_zero=True)
    t_in = _size(t_in, "t_in", minimum=1)
    available = None
    if t_final is not None:
        t_final = _positive(t_final, "t_final")
        available = (t_final - burn_in) / record_every
        if available < 0 or abs(available - round(available)) > 1e-9 * max(1.0, available):
            raise InvalidInputError(
                f"t_final - burn_in ({t_final - burn_in:g}) must be a whole non-negative "
                f"multiple of record_every ({record_every:g})"
            )
        available = round(available) + int(bool(include_initial))
    if t_out is None:
        t_out = 40 if available is None else available - t_in
    t_out = _size(t_out, "t_out", minimum=1)
    if available is not None and available != t_in + t_out:
        raise InvalidInputError(
            f"t_final gives {available} snapshots but t_in + t_out = {t_in + t_out}"
        )
    records = t_in + t_out - int(bool(include_initial))
    if burn_in > 0:
        b = burn_in / record_every
        if abs(b - round(b)) > 1e-9 * max(1.0, b):
            raise InvalidInputError(
                f"burn_in ({burn_in:g}) must be a whole multiple of record_every ({record_every:g})"
            )

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
    if initial == "grf":
        if sigma is None:
            sigma = math.sqrt(2.0) * default_sigma(alpha, tau, 2)
        w0 = gaussian_random_field(
            (sim_resolution, sim_resolution),
            alpha=alpha,
            tau=tau,
            sigma=sigma,
            rng=gens,
            device=solver.device,
            dtype=torch.float64,
        )
    elif initial == "decaying":
        w0 = decaying_turbulence_vorticity(
            sim_resolution,
            rng=gens,
            peak_wavenumber=peak_wavenumber,
            energy=energy,
            device=solver.device,
        )
    else:
        raise InvalidInputError(f"initial must be 'grf' or 'decaying', got {initial!r}")
    if batch != w0.shape[0]:  # pragma: no cover - as_generators guarantees it
        raise InvalidInputError("internal batch mismatch")
    skip = round(burn_in / record_every)
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
