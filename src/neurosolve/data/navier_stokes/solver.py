r"""The pseudo-spectral Navier-Stokes time stepper: :class:`NavierStokes2d`.

The solver integrates 2D incompressible Navier-Stokes in vorticity form on the periodic
unit square,

.. math::

    \partial_t \omega + u \cdot \nabla \omega = \nu \Delta \omega - \mu \omega + f,
    \qquad u = (\partial_y \psi, -\partial_x \psi), \qquad -\Delta \psi = \omega,

with the nonlinear term from :func:`~neurosolve.data.navier_stokes.spectral.advection_term`
(2/3 rule) and the linear term diagonal in Fourier space. Every time-stepping variant is
second order (``tests/data/test_navier_stokes.py`` measures it):

- ``diffusion="cn"`` (default, the scheme of the FNO data): Crank-Nicolson for the linear
  term and Heun's predictor-corrector (explicit trapezoid, RK2) for advection and forcing::

      w* = [(1 + dt L/2) w_n + dt N(w_n)] / (1 - dt L/2)
      w_{n+1} = [(1 + dt L/2) w_n + dt/2 (N(w_n) + N(w*))] / (1 - dt L/2)

  with ``L = -nu 4 pi^2 |k|^2 - mu`` and ``N(w) = f - u . grad w``.
- ``diffusion="etd"``: exponential time differencing, ETDRK2 of Cox & Matthews (2002)::

      a = E w_n + dt phi1(dt L) N(w_n)
      w_{n+1} = a + dt phi2(dt L) (N(a) - N(w_n))

  with ``E = exp(dt L)``, ``phi1(z) = (e^z - 1) / z``, ``phi2(z) = (e^z - 1 - z) / z^2``.
  The linear part and a constant forcing are integrated exactly, so unforced single-shell
  flows (Taylor-Green) decay as the exact solution to rounding error and laminar steady
  states (Kolmogorov flow) stay put.
- ``scheme="ab2"`` replaces the two-stage explicit part by two-step Adams-Bashforth (one
  nonlinear evaluation per step, so half the cost): CN-AB2
  ``w_{n+1} = [(1 + dt L/2) w_n + dt (3/2 N_n - 1/2 N_{n-1})] / (1 - dt L/2)``, or ETD2
  ``w_{n+1} = E w_n + dt phi1 N_n + dt phi2 (N_n - N_{n-1})``; the first step of each
  :meth:`NavierStokes2d.simulate` call is the two-stage one.

Differences from the FNO data generator (which uses the same CN + Heun scheme): the
nonlinear term is formed from the dealiased vorticity as well as truncated afterwards (FNO
masks only the result, so aliases of the undamped high modes of the initial condition
enter); the 2/3 mask is ``3 |k| < n`` (identical for n = 64, 128, 256); stored snapshots are
spectral truncations, not point subsamples of the fine grid; GRF initial conditions use
float64 numpy white noise (per-sample seeding) with FNO's effective variance (see
:func:`~neurosolve.data.navier_stokes.navier_stokes_samples`).

Batch invariance: a sample simulated in a batch and the same sample simulated alone give
the same bits on CPU with one intra-op thread (``OMP_NUM_THREADS=1``): every transform runs
along contiguous rows of a fixed length (see :func:`~neurosolve.data.navier_stokes.rfft2`)
and nothing reduces over the batch except the CFL check, a maximum. With several threads,
or on GPUs, FFT libraries promise no such thing and results agree to rounding error.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch

from neurosolve._util.progress import progress_bar
from neurosolve._util.validate import float_dtype, integer, positive
from neurosolve.data.navier_stokes.forcing import ForcingLike, _as_field, build_forcing
from neurosolve.data.navier_stokes.spectral import (
    _advection,
    _operators,
    _resample_hat,
    _square_size,
    cfl_number,
    irfft2,
    rfft2,
)
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError

__all__ = ["CFLWarning", "NavierStokes2d"]

logger = logging.getLogger(__name__)


class CFLWarning(UserWarning):
    """The advective Courant number of a simulation exceeds the solver's limit."""


@dataclass
class _StepCoefficients:
    dt: float
    a: torch.Tensor  # CN: (1 + dt L/2) / (1 - dt L/2) ; ETD: exp(dt L)
    b: torch.Tensor  # CN: dt / (1 - dt L/2)           ; ETD: dt phi1(dt L)
    c: torch.Tensor | None = None  # ETD: dt phi2(dt L)


