"""Problem suites: named, seeded specifications of linear systems to benchmark.

A :class:`ProblemSpec` describes one system ``A x = b`` either by generator parameters
(Poisson 2D/3D, obstacles, variable-coefficient contrast) or by a matrix file
(``.mtx``/``.npz``). Building a spec is deterministic: the geometry, the coefficient
field and the right-hand side each draw from their own stream
``numpy.random.default_rng([seed, stream])``, so a spec always gives the same system.

A :class:`SequenceSpec` describes a list of systems solved one after another, as in a
simulation where the geometry changes every time step (obstacles moving through the
domain). Every frame is a new matrix, so every method pays its setup every frame.

A :class:`Suite` groups problems and sequences under a name. Built-in suites are listed
in :data:`SUITES`; :func:`neurosolve.harness.suite_files.load_suite` reads one from a JSON
or TOML file.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurosolve.data.geometry import contrast_coefficient, moving_obstacle_flags
from neurosolve.errors import FileFormatError, InvalidInputError, UnknownNameError

__all__ = [
    "ProblemSpec",
    "SequenceSpec",
    "Suite",
    "SUITES",
    "get_suite",
    "suite_names",
]

logger = logging.getLogger(__name__)

_OBSTACLES = ("none", "boxes", "spheres", "mixed")
_RHS = ("random", "smooth", "divergence", "ones")
_KINDS = ("poisson", "file")

# Independent random streams per ingredient, so that changing e.g. the right-hand side
# kind does not change the geometry drawn for the same seed.
_GEOMETRY_STREAM, _COEFFICIENT_STREAM, _RHS_STREAM = 0, 1, 2


def _format_size(shape: tuple[int, ...]) -> str:
    return str(shape[0]) if len(set(shape)) == 1 else "x".join(map(str, shape))


def _format_contrast(contrast: float) -> str:
    exponent = np.log10(contrast)
    if abs(exponent - round(exponent)) < 1e-9:
        return f"1e{round(exponent)}"
    return f"{contrast:g}"


@dataclass(frozen=True)
class ProblemSpec:
    """One linear system of a suite, built deterministically by :meth:`build`.

    Parameters
    ----------
    kind : {"poisson", "file"}
        Generated cell-centred Poisson problem, or a matrix read from ``path``.
    shape : tuple of int
        Cells per axis (2 or 3 axes) of a generated problem.
    obstacles : {"none", "boxes", "spheres", "mixed"}
        Solid obstacles placed by :func:`neurosolve.data.geometry.obstacle_flags`.
    obstacle_count : int, optional
        Number of obstacles (the generator's default when omitted).
    contrast : float, optional
        Variable coefficient: a piecewise-constant field taking the values 1 and
        ``contrast`` on random smooth inclusions (see :func:`contrast_coefficient`).
        ``None`` means the constant coefficient 1.
    boundary : {"dirichlet", "neumann"}
        Condition on the outer boundary of a generated problem.
    rhs : {"random", "smooth", "divergence", "ones"}
        Right-hand side. ``random``, ``smooth`` and ``divergence`` use the generators of
        :mod:`neurosolve.data.systems`; ``ones`` is the vector of ones.
    seed : int
        Seed of the geometry, coefficient and right-hand-side streams.
    path : str, optional
        Matrix file (``.mtx`` or ``.npz``) for ``kind="file"``.
    rhs_path : str, optional
        ``.npy`` file with the right-hand side of a file problem; when omitted the
        file's own right-hand side is used if it has one, else ``rhs``.
    grid : tuple of int, optional
        Grid shape of a file problem (unknowns in lexicographic order), for methods that
        need the grid.
    flags_path : str, optional
        ``.npy`` cell-flags array for a file problem whose matrix drops non-fluid cells.
    name : str, optional
        Identifier overriding the generated :attr:`id`.

    Examples
    --------
    >>> ProblemSpec(shape=(32, 32, 32), obstacles="boxes").id
    'poisson3d-32-obstacles'
    >>> ProblemSpec(shape=(64, 64), contrast=1e4, seed=3).id
    'poisson2d-64-contrast1e4-s3'
    """

    kind: str = "poisson"
    shape: tuple[int, ...] = (32, 32)
    obstacles: str = "none"
    obstacle_count: int | None = None
    contrast: float | None = None
    boundary: str = "dirichlet"
    rhs: str = "random"
    seed: int = 0
    path: str | None = None
    rhs_path: str | None = None
    grid: tuple[int, ...] | None = None
    flags_path: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        from neurosolve.data.grids import check_shape

        if self.kind not in _KINDS:
            raise InvalidInputError(f"problem kind must be one of {_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "shape", check_shape(self.shape))
        if self.grid is not None:
            object.__setattr__(self, "grid", check_shape(self.grid))
        if self.obstacles not in _OBSTACLES:
            raise InvalidInputError(
                f"obstacles must be one of {_OBSTACLES}, got {self.obstacles!r}"
            )
        if self.rhs not in _RHS:
            raise InvalidInputError(f"rhs must be one of {_RHS}, got {self.rhs!r}")
        if self.boundary not in ("dirichlet", "neumann"):
            raise InvalidInputError(
                f"boundary must be 'dirichlet' or 'neumann', got {self.boundary!r}"
            )
        if self.contrast is not None and not (np.isfinite(self.contrast) and self.contrast > 0):
            raise InvalidInputError(f"contrast must be a positive number, got {self.contrast!r}")
        if self.obstacle_count is not None and self.obstacle_count < 0:
            raise InvalidInputError(f"obstacle_count must be >= 0, got {self.obstacle_count}")
        if self.kind == "file" and not self.path:
            raise InvalidInputError("a problem of kind 'file' needs a 'path'")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise InvalidInputError(f"seed must be an integer, got {self.seed!r}")

    @property
    def id(self) -> str:
        """Readable identifier, e.g. ``poisson3d-32-obstacles`` or the file's stem."""
        if self.name:
            return self.name
        if self.kind == "file":
            return Path(self.path).stem
        parts = [f"poisson{len(self.shape)}d", _format_size(self.shape)]
        if self.obstacles != "none":
            parts.append("obstacles" if self.obstacles == "boxes" else self.obstacles)
        if self.contrast is not None:
            parts.append(f"contrast{_format_contrast(self.contrast)}")
        if self.boundary != "dirichlet":
            parts.append(self.boundary)
        if self.rhs != "random":
            parts.append(f"rhs-{self.rhs}")
        if self.seed:
            parts.append(f"s{self.seed}")
        return "-".join(parts)

    def build(self):
        """Build the system; its ``b`` holds the right-hand side.

        Returns
        -------
        neurosolve.data.systems.LinearSystem
            ``A`` (CSR, float64, SPD), ``grid``, ``b`` and ``name`` set to :attr:`id`.
        """
        if self.kind == "file":
            system = self._build_file()
        else:
            system = self._build_poisson()
        system.name = self.id
        return system

    def _build_poisson(self):
        from neurosolve.data import obstacle_flags, poisson

        flags = None
        if self.obstacles != "none":
            rng = np.random.default_rng([self.seed, _GEOMETRY_STREAM])
            kwargs = {} if self.obstacle_count is None else {"count": self.obstacle_count}
            flags = obstacle_flags(self.shape, self.obstacles, rng, **kwargs)
        coefficient = None
        if self.contrast is not None:
            rng = np.random.default_rng([self.seed, _COEFFICIENT_STREAM])
            coefficient = contrast_coefficient(self.shape, self.contrast, rng)
        system = poisson(self.shape, flags=flags, coefficient=coefficient, boundary=self.boundary)
        system.b = self._make_rhs(system)
        return system

    def _build_file(self):
        from neurosolve.data import Grid, load_system

        flags = None
        if self.flags_path is not None:
            flags = _load_npy(self.flags_path, "cell flags")
        grid = None
        if self.grid is not None or flags is not None:
            grid = Grid(self.grid if self.grid is not None else flags.shape, flags=flags)
        system = load_system(self.path, grid=grid)
        if self.rhs_path is not None:
            b = _load_npy(self.rhs_path, "right-hand side").astype(np.float64).ravel()
            if b.shape != (system.A.shape[0],):
                raise InvalidInputError(
                    f"right-hand side {self.rhs_path} has {b.size} entries, "
                    f"the matrix has {system.A.shape[0]} rows"
                )
            system.b = b
        elif system.b is None:
            system.b = self._make_rhs(system)
        if not np.all(np.isfinite(system.b)):
            raise InvalidInputError(f"right-hand side of {self.id} contains NaN or Inf")
        return system

    def _make_rhs(self, system) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _RHS_STREAM])
        return _make_rhs(system, self.rhs, rng, self.id)


