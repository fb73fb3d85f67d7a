"""Geometry and coefficient fields of Poisson problems: obstacles, inclusions, moving scenes.

Pure builders in the manner of a problem gallery: each takes a grid shape and a random
generator and returns a cell-flag array (see :mod:`neurosolve.data.grids`) or a coefficient
field, ready for :func:`neurosolve.data.systems.poisson`. :func:`obstacle_flags` places
random boxes and balls (and optionally an AIR region), :func:`moving_obstacle_flags` moves
balls through a sequence of frames, :func:`contrast_coefficient` draws two-valued
high-contrast inclusions. Obstacle shapes are drawn in unit-cube coordinates, so one seed
gives the same scene at every resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurosolve._util.validate import as_rng, integer, positive
from neurosolve.data.grids import AIR, FLUID, SOLID, check_shape
from neurosolve.errors import InvalidInputError

__all__ = [
    "BOUNDARY_AIR",
    "GEOMETRIES",
    "contrast_coefficient",
    "moving_obstacle_flags",
    "obstacle_flags",
]

#: Obstacle kinds of :func:`obstacle_flags`.
GEOMETRIES: tuple[str, ...] = ("none", "boxes", "spheres", "mixed")
#: AIR regions of :func:`obstacle_flags` (``None``: no AIR cells).
BOUNDARY_AIR: tuple[str | None, ...] = (None, "top", "free-surface")


def contrast_coefficient(
    shape: tuple[int, ...], contrast: float, rng: np.random.Generator, *, correlation: float = 0.1
) -> np.ndarray:
    """Piecewise-constant coefficient with values 1 and ``contrast`` on smooth inclusions.

    White noise is smoothed by a Gaussian filter of width ``correlation`` (a fraction of
    the domain) and thresholded at its median, so about half of the cells carry each
    value and the interfaces are smooth curves/surfaces at the grid scale.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (2D or 3D).
    contrast : float
        Ratio of the two coefficient values (> 0).
    rng : numpy.random.Generator
        Source of the noise.
    correlation : float
        Filter width as a fraction of the smallest side.

    Returns
    -------
    numpy.ndarray
        Array of ``shape`` holding ``1.0`` and ``contrast``.

    Examples
    --------
    >>> a = contrast_coefficient((16, 16), 1e4, np.random.default_rng(0))
    >>> sorted(np.unique(a).tolist())
    [1.0, 10000.0]
    """
    from scipy.ndimage import gaussian_filter

    contrast = positive(contrast, "contrast")
    sigma = max(correlation * min(shape), 0.5)
    noise = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return np.where(noise > np.median(noise), float(contrast), 1.0)


def moving_obstacle_flags(
    shape: tuple[int, ...],
    frames: int,
    rng: np.random.Generator,
    *,
    count: int = 3,
    radius: float = 0.12,
    speed: float = 0.05,
    boundary_air: str | None = None,
) -> list[np.ndarray]:
    """Cell flags of ``frames`` time steps with spherical obstacles moving through the domain.

    Sphere centres start at random positions and move in straight lines with random
    directions, ``speed`` (a fraction of the domain) per frame, reflecting at the walls.
    With ``boundary_air="top"`` the last layer along axis 0 is AIR in every frame: with a
    Neumann outer boundary this is a closed box with solid walls and an open top, the
    pressure system of a smoke simulation (the AIR cells carry ``p = 0``, so it is SPD).

    Parameters
    ----------
    shape : tuple of int
        Grid shape (2D or 3D).
    frames : int
        Number of frames (>= 1).
    rng : numpy.random.Generator
        Source of the initial positions and directions.
    count : int
        Number of spheres.
    radius : float
        Sphere radius as a fraction of the domain side.
    speed : float
        Distance moved per frame as a fraction of the domain side.
    boundary_air : {None, "none", "top"}
        ``"top"``: the last layer along axis 0 is AIR (overriding obstacles there). The
        trajectories do not depend on it, so one seed moves the same spheres either way.

    Returns
    -------
    list of numpy.ndarray
        One int8 flags array (FLUID / SOLID, and AIR with ``boundary_air``) per frame.

    Examples
    --------
    >>> flags = moving_obstacle_flags((16, 16), 3, np.random.default_rng(0), count=1)
    >>> len(flags), flags[0].shape, bool((flags[0] != flags[2]).any())
    (3, (16, 16), True)
    >>> top = moving_obstacle_flags((8, 8), 2, np.random.default_rng(0), boundary_air="top")
    >>> bool((top[1][-1] == AIR).all()), bool((top[1][:-1] == AIR).any())
    (True, False)
    """
    frames = integer(frames, "frames")
    if boundary_air == "none":
        boundary_air = None
    if boundary_air not in (None, "top"):
        raise InvalidInputError(
            f"unknown boundary_air {boundary_air!r} for moving obstacles; choose None or 'top'"
        )
    ndim = len(shape)
    low, high = radius, 1.0 - radius
    centres = rng.uniform(low, high, size=(count, ndim))
    directions = rng.standard_normal((count, ndim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    velocity = speed * directions
    coords = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    out = []
    for _ in range(frames):
        solid = np.zeros(shape, dtype=bool)
        for c in centres:
            dist2 = sum((x - ci) ** 2 for x, ci in zip(coords, c, strict=True))
            solid |= dist2 <= radius**2
        flags = np.full(shape, FLUID, dtype=np.int8)
        flags[solid] = SOLID
        if boundary_air == "top":
            flags[-1, ...] = AIR
        out.append(flags)
        centres = centres + velocity
        # Reflect at the walls so the obstacles stay inside the domain.
        over, under = centres > high, centres < low
        centres = np.where(over, 2 * high - centres, np.where(under, 2 * low - centres, centres))
        velocity = np.where(over | under, -velocity, velocity)
    return out


def obstacle_flags(
    shape: Sequence[int],
    kind: str = "boxes",
    rng: np.random.Generator | int | None = None,
    *,
    count: int | None = None,
    size: tuple[float, float] = (0.1, 0.3),
    boundary_air: str | None = None,
    max_solid_fraction: float = 0.5,
) -> np.ndarray:
    """Random cell flags with SOLID obstacles (and optionally an AIR region).

    Obstacle geometry is drawn in unit-cube coordinates (cell centres ``(i + 1/2) / n``),
    so one seed gives the same shapes at every resolution. Obstacles that would push the
    solid fraction above ``max_solid_fraction`` are skipped, so fluid always remains.

    Parameters
    ----------
    shape : sequence of int
        Cells per axis (2 or 3 axes).
    kind : {"none", "boxes", "spheres", "mixed"}
        Axis-aligned boxes, balls (discs in 2D), or each obstacle a box or a ball at random.
    rng : numpy.random.Generator or int
        Source of randomness (an int is a seed).
    count : int, optional
        Number of obstacles; default drawn from 2..6.
    size : (float, float)
        Range of box edge lengths (fraction of the domain); balls get radii of half that.
    boundary_air : {None, "none", "top", "free-surface"}
        AIR region, with axis 0 taken as vertical: ``"top"`` makes the last layer along
        axis 0 AIR (an open top, as in smoke simulations); ``"free-surface"`` makes every
        cell above a random level (55-85 % of the height) AIR (liquid in a tank). Use these
        to make test geometries differ from training ones.
    max_solid_fraction : float
        Upper bound on the fraction of solid cells.

    Returns
    -------
    numpy.ndarray of int8
        ``FLUID`` (1), ``SOLID`` (2), ``AIR`` (0) per cell.

    Examples
    --------
    >>> f = obstacle_flags((16, 16), "spheres", np.random.default_rng(0), count=3)
    >>> f.shape, f.dtype, bool((f == FLUID).any())
    ((16, 16), dtype('int8'), True)
    >>> obstacle_flags((4, 4), "none", 0, boundary_air="top")[:, 0]
    array([1, 1, 1, 0], dtype=int8)
    """
    shape = check_shape(shape)
    rng = as_rng(rng)
    if boundary_air == "none":
        boundary_air = None
    if kind not in GEOMETRIES:
        raise InvalidInputError(f"unknown geometry {kind!r}; choose one of {GEOMETRIES}")
    if boundary_air not in BOUNDARY_AIR:
        raise InvalidInputError(
            f"unknown boundary_air {boundary_air!r}; choose one of {BOUNDARY_AIR}"
        )
    lo_size, hi_size = (float(s) for s in size)
    if not (0 < lo_size <= hi_size <= 1):
        raise InvalidInputError(f"size must satisfy 0 < min <= max <= 1, got {size}")
    if not (0 <= max_solid_fraction < 1):
        raise InvalidInputError(f"max_solid_fraction must be in [0, 1), got {max_solid_fraction}")
    if count is not None and (int(count) != count or count < 0):
        raise InvalidInputError(f"count must be a non-negative integer, got {count}")

    ndim = len(shape)
    flags = np.full(shape, FLUID, dtype=np.int8)
    if kind != "none":
        num = int(rng.integers(2, 7)) if count is None else int(count)
        budget = max_solid_fraction * flags.size
        solid = np.zeros(shape, dtype=bool)
        for _ in range(num):
            is_box = kind == "boxes" or (kind == "mixed" and rng.random() < 0.5)
            if is_box:
                width = rng.uniform(lo_size, hi_size, ndim)
                start = rng.uniform(0.0, 1.0 - width)
                region = []
                for s, w, n in zip(start, width, shape, strict=True):
                    i0 = min(int(np.round(s * n)), n - 1)
                    i1 = max(int(np.round((s + w) * n)), i0 + 1)
                    region.append(slice(i0, i1))
                region = tuple(region)
                block = np.ones([r.stop - r.start for r in region], dtype=bool)
            else:
                radius = rng.uniform(lo_size, hi_size) / 2
                centre = rng.uniform(0.0, 1.0, ndim)
                region, axes = [], []
                for c, n in zip(centre, shape, strict=True):
                    i0 = max(int(np.floor((c - radius) * n)), 0)
                    i1 = min(int(np.ceil((c + radius) * n)) + 1, n)
                    region.append(slice(i0, i1))
                    axes.append((np.arange(i0, i1) + 0.5) / n - c)
                region = tuple(region)
                mesh = np.meshgrid(*axes, indexing="ij", sparse=True)
                block = sum(m**2 for m in mesh) <= radius**2
            trial = solid.copy()
            trial[region] |= block
            if trial.sum() <= budget:
                solid = trial
        flags[solid] = SOLID

    if boundary_air == "top":
        flags[-1, ...] = AIR
    elif boundary_air == "free-surface":
        level = int(np.round(rng.uniform(0.55, 0.85) * shape[0]))
        level = min(max(level, 1), shape[0] - 1) if shape[0] > 1 else 1
        flags[level:, ...] = AIR
    if not (flags == FLUID).any():  # only possible on degenerate grids (e.g. 1 x n)
        raise InvalidInputError(f"geometry left no fluid cells on grid {shape}")
    return flags
