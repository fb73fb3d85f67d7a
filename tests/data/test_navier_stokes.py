import math
import warnings

import numpy as np
import pytest
import torch

from neurosolve.data.navier_stokes import (
    CFLWarning,
    NavierStokes2d,
    advection_term,
    cfl_number,
    dealias_mask,
    decaying_turbulence_vorticity,
    downsample_spectral,
    energy_spectrum,
    grid_coordinates,
    irfft2,
    kolmogorov_forcing,
    navier_stokes_samples,
    resample_spectral,
    rfft2,
    spectral_derivative,
    spectral_laplacian,
    stream_function,
    velocity_from_vorticity,
)
from neurosolve.data.random_fields import gaussian_random_field
from neurosolve.errors import InvalidInputError

TWO_PI = 2 * math.pi


def _shell5(n, dtype=torch.float64):
    """Vorticity made of modes with |k| = 5 only: an exact steady-shape solution."""
    x, y = grid_coordinates(n, dtype=dtype)
    return (
        torch.cos(TWO_PI * (3 * x + 4 * y))
        + 0.5 * torch.sin(TWO_PI * 5 * x)
        + 0.3 * torch.cos(TWO_PI * (4 * x - 3 * y))
        - 0.2 * torch.sin(TWO_PI * 5 * y)
    )


def _grf(n, batch=1, seed=0):
    return gaussian_random_field(
        (n, n), batch, rng=np.random.default_rng(seed), dtype=torch.float64
    ) * math.sqrt(2)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------- exact solutions
@pytest.mark.parametrize(
    ("dtype", "scheme"),
    [(torch.float64, "rk2"), (torch.float32, "rk2"), (torch.float64, "ab2")],
    ids=["f64-rk2", "f32-rk2", "f64-ab2"],
)
def test_taylor_green_etd_matches_exact_decay(dtype, scheme):
    nu, t = 0.01, 0.1
    w0 = _shell5(32, dtype)
    ns = NavierStokes2d(
        32, nu=nu, dt=0.01, forcing=None, diffusion="etd", scheme=scheme, dtype=dtype
    )
    traj = ns.simulate(w0, t, record_every=0.05)
    for j, tj in enumerate((0.05, 0.1)):
        exact = w0 * math.exp(-nu * 4 * math.pi**2 * 25 * tj)
        err = _rel(traj[0, j].double(), exact.double())
        assert err < (1e-13 if dtype == torch.float64 else 1e-6), err


def test_taylor_green_crank_nicolson_matches_discrete_and_exact_decay():
    nu, t = 0.01, 0.1
    w0 = _shell5(32)
    errors = []
    for dt in (0.01, 0.005):
        ns = NavierStokes2d(32, nu=nu, dt=dt, forcing=None, diffusion="cn")
        w = ns.simulate(w0, t)[0, -1]
        a = 0.5 * dt * nu * 4 * math.pi**2 * 25
        discrete = w0 * ((1 - a) / (1 + a)) ** round(t / dt)
        assert _rel(w, discrete) < 1e-13  # the scheme is exactly CN on this flow
        errors.append(_rel(w, w0 * math.exp(-nu * 4 * math.pi**2 * 25 * t)))
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.01)  # CN: second order


def test_kolmogorov_laminar_state_is_steady():
    nu, drag, k, amp = 0.05, 0.1, 2, 0.5
    f = kolmogorov_forcing(32, wavenumber=k, amplitude=amp)
    steady = f / (nu * (TWO_PI * k) ** 2 + drag)
    for diffusion, scheme in (("cn", "rk2"), ("etd", "rk2"), ("cn", "ab2"), ("etd", "ab2")):
        ns = NavierStokes2d(
            32,
            nu=nu,
            dt=0.01,
            forcing="kolmogorov",
            forcing_wavenumber=k,
            forcing_amplitude=amp,
            drag=drag,
            diffusion=diffusion,
            scheme=scheme,
        )
        torch.testing.assert_close(ns.forcing, f)
        w = ns.simulate(steady, 0.5)[0, -1]
        assert _rel(w, steady) < 1e-13