def _make_rhs(system, kind: str, rng: np.random.Generator, label: str) -> np.ndarray:
    n = system.A.shape[0]
    if kind == "ones":
        return np.ones(n)
    if system.grid is None:
        if kind != "random":
            raise InvalidInputError(
                f"rhs {kind!r} needs grid information; {label} has none "
                "(give 'grid', or use rhs 'random' or 'ones')"
            )
        return rng.standard_normal(n)
    from neurosolve.data import make_rhs

    return np.asarray(make_rhs(system, kind, rng), dtype=np.float64)


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise FileFormatError(f"{what} file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"cannot read {what} file {path} as .npy: {exc}") from exc


@dataclass(frozen=True)
class SequenceSpec:
    """A sequence of Poisson systems with moving obstacles, solved in order.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (2D or 3D).
    frames : int
        Number of systems.
    count : int
        Number of moving spherical obstacles.
    radius, speed : float
        Obstacle radius and displacement per frame, as fractions of the domain side.
    boundary : {"dirichlet", "neumann"}
        Outer boundary condition.
    rhs : {"random", "smooth", "divergence", "ones"}
        Right-hand side of every frame (drawn per frame).
    seed : int
        Seed of the trajectories and right-hand sides.
    name : str, optional
        Identifier overriding :attr:`id`.

    Examples
    --------
    >>> SequenceSpec(shape=(32, 32, 32), frames=10).id
    'sequence3d-32-10frames'
    """

    shape: tuple[int, ...] = (32, 32, 32)
    frames: int = 10
    count: int = 3
    radius: float = 0.12
    speed: float = 0.05
    boundary: str = "dirichlet"
    rhs: str = "random"
    seed: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        from neurosolve.data.grids import check_shape

        object.__setattr__(self, "shape", check_shape(self.shape))
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise InvalidInputError(f"frames must be a positive integer, got {self.frames!r}")
        if self.rhs not in _RHS:
            raise InvalidInputError(f"rhs must be one of {_RHS}, got {self.rhs!r}")
        if self.boundary not in ("dirichlet", "neumann"):
            raise InvalidInputError(
                f"boundary must be 'dirichlet' or 'neumann', got {self.boundary!r}"
            )
        if not (0 < self.radius < 0.5):
            raise InvalidInputError(f"radius must lie in (0, 0.5), got {self.radius}")

    @property
    def id(self) -> str:
        """Readable identifier, e.g. ``sequence3d-32-10frames``."""
        if self.name:
            return self.name
        name = f"sequence{len(self.shape)}d-{_format_size(self.shape)}-{self.frames}frames"
        return f"{name}-s{self.seed}" if self.seed else name

    def build(self) -> list:
        """Build every frame's system (``b`` set, ``name`` = ``<id>-f<k>``)."""
        from neurosolve.data import poisson

        rng = np.random.default_rng([self.seed, _GEOMETRY_STREAM])
        all_flags = moving_obstacle_flags(
            self.shape, self.frames, rng, count=self.count, radius=self.radius, speed=self.speed
        )
        out = []
        for k, flags in enumerate(all_flags):
            system = poisson(self.shape, flags=flags, boundary=self.boundary)
            system.name = f"{self.id}-f{k}"
            rng = np.random.default_rng([self.seed, _RHS_STREAM, k])
            system.b = _make_rhs(system, self.rhs, rng, system.name)
            out.append(system)
        return out


@dataclass(frozen=True)
class Suite:
    """A named list of problems and of sequences.

    Examples
    --------
    >>> suite = get_suite("smoke")
    >>> suite.problems[0].id
    'poisson2d-16'
    """

    name: str
    problems: tuple[ProblemSpec, ...] = ()
    sequences: tuple[SequenceSpec, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", tuple(self.problems))
        object.__setattr__(self, "sequences", tuple(self.sequences))
        ids = [p.id for p in self.problems] + [s.id for s in self.sequences]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvalidInputError(
                f"suite {self.name!r} has duplicate problem ids {duplicates}; give them a 'name'"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, the layout :func:`~neurosolve.harness.suite_files.load_suite` reads."""
        return {
            "name": self.name,
            "description": self.description,
            "problems": [_spec_to_dict(p) for p in self.problems],
            "sequences": [_spec_to_dict(s) for s in self.sequences],
        }


def _spec_to_dict(spec) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value != f.default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _smoke() -> Suite:
    return Suite(
        "smoke",
        problems=(
            ProblemSpec(shape=(16, 16)),
            ProblemSpec(shape=(8, 8, 8)),
            ProblemSpec(shape=(16, 16), obstacles="boxes"),
            ProblemSpec(shape=(10, 10, 10), obstacles="spheres"),
            ProblemSpec(shape=(16, 16), contrast=1e4),
            ProblemSpec(shape=(8, 8, 8), contrast=1e2),
        ),
        sequences=(SequenceSpec(shape=(10, 10, 10), frames=3, count=1, radius=0.2),),
        description="tiny 2D/3D problems incl. obstacles and variable coefficients (seconds)",
    )


def _poisson2d() -> Suite:
    return Suite(
        "poisson2d",
        problems=tuple(ProblemSpec(shape=(n, n)) for n in (64, 128, 256)),
        description="2D Poisson, unit square, Dirichlet, at 64^2, 128^2, 256^2",
    )


def _poisson3d() -> Suite:
    return Suite(
        "poisson3d",
        problems=tuple(ProblemSpec(shape=(n, n, n)) for n in (16, 32, 64)),
        description="3D Poisson, unit cube, Dirichlet, at 16^3, 32^3, 64^3",
    )


def _obstacles3d() -> Suite:
    return Suite(
        "obstacles3d",
        problems=(
            ProblemSpec(shape=(32, 32, 32), obstacles="boxes"),
            ProblemSpec(shape=(32, 32, 32), obstacles="spheres"),
            ProblemSpec(shape=(64, 64, 64), obstacles="boxes"),
            ProblemSpec(shape=(64, 64, 64), obstacles="mixed"),
        ),
        description="3D Poisson with solid obstacles at 32^3 and 64^3",
    )


def _variable_coefficient() -> Suite:
    return Suite(
        "variable-coefficient",
        problems=(
            ProblemSpec(shape=(128, 128), contrast=1e2),
            ProblemSpec(shape=(128, 128), contrast=1e4),
            ProblemSpec(shape=(32, 32, 32), contrast=1e2),
            ProblemSpec(shape=(32, 32, 32), contrast=1e4),
        ),
        description="-div(a grad u) with piecewise-constant a of contrast 1e2 and 1e4",
    )


def _demo() -> Suite:
    return Suite(
        "demo",
        problems=(
            ProblemSpec(shape=(24, 24, 24), obstacles="boxes", seed=11),
            ProblemSpec(shape=(32, 32, 32), obstacles="spheres", seed=12),
        ),
        description="two small 3D obstacle problems (geometries unseen by the shipped models); "
        "the README's main job",
    )


def _sequence3d() -> Suite:
    return Suite(
        "sequence3d",
        sequences=(SequenceSpec(shape=(32, 32, 32), frames=10),),
        description="10 consecutive 32^3 systems with moving obstacles (setup every frame)",
    )


#: Built-in suites by name (each value builds the suite).
SUITES = {
    "smoke": _smoke,
    "poisson2d": _poisson2d,
    "poisson3d": _poisson3d,
    "obstacles3d": _obstacles3d,
    "variable-coefficient": _variable_coefficient,
    "sequence3d": _sequence3d,
    "demo": _demo,
}


def suite_names() -> list[str]:
    """Names of the built-in suites.

    Examples
    --------
    >>> "smoke" in suite_names()
    True
    """
    return list(SUITES)


def get_suite(name: str) -> Suite:
    """A built-in suite by name.

    Raises
    ------
    UnknownNameError
        If ``name`` is not a built-in suite.

    Examples
    --------
    >>> [p.id for p in get_suite("poisson3d").problems]
    ['poisson3d-16', 'poisson3d-32', 'poisson3d-64']
    """
    try:
        return SUITES[name]()
    except KeyError:
        raise UnknownNameError(
            f"unknown suite {name!r}; built-in suites: {', '.join(SUITES)} "
            "(or give a JSON/TOML suite file)"
        ) from None
