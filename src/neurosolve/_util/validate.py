"""Validators for numbers, seeds and dtypes: one wording of each error, package-wide.

Each function returns the cleaned value or raises :class:`~neurosolve.errors.InvalidInputError`
with a message that names the argument and the value it got.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neurosolve.errors import InvalidInputError

__all__ = ["as_rng", "float_dtype", "integer", "positive", "real"]


def integer(value: Any, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]`` (booleans are refused).

    Examples
    --------
    >>> integer(3, "samples")
    3
    >>> integer(0, "samples")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: samples must be >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def real(value: Any, name: str) -> float:
    """``value`` as a finite ``float``.

    Examples
    --------
    >>> real("0.5", "dt")
    0.5
    >>> real(float("nan"), "dt")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: dt must be finite, got nan
    """
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a real number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a real number, got {value!r}") from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {value!r}")
    return out


def positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite ``float`` that is ``> 0`` (or ``>= 0`` with ``allow_zero``).

    Examples
    --------
    >>> positive(2, "nu")
    2.0
    >>> positive(0.0, "nu", allow_zero=True)
    0.0
    >>> positive(-1, "nu")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: nu must be > 0, got -1.0
    """
    out = real(value, name)
    if out < 0 or (out == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {out}")
    return out


def as_rng(rng: Any) -> np.random.Generator:
    """A numpy ``Generator`` from a generator, an integer seed or None.

    Examples
    --------
    >>> bool(as_rng(0).integers(10) == as_rng(0).integers(10))
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise InvalidInputError(f"rng must be a numpy Generator or an int seed, got {type(rng)}")


def float_dtype(dtype: Any, name: str = "dtype") -> Any:
    """A torch floating dtype, float32 or float64, from a dtype or its name.

    Examples
    --------
    >>> float_dtype("float32")
    torch.float32
    """
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    if dtype not in (torch.float32, torch.float64):
        raise InvalidInputError(f"{name} must be torch.float32 or torch.float64, got {dtype}")
    return dtype
