"""DCDM: network, Ritz data, loss, iteration, checkpoints, refusals (all small, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import scipy.stats
import torch

from neurosolve.checkpoint import save_checkpoint
from neurosolve.data import obstacle_flags, poisson
from neurosolve.data.grids import FLUID, SOLID
from neurosolve.errors import FileFormatError, InvalidInputError
from neurosolve.solvers.dcdm.network import DCDMNet, flags_channel
from neurosolve.solvers.dcdm.ritz import lanczos, ritz_pairs, ritz_rhs, ritz_samples, stencil_fields
from neurosolve.solvers.dcdm.solver import DCDMSolver, load_dcdm_model
from neurosolve.solvers.dcdm.training import dcdm_loss, dcdm_trajectory_loss
from neurosolve.solvers.stencil import apply_stencil


def obstacle_system(shape, seed):
    rng = np.random.default_rng(seed)
    return poisson(shape, flags=obstacle_flags(shape, "mixed", rng))


class ExactInverse:
    """A 'network' returning A^{-1} r exactly (a sparse LU solve on the fluid cells)."""

    in_channels = 1

    def __init__(self, system):
        self.grid = system.grid
        self.lu = spla.splu(system.A.tocsc())

    def __call__(self, fields):
        fluid = self.grid.fluid
        out = torch.zeros_like(fields[:, :1])
        for i in range(fields.shape[0]):
            r = fields[i, 0].detach().cpu().numpy()[fluid]
            full = np.zeros(self.grid.shape)
            full[fluid] = self.lu.solve(r)
            out[i, 0] = torch.from_numpy(full).to(out.dtype)
        return out


# ------------------------------------------------------------------------------- network
@pytest.mark.parametrize("dim,shape", [(2, (9, 7)), (3, (5, 6, 7))])
@pytest.mark.parametrize("levels", [0, 1, 2])
def test_network_shapes_backward_and_every_parameter_gets_a_gradient(dim, shape, levels):
    net = DCDMNet(dim=dim, width=4, pairs=1, levels=levels, in_channels=2, skip=False)
    flags = np.full(shape, FLUID, dtype=np.int8)
    flags[(0,) * dim] = SOLID
    geometry = flags_channel(flags)[None, None].expand(2, 1, *shape)
    x = torch.cat([torch.randn(2, 1, *shape), geometry], 1)
    out = net(x)
    assert out.shape == (2, 1, *shape)
    assert torch.all(out[(slice(None), 0) + (0,) * dim] == 0)  # solid cell masked
    out.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_untrained_network_with_skip_is_the_identity_on_fluid_cells():
    net = DCDMNet(dim=3, width=4, levels=2)
    x = torch.randn(2, 1, 5, 6, 7)
    assert torch.equal(net(x), x)


def test_fast_cpu_convolution_matches_the_ordinary_one():
    torch.manual_seed(0)
    net = DCDMNet(dim=3, width=4, levels=1, skip=False)
    x = torch.randn(1, 1, 7, 6, 5)
    fast = net(x)
    torch.backends.mkldnn.enabled = False
    try:
        slow = net(x)
    finally:
        torch.backends.mkldnn.enabled = True
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_network_rejects_bad_configuration_and_input():
    with pytest.raises(InvalidInputError, match="dim"):
        DCDMNet(dim=4)
    with pytest.raises(InvalidInputError, match="pairs"):
        DCDMNet(dim=2, levels=1, pairs=[1, 1, 1])
    with pytest.raises(InvalidInputError, match="expected input"):
        DCDMNet(dim=2, width=2)(torch.zeros(1, 2, 4, 4))


# --------------------------------------------------------------------------- Ritz data
def test_lanczos_full_reorthogonalization_gives_orthonormal_basis_and_exact_spectrum():
    system = obstacle_system((6, 6), 0)
    n = system.n
    alpha, beta, Q = lanczos(system.A, n, rng=np.random.default_rng(0))
    m = Q.shape[1]
    np.testing.assert_allclose(Q.T @ Q, np.eye(m), atol=1e-10)
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(Q.T @ (system.A @ Q), T, atol=1e-8 * alpha.max())
    if m == n:
        exact = np.linalg.eigvalsh(system.A.toarray())
        np.testing.assert_allclose(np.linalg.eigvalsh(T), exact, rtol=1e-8)


def test_ritz_vectors_are_eigenvectors_when_lanczos_runs_to_completion():
    system = poisson((5, 5))
    values, vectors = ritz_pairs(system.A, 25, rng=np.random.default_rng(1))
    np.testing.assert_allclose(system.A @ vectors, vectors * values, atol=1e-8 * values.max())
    assert np.all(np.diff(values) > 0)


def test_ritz_rhs_weights_the_low_end():
    vectors = np.eye(20)
    b = ritz_rhs(vectors, 2000, np.random.default_rng(0), low=5, low_weight=9.0)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0)
    # per sample, mean low-end energy / mean high-end energy ~ 81 * F(5, 15)
    ratio = (b[:, :5] ** 2).mean(axis=1) / (b[:, 5:] ** 2).mean(axis=1)
    expected = 81.0 * scipy.stats.f.median(5, 15)
    assert np.median(ratio) == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("shape", [(7, 6), (5, 4, 6)])
def test_stencil_fields_apply_exactly_the_matrix(shape):
    system = obstacle_system(shape, 2)
    coefficients = torch.from_numpy(stencil_fields(system.A, system.grid.flags))[None]
    u = np.random.default_rng(0).standard_normal(system.n)
    field = torch.from_numpy(system.grid.to_field(u))[None, None]
    Au = apply_stencil(coefficients[:, :1], coefficients[:, 1:], field)[0, 0].numpy()
    np.testing.assert_allclose(system.grid.to_vector(Au), system.A @ u, rtol=1e-12, atol=1e-9)
    assert np.all(Au[~system.grid.fluid] == 0)


def test_ritz_samples_per_sample_geometry_and_unit_norm():
    rngs = [np.random.default_rng([3, i]) for i in range(3)]
    x, y = ritz_samples(rngs, dim=2, resolution=10, geometry="boxes", lanczos_steps=12)
    assert x.shape == (3, 2, 10, 10) and y.shape == (3, 5, 10, 10)
    np.testing.assert_allclose(np.sqrt((x[:, 0] ** 2).sum(axis=(1, 2))), 1.0)
    assert np.all(x[:, 0][x[:, 1] != FLUID] == 0)
    assert not np.array_equal(x[0, 1], x[1, 1])  # different geometries
    again, _ = ritz_samples(
        [np.random.default_rng([3, i]) for i in range(3)],
        dim=2,
        resolution=10,
        geometry="boxes",
        lanczos_steps=12,
    )
    np.testing.assert_array_equal(x, again)


# --------------------------------------------------------------------------------- loss
def _batch(dim=2, resolution=8, count=4, seed=0):
    rngs = [np.random.default_rng([seed, i]) for i in range(count)]
    x, y = ritz_samples(rngs, dim=dim, resolution=resolution, geometry="mixed", lanczos_steps=16)
    return torch.from_numpy(x).float(), torch.from_numpy(y).float()


class Scaled(torch.nn.Module):
    def __init__(self, net, c):
        super().__init__()
        self.net, self.c, self.in_channels = net, c, net.in_channels

    def forward(self, x):
        return self.c * self.net(x)


@pytest.mark.parametrize("c", [1e-3, 7.0, -2.5, 1e4])
def test_loss_is_invariant_to_the_scale_of_the_network_output(c):
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4, in_channels=2)
    batch = _batch()
    base = dcdm_loss(net, batch)
    assert dcdm_loss(Scaled(net, c), batch).item() == pytest.approx(base.item(), rel=1e-4)


def test_loss_of_an_exact_inverse_is_zero_and_is_batch_mean():
    system = obstacle_system((8, 8), 4)
    rhs = np.random.default_rng(0).standard_normal(system.n)
    fields = np.stack([system.grid.to_field(rhs), system.grid.flags.astype(float)])
    x = torch.from_numpy(fields)[None].double()
    y = torch.from_numpy(stencil_fields(system.A, system.grid.flags))[None]
    exact = ExactInverse(system)
    assert dcdm_loss(exact, (x, y)).item() < 1e-20
    zero_model = Scaled(DCDMNet(dim=2, width=2, skip=False).double(), 0.0)
    doubled = (torch.cat([x, x]), torch.cat([y, y]))
    assert dcdm_loss(exact, doubled).item() < 1e-20
    assert np.isfinite(dcdm_loss(zero_model, (x, y)).item())


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=8, in_channels=2)
    batch = _batch(count=8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    before = dcdm_loss(net, batch).item()
    for _ in range(30):
        opt.zero_grad()
        loss = dcdm_loss(net, batch)
        loss.backward()
        opt.step()
    after = dcdm_loss(net, batch).item()
    assert after < 0.7 * before


# ---------------------------------------------------------------------------- iteration
def test_trajectory_loss_of_one_step_is_the_log_of_the_one_step_loss():
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4, in_channels=2, skip=False).double()
    x, y = _batch(count=1)
    batch = (x.double(), y.double())
    one = dcdm_trajectory_loss(net, batch, steps=1, k=0)
    assert one.item() == pytest.approx(np.log(dcdm_loss(net, batch).item()), rel=1e-10)


def test_trajectory_loss_of_the_identity_network_is_the_residual_reduction_of_cg():
    # the untrained network with its skip returns the residual: DCDM with k >= 1 is CG
    system = obstacle_system((8, 8), 4)
    rhs = np.random.default_rng(1).standard_normal(system.n)
    fields = np.stack([system.grid.to_field(rhs), system.grid.flags.astype(float)])
    batch = (
        torch.from_numpy(fields)[None].double(),
        torch.from_numpy(stencil_fields(system.A, system.grid.flags))[None],
    )
    net = DCDMNet(dim=2, width=4, in_channels=2).double()
    steps = 5
    loss = dcdm_trajectory_loss(net, batch, steps=steps, k=2)
    A = system.A.toarray()
    x, r = np.zeros(system.n), rhs.copy()
    p = r.copy()
    for _ in range(steps):  # textbook CG
        Ap = A @ p
        alpha = (r @ r) / (p @ Ap)
        x, r_next = x + alpha * p, r - alpha * Ap
        p = r_next + (r_next @ r_next) / (r @ r) * p
        r = r_next
    expected = np.log((r @ r) / (rhs @ rhs)) / steps
    assert loss.item() == pytest.approx(expected, rel=1e-8)
    # and every step lowered the A-norm error, so the loss rewards a faster method
    assert expected < 0


def test_trajectory_loss_trains_and_refuses_bad_steps():
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=8, in_channels=2)
    batch = _batch(count=8)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    before = dcdm_trajectory_loss(net, batch, steps=4).item()  # CG's: the network is the identity
    for _ in range(40):
        opt.zero_grad()
        dcdm_trajectory_loss(net, batch, steps=4).backward()
        opt.step()
    # faster than CG per step on these samples: exp(0.015 * 4) = 6% more reduction in 4 steps
    assert dcdm_trajectory_loss(net, batch, steps=4).item() < before - 0.015
    with pytest.raises(InvalidInputError, match="steps"):
        dcdm_trajectory_loss(net, batch, steps=0)


def test_exact_inverse_as_network_converges_in_one_step():
    system = obstacle_system((8, 8, 8), 5)
    b = np.random.default_rng(0).standard_normal(system.n)
    solver = DCDMSolver(system, model=ExactInverse(system), network_dtype=torch.float64)
    result = solver.solve(b, rtol=1e-10)
    assert result.converged and result.iterations == 1
    assert result.residuals.shape == (2,) and result.residuals[0] == pytest.approx(1.0)
    np.testing.assert_allclose(system.A @ result.x, b, atol=1e-9 * np.linalg.norm(b))


def _a_norm_errors(system, b):
    x_true = spla.spsolve(system.A.tocsc(), b)
    errors = []

    def record(x):
        e = x.cpu().numpy() - x_true
        errors.append(float(e @ (system.A @ e)))

    return errors, record


def test_untrained_network_still_converges_more_slowly_than_an_exact_inverse():
    system = obstacle_system((16, 16, 16), 6)
    b = np.random.default_rng(0).standard_normal(system.n)
    torch.manual_seed(0)
    net = DCDMNet(dim=3, width=4, in_channels=2)  # untrained: starts as the identity
    errors, record = _a_norm_errors(system, b)
    result = DCDMSolver(system, model=net).solve(b, rtol=1e-6, callback=record)
    assert result.converged, result
    assert result.iterations > 5  # an exact inverse needs 1
    assert np.linalg.norm(b - system.A @ result.x) <= 1e-6 * np.linalg.norm(b)
    assert np.all(np.diff(errors) <= 1e-10 * errors[0])
    assert result.residuals.shape == (result.iterations + 1,)
    assert result.matvecs == 2 * result.iterations


def test_random_weight_network_converges_and_error_A_norm_never_increases():
    system = obstacle_system((8, 8, 8), 6)
    b = np.random.default_rng(0).standard_normal(system.n)
    torch.manual_seed(0)
    net = DCDMNet(dim=3, width=4)
    torch.nn.init.normal_(net.project.weight, std=0.1)  # a badly trained network
    errors, record = _a_norm_errors(system, b)
    result = DCDMSolver(system, model=net).solve(b, rtol=1e-6, maxiter=400, callback=record)
    assert result.converged, result
    assert np.all(np.diff(errors) <= 1e-10 * errors[0])


def test_several_right_hand_sides_at_once_match_single_solves():
    system = obstacle_system((8, 8), 7)
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4)
    B = np.random.default_rng(1).standard_normal((system.n, 3))
    B[:, 2] *= 1e3
    solver = DCDMSolver(system, model=net, k=3)
    batch = solver.solve(B, rtol=1e-8)
    assert batch.converged and batch.residuals.shape[1] == 3
    for j in range(3):
        single = solver.solve(B[:, j], rtol=1e-8)
        assert single.converged
        np.testing.assert_allclose(batch.x[:, j], single.x, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(system.A @ batch.x, B, atol=1e-8 * np.linalg.norm(B[:, 2]))


def test_torch_input_gives_torch_output_and_x0_is_used():
    system = obstacle_system((8, 8), 8)
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4)
    b = torch.randn(system.n, dtype=torch.float32)
    solver = DCDMSolver(system, model=net)
    result = solver.solve(b, rtol=1e-5)
    assert torch.is_tensor(result.x) and result.x.dtype == torch.float32
    warm = solver.solve(b, x0=result.x, rtol=1e-5)
    assert warm.iterations == 0 and warm.converged


# ------------------------------------------------------------------- grids and refusals
def test_matrix_without_grid_is_refused_naming_classical_methods():
    system = obstacle_system((6, 6), 9)
    with pytest.raises(InvalidInputError, match="needs the grid") as info:
        DCDMSolver(system.A, model=DCDMNet(dim=2, width=2))
    for method in ("cg", "ic-pcg", "amg-sa-pcg"):
        assert method in str(info.value)
    from neurosolve.solvers import solve

    with pytest.raises(InvalidInputError, match="grid"):
        solve(system.A, np.ones(system.n), method="dcdm")


def test_matrix_with_grid_and_flags_from_another_code_works():
    system = obstacle_system((8, 8), 10)
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4, in_channels=2)
    b = np.random.default_rng(0).standard_normal(system.n)
    reference = DCDMSolver(system, model=net).solve(b)
    bare = DCDMSolver(system.A, model=net, flags=system.grid.flags).solve(b)
    np.testing.assert_allclose(bare.x, reference.x)
    with pytest.raises(InvalidInputError, match="fluid cells"):
        DCDMSolver(system.A, model=net, grid=(8, 8))  # solid cells dropped: flags needed


def test_wrong_dimension_model_is_refused():
    system = obstacle_system((6, 6), 11)
    with pytest.raises(InvalidInputError, match="3D"):
        DCDMSolver(system, model=DCDMNet(dim=3, width=2))


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_refusal_of_foreign_files(tmp_path):
    torch.manual_seed(0)
    net = DCDMNet(dim=2, width=4, levels=2, pairs=[1, 0, 2], in_channels=2)
    path = save_checkpoint(
        tmp_path / "dcdm.pt", kind="dcdm", kwargs=net.config(), state_dict=net.state_dict()
    )
    loaded = load_dcdm_model(path)
    x = torch.randn(1, 2, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    with pytest.raises(FileFormatError, match="not a neurosolve checkpoint"):
        load_dcdm_model(foreign)
    other = save_checkpoint(tmp_path / "other.pt", kind="mgno", kwargs={}, state_dict={})
    with pytest.raises(FileFormatError, match="not a 'dcdm' model"):
        load_dcdm_model(other)
    with pytest.raises(FileFormatError):
        DCDMSolver(obstacle_system((6, 6), 0), model=foreign)


# ------------------------------------------------------------------ training command
def test_train_command_writes_a_loadable_model_curve_and_metrics(tmp_path, capsys):
    from neurosolve.cli import main

    out = tmp_path / "m.pt"
    argv = [
        "train", "dcdm", "--dim", "2", "--resolution", "8", "--samples", "8",
        "--val-samples", "4", "--epochs", "2", "--width", "4", "--lanczos-steps", "10",
        "--quiet", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "model written to" in capsys.readouterr().out
    run = tmp_path / "m.pt.run"
    for name in ("checkpoint.pt", "metrics.json", "learning_curve.png", "train.h5", "val.h5"):
        assert (run / name).is_file(), name
    model = load_dcdm_model(out)
    assert model.dim == 2 and model.in_channels == 2
    system = obstacle_system((8, 8), 12)
    result = DCDMSolver(system, model=out).solve(np.ones(system.n))
    assert result.converged
    assert main(argv) == 0  # rerun: data and training already complete, resumes cleanly


def test_solve_command_on_an_exported_matrix_with_and_without_its_grid(tmp_path, capsys):
    from neurosolve.cli import main
    from neurosolve.data import save_system

    system = obstacle_system((8, 8), 13)
    matrix = save_system(tmp_path / "exported.mtx", system.A)
    flags = tmp_path / "flags.npy"
    np.save(flags, system.grid.flags)
    net = DCDMNet(dim=2, width=4, in_channels=2)
    model = save_checkpoint(
        tmp_path / "net.pt", kind="dcdm", kwargs=net.config(), state_dict=net.state_dict()
    )
    common = ["solve", str(matrix), "--method", "dcdm", "--quiet"]
    option = ["--option", f"dcdm.model={model}"]
    assert main([*common, "--grid", "8x8", "--flags", str(flags), *option]) == 0
    assert "true relative residual" in capsys.readouterr().out
    assert main([*common, *option]) == 2
    assert "grid" in capsys.readouterr().err


# ----------------------------------------------------------------------- shipped model
def test_shipped_model_is_small_and_halves_cg_iterations_on_an_unseen_geometry():
    from neurosolve.checkpoint import shipped_path
    from neurosolve.solvers import solve

    assert shipped_path("dcdm").stat().st_size < 5 * 2**20
    model = load_dcdm_model()
    assert model.dim == 3 and model.in_channels == 2
    system = obstacle_system((16, 16, 16), 7001)  # training geometries use seeds [0, i]
    b = np.random.default_rng(7).standard_normal(system.n)
    learned = solve(system, b, method="dcdm", rtol=1e-6)
    cg = solve(system, b, method="cg", rtol=1e-6)
    assert learned.converged and cg.converged
    assert np.linalg.norm(b - system.A @ learned.x) <= 1e-6 * np.linalg.norm(b)
    assert learned.iterations <= 0.5 * cg.iterations, (learned.iterations, cg.iterations)
