"""The generator registry: named sample functions and their validated parameters.

A *sample function* has the signature ``fn(rngs, **params) -> (x, y)``: one
``numpy.random.Generator`` per sample in, arrays ``x (B, C, *spatial)`` and
``y (B, C', *spatial)`` out. :func:`register_generator` files one under a name (imported
lazily from ``"module:attribute"``), and its :class:`GeneratorSpec` turns user parameters
into the full, JSON-exact parameter set a dataset file records. The built-in generators
(``poisson``, ``darcy``, ``navier-stokes``) are registered here; the file-writing driver is
:mod:`neurosolve.data.generate`.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurosolve._util.validate import integer
from neurosolve.errors import InvalidInputError, UnknownNameError

__all__ = [
    "GENERATORS",
    "GeneratorSpec",
    "SampleFunction",
    "available_generators",
    "get_generator",
    "register_generator",
]

SampleFunction = Callable[..., tuple[Any, Any]]

# Keyword arguments of sample functions that do not change the data (our own progress bar
# replaces theirs); they are neither passed nor recorded.
_RUNTIME_PARAMS = frozenset({"progress", "device"})


@dataclass
class GeneratorSpec:
    """A registered sample function.

    Calling the spec calls the function (importing it on first use).

    Parameters
    ----------
    name : str
        Registry name (``neurosolve generate <name>``).
    target : callable or str
        The sample function, or ``"module:attribute"`` to import it lazily.
    defaults : mapping, optional
        Parameter values that override the function's own defaults.
    chunk : int, default 8
        Default number of samples per call.
    positive : tuple of str
        Parameters that must be positive numbers (checked before anything runs).
    description : str
        One line for ``--help``.

    Examples
    --------
    >>> spec = get_generator("darcy")
    >>> spec.resolve({"resolution": 16})["resolution"], spec.chunk
    (16, 8)
    """

    name: str
    target: SampleFunction | str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    chunk: int = 8
    positive: tuple[str, ...] = ()
    description: str = ""
    _fn: SampleFunction | None = field(default=None, init=False, repr=False, compare=False)

    def load(self) -> SampleFunction:
        """Return the sample function, importing it if needed."""
        if self._fn is None:
            if callable(self.target):
                self._fn = self.target
            else:
                module, _, attr = str(self.target).partition(":")
                try:
                    self._fn = getattr(importlib.import_module(module), attr)
                except (ImportError, AttributeError) as exc:
                    raise UnknownNameError(
                        f"generator {self.name!r} is not available: cannot import "
                        f"{self.target} ({exc})"
                    ) from exc
        return self._fn

    def __call__(self, rngs: Sequence[np.random.Generator], **params: Any):
        """Call the sample function."""
        return self.load()(list(rngs), **params)

    def signature_defaults(self) -> tuple[dict[str, Any], bool]:
        """Keyword defaults of the function (after ``defaults``) and whether it takes ``**kw``.

        A ``torch.dtype`` default is given by its name (``"float64"``), so that it can be
        stored as JSON; :meth:`call_params` turns it back.
        """
        sig = inspect.signature(self.load())
        found: dict[str, Any] = {}
        var_kw = False
        for i, p in enumerate(sig.parameters.values()):
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif i == 0 or p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                continue  # the rngs argument
            elif p.name not in _RUNTIME_PARAMS:
                default = None if p.default is p.empty else p.default
                found[p.name] = _torch_dtype_name(default) or default
        found.update(self.defaults)
        return found, var_kw

    def takes(self, name: str) -> bool:
        """Whether the sample function accepts keyword ``name``."""
        params = inspect.signature(self.load()).parameters
        return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def call_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters as the function wants them: dtype names become ``torch.dtype``."""
        sig = inspect.signature(self.load()).parameters
        out = dict(params)
        for key, value in params.items():
            p = sig.get(key)
            if p is not None and _torch_dtype_name(p.default) and isinstance(value, str):
                import torch

                dtype = getattr(torch, value, None)
                if not isinstance(dtype, torch.dtype):
                    raise InvalidInputError(f"parameter {key!r}: {value!r} is not a torch dtype")
                out[key] = dtype
        return out

    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Full, validated parameters: the function's defaults updated with ``params``.

        Raises
        ------
        InvalidInputError
            Unknown parameter name, a value that is not a finite JSON scalar or list,
            or a non-positive value for a parameter listed in ``positive``.
        """
        known, var_kw = self.signature_defaults()
        merged = dict(known)
        params = dict(params or {})
        sig = inspect.signature(self.load()).parameters
        missing = [
            p.name
            for i, p in enumerate(sig.values())
            if i > 0
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in params
            and p.name not in self.defaults
        ]
        if missing:
            raise InvalidInputError(
                f"generator {self.name!r} needs parameter(s) {', '.join(map(repr, missing))}"
            )
        for key, value in params.items():
            if isinstance(value, np.generic):
                value = value.item()
            if key in _RUNTIME_PARAMS:
                raise InvalidInputError(
                    f"parameter {key!r} does not belong to the data; it cannot be set here"
                )
            if key not in known and not var_kw:
                raise InvalidInputError(
                    f"unknown parameter {key!r} for generator {self.name!r}; "
                    f"known: {', '.join(sorted(known)) or 'none'}"
                )
            default = known.get(key)
            if _is_number(default) and not _is_number(value):
                raise InvalidInputError(
                    f"parameter {key!r} of generator {self.name!r} must be a number, got {value!r}"
                )
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)  # 1 and 1.0 are the same parameter: store one JSON form
            merged[key] = value
        clean = {key: _json_value(key, value) for key, value in merged.items()}
        for key in self.positive:
            value = clean.get(key)
            if value is not None and (not _is_number(value) or not value > 0):
                raise InvalidInputError(
                    f"parameter {key!r} of generator {self.name!r} must be positive, got {value!r}"
                )
        return dict(sorted(clean.items()))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _torch_dtype_name(value: Any) -> str | None:
    """``"float64"`` for ``torch.float64`` (without importing torch), else None."""
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return None


def _json_value(key: str, value: Any) -> Any:
    """Coerce a parameter to a JSON-exact Python value; reject NaN/Inf and odd types."""
    if isinstance(value, np.generic):
        value = value.item()
    value = _torch_dtype_name(value) or value
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"parameter {key!r} must be finite, got {value}")
        return value
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(key, v) for v in value]
    raise InvalidInputError(
        f"parameter {key!r} must be a number, string, bool, None or list, "
        f"got {type(value).__name__}"
    )


#: Registered generators by name. Entries are :class:`GeneratorSpec` and can be called like
#: the sample function itself.
GENERATORS: dict[str, GeneratorSpec] = {}


def register_generator(
    name: str,
    fn: SampleFunction | str,
    defaults: Mapping[str, Any] | None = None,
    *,
    chunk: int = 8,
    positive: Sequence[str] = (),
    description: str = "",
    replace: bool = False,
) -> GeneratorSpec:
    """Add a sample function to :data:`GENERATORS`.

    Parameters
    ----------
    name : str
        Registry name.
    fn : callable or str
        ``fn(rngs, **params) -> (x, y)``, or ``"module:attribute"`` (imported on first use).
    defaults : mapping, optional
        Overrides of the function's keyword defaults.
    chunk : int, default 8
        Default samples per call.
    positive : sequence of str
        Parameters that must be positive.
    description : str
        One line shown by ``neurosolve generate --help``.
    replace : bool, default False
        Allow replacing an existing entry.

    Returns
    -------
    GeneratorSpec

    Examples
    --------
    >>> def noise(rngs, *, resolution=4):
    ...     x = np.stack([r.standard_normal((1, resolution)) for r in rngs])
    ...     return x, 2 * x
    >>> spec = register_generator("doc-noise", noise, replace=True)
    >>> spec.resolve({"resolution": 3})
    {'resolution': 3}
    >>> from neurosolve.data.generate import generate_samples
    >>> x, y = generate_samples("doc-noise", [5], seed=0)
    >>> x.shape
    (1, 1, 4)
    >>> del GENERATORS["doc-noise"]
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError("a generator name must be a non-empty string")
    if name in GENERATORS and not replace:
        raise InvalidInputError(f"generator {name!r} is already registered")
    if not (callable(fn) or (isinstance(fn, str) and ":" in fn)):
        raise InvalidInputError(f"generator {name!r}: fn must be callable or 'module:attr'")
    integer(chunk, "chunk")
    spec = GeneratorSpec(
        name=name,
        target=fn,
        defaults=dict(defaults or {}),
        chunk=int(chunk),
        positive=tuple(positive),
        description=description,
    )
    GENERATORS[name] = spec
    return spec