def test_mean_vorticity_stays_zero_in_forced_run():
    ns = NavierStokes2d(32, nu=1e-3, dt=0.01, forcing="fno")
    traj = ns.simulate(_grf(32, 2) + 0.7, 1.0, record_every=0.25, include_initial=True)
    means = traj.mean(dim=(-2, -1))
    assert float(means.abs().max()) < 1e-15
    assert float(traj.abs().max()) > 0.1  # the flow is not trivial


# ------------------------------------------------------------------------ time order
@pytest.mark.parametrize(
    ("diffusion", "scheme"),
    [("cn", "rk2"), ("etd", "rk2"), ("cn", "ab2"), ("etd", "ab2")],
    ids=["cn-heun", "etdrk2", "cn-ab2", "etd2"],
)
def test_forced_run_is_second_order_in_time(diffusion, scheme):
    w0 = _grf(32)
    sols = []
    for dt in (0.04, 0.02, 0.01, 0.005):
        ns = NavierStokes2d(32, nu=1e-3, dt=dt, forcing="fno", diffusion=diffusion, scheme=scheme)
        sols.append(ns.simulate(w0, 2.0)[0, -1])
    diffs = [float((sols[i] - sols[i + 1]).norm()) for i in range(3)]
    orders = [math.log2(diffs[i] / diffs[i + 1]) for i in range(2)]
    print(f"{diffusion}-{scheme}: successive differences {diffs}, observed orders {orders}")
    assert all(abs(p - 2.0) < 0.1 for p in orders), orders
    # nonlinear dynamics matter on this run: the solution is far from the linear decay
    linear = NavierStokes2d(32, nu=1e-3, dt=0.005, forcing=None, diffusion=diffusion)
    assert _rel(linear.simulate(w0, 2.0)[0, -1], sols[-1]) > 0.1


def test_spatial_resolution_convergence():
    w0 = _grf(128, seed=3)
    ref = NavierStokes2d(128, nu=1e-3, dt=0.01).simulate(w0, 1.0, out_resolution=32)
    coarse = NavierStokes2d(64, nu=1e-3, dt=0.01).simulate(w0, 1.0, out_resolution=32)
    assert _rel(coarse, ref) < 1e-6  # smooth GRF data: spectral accuracy


# ------------------------------------------------------------------- spectral helpers
def test_velocity_is_divergence_free_with_curl_equal_vorticity():
    w = _grf(32, 3)
    w_hat = rfft2(w)
    u_hat, v_hat = velocity_from_vorticity(w_hat)
    div = spectral_derivative(u_hat, (1, 0)) + spectral_derivative(v_hat, (0, 1))
    curl = spectral_derivative(v_hat, (1, 0)) - spectral_derivative(u_hat, (0, 1))
    assert float(irfft2(div).abs().max()) < 1e-14
    # odd derivatives drop the Nyquist modes (k = 16), the mean is not a velocity's curl
    keep = torch.ones(32, 17, dtype=torch.bool)
    keep[16, :] = keep[:, 16] = keep[0, 0] = False
    torch.testing.assert_close(curl * keep, w_hat * keep, rtol=0, atol=1e-15)
    assert float(curl[..., 0, 0].abs().max()) == 0.0
    psi = stream_function(w_hat)
    torch.testing.assert_close(
        irfft2(-spectral_laplacian(psi)), w - w.mean(dim=(-2, -1), keepdim=True)
    )


