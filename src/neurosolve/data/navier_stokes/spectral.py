"""Spectral toolbox of the periodic unit square: transforms, derivatives, the advection term.

Everything the Navier-Stokes solver, its data and the a-posteriori estimator of
:mod:`neurosolve.operators.refine` compute in Fourier space lives here: the batch-invariant
``rfft2`` / ``irfft2`` pair, integer wavenumbers, Orszag's 2/3 mask, cached multipliers
(derivatives, inverse Laplacian, velocity from vorticity), spectral resampling, the CFL
number, the shell energy spectrum, and the one pseudo-spectral advection term
``u . grad w`` with its dealiasing rules (2/3 truncation for the solver, 3/2 zero padding
for the estimator).

Conventions: fields are real tensors ``(..., n, n)`` with entry ``[..., i, j]`` at
``(x, y) = (i / n, j / n)`` (axis -2 is x); spectral arrays use the ``rfft2`` layout
``(..., n, n // 2 + 1)`` normalized as ``norm="forward"`` (Fourier coefficients, so
``w(x) = sum_k w_hat_k exp(2 pi i k . x)``). Wavenumbers are integers; derivatives carry
the ``2 pi``.
"""

from __future__ import annotations

import functools
import math

import torch

from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError

__all__ = [
    "DEALIAS_RULES",
    "advection_term",
    "cfl_number",
    "dealias_mask",
    "downsample_spectral",
    "energy_spectrum",
    "grid_coordinates",
    "irfft2",
    "resample_spectral",
    "rfft2",
    "spectral_derivative",
    "spectral_laplacian",
    "stream_function",
    "velocity_from_vorticity",
    "wavenumbers",
]

#: Dealiasing rules of :func:`advection_term`: 2/3 truncation, 3/2 zero padding, none.
DEALIAS_RULES: tuple[str, ...] = ("2/3", "3/2", "none")


# ------------------------------------------------------------------------------ shapes
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



# -------------------------------------------------------------------------- transforms
def _fft_x(w: torch.Tensor, *, inverse: bool, norm: str) -> torch.Tensor:
    """Complex FFT along axis -2, always computed on contiguous rows.

    Given a transform along a strided axis, torch lets MKL run it across the columns in
    place when every leading axis has size 1, and copies to contiguous rows otherwise; the
    two kernels round differently, so a sample alone and the same sample in a batch
    differed in the last bit. Transposing first gives every batch size the row kernel,
    whose results do not depend on the number of rows (CPU, one intra-op thread).
    """
    transform = torch.fft.ifft if inverse else torch.fft.fft
    rows = transform(w.transpose(-1, -2).contiguous(), dim=-1, norm=norm)
    return rows.transpose(-1, -2).contiguous()


def rfft2(w: torch.Tensor, norm: str = "forward") -> torch.Tensor:
    """Real 2D FFT over the last two axes, one axis at a time (batch-invariant on CPU).

    Same values as ``torch.fft.rfft2(w, norm=norm)`` up to rounding; a field gets the same
    bits whatever batch it is transformed in.

    Examples
    --------
    >>> w = torch.randn(3, 8, 8, dtype=torch.float64)
    >>> torch.allclose(rfft2(w), torch.fft.rfft2(w, norm="forward"))
    True
    >>> bool((rfft2(w)[1] == rfft2(w[1:2])[0]).all())
    True
    """
    return _fft_x(torch.fft.rfft(w, dim=-1, norm=norm), inverse=False, norm=norm)