register_generator(
    "poisson",
    "neurosolve.data.samples:poisson_samples",
    chunk=8,
    positive=("resolution", "rtol"),
    description="Poisson pressure systems with obstacles: (rhs, flags) -> solution",
)
register_generator(
    "darcy",
    "neurosolve.data.darcy:darcy_samples",
    chunk=8,
    positive=("resolution",),
    description="Darcy flow -div(a grad u) = f: coefficient a -> solution u",
)
register_generator(
    "navier-stokes",
    "neurosolve.data.navier_stokes:navier_stokes_samples",
    chunk=16,
    positive=("resolution", "sim_resolution", "nu", "dt", "t_final"),
    description="2D Navier-Stokes vorticity on the torus: first snapshots -> later ones",
)


def available_generators() -> list[str]:
    """Names of the registered generators.

    Examples
    --------
    >>> {"poisson", "darcy", "navier-stokes"} <= set(available_generators())
    True
    """
    return sorted(GENERATORS)


def get_generator(name: str) -> GeneratorSpec:
    """Look a generator up by name.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered (the message lists the registered ones).

    Examples
    --------
    >>> get_generator("darcy").name
    'darcy'
    """
    if isinstance(name, GeneratorSpec):
        return name
    try:
        return GENERATORS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown generator {name!r}; choose one of {', '.join(available_generators())}"
        ) from None
