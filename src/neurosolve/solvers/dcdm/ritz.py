r"""Lanczos with full reorthogonalization, Ritz vectors, and DCDM training right-hand sides.

Right-hand sides are combinations of Ritz vectors of each training matrix weighted toward
the low end of the spectrum (the smooth errors the network must learn to remove), stored
with the matrix's stencil fields; see ``docs/dcdm.md`` for the choices and how they
differ from the reference.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse

from neurosolve.errors import InvalidInputError

__all__ = [
    "lanczos",
    "ritz_pairs",
    "ritz_rhs",
    "stencil_fields",
    "ritz_samples",
    "scene_system",
    "SCENES",
]

logger = logging.getLogger(__name__)


def _as_matvec(A) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    if hasattr(A, "A") and hasattr(A, "grid"):  # LinearSystem
        A = A.A
    if not hasattr(A, "shape") or len(A.shape) != 2 or A.shape[0] != A.shape[1]:
        raise InvalidInputError(f"Lanczos needs a square matrix or operator, got {A!r}")
    return (lambda v: np.asarray(A @ v, dtype=np.float64).ravel()), int(A.shape[0])


def lanczos(
    A,
    steps: int,
    *,
    v0: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    reorthogonalize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lanczos tridiagonalization ``A Q = Q T`` with full reorthogonalization.

    Parameters
    ----------
    A : scipy sparse matrix, LinearOperator or LinearSystem
        Symmetric operator of size ``n``.
    steps : int
        Number of Lanczos vectors (at most ``n``); fewer are returned when an invariant
        subspace is found.
    v0 : numpy.ndarray, optional
        Start vector; default ``A g`` with ``g ~ N(0, I)`` (as the reference does).
    rng : numpy.random.Generator, optional
        Draws ``g``.
    reorthogonalize : bool
        Orthogonalize each new vector against all previous ones (twice, classical
        Gram-Schmidt), which keeps Ritz vectors accurate; without it, ghost copies of
        converged eigenvalues appear.

    Returns
    -------
    alpha : numpy.ndarray, shape ``(m,)``
        Diagonal of ``T``.
    beta : numpy.ndarray, shape ``(m - 1,)``
        Off-diagonal of ``T``.
    Q : numpy.ndarray, shape ``(n, m)``
        Orthonormal Lanczos vectors.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([1.0, 2.0, 3.0, 4.0])
    >>> a, b, Q = lanczos(A, 4, rng=np.random.default_rng(0))
    >>> T = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    >>> np.round(np.linalg.eigvalsh(T), 6)
    array([1., 2., 3., 4.])
    """
    matvec, n = _as_matvec(A)
    steps = int(steps)
    if not 1 <= steps:
        raise InvalidInputError(f"steps must be >= 1, got {steps}")
    steps = min(steps, n)
    if v0 is None:
        rng = np.random.default_rng() if rng is None else rng
        v0 = matvec(rng.standard_normal(n))
    v = np.asarray(v0, dtype=np.float64).ravel()
    if v.shape != (n,) or not np.all(np.isfinite(v)):
        raise InvalidInputError(f"v0 must be a finite vector of length {n}")
    norm = np.linalg.norm(v)
    if norm == 0:
        raise InvalidInputError("the Lanczos start vector is zero")
    Q = np.empty((n, steps))
    alpha = np.empty(steps)
    beta = np.empty(max(steps - 1, 0))
    Q[:, 0] = v / norm
    m = steps
    for j in range(steps):
        w = matvec(Q[:, j])
        alpha[j] = Q[:, j] @ w
        w -= alpha[j] * Q[:, j]
        if j > 0:
            w -= beta[j - 1] * Q[:, j - 1]
        if reorthogonalize:
            for _ in range(2):
                w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        if j == steps - 1:
            break
        b = np.linalg.norm(w)
        if b <= 1e-12 * max(abs(alpha[j]), 1.0):
            m = j + 1
            logger.info("Lanczos found an invariant subspace after %d steps", m)
            break
        beta[j] = b
        Q[:, j + 1] = w / b
    return alpha[:m], beta[: m - 1], Q[:, :m]


