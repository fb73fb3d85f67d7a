"""Geometry and coefficient fields of Poisson problems: obstacles, inclusions, moving scenes.

Pure builders in the manner of a problem gallery: each takes a grid shape and a random
generator and returns a cell-flag array (see :mod:`neurosolve.data.grids`) or a coefficient
field, ready for :func:`neurosolve.data.systems.poisson`.
"""

from __future__ import annotations

import numpy as np

from neurosolve.data.grids import FLUID, SOLID
from neurosolve.errors import InvalidInputError

__all__ = ["contrast_coefficient", "moving_obstacle_flags"]


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

    if not (np.isfinite(contrast) and contrast > 0):
        raise InvalidInputError(f"contrast must be a positive number, got {contrast!r}")
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
) -> list[np.ndarray]:
    """Cell flags of ``frames`` time steps with spherical obstacles moving through the domain.

    Sphere centres start at random positions and move in straight lines with random
    directions, ``speed`` (a fraction of the domain) per frame, reflecting at the walls.

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

    Returns
    -------
    list of numpy.ndarray
        One int8 flags array (FLUID / SOLID) per frame.

    Examples
    --------
    >>> flags = moving_obstacle_flags((16, 16), 3, np.random.default_rng(0), count=1)
    >>> len(flags), flags[0].shape, bool((flags[0] != flags[2]).any())
    (3, (16, 16), True)
    """
    if frames < 1:
        raise InvalidInputError(f"frames must be >= 1, got {frames}")
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
        out.append(flags)
        centres = centres + velocity
        # Reflect at the walls so the obstacles stay inside the domain.
        over, under = centres > high, centres < low
        centres = np.where(over, 2 * high - centres, np.where(under, 2 * low - centres, centres))
        velocity = np.where(over | under, -velocity, velocity)
    return out
