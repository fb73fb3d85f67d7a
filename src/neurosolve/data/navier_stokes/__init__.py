"""2D incompressible Navier-Stokes on the periodic unit square: solver, toolbox and data.

A pseudo-spectral solver in vorticity form, the spectral helpers it is built from, and the
trajectory datasets of operator learning (FNO's Navier-Stokes benchmark and variants).
The submodules hold one concern each:

- :mod:`~neurosolve.data.navier_stokes.spectral`: batch-invariant transforms, wavenumbers,
  derivatives, resampling, spectra and the one dealiased advection term;
- :mod:`~neurosolve.data.navier_stokes.forcing`: the vorticity forcings;
- :mod:`~neurosolve.data.navier_stokes.solver`: :class:`NavierStokes2d`, the time stepper;
- :mod:`~neurosolve.data.navier_stokes.samples`: initial vorticities and
  :func:`navier_stokes_samples`.

The public names of all four are re-exported here.
"""

from neurosolve.data.navier_stokes.forcing import build_forcing, fno_forcing, kolmogorov_forcing
from neurosolve.data.navier_stokes.samples import (
    decaying_turbulence_vorticity,
    navier_stokes_samples,
)
from neurosolve.data.navier_stokes.solver import CFLWarning, NavierStokes2d
from neurosolve.data.navier_stokes.spectral import (
    DEALIAS_RULES,
    advection_term,
    cfl_number,
    dealias_mask,
    downsample_spectral,
    energy_spectrum,
    grid_coordinates,
    irfft2,
    resample_spectral,
    rfft2,
    spectral_derivative,
    spectral_laplacian,
    stream_function,
    velocity_from_vorticity,
    wavenumbers,
)

__all__ = [
    "DEALIAS_RULES",
    "CFLWarning",
    "NavierStokes2d",
    "advection_term",
    "build_forcing",
    "cfl_number",
    "dealias_mask",
    "decaying_turbulence_vorticity",
    "downsample_spectral",
    "energy_spectrum",
    "fno_forcing",
    "grid_coordinates",
    "irfft2",
    "kolmogorov_forcing",
    "navier_stokes_samples",
    "resample_spectral",
    "rfft2",
    "spectral_derivative",
    "spectral_laplacian",
    "stream_function",
    "velocity_from_vorticity",
    "wavenumbers",
]