def irfft2(w_hat: torch.Tensor, n: int | None = None, norm: str = "forward") -> torch.Tensor:
    """Inverse of :func:`rfft2` onto an ``n x n`` grid (default ``w_hat.shape[-2]``).

    Examples
    --------
    >>> w = torch.randn(2, 6, 6, dtype=torch.float64)
    >>> torch.allclose(irfft2(rfft2(w)), w)
    True
    """
    n = int(w_hat.shape[-2]) if n is None else int(n)
    return torch.fft.irfft(_fft_x(w_hat, inverse=True, norm=norm), n=n, dim=-1, norm=norm)


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
    n = integer(n, "n", minimum=2)
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
    # without the 2/3 mask: the plain and the 3/2-padded products
    vel_grad_full = torch.stack((dy * inv_lap, -dx * inv_lap, dx, dy)).contiguous()
    out_mask_full = torch.ones_like(out_mask)
    out_mask_full[0, 0] = 0.0
    return {
        "k2": k2,
        "lap": -four_pi2_k2,
        "inv_lap": inv_lap,
        "dx": dx.contiguous(),
        "dy": dy.contiguous(),
        "mask": mask,
        "vel_grad": vel_grad,
        "out_mask": out_mask,
        "vel_grad_full": vel_grad_full,
        "out_mask_full": out_mask_full,
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



def _dealias_rule(dealias: bool | str) -> str:
    if dealias is True:
        return "2/3"
    if dealias is False or dealias is None:
        return "none"
    if dealias not in DEALIAS_RULES:
        raise InvalidInputError(
            f"dealias must be True, False or one of {DEALIAS_RULES}, got {dealias!r}"
        )
    return dealias


def advection_term(
    w_hat: torch.Tensor, *, dealias: bool | str = True, norm: str = "forward"
) -> torch.Tensor:
    """Fourier coefficients of the nonlinear term ``u . grad w``, pseudo-spectrally.

    The four factors ``(u, v, w_x, w_y)`` are formed in Fourier space, brought to a grid
    in one stacked inverse transform, multiplied there and transformed back. Rules:

    - ``"2/3"`` (``True``, the solver's): the 2/3 mask (:func:`dealias_mask`) is applied to
      the input and to the result, so the kept modes of the result are those of the exact
      (Galerkin-truncated) product of the kept modes.
    - ``"3/2"``: the factors are zero-padded to a grid ``ceil(3 n / 2)``, multiplied there
      and truncated back to the modes ``|k| < n / 2``: the exact projection of the product
      of the band-limited fields onto the grid's modes (Nyquist modes dropped). Needs
      ``norm="forward"``.
    - ``"none"`` (``False``): the plain product on the n-grid (aliased).

    The mean mode of the result is 0 (``u . grad w = div(u w)``).

    Parameters
    ----------
    w_hat : torch.Tensor
        Complex ``(..., n, n // 2 + 1)``.
    dealias : bool or {"2/3", "3/2", "none"}
        Dealiasing rule.
    norm : str
        FFT normalization of ``w_hat`` (``"forward"`` = Fourier coefficients).

    Examples
    --------
    >>> x, y = grid_coordinates(16, dtype=torch.float64)
    >>> w = torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y)  # one |k| shell
    >>> float(irfft2(advection_term(rfft2(w))).abs().max()) < 1e-14
    True
    >>> float(irfft2(advection_term(rfft2(w), dealias="3/2")).abs().max()) < 1e-14
    True
    """
    n = _spectral_size(w_hat)
    return _advection(w_hat, _ops(w_hat, n), n, dealias=dealias, norm=norm)


def _advection(w_hat, ops, n, *, dealias: bool | str = True, norm: str = "forward"):
    rule = _dealias_rule(dealias)
    if rule == "2/3":
        mult, out_mask = ops["vel_grad"], ops["out_mask"]
    else:
        mult, out_mask = ops["vel_grad_full"], ops["out_mask_full"]
    # (u, v, w_x, w_y) in one stacked inverse transform, the product, one forward transform.
    # (Transforming only the non-zero k_y columns along x was measured: no reliable gain.)
    shape = (4,) + (1,) * (w_hat.ndim - 2) + tuple(mult.shape[-2:])
    factors = w_hat.unsqueeze(0) * mult.reshape(shape)
    grid = n
    if rule == "3/2":
        if norm != "forward":
            raise InvalidInputError(f"dealias='3/2' needs norm='forward', got {norm!r}")
        grid = (3 * n + 1) // 2
        factors = _resample_hat(factors, grid)
    fields = irfft2(factors, grid, norm=norm)
    product = rfft2(fields[0] * fields[2] + fields[1] * fields[3], norm=norm)
    if rule == "3/2":
        product = _resample_hat(product, n)
    return product * out_mask


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
    size = integer(size, "size", minimum=2)
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
        size = integer(size, "size", minimum=2)
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
    n = integer(n, "n", minimum=1)
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