def ritz_pairs(
    A,
    steps: int,
    *,
    rng: np.random.Generator | None = None,
    drop_below: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values and vectors of ``A`` from ``steps`` Lanczos steps, ascending.

    Parameters
    ----------
    A : scipy sparse matrix, LinearOperator or LinearSystem
        Symmetric positive (semi)definite operator.
    steps : int
        Lanczos steps.
    rng : numpy.random.Generator, optional
        For the start vector.
    drop_below : float
        Ritz values below ``drop_below * max(value)`` (a numerical null space) are dropped.

    Returns
    -------
    values : numpy.ndarray, shape ``(m,)``
    vectors : numpy.ndarray, shape ``(n, m)``
        Orthonormal columns.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> values, vectors = ritz_pairs(sp.diags([0.0, 1.0, 2.0]), 3, rng=np.random.default_rng(1))
    >>> np.round(values, 8)
    array([1., 2.])
    """
    alpha, beta, Q = lanczos(A, steps, rng=rng)
    values, S = scipy.linalg.eigh_tridiagonal(alpha, beta)
    keep = values > drop_below * max(float(np.max(np.abs(values))), np.finfo(float).tiny)
    return values[keep], Q @ S[:, keep]


def ritz_rhs(
    vectors: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    low: int | float = 0.55,
    low_weight: float = 9.0,
) -> np.ndarray:
    """Unit-norm right-hand sides ``b = sum_j c_j q_j`` weighted toward the low end.

    ``c_j = low_weight * N(0, 1)`` for the lowest ``low`` Ritz vectors and ``N(0, 1)``
    for the rest (the reference uses the lowest 5,500 of 10,000 and weight 9).

    Parameters
    ----------
    vectors : numpy.ndarray, shape ``(n, m)``
        Ritz vectors in ascending order of their Ritz values.
    count : int
        Number of right-hand sides.
    rng : numpy.random.Generator
        Draws the coefficients.
    low : int or float
        How many vectors get the low-end weight: an int is a count, a float in
        ``[0, 1]`` a fraction of ``m``.
    low_weight : float
        Weight of the low end (``1`` gives an unweighted combination).

    Returns
    -------
    numpy.ndarray, shape ``(count, n)``

    Examples
    --------
    >>> import numpy as np
    >>> b = ritz_rhs(np.eye(4), 3, np.random.default_rng(0), low=2)
    >>> b.shape, np.allclose(np.linalg.norm(b, axis=1), 1.0)
    ((3, 4), True)
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise InvalidInputError(f"vectors must be an (n, m) array with m >= 1, got {vectors.shape}")
    m = vectors.shape[1]
    if isinstance(low, float):
        if not 0.0 <= low <= 1.0:
            raise InvalidInputError(f"a fractional low must lie in [0, 1], got {low}")
        low = int(round(low * m))
    low = min(max(int(low), 0), m)
    if not np.isfinite(low_weight) or low_weight <= 0:
        raise InvalidInputError(f"low_weight must be positive, got {low_weight}")
    c = rng.standard_normal((int(count), m))
    c[:, :low] *= low_weight
    b = c @ vectors.T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def stencil_fields(A: scipy.sparse.spmatrix, flags: np.ndarray) -> np.ndarray:
    """The stencil of a 5/7-point matrix over the fluid cells of a grid, packed as fields.

    Returns ``(2 * ndim + 1, *shape)`` float64 fields: channel 0 is the diagonal, channels
    ``1 ..`` the couplings of :func:`~neurosolve.solvers.stencil.stencil_from_csr`
    (``1 + 2a`` to the neighbour at ``-1`` along axis ``a``, ``2 + 2a`` to the one at
    ``+1``); every channel is zero outside fluid cells. This is the per-sample operator
    stored in DCDM training data: ``y[:, :1]`` and ``y[:, 1:]`` are the arguments of
    :func:`~neurosolve.solvers.stencil.apply_stencil`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]]))
    >>> stencil_fields(A, np.ones((1, 2), dtype=np.int8))[:, 0]
    array([[ 2.,  2.],
           [ 0.,  0.],
           [ 0.,  0.],
           [ 0., -1.],
           [-1.,  0.]])
    """
    from neurosolve.data.grids import Grid
    from neurosolve.solvers.stencil import stencil_from_csr

    flags = np.asarray(flags)
    diagonal, couplings = stencil_from_csr(A, Grid(flags.shape, flags=flags))
    return np.concatenate([diagonal[None], couplings])


@functools.lru_cache(maxsize=4)
def _fixed_geometry_basis(
    dim: int, resolution: int, geometry: str, geometry_seed: int, boundary: str, steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flags, A = _geometry_system(
        dim, resolution, geometry, np.random.default_rng([geometry_seed]), boundary
    )
    _, vectors = ritz_pairs(A, steps, rng=np.random.default_rng([geometry_seed, 1]))
    return flags, stencil_fields(A, flags), vectors


def _geometry_system(
    dim: int, resolution: int, geometry: str, rng: np.random.Generator, boundary: str
):
    from neurosolve.data import obstacle_flags, poisson

    shape = (int(resolution),) * int(dim)
    flags = obstacle_flags(shape, geometry, rng)
    system = poisson(shape, flags=flags, boundary=boundary)
    return system.grid.flags, system.A


#: Scenes of :func:`ritz_samples` (``scenes=``): domain boundary and AIR region.
SCENES: dict[str, tuple[str, str | None]] = {
    "dirichlet": ("dirichlet", None),  # the project's obstacle boxes
    "dirichlet-top": ("dirichlet", "top"),
    "open-top": ("neumann", "top"),  # smoke in a closed box with an open top
    "free-surface": ("neumann", "free-surface"),  # liquid in a tank
}
#: Obstacle kinds and edge-length ranges drawn by ``geometry="varied"``.
_KINDS = ("none", "boxes", "spheres", "mixed")
_KIND_WEIGHTS = (0.1, 0.3, 0.3, 0.3)
_SIZES = ((0.05, 0.15), (0.1, 0.3), (0.2, 0.45))


def scene_system(
    shape: Sequence[int],
    scene: str,
    rng: np.random.Generator,
    *,
    geometry: str = "varied",
    contrast: float = 1.0,
):
    """One random pressure-solve scene: its Poisson system (flags and boundary in its grid).

    Parameters
    ----------
    shape : sequence of int
        Grid shape.
    scene : str
        A key of :data:`SCENES`: ``"dirichlet"`` (Dirichlet box), ``"dirichlet-top"``
        (Dirichlet box, AIR top layer), ``"open-top"`` (solid walls, AIR top layer: smoke
        in a closed box with an open top), ``"free-surface"`` (solid walls, AIR above a
        random level).
    rng : numpy.random.Generator
        Draws the obstacles (and the coefficient).
    geometry : str
        Obstacle kind of :func:`neurosolve.data.obstacle_flags`, or ``"varied"``: a random
        kind, obstacle count (1-8) and size range (small, medium, large) per scene.
    contrast : float
        ``> 1``: a piecewise-constant coefficient with values 1 and a contrast drawn
        log-uniformly in ``[1, contrast]``.

    Returns
    -------
    neurosolve.data.LinearSystem

    Examples
    --------
    >>> s = scene_system((8, 8, 8), "open-top", np.random.default_rng(0))
    >>> s.grid.boundary, int((s.grid.flags[-1] == 0).sum())
    ('neumann', 64)
    """
    from neurosolve.data import obstacle_flags, poisson
    from neurosolve.data.geometry import contrast_coefficient

    if scene not in SCENES:
        raise InvalidInputError(f"unknown scene {scene!r}; choose from {sorted(SCENES)}")
    boundary, air = SCENES[scene]
    options: dict = {}
    if geometry == "varied":
        geometry = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_WEIGHTS))]
        options = dict(count=int(rng.integers(1, 9)), size=_SIZES[int(rng.integers(3))])
    flags = obstacle_flags(tuple(shape), geometry, rng, boundary_air=air, **options)
    coefficient = None
    if contrast > 1.0:
        value = float(np.exp(rng.uniform(0.0, np.log(contrast))))
        coefficient = contrast_coefficient(tuple(shape), value, rng)
    return poisson(tuple(shape), flags=flags, boundary=boundary, coefficient=coefficient)