def test_advection_term_matches_analytic_product():
    n = 32
    x, y = grid_coordinates(n)
    # w = sin(2 pi x) cos(4 pi y) + cos(2 pi (3 x + y)): modes <= 3, product modes <= 6 < n/3
    w = torch.sin(TWO_PI * x) * torch.cos(2 * TWO_PI * y) + torch.cos(TWO_PI * (3 * x + y))
    psi = torch.sin(TWO_PI * x) * torch.cos(2 * TWO_PI * y) / (4 * math.pi**2 * 5) + torch.cos(
        TWO_PI * (3 * x + y)
    ) / (4 * math.pi**2 * 10)
    psi_x = TWO_PI * torch.cos(TWO_PI * x) * torch.cos(2 * TWO_PI * y) / (
        4 * math.pi**2 * 5
    ) - 3 * TWO_PI * torch.sin(TWO_PI * (3 * x + y)) / (4 * math.pi**2 * 10)
    psi_y = -2 * TWO_PI * torch.sin(TWO_PI * x) * torch.sin(2 * TWO_PI * y) / (
        4 * math.pi**2 * 5
    ) - TWO_PI * torch.sin(TWO_PI * (3 * x + y)) / (4 * math.pi**2 * 10)
    w_x = TWO_PI * torch.cos(TWO_PI * x) * torch.cos(2 * TWO_PI * y) - 3 * TWO_PI * torch.sin(
        TWO_PI * (3 * x + y)
    )
    w_y = -2 * TWO_PI * torch.sin(TWO_PI * x) * torch.sin(2 * TWO_PI * y) - TWO_PI * torch.sin(
        TWO_PI * (3 * x + y)
    )
    exact = psi_y * w_x - psi_x * w_y
    assert float(exact.abs().max()) > 0.1  # the product is not trivially zero
    del psi
    for dealias in (True, False):
        got = irfft2(advection_term(rfft2(w), dealias=dealias))
        torch.testing.assert_close(got, exact, rtol=0, atol=1e-12)


def test_dealiasing_removes_aliases():
    n = 12  # kept band |k| <= 3; modes at 4 are outside it
    x, y = grid_coordinates(n)
    w = torch.cos(TWO_PI * 3 * x) + torch.cos(TWO_PI * (2 * x + 3 * y))
    adv = advection_term(rfft2(w))
    assert torch.all(adv[~dealias_mask(n)] == 0)
    assert int(dealias_mask(64).sum()) == 43 * 22  # |k_x| <= 21, 0 <= k_y <= 21
    assert int(dealias_mask(48).sum()) == 31 * 16  # 3 | n: |k| <= 15 (not 16)


def test_resample_and_downsample_spectral():
    x, y = grid_coordinates(64)
    w = torch.sin(TWO_PI * (3 * x - 2 * y)) + torch.cos(TWO_PI * 7 * y) * torch.sin(TWO_PI * x)
    xc, yc = grid_coordinates(16)
    coarse = torch.sin(TWO_PI * (3 * xc - 2 * yc)) + torch.cos(TWO_PI * 7 * yc) * torch.sin(
        TWO_PI * xc
    )
    torch.testing.assert_close(downsample_spectral(w, 16), coarse, rtol=0, atol=1e-13)
    torch.testing.assert_close(resample_spectral(coarse, 64), w, rtol=0, atol=1e-13)
    # modes above the coarse band are dropped, the rest is kept
    high = w + torch.cos(TWO_PI * 20 * x)
    torch.testing.assert_close(downsample_spectral(high, 16), coarse, rtol=0, atol=1e-13)
    with pytest.raises(InvalidInputError, match="exceeds"):
        downsample_spectral(w, 128)


