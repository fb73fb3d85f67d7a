"""Darcy flow data: ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the boundary.

The coefficient families, the Darcy system and its solution, and the ``a -> u`` pairs of
the FNO Darcy benchmark (:func:`darcy_samples`). It builds on :mod:`neurosolve.data.systems`
only; :mod:`neurosolve.data.samples` uses its coefficients for variable-coefficient Poisson
data.

Coefficients ``a`` come from Gaussian random fields
(:func:`neurosolve.data.random_fields.gaussian_random_field`, covariance
``(-Laplacian + tau^2)^(-alpha)``), in three kinds:

``"piecewise"``
    The FNO Darcy benchmark: ``a = 12`` where a GRF with ``alpha = 2, tau = 3`` is
    non-negative and ``a = 3`` elsewhere (contrast 4, sharp interfaces).
``"lognormal"``
    ``a = exp(g)`` with ``g`` a GRF with ``alpha = 2, tau = 3`` scaled to unit pointwise
    standard deviation (smooth; within one sample the contrast ``max a / min a`` is
    typically 10 to a few hundred).
``"rough"``
    ``a = exp(g)`` with ``g`` a rougher GRF (``alpha = 1.5, tau = 3``) of pointwise standard
    deviation 2, clipped to ``|g| <= ln 100``: contrast up to ``1e4`` with fine-scale
    structure, a hard case for both solvers and operators.

The equation is discretized by :func:`neurosolve.data.systems.poisson` (cell-centred finite
volumes, harmonic-mean face coefficients, ``u = 0`` at the boundary faces), so grid values
are cell averages at ``x = (i + 1/2) / n``. This differs from the FNO data, which sample
``a`` and ``u`` on the vertices of a grid that includes the boundary; the cell-centred
layout keeps every grid size usable and the matrix SPD. Solutions are computed to a
relative residual of ``1e-10`` (checked) by a direct solve on small grids and pyamg
smoothed aggregation with CG above (:func:`neurosolve.data.systems.reference_solve`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from neurosolve._util.progress import progress_bar
from neurosolve._util.validate import as_rng, real
from neurosolve.data.grids import check_shape
from neurosolve.data.systems import LinearSystem, poisson, reference_solve
from neurosolve.errors import InvalidInputError

__all__ = ["COEFFICIENT_KINDS", "darcy_coefficient", "darcy_system", "solve_darcy", "darcy_samples"]

COEFFICIENT_KINDS: tuple[str, ...] = ("piecewise", "lognormal", "rough")

# (alpha, tau) of the underlying random field, per kind
_FIELD = {"piecewise": (2.0, 3.0), "lognormal": (2.0, 3.0), "rough": (1.5, 3.0)}
_ROUGH_LOG_STD = 2.0
_ROUGH_LOG_CLIP = math.log(100.0)


def _normalized_grf(shape: tuple[int, ...], rng: np.random.Generator, alpha: float, tau: float):
    """GRF sample scaled to unit pointwise standard deviation (exact, from the spectrum)."""
    import torch

    from neurosolve.data.random_fields import gaussian_random_field, grf_eigenvalues

    lam = grf_eigenvalues(shape, alpha=alpha, tau=tau, sigma=1.0)
    # pointwise variance = sum over all modes; the rfft layout stores half of them
    weight = torch.full(lam.shape, 2.0, dtype=lam.dtype)
    weight[..., 0] = 1.0
    if shape[-1] % 2 == 0:
        weight[..., -1] = 1.0
    std = math.sqrt(float((lam * weight).sum()))
    g = gaussian_random_field(
        shape, rng=[rng], alpha=alpha, tau=tau, sigma=1.0 / std, dtype=torch.float64
    )
    return g[0].numpy()


def darcy_coefficient(
    shape: int | Sequence[int],
    kind: str = "piecewise",
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Random positive coefficient field ``a`` of the given kind (see module docstring).

    Parameters
    ----------
    shape : int or sequence of int
        Grid size: an int ``n`` means ``(n, n)``; 2 or 3 axes, each >= 2.
    kind : {"piecewise", "lognormal", "rough"}
        Coefficient family.
    rng : numpy.random.Generator or int
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        float64, strictly positive, shape ``shape``.

    Examples
    --------
    >>> a = darcy_coefficient(16, "piecewise", np.random.default_rng(0))
    >>> a.shape, sorted(set(np.unique(a).tolist()) - {3.0, 12.0})
    ((16, 16), [])
    >>> r = darcy_coefficient((16, 16), "rough", 1)
    >>> bool(r.min() > 0 and r.max() / r.min() <= 1e4 * (1 + 1e-12))
    True
    """
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape), int(shape))
    shape = check_shape(shape, dims=(2, 3), minimum=2)
    if kind not in COEFFICIENT_KINDS:
        raise InvalidInputError(
            f"unknown Darcy coefficient kind {kind!r}; choose one of {COEFFICIENT_KINDS}"
        )
    rng = as_rng(rng)
    alpha, tau = _FIELD[kind]
    g = _normalized_grf(shape, rng, alpha, tau)
    if kind == "piecewise":
        from neurosolve.data.random_fields import threshold_field

        return threshold_field(g, high=12.0, low=3.0, level=0.0)
    if kind == "lognormal":
        return np.exp(g)
    return np.exp(np.clip(_ROUGH_LOG_STD * g, -_ROUGH_LOG_CLIP, _ROUGH_LOG_CLIP))


