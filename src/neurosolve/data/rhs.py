"""Right-hand sides of Poisson systems: random, smooth, and pressure-projection divergences.

Each generator takes a :class:`~neurosolve.data.systems.LinearSystem` and a random source
and returns a vector over its unknowns, made *compatible* (zero sum over every pinned
pure-Neumann component, see :meth:`~neurosolve.data.systems.LinearSystem.make_compatible`),
so the pinned system solves the singular one exactly. :data:`RHS_KINDS` names them for the
dataset generators and the benchmark suites; :func:`make_rhs` picks one by name.
"""

from __future__ import annotations

import numpy as np

from neurosolve._util.validate import as_rng
from neurosolve.data.grids import SOLID, axis_slices
from neurosolve.data.systems import LinearSystem, _need_grid
from neurosolve.errors import InvalidInputError

__all__ = ["RHS_KINDS", "divergence_rhs", "make_rhs", "random_rhs", "smooth_rhs"]


def random_rhs(system: LinearSystem, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Standard normal right-hand side on the unknowns, made compatible (see module docs).

    Examples
    --------
    >>> from neurosolve.data.systems import poisson
    >>> s = poisson((4, 4), boundary="neumann")
    >>> b = random_rhs(s, np.random.default_rng(0))
    >>> b.shape, bool(abs(b.sum()) < 1e-12)
    ((16,), True)
    """
    rng = as_rng(rng)
    return system.make_compatible(rng.standard_normal(system.n))


def _grf(shape: tuple[int, ...], rng: np.random.Generator, **params) -> np.ndarray:
    """One float64 Gaussian random field sample on ``shape`` (axes of size 1 allowed).

    :func:`neurosolve.data.random_fields.gaussian_random_field` needs >= 2 cells per axis;
    a size-1 axis is sampled on 2 cells and cropped.
    """
    import torch

    from neurosolve.data.random_fields import gaussian_random_field

    padded = tuple(max(n, 2) for n in shape)
    u = gaussian_random_field(padded, rng=[rng], dtype=torch.float64, **params)[0].numpy()
    return np.ascontiguousarray(u[tuple(slice(0, n) for n in shape)])


def smooth_rhs(system: LinearSystem, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Smooth random right-hand side: a Gaussian random field at the fluid cells.

    The field is :func:`neurosolve.data.random_fields.gaussian_random_field` with its
    defaults (``alpha=2.5, tau=7``, periodic on the unit square / cube), scaled to unit
    root-mean-square over the grid and made compatible (see module docs).

    Examples
    --------
    >>> from neurosolve.data.systems import poisson
    >>> s = poisson((8, 8))
    >>> b = smooth_rhs(s, 0)
    >>> b.shape, bool(np.isfinite(b).all())
    ((64,), True)
    """
    rng = as_rng(rng)
    grid = _need_grid(system, "smooth_rhs")
    field = _grf(grid.shape, rng)
    rms = float(np.sqrt(np.mean(field**2)))
    if rms > 0:
        field /= rms
    return system.make_compatible(grid.to_vector(field))


def divergence_rhs(
    system: LinearSystem,
    rng: np.random.Generator | int | None = None,
    *,
    velocity: str = "noise",
) -> np.ndarray:
    """Right-hand side of a pressure projection: ``-div u`` of a random face velocity.

    A staggered (MAC) velocity, one normal component per cell face, is drawn; faces
    touching a SOLID cell, and domain-boundary faces when the boundary is Neumann, get
    zero normal velocity (no flow through walls). The result is
    ``b_i = -sum_d (u_{i+1/2} - u_{i-1/2}) / h_d`` at the fluid cells, the right-hand side
    of ``-lap p = -div u`` in a projection step (up to the ``1/dt`` factor).

    Compatibility: over a fluid component without Dirichlet contact every boundary face is
    a wall with zero velocity, so the face fluxes cancel and ``b`` sums to zero there (the
    residual rounding is removed by :meth:`LinearSystem.make_compatible`).

    Parameters
    ----------
    system : LinearSystem
        System with grid information.
    rng : numpy.random.Generator or int
        Source of randomness.
    velocity : {"noise", "smooth"}
        ``"noise"``: independent standard normal face velocities (every scale present);
        ``"smooth"``: each component a Gaussian random field (``alpha=2.5, tau=7``) on its
        face grid with unit RMS, closer to the intermediate velocity of a simulation.

    Examples
    --------
    >>> from neurosolve.data.systems import poisson
    >>> s = poisson((6, 6), boundary="neumann")
    >>> b = divergence_rhs(s, np.random.default_rng(0))
    >>> bool(abs(b.sum()) < 1e-10)
    True
    """
    if velocity not in ("noise", "smooth"):
        raise InvalidInputError(f"velocity must be 'noise' or 'smooth', got {velocity!r}")
    rng = as_rng(rng)
    grid = _need_grid(system, "divergence_rhs")
    shape, ndim = grid.shape, grid.ndim
    solid = grid.flags == SOLID
    div = np.zeros(shape)
    for d in range(ndim):
        fshape = list(shape)
        fshape[d] += 1
        if velocity == "noise":
            u = rng.standard_normal(fshape)
        else:
            u = _grf(tuple(fshape), rng)
            u /= max(float(np.sqrt(np.mean(u**2))), np.finfo(float).tiny)
        # The same slices serve cells and faces: face k along d lies between cells k-1 and
        # k, so faces lo/hi of the face array are the lower/upper faces of every cell, and
        # the cells' lo/hi pairs border the interior faces 1..n-1.
        lo, hi, first, last = axis_slices(ndim, d)
        inner = tuple(slice(1, -1) if a == d else slice(None) for a in range(ndim))
        u[inner] = np.where(solid[lo] | solid[hi], 0.0, u[inner])
        for slab in (first, last):  # domain-boundary faces: walls are closed
            closed = True if grid.boundary == "neumann" else solid[slab]
            u[slab] = np.where(closed, 0.0, u[slab])
        div += (u[hi] - u[lo]) / grid.spacing[d]
    return system.make_compatible(-grid.to_vector(div))


def _smooth_divergence_rhs(system: LinearSystem, rng=None) -> np.ndarray:
    return divergence_rhs(system, rng, velocity="smooth")


RHS_KINDS = {
    "random": random_rhs,
    "smooth": smooth_rhs,
    "divergence": divergence_rhs,
    "smooth-divergence": _smooth_divergence_rhs,
}


def make_rhs(
    system: LinearSystem, kind: str, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Right-hand side by name (a key of ``RHS_KINDS``).

    ``"random"`` (:func:`random_rhs`), ``"smooth"`` (:func:`smooth_rhs`), ``"divergence"``
    (:func:`divergence_rhs` of a noise velocity) or ``"smooth-divergence"`` (of a smooth
    velocity).

    Examples
    --------
    >>> from neurosolve.data.systems import poisson
    >>> make_rhs(poisson((4, 4)), "random", 0).shape
    (16,)
    """
    if kind not in RHS_KINDS:
        raise InvalidInputError(
            f"unknown right-hand side {kind!r}; choose one of {list(RHS_KINDS)}"
        )
    return RHS_KINDS[kind](system, rng)

