"""A posteriori estimator, H^-1 norm and the Spectral-Refiner."""

import math

import numpy as np
import pytest
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.operators.refine import (
    _dealiased_advection,
    fd_weights,
    forcing_field,
    hminus1_norm,
    navier_stokes_residual,
    relative_error,
    residual_estimator,
    sobolev_norm,
    spectral_refine,
    time_derivative,
)
from neurosolve.operators.sfno import SFNO

TWO_PI = 2.0 * math.pi


def _grid(n):
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")


# ----------------------------------------------------------------------------- H^-1 norm


def test_hminus1_norm_matches_direct_fourier_quadrature():
    rng = np.random.default_rng(0)
    n, alpha = 10, 0.7
    g = rng.standard_normal((n, n))
    # direct: g_hat_k = (1/n^2) sum_j g_j exp(-2 pi i k.x_j), summed over k by explicit loops
    j = np.arange(n)
    total = 0.0
    for k1 in range(-(n // 2), n - n // 2):
        for k2 in range(-(n // 2), n - n // 2):
            phase = np.exp(-2j * np.pi * (k1 * j[:, None] + k2 * j[None, :]) / n)
            coeff = (g * phase).sum() / n**2
            total += abs(coeff) ** 2 / (alpha + 4 * np.pi**2 * (k1**2 + k2**2))
    ours = hminus1_norm(torch.from_numpy(g), alpha=alpha)
    assert float(ours) == pytest.approx(math.sqrt(total), rel=1e-12)


@pytest.mark.parametrize("k", [(1, 0), (3, 2), (0, 5)])
def test_hminus1_norm_of_a_fourier_mode_is_exponent_minus_one(k):
    # ||cos(2 pi k.x)||_{H^-1}^2 = 1/2 / (alpha + 4 pi^2 |k|^2): a true H^-1 weight (an
    # H^-1/2 norm as in the reference code would give the square root of that weight)
    X, Y = _grid(16)
    g = torch.cos(TWO_PI * (k[0] * X + k[1] * Y))
    expected = math.sqrt(0.5 / (1.0 + 4 * math.pi**2 * (k[0] ** 2 + k[1] ** 2)))
    assert float(hminus1_norm(g)) == pytest.approx(expected, rel=1e-12)


def test_hminus1_is_the_dual_norm_of_h1():
    # ||g||_{-1} = sup_v <g, v> / ||v||_{1}, attained at v = (alpha - Lap)^{-1} g
    rng = np.random.default_rng(1)
    n, alpha = 12, 2.0
    g = torch.from_numpy(rng.standard_normal((n, n)))
    k = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
    weight = alpha + 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    v_star = torch.fft.ifft2(torch.fft.fft2(g) / weight).real
    norm = float(hminus1_norm(g, alpha=alpha))

    def ratio(v):
        return float((g * v).mean() / sobolev_norm(v, 1.0, alpha=alpha))

    assert ratio(v_star) == pytest.approx(norm, rel=1e-12)
    for _ in range(5):
        assert ratio(torch.from_numpy(rng.standard_normal((n, n)))) < norm


def test_norm_rejects_bad_alpha():
    with pytest.raises(InvalidInputError, match="alpha"):
        hminus1_norm(torch.zeros(4, 4), alpha=0.0)


# ----------------------------------------------------------------------------- time


def test_fd_weights_are_exact_on_polynomials():
    for offsets in ([-2, -1, 0, 1, 2], [0, 1, 2, 3, 4], [-4, -3, -2, -1, 0]):
        c = fd_weights(offsets)
        for degree in range(5):
            exact = 1.0 if degree == 1 else 0.0  # d/dt t^degree at 0
            assert np.dot(c, np.asarray(offsets, float) ** degree) == pytest.approx(
                exact, abs=1e-12
            )


@pytest.mark.parametrize("order", [2, 4, 6])
def test_time_derivative_converges_at_its_order(order):
    errors = []
    for steps in (21, 41):
        t = torch.linspace(0.0, 2.0, steps, dtype=torch.float64)
        dt = float(t[1] - t[0])
        d = time_derivative(torch.sin(3 * t), dt, order=order, dim=0)
        errors.append(float((d - 3 * torch.cos(3 * t)).abs().max()))
    rate = math.log2(errors[0] / errors[1])
    assert rate == pytest.approx(order, abs=0.6)


# ----------------------------------------------------------------------------- residual


@pytest.mark.parametrize("n", [12, 13])
def test_dealiased_advection_equals_exact_projection(n):
    # u.grad w of a band-limited field computed exactly on a 4x finer grid, then projected
    from neurosolve.data import navier_stokes as ns

    rng = np.random.default_rng(2)
    w = torch.from_numpy(rng.standard_normal((2, n, n)))
    w = ns.resample_spectral(ns.resample_spectral(w, n - 1 if n % 2 == 0 else n), n)
    w_hat = ns.rfft2(w)
    ours = _dealiased_advection(w_hat, n)
    big = 4 * n
    u_hat, v_hat = ns.velocity_from_vorticity(w_hat)
    parts = [u_hat, v_hat, ns.spectral_derivative(w_hat, (1, 0))]
    parts.append(ns.spectral_derivative(w_hat, (0, 1)))
    u, v, wx, wy = (ns.resample_spectral(ns.irfft2(p, n), big) for p in parts)
    exact = ns.resample_spectral(u * wx + v * wy, n)  # keeps |k| < n/2 of the exact product
    torch.testing.assert_close(ns.irfft2(ours, n), exact, rtol=1e-11, atol=1e-11)
    # the plain (aliased) product on the n-grid differs
    u, v, wx, wy = (ns.irfft2(p, n) for p in parts)
    assert not torch.allclose(u * wx + v * wy, exact, atol=1e-3)


def _manufactured(n=16, steps=7, dt=0.05, nu=0.01):
    """w = a(t) sin(2 pi x) + b(t) cos(4 pi y) with quadratic a, b and its exact residual."""
    X, Y = _grid(n)
    t = dt * torch.arange(steps, dtype=torch.float64)
    a, da = 1 + t + 0.5 * t**2, 1 + t
    b, db = 0.5 - 2 * t + t**2, -2 + 2 * t
    s1, c4 = torch.sin(TWO_PI * X), torch.cos(2 * TWO_PI * Y)

    def e(v):
        return v[:, None, None]

    w = e(a) * s1 + e(b) * c4
    # u = psi_y, v = -psi_x with -Lap psi = w:  u.grad w = 1.5 a b cos(2 pi x) sin(4 pi y)
    r = (
        e(da) * s1
        + e(db) * c4
        + 1.5 * e(a * b) * torch.cos(TWO_PI * X) * torch.sin(2 * TWO_PI * Y)
        + nu * (4 * math.pi**2 * e(a) * s1 + 16 * math.pi**2 * e(b) * c4)
    )
    return w[None], r[None], dt, nu


def test_residual_matches_manufactured_solution_including_advection():
    w, r_expected, dt, nu = _manufactured()
    r = navier_stokes_residual(w, dt, nu=nu, forcing=None, time_order=4)
    torch.testing.assert_close(r, r_expected, rtol=1e-10, atol=1e-10)
    # the forcing enters with a minus sign
    f = forcing_field("fno", 16)
    r_f = navier_stokes_residual(w, dt, nu=nu, forcing="fno")
    torch.testing.assert_close(r_f, r_expected - f, rtol=1e-10, atol=1e-10)


def test_residual_uses_the_predicted_time_derivative():
    # freezing time (the last frame repeated) leaves the physical terms but no dw/dt:
    # the estimator must see the missing time derivative
    w, _, dt, nu = _manufactured()
    frozen = w[:, :1].expand_as(w).contiguous()
    r = navier_stokes_residual(frozen, dt, nu=nu, forcing=None)
    r0 = navier_stokes_residual(w, dt, nu=nu, forcing=None)
    assert not torch.allclose(r, r0, atol=1e-3)


def _taylor_green(n=32, steps=9, dt=0.05, nu=0.01, m=2):
    X, Y = _grid(n)
    t = dt * torch.arange(steps, dtype=torch.float64)
    decay = torch.exp(-2 * nu * (TWO_PI * m) ** 2 * t)[:, None, None]
    w = 2 * TWO_PI * m * decay * torch.cos(TWO_PI * m * X) * torch.cos(TWO_PI * m * Y)
    return w[None], dt, nu, t


def test_estimator_vanishes_on_taylor_green_and_grows_linearly_with_injected_error():
    w, dt, nu, t = _taylor_green()
    scale = float(residual_estimator(w, dt, nu=nu, forcing=None, time_order=6).squeeze())
    size = float(torch.sqrt((w**2).mean() * t[-1]))  # ||w||_{L2(0,T;L2)} ~ 12
    assert scale < 1e-6 * size
    X, Y = _grid(32)
    bump = (1 + t)[:, None, None] * torch.sin(TWO_PI * 3 * X) * torch.cos(TWO_PI * Y)
    values = []
    for eps in (1e-3, 2e-3, 4e-3):
        est = residual_estimator(w + eps * bump[None], dt, nu=nu, forcing=None, time_order=6)
        values.append(float(est.squeeze()))
    # R(w + eps phi) = eps L_w phi + eps^2 N(phi): linear growth for small eps
    assert values[1] / values[0] == pytest.approx(2.0, rel=1e-2)
    assert values[2] / values[1] == pytest.approx(2.0, rel=1e-2)
    assert values[0] > 100 * scale


def test_estimator_time_discretisation_error_decreases_at_fd_order():
    # on Taylor-Green, the estimator is the finite-difference error of dw/dt alone
    ests = []
    for steps, dt in ((9, 0.1), (17, 0.05)):
        w, dt, nu, _ = _taylor_green(n=16, steps=steps, dt=dt, nu=0.05, m=1)
        ests.append(float(residual_estimator(w, dt, nu=nu, forcing=None, time_order=4)))
    assert math.log2(ests[0] / ests[1]) == pytest.approx(4.0, abs=0.7)


def test_estimator_rejects_bad_input():
    with pytest.raises(InvalidInputError, match="batch, time, n, n"):
        residual_estimator(torch.zeros(3, 8, 8), 0.1, nu=1e-3)
    with pytest.raises(InvalidInputError, match="dt"):
        residual_estimator(torch.zeros(1, 3, 8, 8), 0.0, nu=1e-3)
    with pytest.raises(InvalidInputError, match="forcing"):
        residual_estimator(torch.zeros(1, 3, 8, 8), 0.1, nu=1e-3, forcing=torch.zeros(4, 4))


def test_relative_error_is_the_whole_trajectory_ratio():
    true = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    noise = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    expected = (noise.pow(2).sum(dim=(1, 2, 3)) / true.pow(2).sum(dim=(1, 2, 3))).sqrt()
    torch.testing.assert_close(relative_error(true + noise, true), expected)
    assert (relative_error(true + noise, true, s=1.0) > 0).all()


# ----------------------------------------------------------------------------- refiner


def test_refinement_lowers_the_estimator_and_only_touches_the_output_layer():
    torch.manual_seed(0)
    model = SFNO(modes=(3, 3, 2), width=6, layers=2, t_out=6, fc_width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X, Y = _grid(16)
    # input: the first snapshots of a decaying Taylor-Green-like field plus a perturbation
    w, dt, nu, _ = _taylor_green(n=16, steps=4, dt=0.1, nu=0.01, m=1)
    x = (w + 0.1 * torch.sin(TWO_PI * 2 * X)).float()
    out = spectral_refine(model, x, dt=dt, nu=nu, forcing=None, steps=30, lr=1e-2)
    history = out.estimator[:, 0]
    assert history.shape == (31,)
    assert out.estimator[out.best_step, 0] < 0.7 * history[0]
    assert out.prediction.dtype == torch.float64 and out.prediction.shape == (1, 6, 16, 16)
    # the original model is untouched, the refined copy differs only in out_conv
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    refined_state = out.model.state_dict()
    for k, v in before.items():
        if not k.startswith("out_conv"):
            torch.testing.assert_close(refined_state[k], v.double())
    assert out.model.out_conv.full_shape == (16, 16, 7)
    # the returned prediction is what the refined model predicts
    with torch.no_grad():
        torch.testing.assert_close(out.model(x.double()), out.prediction)


def test_refinement_with_zero_steps_returns_the_model_prediction():
    torch.manual_seed(0)
    model = SFNO(modes=(3, 3, 2), width=4, layers=1, t_out=3)
    x = torch.randn(2, 3, 12, 12)
    out = spectral_refine(model, x, dt=0.1, nu=1e-3, forcing="fno", steps=0)
    assert out.best_step == 0
    torch.testing.assert_close(out.prediction.float(), model(x), rtol=1e-5, atol=1e-6)


def test_refine_rejects_models_without_output_operator():
    with pytest.raises(InvalidInputError, match="SFNO-type"):
        spectral_refine(torch.nn.Linear(2, 2), torch.zeros(1, 3, 8, 8), dt=0.1, nu=1e-3)


def test_estimator_is_small_on_a_solver_trajectory_and_sees_a_wrong_convention():
    from neurosolve.data.navier_stokes import NavierStokes2d
    from neurosolve.data.random_fields import gaussian_random_field

    n, nu, rec = 32, 1e-3, 0.05
    solver = NavierStokes2d(n, nu=nu, dt=2e-3, forcing="fno")
    w0 = gaussian_random_field((n, n), 2, rng=np.random.default_rng(0), dtype=torch.float64)
    traj = solver.simulate(w0, t_final=8 * rec, record_every=rec, include_initial=True)
    exact = residual_estimator(traj, rec, nu=nu, forcing="fno")
    noise = torch.from_numpy(np.random.default_rng(5).standard_normal(traj.shape))
    noisy = residual_estimator(traj + 0.01 * traj.std() * noise, rec, nu=nu, forcing="fno")
    # swapping x and y flips the sign of u.grad w (the FNO forcing is symmetric): that
    # trajectory solves another equation, and the estimator must say so
    swapped = residual_estimator(traj.transpose(-1, -2), rec, nu=nu, forcing="fno")
    assert (exact < 0.05 * noisy).all()
    assert (exact < 0.05 * swapped).all()


def test_cli_train_sfno_then_refine(tmp_path):
    from neurosolve.cli import main
    from neurosolve.data.generate import generate

    params = dict(resolution=16, sim_resolution=32, dt=5e-3, record_every=0.05, t_in=4, t_out=4)
    train = generate(
        "navier-stokes", tmp_path / "train.h5", samples=8, seed=0, params=params, progress=False
    )
    test = generate(
        "navier-stokes", tmp_path / "test.h5", samples=2, seed=1, params=params, progress=False
    )
    run = tmp_path / "run"
    argv = ["train", "sfno", "--data", str(train), "--out", str(run), "--epochs", "1"]
    argv += ["--batch-size", "4", "--modes", "4", "4", "2", "--width", "6", "--layers", "2"]
    argv += ["--time-padding", "2"]
    assert main([*argv, "--quiet"]) == 0
    assert (run / "model.pt").is_file()
    out = tmp_path / "refine.json"
    argv = ["refine", str(run / "model.pt"), "--data", str(test), "--steps", "5", "--lr", "1e-2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    import json

    result = json.loads(out.read_text())
    assert result["physics"] == {"nu": 1e-3, "forcing": "fno", "dt": 0.05, "drag": 0.0}
    assert result["mean"]["est_after"] <= result["mean"]["est_before"]
    assert len(result["samples"]["l2_after"]) == 2
    # a missing file is a one-line error, exit 2
    assert main(["refine", str(run / "missing.pt"), "--data", str(test)]) == 2


def test_refinement_of_a_time_padded_sfno_starts_from_its_prediction():
    torch.manual_seed(0)
    model = SFNO(modes=(3, 3, 2), width=4, layers=1, t_out=4, time_padding=2)
    x = torch.randn(1, 3, 12, 12)
    out = spectral_refine(model, x, dt=0.1, nu=1e-3, forcing=None, steps=2, lr=1e-2)
    assert out.model.out_conv.full_shape == (12, 12, 7)
    torch.testing.assert_close(out.initial_prediction.float(), model(x), rtol=1e-5, atol=1e-6)


def test_supersampled_refinement_measures_the_estimator_on_the_fine_time_grid():
    torch.manual_seed(1)
    model = SFNO(modes=(3, 3, 2), width=4, layers=1, t_out=4, time_padding=2)
    x = torch.randn(1, 3, 12, 12)
    k, dt = 3, 0.1
    # no new modes (fill_scale 0): step 0 is exactly the model
    out = spectral_refine(
        model, x, dt=dt, nu=1e-3, forcing="fno", steps=0, supersample=k, fill_scale=0.0
    )
    xd = x.double()
    with torch.no_grad():
        reference = model.double()
        fine = reference.output_operator(xd, reference.latent_features(xd), 4, supersample=k)
    assert fine.shape == (1, 4 * k, 12, 12)
    # the returned prediction holds the data's times only: the plain model's snapshots
    torch.testing.assert_close(out.prediction, reference(xd))
    # step 0's estimator is the one of the k-times finer trajectory, dt / k apart
    expected = residual_estimator(torch.cat([xd[:, -1:], fine], dim=1), dt / k, nu=1e-3)
    np.testing.assert_allclose(out.estimator[0], expected.numpy(), rtol=1e-10)


def test_supersampled_refinement_lowers_the_fine_estimator_and_keeps_the_data_times():
    torch.manual_seed(0)
    model = SFNO(modes=(3, 3, 2), width=6, layers=2, t_out=6, fc_width=8)
    X, _ = _grid(16)
    w, dt, nu, _ = _taylor_green(n=16, steps=4, dt=0.1, nu=0.01, m=1)
    x = (w + 0.1 * torch.sin(TWO_PI * 2 * X)).float()
    out = spectral_refine(model, x, dt=dt, nu=nu, forcing=None, steps=30, lr=1e-2, supersample=2)
    assert out.estimator[out.best_step, 0] < 0.7 * out.estimator[0, 0]
    assert out.prediction.shape == (1, 6, 16, 16)
    with torch.no_grad():
        xd = x.double()
        fine = out.model.output_operator(xd, out.model.latent_features(xd), 6, supersample=2)
    torch.testing.assert_close(fine[:, 1::2], out.prediction)


def test_refine_rejects_a_bad_supersampling_factor():
    model = SFNO(modes=(3, 3, 2), width=4, layers=1, t_out=3)
    for bad in (0, 1.5):
        with pytest.raises(InvalidInputError, match="supersample"):
            spectral_refine(model, torch.zeros(1, 3, 8, 8), dt=0.1, nu=1e-3, supersample=bad)