def _scene_sample(rng, dim, resolution, geometry, scenes, contrast_fraction, contrast):
    names = [s.strip() for s in scenes.split(",") if s.strip()]
    scene = names[int(rng.integers(len(names)))]
    varied = contrast_fraction > 0 and rng.random() < contrast_fraction
    system = scene_system(
        (int(resolution),) * int(dim),
        scene,
        rng,
        geometry=geometry,
        contrast=float(contrast) if varied else 1.0,
    )
    return system.grid.flags, system.A, system.grid.boundary == "neumann"


def ritz_samples(
    rngs: Sequence[np.random.Generator],
    *,
    dim: int = 3,
    resolution: int = 16,
    geometry: str = "mixed",
    geometry_seed: int | None = None,
    boundary: str = "dirichlet",
    lanczos_steps: int = 64,
    low: float = 0.5,
    low_weight: float = 9.0,
    scenes: str | None = None,
    contrast_fraction: float = 0.0,
    contrast: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """DCDM training samples: Ritz-weighted right-hand sides with their operators.

    One sample per generator in ``rngs``. With ``geometry_seed=None`` every sample draws
    its own obstacle geometry (``neurosolve.data.systems.obstacle_flags``) from its
    generator and its own Lanczos run (``lanczos_steps`` steps); with an integer
    ``geometry_seed`` all samples share one geometry and one Ritz basis, as in the
    reference (use ``geometry="none"`` for the full cube and many Lanczos steps).

    Parameters
    ----------
    rngs : sequence of numpy.random.Generator
        One per sample.
    dim, resolution : int
        Grid ``(resolution,) * dim``.
    geometry : str
        Obstacle kind for ``obstacle_flags`` (``"none"``, ``"boxes"``, ``"spheres"``,
        ``"mixed"``).
    geometry_seed : int, optional
        Share one geometry between all samples.
    boundary : {"dirichlet", "neumann"}
        Domain boundary of the Poisson problem.
    lanczos_steps : int
        Lanczos steps per geometry.
    low, low_weight
        Passed to :func:`ritz_rhs`.
    scenes : str, optional
        Comma-separated keys of :data:`SCENES`: each sample draws one of them (its
        boundary overrides ``boundary``) with :func:`scene_system`, and ``x`` gets a third
        channel. ``None``: the obstacle boxes of ``geometry`` and ``boundary``.
    contrast_fraction, contrast
        With ``scenes``: the fraction of samples with a variable coefficient, and its
        largest contrast (see :func:`scene_system`).

    Returns
    -------
    x : numpy.ndarray, shape ``(B, 2 or 3, *grid)``
        Channel 0 the right-hand side field (unit norm, zero outside fluid), channel 1
        the cell flags, channel 2 (with ``scenes``) 1 where the domain boundary is a
        solid wall (``"neumann"``) and 0 where it is Dirichlet.
    y : numpy.ndarray, shape ``(B, 2 * dim + 1, *grid)``
        The operator as :func:`stencil_fields`.

    Examples
    --------
    >>> import numpy as np
    >>> x, y = ritz_samples([np.random.default_rng([0, 0])], dim=2, resolution=8,
    ...                     geometry="none", lanczos_steps=8)
    >>> x.shape, y.shape
    ((1, 2, 8, 8), (1, 5, 8, 8))
    """
    xs, ys = [], []
    for rng in rngs:
        walls = None
        if scenes is not None:
            flags, A, walls = _scene_sample(
                rng, dim, resolution, geometry, scenes, contrast_fraction, contrast
            )
            _, vectors = ritz_pairs(A, lanczos_steps, rng=rng)
            coefficients = stencil_fields(A, flags)
        elif geometry_seed is None:
            flags, A = _geometry_system(dim, resolution, geometry, rng, boundary)
            _, vectors = ritz_pairs(A, lanczos_steps, rng=rng)
            coefficients = stencil_fields(A, flags)
        else:
            flags, coefficients, vectors = _fixed_geometry_basis(
                int(dim), int(resolution), geometry, int(geometry_seed), boundary, lanczos_steps
            )
        b = ritz_rhs(vectors, 1, rng, low=float(low), low_weight=low_weight)[0]
        field = np.zeros(flags.shape)
        field[flags == 1] = b
        channels = [field, flags.astype(np.float64)]
        if walls is not None:
            channels.append(np.full(flags.shape, float(walls)))
        xs.append(np.stack(channels))
        ys.append(coefficients)
    return np.stack(xs), np.stack(ys)
