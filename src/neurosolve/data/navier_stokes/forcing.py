"""Time-independent vorticity forcings of the Navier-Stokes solver.

The two named forcings (FNO's diagonal one and Kolmogorov's shear forcing) and
:func:`build_forcing`, which turns any accepted ``forcing=`` argument of
:class:`~neurosolve.data.navier_stokes.NavierStokes2d` (a name, a callable of the grid
coordinates, an array on any square grid) into a field on the simulation grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from neurosolve._util.validate import integer
from neurosolve.data.navier_stokes.spectral import _square_size, grid_coordinates, resample_spectral
from neurosolve.errors import InvalidInputError

__all__ = ["FORCINGS", "build_forcing", "fno_forcing", "kolmogorov_forcing"]

#: Names accepted by :func:`build_forcing`.
FORCINGS: tuple[str, ...] = ("fno", "kolmogorov", "none")

ForcingLike = str | Callable | torch.Tensor | np.ndarray | None


def fno_forcing(n: int, *, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """FNO's forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` on an ``n x n`` grid.

    Examples
    --------
    >>> f = fno_forcing(8)
    >>> f.shape, round(float(f[0, 0]), 6)
    (torch.Size([8, 8]), 0.1)
    """
    x, y = grid_coordinates(n, device=device, dtype=dtype)
    s = 2 * math.pi * (x + y)
    return 0.1 * (torch.sin(s) + torch.cos(s))


def kolmogorov_forcing(
    n: int,
    *,
    wavenumber: int = 4,
    amplitude: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Kolmogorov forcing in vorticity form, ``-2 pi k A cos(2 pi k y)``.

    It is the curl of the body force ``A sin(2 pi k y)`` in the x direction. With viscosity
    ``nu`` and drag ``mu`` the laminar steady state is
    ``w = -2 pi k A cos(2 pi k y) / (nu (2 pi k)^2 + mu)``.

    Examples
    --------
    >>> f = kolmogorov_forcing(16, wavenumber=2)
    >>> round(float(f[0, 0]), 6) == round(-4 * math.pi, 6)
    True
    """
    k = integer(wavenumber, "wavenumber", minimum=1)
    amplitude = float(amplitude)
    if not math.isfinite(amplitude):
        raise InvalidInputError(f"forcing amplitude must be finite, got {amplitude}")
    _, y = grid_coordinates(n, device=device, dtype=dtype)
    return -2 * math.pi * k * amplitude * torch.cos(2 * math.pi * k * y)


def _as_field(value, name: str, device, dtype) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name} must be a torch.Tensor or numpy array, got {type(value)}")
    if value.is_complex() or not (value.is_floating_point() or value.dtype == torch.int64):
        raise InvalidInputError(f"{name} must hold real numbers, got {value.dtype}")
    value = value.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(value).all()):
        raise InvalidInputError(f"{name} contains NaN or Inf values")
    return value




def build_forcing(
    forcing: ForcingLike,
    n: int,
    *,
    wavenumber: int = 4,
    amplitude: float = 1.0,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> tuple[str, torch.Tensor | None]:
    """The forcing field on the ``n x n`` grid and its kind, from a ``forcing=`` argument.

    Parameters
    ----------
    forcing : {"fno", "kolmogorov", "none", None} or callable or array
        A name; a callable ``f(x, y)`` of the grid coordinates (``(n, n)`` tensors); or an
        ``(m, m)`` array / tensor, spectrally resampled to n.
    n : int
        Grid size.
    wavenumber, amplitude : int, float
        Parameters of the Kolmogorov forcing.
    device, dtype
        Where and in which dtype the field is built.

    Returns
    -------
    kind : str
        ``"fno"``, ``"kolmogorov"``, ``"none"``, ``"callable"`` or ``"array"``.
    field : torch.Tensor or None
        ``(n, n)``, or None when unforced. Its mean is not removed here.

    Examples
    --------
    >>> kind, f = build_forcing("fno", 8)
    >>> kind, tuple(f.shape)
    ('fno', (8, 8))
    >>> build_forcing(None, 8)
    ('none', None)
    """
    if forcing is None or (isinstance(forcing, str) and forcing == "none"):
        return "none", None
    if isinstance(forcing, str):
        if forcing == "fno":
            return "fno", fno_forcing(n, device=device, dtype=dtype)
        if forcing == "kolmogorov":
            f = kolmogorov_forcing(
                n, wavenumber=wavenumber, amplitude=amplitude, device=device, dtype=dtype
            )
            return "kolmogorov", f
        raise InvalidInputError(
            f"unknown forcing {forcing!r}; use one of {FORCINGS}, a callable f(x, y) or an array"
        )
    if callable(forcing):
        x, y = grid_coordinates(n, device=device, dtype=dtype)
        value = _as_field(forcing(x, y), "forcing(x, y)", device, dtype)
        if value.shape != (n, n):
            raise InvalidInputError(
                f"forcing(x, y) must return an ({n}, {n}) field, got {tuple(value.shape)}"
            )
        return "callable", value
    value = _as_field(forcing, "forcing", device, dtype)
    if value.ndim != 2:
        raise InvalidInputError(f"forcing array must be (m, m), got {tuple(value.shape)}")
    _square_size(value, "forcing")
    return "array", resample_spectral(value, n) if value.shape[-1] != n else value