def _check_a(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise InvalidInputError(f"coefficient a must be real-valued, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim not in (2, 3):
        raise InvalidInputError(f"coefficient a must be a 2-D or 3-D array, got shape {a.shape}")
    check_shape(a.shape)
    if not np.isfinite(a).all():
        raise InvalidInputError("coefficient a contains NaN or Inf")
    if (a <= 0).any():
        raise InvalidInputError(f"coefficient a must be > 0 everywhere (min {a.min():.3g})")
    return a


def _rhs_values(f, shape: tuple[int, ...]) -> np.ndarray:
    f = np.asarray(f)
    if f.dtype.kind not in "biuf":
        raise InvalidInputError(f"forcing f must be real-valued, got dtype {f.dtype}")
    f = f.astype(np.float64)
    if f.ndim == 0:
        f = np.full(shape, float(f))
    if f.shape != shape:
        raise InvalidInputError(f"forcing f shape {f.shape} != coefficient shape {shape}")
    if not np.isfinite(f).all():
        raise InvalidInputError("forcing f contains NaN or Inf")
    return f.ravel()


def darcy_system(a: np.ndarray, f: float | np.ndarray = 1.0) -> LinearSystem:
    """The Darcy system ``-div(a grad u) = f`` on the unit square (or cube), ``u = 0`` outside.

    Parameters
    ----------
    a : numpy.ndarray
        Cell coefficients, shape ``(n1, n2)`` or ``(n1, n2, n3)``, all > 0.
    f : float or numpy.ndarray
        Forcing, constant or per cell (same shape as ``a``); default 1 as in FNO.

    Returns
    -------
    LinearSystem
        SPD system with ``b`` set; unknowns are all cells in C order.

    Examples
    --------
    >>> s = darcy_system(np.ones((4, 4)))
    >>> s.n, s.b[:3], s.name
    (16, array([1., 1., 1.]), 'darcy-4x4')
    """
    a = _check_a(a)
    b = _rhs_values(f, a.shape)
    name = "darcy-" + "x".join(map(str, a.shape))
    system = poisson(a.shape, coefficient=a, boundary="dirichlet", name=name)
    system.b = b
    return system


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0, rtol: float = 1e-10) -> np.ndarray:
    """Solve the Darcy problem to relative residual ``rtol`` (checked); return ``u`` on the grid.

    Parameters
    ----------
    a : numpy.ndarray
        Cell coefficients (> 0), 2-D or 3-D.
    f : float or numpy.ndarray
        Forcing.
    rtol : float
        Required ``||b - A u|| / ||b||``.

    Returns
    -------
    numpy.ndarray
        ``u`` with the shape of ``a``.

    Examples
    --------
    >>> u = solve_darcy(np.ones((8, 8)))
    >>> u.shape, bool(u.min() > 0), bool(np.allclose(u, u.T))
    ((8, 8), True, True)
    """
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise InvalidInputError(f"rtol must be in (0, 1), got {rtol}")
    system = darcy_system(a, f)
    u = reference_solve(system.A, system.b, rtol=rtol)
    return u.reshape(system.grid.shape)


def darcy_samples(
    rngs: Sequence[np.random.Generator],
    *,
    resolution: int = 64,
    kind: str = "piecewise",
    f: float = 1.0,
    dim: int = 2,
    rtol: float = 1e-10,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Darcy training pairs ``a -> u``, one per generator in ``rngs``.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One per sample; sample ``i`` depends on ``rngs[i]`` only.
    resolution : int
        Cells per axis (>= 2).
    kind : {"piecewise", "lognormal", "rough"}
        Coefficient family (see module docstring).
    f : float
        Constant forcing.
    dim : {2, 3}
        Spatial dimension (the Darcy benchmark is 2-D).
    rtol : float
        Relative residual of every solution (checked).
    progress : bool
        tqdm bar (only when stderr is a terminal).

    Returns
    -------
    x : numpy.ndarray, float64, ``(B, 1, *shape)``
        Coefficients ``a``.
    y : numpy.ndarray, float64, ``(B, 1, *shape)``
        Solutions ``u``.

    Examples
    --------
    >>> x, y = darcy_samples([np.random.default_rng([0, i]) for i in range(2)], resolution=8)
    >>> x.shape, y.shape
    ((2, 1, 8, 8), (2, 1, 8, 8))
    """
    if dim not in (2, 3):
        raise InvalidInputError(f"dim must be 2 or 3, got {dim}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise InvalidInputError(f"resolution must be an integer >= 2, got {resolution}")
    if kind not in COEFFICIENT_KINDS:
        raise InvalidInputError(
            f"unknown Darcy coefficient kind {kind!r}; choose one of {COEFFICIENT_KINDS}"
        )
    f = real(f, "forcing f")
    rngs = list(rngs)
    shape = (int(resolution),) * dim
    x = np.zeros((len(rngs), 1, *shape))
    y = np.zeros((len(rngs), 1, *shape))
    for k, rng in enumerate(progress_bar(rngs, enabled=progress, desc="darcy")):
        a = darcy_coefficient(shape, kind, as_rng(rng))
        x[k, 0] = a
        y[k, 0] = solve_darcy(a, f, rtol=rtol)
    return x, y