def _phi_functions(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """phi1(z) = (e^z - 1) / z and phi2(z) = (e^z - 1 - z) / z^2, accurate near z = 0."""
    small = z.abs() < 1e-3
    zs = torch.where(small, 1.0, z)
    phi1 = torch.where(small, 1 + z / 2 + z**2 / 6 + z**3 / 24, torch.expm1(zs) / zs)
    taylor2 = 0.5 + z / 6 + z**2 / 24 + z**3 / 120 + z**4 / 720
    phi2 = torch.where(small, taylor2, (torch.expm1(zs) - zs) / zs**2)
    return phi1, phi2


class NavierStokes2d:
    """Pseudo-spectral solver of 2D incompressible Navier-Stokes (vorticity form, unit torus).

    See the module docstring for the equations, the time stepping (second order) and the
    conventions. One solver object holds the grid, the parameters and the precomputed
    spectral operators; :meth:`simulate` integrates any batch of initial vorticities.

    Parameters
    ----------
    resolution : int
        Simulation grid size n (>= 4).
    nu : float
        Kinematic viscosity (> 0).
    dt : float
        Time step (> 0). :meth:`simulate` shortens it, if needed, so that each record
        interval holds a whole number of steps.
    forcing : {"fno", "kolmogorov", None} or callable or array
        Time-independent vorticity forcing f: ``"fno"`` = ``0.1 (sin 2 pi (x + y) + cos 2 pi
        (x + y))``; ``"kolmogorov"`` = :func:`kolmogorov_forcing`; ``None`` unforced; a
        callable ``f(x, y)`` of the grid coordinates (``(n, n)`` tensors); or an ``(m, m)``
        array / tensor (spectrally resampled to n). Its mean is removed (vorticity on the
        torus has zero mean).
    device : torch.device or str, optional
        Device of the simulation.
    dtype : torch.dtype
        float64 (default) or float32.

    Other Parameters
    ----------------
    diffusion : {"cn", "etd"}
        Crank-Nicolson (FNO data) or exponential time differencing of the linear term.
    scheme : {"rk2", "ab2"}
        Explicit part: two-stage (Heun / ETDRK2, FNO data) or two-step Adams-Bashforth
        (CN-AB2 / ETD2), which needs one nonlinear evaluation per step instead of two
        (half the cost) at the price of a larger error constant and a smaller stability
        region. Both are second order.
    drag : float
        Linear drag coefficient mu >= 0 (often 0.1 with Kolmogorov forcing).
    forcing_wavenumber, forcing_amplitude : int, float
        Parameters of the Kolmogorov forcing (default 4 and 1).
    dealias : bool
        Apply the 2/3 rule (default True).
    max_cfl : float
        Warn (:class:`CFLWarning`) when the advective Courant number
        ``dt n (max|u| + max|v|)`` exceeds it, checked at the start and at every record
        (default 0.5; Heun's method is only marginally stable for pure advection, so runs
        near the limit rely on viscosity).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data.random_fields import gaussian_random_field
    >>> ns = NavierStokes2d(32, nu=1e-3, dt=1e-2)
    >>> w0 = gaussian_random_field((32, 32), 2, rng=np.random.default_rng(0),
    ...                            dtype=torch.float64)
    >>> traj = ns.simulate(w0, t_final=0.5, record_every=0.25)
    >>> traj.shape
    torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        resolution: int,
        *,
        nu: float = 1e-3,
        dt: float = 1e-4,
        forcing: ForcingLike = "fno",
        device=None,
        dtype: torch.dtype = torch.float64,
        diffusion: str = "cn",
        scheme: str = "rk2",
        drag: float = 0.0,
        forcing_wavenumber: int = 4,
        forcing_amplitude: float = 1.0,
        dealias: bool = True,
        max_cfl: float = 0.5,
    ) -> None:
        self.n = integer(resolution, "resolution", minimum=4)
        self.nu = positive(nu, "nu")
        self.dt = positive(dt, "dt")
        self.drag = positive(drag, "drag", allow_zero=True)
        self.max_cfl = positive(max_cfl, "max_cfl")
        self.dtype = float_dtype(dtype)
        self.device = resolve_device(device)
        if diffusion not in ("cn", "etd"):
            raise InvalidInputError(f"diffusion must be 'cn' or 'etd', got {diffusion!r}")
        if scheme not in ("rk2", "ab2"):
            raise InvalidInputError(f"scheme must be 'rk2' or 'ab2', got {scheme!r}")
        self.diffusion = diffusion
        self.scheme = scheme
        self.dealias = bool(dealias)
        self._ops = _operators(self.n, self.device, self.dtype)
        self.forcing_name, self.forcing = build_forcing(
            forcing,
            self.n,
            wavenumber=forcing_wavenumber,
            amplitude=forcing_amplitude,
            device=self.device,
            dtype=self.dtype,
        )
        self.forcing_hat = None if self.forcing is None else rfft2(self.forcing)
        if self.forcing_hat is not None:
            self.forcing_hat[..., 0, 0] = 0.0
            self.forcing = irfft2(self.forcing_hat, self.n)
        # L, real (n, n // 2 + 1), kept in float64: the step coefficients are built from it
        lap64 = _operators(self.n, self.device, torch.float64)["lap"]
        self.linear = self.nu * lap64 - self.drag

    def __repr__(self) -> str:
        return (
            f"NavierStokes2d(resolution={self.n}, nu={self.nu:g}, dt={self.dt:g}, "
            f"forcing={self.forcing_name!r}, diffusion={self.diffusion!r}, "
            f"scheme={self.scheme!r}, drag={self.drag:g}, "
            f"device={str(self.device)!r}, dtype={self.dtype})"
        )

    def _coefficients(self, dt: float) -> _StepCoefficients:
        L = self.linear
        if self.diffusion == "cn":
            denom = 1.0 / (1.0 - 0.5 * dt * L)
            a, b, c = (1.0 + 0.5 * dt * L) * denom, dt * denom, None
        else:
            phi1, phi2 = _phi_functions(dt * L)
            a, b, c = torch.exp(dt * L), dt * phi1, (dt * phi2).to(self.dtype)
        return _StepCoefficients(dt, a.to(self.dtype), b.to(self.dtype), c)

    # ---------------------------------------------------------------------- transforms
    def to_spectral(self, w) -> torch.Tensor:
        """Fourier coefficients of vorticity ``(n, n)`` / ``(B, n, n)`` (resampled to n).

        The result always has a batch axis and zero mean mode.
        """
        w = _as_field(w, "vorticity", self.device, self.dtype)
        if w.ndim == 2:
            w = w.unsqueeze(0)
        if w.ndim != 3:
            raise InvalidInputError(f"vorticity must be (n, n) or (B, n, n), got {tuple(w.shape)}")
        m = _square_size(w, "vorticity")
        if m < 2:
            raise InvalidInputError(f"vorticity grid must be at least 2 x 2, got {m}")
        w_hat = _resample_hat(rfft2(w), self.n)
        w_hat[..., 0, 0] = 0.0
        return w_hat

    def to_physical(self, w_hat: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Grid values of Fourier coefficients, on the ``size`` grid (default n)."""
        size = self.n if size is None else integer(size, "size", minimum=2)
        return irfft2(_resample_hat(w_hat, size), size)

    # ------------------------------------------------------------------------ stepping
    def nonlinear(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Explicit part ``N(w) = f - u . grad w`` in Fourier space."""
        adv = _advection(w_hat, self._ops, self.n, dealias=self.dealias)
        return -adv if self.forcing_hat is None else self.forcing_hat - adv

    def _step(self, w_hat: torch.Tensor, c: _StepCoefficients, n_prev=None):
        """One step; returns ``(w_{n+1}, N(w_n))`` (the latter feeds the next AB2 step)."""
        n0 = self.nonlinear(w_hat)
        if n_prev is not None:  # two-step schemes (scheme="ab2")
            if self.diffusion == "cn":
                return c.a * w_hat + c.b * (1.5 * n0 - 0.5 * n_prev), n0
            return c.a * w_hat + c.b * n0 + c.c * (n0 - n_prev), n0
        if self.diffusion == "cn":
            base = c.a * w_hat
            predictor = base + c.b * n0
            return base + (0.5 * c.b) * (n0 + self.nonlinear(predictor)), n0
        stage = c.a * w_hat + c.b * n0
        return stage + c.c * (self.nonlinear(stage) - n0), n0

    def _advance(self, w_hat, c, steps, n_prev):
        multistep = self.scheme == "ab2"
        for _ in range(steps):
            w_hat, n_last = self._step(w_hat, c, n_prev)
            n_prev = n_last if multistep else None
        return w_hat, n_prev

    def step(self, w_hat: torch.Tensor, steps: int = 1, dt: float | None = None) -> torch.Tensor:
        """Advance Fourier coefficients ``(B, n, n // 2 + 1)`` by ``steps`` steps of ``dt``.

        Examples
        --------
        >>> from neurosolve.data.navier_stokes import grid_coordinates
        >>> ns = NavierStokes2d(16, nu=0.01, dt=0.01, forcing=None, diffusion="etd")
        >>> x, y = grid_coordinates(16)
        >>> w1 = ns.to_physical(ns.step(ns.to_spectral(torch.sin(2 * math.pi * x)), 10))
        >>> decay = math.exp(-0.01 * 4 * math.pi**2 * 0.1)
        >>> torch.allclose(w1[0], decay * torch.sin(2 * math.pi * x), rtol=0, atol=1e-14)
        True
        """
        steps = integer(steps, "steps", minimum=0)
        c = self._coefficients(self.dt if dt is None else positive(dt, "dt"))
        return self._advance(w_hat, c, steps, None)[0]

    def _check_cfl(self, w_hat: torch.Tensor, dt: float, t: float, warned: bool) -> bool:
        if warned:
            return True
        cfl = cfl_number(w_hat, dt)
        if cfl > self.max_cfl:
            warnings.warn(
                f"advective CFL number {cfl:.3g} exceeds {self.max_cfl:g} at t={t:g} "
                f"(dt={dt:g}, n={self.n}); the run may be inaccurate or blow up, reduce dt",
                CFLWarning,
                stacklevel=3,
            )
            return True
        return False

    def simulate(
        self,
        w0,
        t_final: float,
        record_every: float | None = None,
        progress: bool = False,
        *,
        out_resolution: int | None = None,
        include_initial: bool = False,
        t_start: float = 0.0,
    ) -> torch.Tensor:
        """Integrate initial vorticities and record snapshots.

        Parameters
        ----------
        w0 : torch.Tensor or numpy.ndarray
            Initial vorticity ``(n', n')`` or ``(B, n', n')``; resampled spectrally when
            ``n' != n``; its mean is removed.
        t_final : float
            Integration time (> 0), a whole multiple of ``record_every``.
        record_every : float, optional
            Time between snapshots (default ``t_final``: only the final state).
        progress : bool
            Show a tqdm bar (only when stderr is a terminal).
        out_resolution : int, optional
            Grid of the returned snapshots (spectral resampling; default n).
        include_initial : bool
            Prepend the snapshot at time 0.
        t_start : float
            Time added to the times quoted in warnings and errors (for callers that
            continue a run).

        Returns
        -------
        torch.Tensor
            ``(B, T, m, m)`` with ``T = t_final / record_every`` (+1 with the initial
            state): snapshot ``j`` is the state at ``(j + 1) * record_every``.
        """
        t_final = positive(t_final, "t_final")
        record_every = t_final if record_every is None else positive(record_every, "record_every")
        ratio = t_final / record_every
        records = round(ratio)
        if records < 1 or abs(ratio - records) > 1e-9 * max(1.0, ratio):
            raise InvalidInputError(
                f"t_final ({t_final:g}) must be a whole multiple of record_every ({record_every:g})"
            )
        steps_per_record = max(1, math.ceil(record_every / self.dt - 1e-9))
        dt = record_every / steps_per_record
        if abs(dt - self.dt) > 1e-12 * self.dt:
            logger.info("dt shortened from %g to %g (whole steps per record)", self.dt, dt)
        m = self.n
        if out_resolution is not None:
            m = integer(out_resolution, "out_resolution", minimum=2)
        c = self._coefficients(dt)

        w_hat = self.to_spectral(w0)
        batch = w_hat.shape[0]
        total = records + int(bool(include_initial))
        out = torch.empty((batch, total, m, m), dtype=self.dtype, device=self.device)
        j = 0
        if include_initial:
            out[:, 0] = self.to_physical(w_hat, m)
            j = 1
        warned = self._check_cfl(w_hat, dt, t_start, False)

        with progress_bar(
            total=records * steps_per_record,
            enabled=bool(progress),
            unit="step",
            desc="navier-stokes",
        ) as bar:
            n_prev = None  # AB2 history (the first step is the RK2 one)
            for r in range(records):
                w_hat, n_prev = self._advance(w_hat, c, steps_per_record, n_prev)
                t = t_start + (r + 1) * record_every
                if not bool(torch.isfinite(w_hat).all()):
                    raise InvalidInputError(
                        f"the simulation became non-finite by t={t:g} (dt={dt:g}, n={self.n}, "
                        f"CFL at the last check may have been too large); reduce dt"
                    )
                warned = self._check_cfl(w_hat, dt, t, warned)
                out[:, j] = self.to_physical(w_hat, m)
                j += 1
                bar.update(steps_per_record)
        return out

