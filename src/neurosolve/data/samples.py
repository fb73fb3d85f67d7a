"""Poisson datasets: random geometry and right-hand side in, reference solution out.

:func:`poisson_samples` is what ``neurosolve generate poisson`` stores: per sample, cell
flags from :func:`~neurosolve.data.geometry.obstacle_flags`, optionally a Darcy coefficient,
the system from :func:`~neurosolve.data.systems.poisson`, a right-hand side from
:mod:`neurosolve.data.rhs`, and its solution from
:func:`~neurosolve.data.systems.reference_solve`. Sample ``i`` depends on its own
generator only, so any shard of a dataset can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurosolve._util.progress import progress_bar
from neurosolve._util.validate import as_rng
from neurosolve.data.darcy import darcy_coefficient
from neurosolve.data.geometry import obstacle_flags
from neurosolve.data.rhs import RHS_KINDS
from neurosolve.data.systems import poisson, reference_solve
from neurosolve.errors import InvalidInputError

__all__ = ["POISSON_COEFFICIENTS", "poisson_samples"]

#: Coefficient kinds of :func:`poisson_samples`: ``a = 1`` or a Darcy field.
POISSON_COEFFICIENTS: tuple[str, ...] = ("constant", "piecewise", "lognormal", "rough")


def poisson_samples(
    rngs: Sequence[np.random.Generator],
    *,
    dim: int = 2,
    resolution: int = 32,
    geometry: str = "boxes",
    rhs: str = "divergence",
    boundary: str = "dirichlet",
    boundary_air: str | None = None,
    obstacles: int | None = None,
    coefficient: str = "constant",
    rtol: float = 1e-10,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson training samples: right-hand side + flags -> solution, one per generator.

    For each generator: flags from :func:`obstacle_flags` (``geometry``, ``obstacles``,
    ``boundary_air``), the system from :func:`poisson`, a right-hand side of kind ``rhs``,
    and the solution from :func:`reference_solve` to relative residual ``rtol``.

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One generator per sample (sample ``i`` depends on ``rngs[i]`` only).
    dim : {2, 3}
        Spatial dimension; the grid is ``resolution`` cells per axis.
    resolution : int
        Cells per axis.
    geometry : {"none", "boxes", "spheres", "mixed"}
        Obstacle kind.
    rhs : {"random", "smooth", "divergence", "smooth-divergence"}
        Right-hand side kind (see :func:`make_rhs`).
    boundary : {"dirichlet", "neumann"}
        Outer boundary condition.
    boundary_air : {None, "top", "free-surface"}
        AIR region (see :func:`obstacle_flags`).
    obstacles : int, optional
        Number of obstacles (default random 2..6).
    coefficient : {"constant", "piecewise", "lognormal", "rough"}
        ``"constant"``: ``a = 1``; otherwise ``a`` from
        :func:`neurosolve.data.darcy.darcy_coefficient` and ``x`` gets a third channel.
    rtol : float
        Relative residual of the reference solution.
    progress : bool
        Show a tqdm bar (only when stderr is a terminal).

    Returns
    -------
    x : numpy.ndarray, float64, ``(B, 2, *shape)``
        Channel 0: right-hand side field (0 outside fluid); channel 1: cell flags as float
        (AIR 0, FLUID 1, SOLID 2); channel 2 (variable coefficient only): ``a``.
    y : numpy.ndarray, float64, ``(B, 1, *shape)``
        Solution field (0 outside fluid).

    Examples
    --------
    >>> rngs = [np.random.default_rng([0, i]) for i in range(2)]
    >>> x, y = poisson_samples(rngs, resolution=8)
    >>> x.shape, y.shape
    ((2, 2, 8, 8), (2, 1, 8, 8))
    """
    if dim not in (2, 3):
        raise InvalidInputError(f"dim must be 2 or 3, got {dim}")
    if int(resolution) != resolution or resolution < 1:
        raise InvalidInputError(f"resolution must be a positive integer, got {resolution}")
    if rhs not in RHS_KINDS:
        raise InvalidInputError(f"unknown right-hand side {rhs!r}; choose one of {list(RHS_KINDS)}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise InvalidInputError(f"rtol must be in (0, 1), got {rtol}")
    if coefficient not in POISSON_COEFFICIENTS:
        raise InvalidInputError(
            f"unknown coefficient {coefficient!r}; choose one of {POISSON_COEFFICIENTS}"
        )
    rngs = list(rngs)
    shape = (int(resolution),) * dim
    channels = 2 if coefficient == "constant" else 3
    x = np.zeros((len(rngs), channels, *shape))
    y = np.zeros((len(rngs), 1, *shape))
    for k, rng in enumerate(progress_bar(rngs, enabled=progress, desc="poisson")):
        rng = as_rng(rng)
        flags = obstacle_flags(shape, geometry, rng, count=obstacles, boundary_air=boundary_air)
        a = None if coefficient == "constant" else darcy_coefficient(shape, coefficient, rng)
        system = poisson(shape, flags=flags, coefficient=a, boundary=boundary)
        b = RHS_KINDS[rhs](system, rng)
        u = reference_solve(system.A, b, rtol=rtol)
        x[k, 0] = system.grid.to_field(b)
        x[k, 1] = flags
        if a is not None:
            x[k, 2] = a
        y[k, 0] = system.grid.to_field(u)
    return x, y
