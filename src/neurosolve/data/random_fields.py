r"""Gaussian random fields on the periodic unit square / cube, and two-value thresholding.

The fields follow the FNO convention (Li et al., 2021): a centred Gaussian measure on the
unit torus with covariance operator

.. math::

    C = \sigma^2 (-\Delta + \tau^2 I)^{-\alpha},

sampled through its Karhunen-Loeve expansion on the grid's Fourier modes: the Fourier
coefficient of wavenumber :math:`k \in \mathbb{Z}^d` has variance
:math:`\lambda_k = \sigma^2 (4\pi^2 |k|^2 + \tau^2)^{-\alpha}` and the mean mode
(:math:`k = 0`) is set to zero, so every sample has zero mean.

White noise is drawn from a :class:`numpy.random.Generator` in float64 on the host, one
sample after the other, so a sample depends only on the state of its generator: sample ``i``
drawn with ``rng=[rng_0, ..., rng_{B-1}]`` is the same whether the batch holds one or many
samples, bit for bit (the transform is applied one sample at a time for that reason). The
transform runs in torch (float64) on the requested device and the result is cast to
``dtype`` at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from neurosolve._util.validate import integer, positive, real
from neurosolve.data.grids import check_shape
from neurosolve.errors import InvalidInputError

__all__ = [
    "default_sigma",
    "grf_eigenvalues",
    "gaussian_random_field",
    "threshold_field",
    "as_generators",
]


def default_sigma(alpha: float, tau: float, dim: int) -> float:
    r"""FNO default amplitude ``sigma = tau ** (alpha - dim / 2)``.

    With this choice the pointwise variance :math:`\sum_k \lambda_k \approx \sigma^2
    \int (4\pi^2|k|^2 + \tau^2)^{-\alpha} dk \propto \sigma^2 \tau^{d - 2\alpha}`
    does not depend on ``tau``. In 2D this is the FNO data's ``tau ** (0.5 (2 alpha - 2))``;
    in 3D it is ``tau ** (alpha - 1.5)`` (the same rule as FNO's 3D generator).

    Examples
    --------
    >>> round(default_sigma(2.5, 7.0, 2), 4)
    18.5203
    >>> round(default_sigma(2.5, 7.0, 3), 4)
    7.0
    """
    return float(tau) ** (float(alpha) - 0.5 * int(dim))


def _wavenumber_grid(shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """|k|^2 on the rfftn layout of ``shape`` (last axis halved)."""
    axes = []
    for i, n in enumerate(shape):
        if i == len(shape) - 1:
            k = torch.fft.rfftfreq(n, d=1.0 / n, device=device, dtype=dtype)
        else:
            k = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=dtype)
        view = [1] * len(shape)
        view[i] = -1
        axes.append(k.reshape(view))
    k2 = axes[0] ** 2
    for k in axes[1:]:
        k2 = k2 + k**2
    return k2


def grf_eigenvalues(
    shape,
    *,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Variances ``lambda_k`` of the Fourier coefficients, on the ``rfftn`` layout.

    Parameters
    ----------
    shape : sequence of int
        Grid shape, 2 or 3 axes.
    alpha, tau, sigma : float
        Covariance parameters; ``sigma=None`` uses :func:`default_sigma`.
    device, dtype
        Where and in which real dtype to build the array.

    Returns
    -------
    torch.Tensor
        Shape ``(*shape[:-1], shape[-1] // 2 + 1)``; the entry of the mean mode is 0.

    Examples
    --------
    >>> lam = grf_eigenvalues((8, 8), alpha=2.0, tau=1.0, sigma=1.0)
    >>> lam.shape
    torch.Size([8, 5])
    >>> float(lam[0, 0]), round(float(lam[0, 1]) * (4 * 3.14159265359**2 + 1) ** 2, 6)
    (0.0, 1.0)
    """
    shape = check_shape(shape, dims=(2, 3), minimum=2)
    alpha = positive(alpha, "alpha")
    tau = positive(tau, "tau", allow_zero=True)
    if sigma is None:
        sigma = default_sigma(alpha, tau, len(shape))
    sigma = positive(sigma, "sigma")
    k2 = _wavenumber_grid(shape, device, torch.float64)
    lam = sigma**2 * (4.0 * math.pi**2 * k2 + tau**2) ** (-alpha)
    lam.view(-1)[0] = 0.0  # zero-mean fields (also avoids 0 ** -alpha when tau == 0)
    return lam.to(dtype)


def as_generators(rng, batch: int | None) -> tuple[list[np.random.Generator], int]:
    """Normalize ``rng`` to a list of generators and a batch size.

    ``rng`` may be ``None`` (fresh unseeded generator), an int seed, a Generator (draws the
    ``batch`` samples one after another), or a sequence of Generators (one per sample; the
    batch size is its length).

    Examples
    --------
    >>> gens, b = as_generators([np.random.default_rng(0), np.random.default_rng(1)], None)
    >>> b
    2
    >>> gens, b = as_generators(3, 4)
    >>> len(gens), b, gens[0] is gens[3]
    (4, 4, True)
    """
    if isinstance(rng, Sequence) and not isinstance(rng, (str, bytes)):
        gens = list(rng)
        if not gens:
            raise InvalidInputError("rng is an empty sequence; give one Generator per sample")
        for g in gens:
            if not isinstance(g, np.random.Generator):
                raise InvalidInputError(
                    f"rng sequence must hold numpy Generators, got {type(g).__name__}"
                )
        if batch is not None and int(batch) != len(gens):
            raise InvalidInputError(
                f"batch={batch} does not match the {len(gens)} generators given as rng"
            )
        return gens, len(gens)
    if batch is None:
        batch = 1
    batch = integer(batch, "batch")
    if rng is None or isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise InvalidInputError(
            f"rng must be a numpy Generator, an int seed, a sequence of Generators or None, "
            f"got {type(rng).__name__}"
        )
    return [rng] * int(batch), int(batch)


def gaussian_random_field(
    shape,
    batch: int | None = None,
    *,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    rng=None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Samples of a zero-mean Gaussian random field on the periodic unit square or cube.

    The covariance is ``sigma**2 (-Laplacian + tau**2)**(-alpha)`` (FNO convention; see the
    module docstring). Each sample is built from ``prod(shape)`` float64 standard normals
    drawn from its numpy Generator: ``u = sqrt(N) * irfftn(sqrt(lambda_k) * rfftn(xi))``,
    i.e. the Fourier coefficient of mode ``k`` is ``sqrt(lambda_k)`` times a unit complex
    Gaussian with Hermitian symmetry.

    Parameters
    ----------
    shape : sequence of int
        Grid shape ``(n1, n2)`` or ``(n1, n2, n3)``, every size >= 2. Grid point ``j`` sits
        at ``x = j / n``.
    batch : int, optional
        Number of samples. Defaults to 1, or to ``len(rng)`` when ``rng`` is a sequence.
    alpha : float
        Smoothness exponent (> 0; the field is in L2 for ``alpha > d / 2``).
    tau : float
        Inverse length scale (>= 0).
    sigma : float, optional
        Amplitude; default ``tau ** (alpha - d / 2)`` (:func:`default_sigma`): 2D
        ``tau ** (alpha - 1)`` as in the FNO data, 3D ``tau ** (alpha - 1.5)``.
    rng : numpy.random.Generator, int, sequence of Generator or None
        Source of the white noise. A sequence gives one Generator per sample, which makes
        every sample reproducible on its own (the way datasets use it).
    device : torch.device or str, optional
        Device of the result (the transform runs there).
    dtype : torch.dtype
        Real dtype of the result (the transform runs in float64 and is then cast).

    Returns
    -------
    torch.Tensor
        Shape ``(batch, *shape)``.

    Notes
    -----
    Differs from FNO's reference generator in the noise: that code draws independent N(0, 1)
    real and imaginary parts for every mode of a full (non-Hermitian) spectrum and keeps the
    real part of the inverse transform, so its fields have twice the nominal covariance.
    Pass ``sigma=sqrt(2) * default_sigma(alpha, tau, 2)`` to match its statistics (the
    Navier-Stokes sample generator does so by default).

    Examples
    --------
    >>> u = gaussian_random_field((32, 32), 2, rng=np.random.default_rng(0))
    >>> u.shape, u.dtype
    (torch.Size([2, 32, 32]), torch.float32)
    >>> abs(float(u.double().mean())) < 1e-6
    True
    >>> rngs = [np.random.default_rng([7, i]) for i in range(3)]
    >>> v = gaussian_random_field((8, 8, 8), rng=rngs, dtype=torch.float64)
    >>> w = gaussian_random_field((8, 8, 8), rng=[np.random.default_rng([7, 1])],
    ...                           dtype=torch.float64)
    >>> torch.equal(v[1], w[0])
    True
    """
    shape = check_shape(shape, dims=(2, 3), minimum=2)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point and not dtype.is_complex):
        raise InvalidInputError(f"dtype must be a real floating torch dtype, got {dtype!r}")
    gens, batch = as_generators(rng, batch)
    lam = grf_eigenvalues(shape, alpha=alpha, tau=tau, sigma=sigma, device=device)
    noise = np.empty((batch, *shape), dtype=np.float64)
    for i, g in enumerate(gens):
        noise[i] = g.standard_normal(shape)
    xi = torch.from_numpy(noise).to(device=device)
    sqrt_lam = torch.sqrt(lam) * math.sqrt(math.prod(shape))
    out = torch.empty((batch, *shape), dtype=dtype, device=xi.device)
    # One transform per sample: batched FFT libraries (MKL, cuFFT) may pick a different
    # algorithm for a batch than for a single field, which changes the last bits. Looping
    # keeps sample i bitwise identical however the batch is composed; the cost is small
    # next to everything that consumes these fields.
    for i in range(batch):
        xi_hat = torch.fft.rfftn(xi[i])
        out[i] = torch.fft.irfftn(sqrt_lam * xi_hat, s=shape).to(dtype)
    return out


def threshold_field(field, high: float = 12.0, low: float = 3.0, level: float = 0.0):
    """Two-value piecewise-constant field: ``high`` where ``field >= level``, else ``low``.

    Applied to a Gaussian random field with the defaults this gives the coefficients of the
    FNO Darcy data (12 and 3).

    Parameters
    ----------
    field : torch.Tensor or numpy.ndarray
        Finite values.
    high, low : float
        The two values (finite).
    level : float
        Threshold.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Same type, shape and (floating) dtype as ``field`` (float64 for integer arrays).

    Examples
    --------
    >>> threshold_field(np.array([-1.0, 0.0, 2.0]))
    array([ 3., 12., 12.])
    >>> threshold_field(torch.tensor([0.5, -0.5]), high=1.0, low=1e-4, level=0.1)
    tensor([1.0000e+00, 1.0000e-04])
    """
    high = real(high, "high")
    low = real(low, "low")
    level = real(level, "level")
    if isinstance(field, torch.Tensor):
        if not bool(torch.isfinite(field).all()):
            raise InvalidInputError("field contains NaN or Inf values")
        dtype = field.dtype if field.dtype.is_floating_point else torch.float64
        hi = torch.tensor(high, dtype=dtype, device=field.device)
        lo = torch.tensor(low, dtype=dtype, device=field.device)
        return torch.where(field >= level, hi, lo)
    try:
        arr = np.asarray(field)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"field must be an array or tensor, got {type(field)}") from exc
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InvalidInputError(f"field must be real numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("field contains NaN or Inf values")
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return np.where(arr >= level, high, low).astype(dtype, copy=False)