def test_cfl_number_and_warning():
    x, y = grid_coordinates(32)
    w = TWO_PI * torch.cos(TWO_PI * y)  # u = -sin(2 pi y), v = 0: max|u| = 1
    assert cfl_number(rfft2(w), 0.01) == pytest.approx(0.32)
    with pytest.warns(CFLWarning, match="CFL"):
        NavierStokes2d(32, nu=1e-3, dt=0.05, forcing=None).simulate(w, 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NavierStokes2d(32, nu=1e-3, dt=0.01, forcing=None).simulate(w, 0.05)


# ------------------------------------------------------------------ decaying turbulence
def test_decaying_turbulence_initial_spectrum_matches_prescription():
    n, kp, energy = 64, 5.0, 0.3
    w = decaying_turbulence_vorticity(
        n, 3, rng=np.random.default_rng(0), peak_wavenumber=kp, energy=energy
    )
    k, E = energy_spectrum(w)
    shells = k.double().numpy()
    target = np.zeros_like(shells)
    resolved = (shells >= 1) & (shells <= math.ceil(math.sqrt(2) * 21))
    target[resolved] = (shells[resolved] / kp) ** 4 * np.exp(-2 * (shells[resolved] / kp) ** 2)
    target *= energy / target.sum()
    for b in range(3):
        np.testing.assert_allclose(E[b].numpy(), target, rtol=1e-10, atol=1e-16)
    # kinetic energy computed on the grid from the velocity agrees
    u_hat, v_hat = velocity_from_vorticity(rfft2(w))
    ke = 0.5 * (irfft2(u_hat) ** 2 + irfft2(v_hat) ** 2).mean(dim=(-2, -1))
    torch.testing.assert_close(ke, torch.full((3,), energy, dtype=torch.float64))
    assert not torch.allclose(w[0], w[1])  # random phases differ per sample


def test_decaying_turbulence_power_law_and_energy_decay():
    w0 = decaying_turbulence_vorticity(
        32, rng=np.random.default_rng(1), spectrum=lambda k: k**-3.0 * (k >= 2), energy=0.05
    )
    _, E = energy_spectrum(w0)
    assert E[0, 1] < 1e-25 and E[0, 2] / E[0, 4] == pytest.approx(8.0, rel=1e-10)
    ns = NavierStokes2d(32, nu=1e-3, dt=0.005, forcing=None)
    traj = ns.simulate(w0, 1.0, record_every=0.25, include_initial=True)
    energies = energy_spectrum(traj)[1].sum(-1)[0]
    assert torch.all(energies[1:] < energies[:-1])  # unforced flow loses energy


# ------------------------------------------------------------------------- samples
def test_navier_stokes_samples_shapes_and_batch_invariance():
    kw = dict(resolution=16, sim_resolution=32, dt=0.02, record_every=0.2, t_in=2, t_out=3)
    rngs = [np.random.default_rng([11, i]) for i in range(3)]
    x, y = navier_stokes_samples(rngs, **kw)
    assert x.shape == (3, 2, 16, 16) and y.shape == (3, 3, 16, 16) and x.dtype == np.float64
    for i in (0, 2):
        xi, yi = navier_stokes_samples([np.random.default_rng([11, i])], **kw)
        # MKL with several threads may change the last bits with the batch size
        np.testing.assert_allclose(xi[0], x[i], rtol=0, atol=1e-13)
        np.testing.assert_allclose(yi[0], y[i], rtol=0, atol=1e-13)
    # the trajectory is one simulation: x then y at consecutive record times
    ns = NavierStokes2d(32, nu=1e-3, dt=0.02)
    w0 = gaussian_random_field(
        (32, 32), rng=[np.random.default_rng([11, 1])], dtype=torch.float64
    ) * math.sqrt(2)
    traj = ns.simulate(w0, 1.0, record_every=0.2, out_resolution=16).numpy()
    np.testing.assert_allclose(np.concatenate([x[1], y[1]]), traj[0], rtol=0, atol=1e-12)


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.usefixtures("one_thread")
def test_navier_stokes_samples_bitwise_batch_invariant_with_one_thread():
    kw = dict(resolution=16, sim_resolution=32, dt=0.02, record_every=0.2, t_in=1, t_out=2)
    x, y = navier_stokes_samples([np.random.default_rng([12, i]) for i in range(5)], **kw)
    for i, batch in ((0, [0]), (4, [4]), (3, [2, 3])):
        xb, yb = navier_stokes_samples([np.random.default_rng([12, j]) for j in batch], **kw)
        np.testing.assert_array_equal(xb[batch.index(i)], x[i])
        np.testing.assert_array_equal(yb[batch.index(i)], y[i])


def test_navier_stokes_samples_options():
    kw = dict(resolution=16, sim_resolution=32, dt=0.05, record_every=0.5)
    rng = np.random.default_rng(4)
    x, y = navier_stokes_samples(
        rng, t_final=2.0, burn_in=0.5, t_in=1, t_out=None, include_initial=True, **kw
    )
    assert x.shape == (1, 1, 16, 16) and y.shape == (1, 3, 16, 16)
    x2, y2 = navier_stokes_samples(
        [np.random.default_rng(4)], t_final=2.0, t_in=1, t_out=None, include_initial=False, **kw
    )
    np.testing.assert_array_equal(x2[0, 0], x[0, 0])  # state at t = 0.5 both ways
    np.testing.assert_array_equal(y2[0], y[0])
    xd, yd = navier_stokes_samples(
        [np.random.default_rng(5)],
        initial="decaying",
        energy=0.01,
        forcing=None,
        t_in=1,
        t_out=1,
        dtype=torch.float32,
        **{**kw, "dt": 0.01},
    )
    assert xd.dtype == np.float32 and np.isfinite(yd).all()
    with pytest.raises(InvalidInputError, match="t_in"):
        navier_stokes_samples(rng, t_final=2.0, t_in=3, t_out=3, **kw)
    with pytest.raises(InvalidInputError, match="initial"):
        navier_stokes_samples(rng, initial="vortex", t_in=1, t_out=1, **kw)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 3}, "resolution"),
        ({"resolution": 16.0}, "resolution"),
        ({"nu": 0.0}, "nu"),
        ({"nu": -1e-3}, "nu"),
        ({"nu": float("nan")}, "nu"),
        ({"dt": 0.0}, "dt"),
        ({"dt": float("inf")}, "dt"),
        ({"drag": -0.1}, "drag"),
        ({"forcing": "tidal"}, "forcing"),
        ({"forcing": lambda x, y: x[:4]}, "forcing"),
        ({"forcing": np.full((16, 16), np.nan)}, "NaN"),
        ({"diffusion": "implicit"}, "diffusion"),
        ({"scheme": "rk4"}, "scheme"),
        ({"dtype": torch.float16}, "dtype"),
    ],
)
def test_solver_rejects_bad_parameters(kwargs, match):
    args = {"resolution": 16, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        NavierStokes2d(args.pop("resolution"), **args)


def test_simulate_rejects_bad_input():
    ns = NavierStokes2d(16, dt=0.01)
    w = torch.zeros(16, 16)
    with pytest.raises(InvalidInputError, match="NaN"):
        ns.simulate(torch.full((16, 16), float("nan")), 0.1)
    with pytest.raises(InvalidInputError, match="shape"):
        ns.simulate(torch.zeros(16, 8), 0.1)
    with pytest.raises(InvalidInputError, match="multiple"):
        ns.simulate(w, 1.0, record_every=0.3)
    with pytest.raises(InvalidInputError, match="t_final"):
        ns.simulate(w, -1.0)
    with pytest.raises(InvalidInputError, match="non-finite"), pytest.warns(CFLWarning):
        NavierStokes2d(16, nu=1e-4, dt=1.0).simulate(_grf(16) * 500, 10.0, 1.0)


def test_forcing_callable_and_array_agree():
    a = NavierStokes2d(16, forcing=lambda x, y: 0.1 * torch.sin(2 * math.pi * (x + y)) + 1.0)
    x, y = grid_coordinates(32)
    b = NavierStokes2d(16, forcing=(0.1 * torch.sin(2 * math.pi * (x + y))).numpy())
    torch.testing.assert_close(a.forcing, b.forcing)  # mean removed, resampled to 16
    assert "NavierStokes2d(resolution=16" in repr(a)
