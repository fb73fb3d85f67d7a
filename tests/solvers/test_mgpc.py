"""MGPC: SPD by construction, Galerkin exactness, convergence, training, checkpoints, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurosolve.checkpoint import save_checkpoint
from neurosolve.data import obstacle_flags, poisson
from neurosolve.data.geometry import contrast_coefficient
from neurosolve.data.grids import FLUID
from neurosolve.errors import FileFormatError, InvalidInputError
from neurosolve.solvers import make_solver, solve
from neurosolve.solvers.mgpc import (
    MGPCNet,
    MGPCSolver,
    coarsening_axes,
    galerkin_coarsen,
    load_mgpc_model,
    mgpc_loss,
    mgpc_samples,
    prolong,
    restrict,
)
from neurosolve.solvers.stencil import StencilOperator, apply_stencil


def obstacle_system(shape, seed, **kwargs):
    rng = np.random.default_rng(seed)
    return poisson(shape, flags=obstacle_flags(shape, "mixed", rng, **kwargs))


def varcoef_system(shape, contrast, seed):
    a = contrast_coefficient(shape, contrast, np.random.default_rng(seed))
    return poisson(shape, coefficient=a)


def random_net(seed, spread=3.0, cycle="W"):
    """An untrained network whose outputs vary a lot (weights far from the initial ones)."""
    torch.manual_seed(seed)
    net = MGPCNet(width=6, layers=2, smoothing_steps=2, cycle=cycle)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, spread / max(p.shape[-1], 1) ** 0.5)
    return net


def saturated_net(sign, cycle="W"):
    """Smoother weights at the bounds theta = 0.05 or 1.95, over-correction at 0.5 or 1.4."""
    net = MGPCNet(width=4, layers=1, cycle=cycle)
    with torch.no_grad():
        net.level_bias.fill_(sign * 1e4)
        net.level_scale.fill_(sign * 1e4)
    return net


def dense_preconditioner(solver):
    M = solver.aspreconditioner()
    return M.matmat(np.eye(solver.n))


NETS = {
    "untrained-a": lambda: random_net(0),
    "untrained-b": lambda: random_net(1),
    "theta-min": lambda: saturated_net(-1.0),
    "theta-max": lambda: saturated_net(1.0),
    "theta-max-vcycle": lambda: saturated_net(1.0, cycle="V"),
    "untrained-vcycle": lambda: random_net(3, cycle="V"),
    "trained": lambda: load_mgpc_model(),
}
SYSTEMS = {
    "3d-9x7x8-obstacles": lambda: obstacle_system((9, 7, 8), 11),
    "3d-8-freesurface": lambda: obstacle_system((8, 8, 8), 12, boundary_air="free-surface"),
    "2d-23x17-contrast1e4": lambda: varcoef_system((23, 17), 1e4, 13),
    "2d-16-neumann-obstacles": lambda: poisson(
        (16, 16), flags=obstacle_flags((16, 16), "boxes", 14), boundary="neumann"
    ),
    # semi-coarsening, V-steps between W-steps, damped W-steps (tau < 1)
    "2d-24x19-stretched1:6": lambda: poisson((24, 19), spacing=(1.0, 6.0)),
    "3d-6x7x12-stretched-obstacles": lambda: poisson(
        (6, 7, 12), spacing=(3.0, 3.0, 1.0), flags=obstacle_flags((6, 7, 12), "boxes", 15)
    ),
}


@pytest.mark.parametrize("net_id", sorted(NETS))
@pytest.mark.parametrize("system_id", sorted(SYSTEMS))
def test_preconditioner_is_spd(net_id, system_id):
    system = SYSTEMS[system_id]()
    solver = MGPCSolver(system, model=NETS[net_id](), max_coarse=8)
    assert solver.hierarchy.num_levels >= 3
    M = dense_preconditioner(solver)
    scale = np.abs(M).max()
    assert np.abs(M - M.T).max() <= 1e-12 * scale  # W-cycle rounding at contrast 1e4: 2e-13
    eig = np.linalg.eigvalsh(0.5 * (M + M.T))
    assert eig[0] > 1e-8 * eig[-1]
    # and on random vectors: <Mu, v> = <u, Mv>, u^T M u > 0
    rng = np.random.default_rng(0)
    op = solver.aspreconditioner()
    for _ in range(3):
        u, v = rng.standard_normal((2, solver.n))
        Mu, Mv = op.matvec(u), op.matvec(v)
        assert abs(Mu @ v - u @ Mv) <= 1e-13 * np.linalg.norm(Mu) * np.linalg.norm(v)
        assert u @ Mu > 0
    # the proof's bound: the eigenvalues of M A lie in (0, lambda_bound]
    eig_ma = np.sort(np.linalg.eigvals(M @ system.A.toarray()).real)
    assert eig_ma[0] > 0
    assert eig_ma[-1] <= solver.hierarchy.lambda_bound * (1 + 1e-10)
    if system_id.startswith("2d-24x19") and net_id in ("trained", "theta-max"):
        assert any(lvl.tau < 1.0 for lvl in solver.hierarchy.levels)  # a damped W-step
    if solver.hierarchy.levels[0].gamma == 2:
        s1 = float(solver.hierarchy.levels[1].scale)
        assert solver.hierarchy.lambda_bound == pytest.approx(max(1.0, s1**2))
        if net_id == "theta-max":  # s = 1.4: the over-correction really goes past 1
            assert eig_ma[-1] > 1.05


def test_galerkin_operator_equals_RAP():
    system = obstacle_system((7, 6, 5), 3)
    op = StencilOperator.from_system(system)
    fluid = op.fluid_mask[None, None].double()
    dc, nc, fc = galerkin_coarsen(op.diagonal[None, None], op.neighbours[None], fluid)
    # R as an explicit sparse matrix: unknown i -> coarse cell of its 2x2x2 block
    cells = np.flatnonzero(system.grid.fluid.ravel())
    idx = np.stack(np.unravel_index(cells, system.grid.shape)) // 2
    cshape = dc.shape[2:]
    coarse_cell = np.ravel_multi_index(idx, cshape)
    R = sp.csr_matrix(
        (np.ones(cells.size), (coarse_cell, np.arange(cells.size))),
        shape=(int(np.prod(cshape)), cells.size),
    )
    RAP = (R @ system.A @ R.T).toarray()
    keep = fc.reshape(-1).numpy() > 0
    ones = np.eye(int(np.prod(cshape)))
    basis = torch.from_numpy(ones.reshape(-1, *cshape))[None]
    dense = apply_stencil(dc, nc, basis)[0].reshape(len(ones), -1).numpy().T
    assert np.allclose(dense[np.ix_(keep, keep)], RAP[np.ix_(keep, keep)], rtol=1e-13, atol=1e-9)
    assert not RAP[~keep].any()


@pytest.mark.parametrize("axes", [(True, False, True), (False, True, False)])
def test_semicoarsened_galerkin_operator_equals_RAP(axes):
    system = obstacle_system((7, 6, 5), 8)
    op = StencilOperator.from_system(system)
    fluid = op.fluid_mask[None, None].double()
    dc, nc, fc = galerkin_coarsen(op.diagonal[None, None], op.neighbours[None], fluid, axes)
    cells = np.flatnonzero(system.grid.fluid.ravel())
    factors = np.array([2 if a else 1 for a in axes])[:, None]
    idx = np.stack(np.unravel_index(cells, system.grid.shape)) // factors
    cshape = dc.shape[2:]
    assert cshape == tuple(-(-n // int(f)) for n, f in zip((7, 6, 5), factors[:, 0], strict=True))
    R = sp.csr_matrix(
        (np.ones(cells.size), (np.ravel_multi_index(idx, cshape), np.arange(cells.size))),
        shape=(int(np.prod(cshape)), cells.size),
    )
    RAP = (R @ system.A @ R.T).toarray()
    keep = fc.reshape(-1).numpy() > 0
    basis = torch.from_numpy(np.eye(int(np.prod(cshape))).reshape(-1, *cshape))[None]
    dense = apply_stencil(dc, nc, basis)[0].reshape(len(keep), -1).numpy().T
    assert np.allclose(dense[np.ix_(keep, keep)], RAP[np.ix_(keep, keep)], rtol=1e-13, atol=1e-9)
    # restriction and prolongation along the same axes are transposes
    u = torch.from_numpy(np.random.default_rng(1).standard_normal((7, 6, 5)))[None, None] * fluid
    uc = torch.from_numpy(np.random.default_rng(2).standard_normal(cshape))[None, None]
    lhs = float((restrict(u, (7, 6, 5), axes) * uc).sum())
    assert lhs == pytest.approx(float((u * prolong(uc, (7, 6, 5), fluid, axes)).sum()), rel=1e-13)


def test_coarsening_axes_follow_the_couplings():
    def axes(system):
        op = StencilOperator.from_system(system)
        return coarsening_axes(op.neighbours[None])

    assert axes(obstacle_system((12, 10, 9), 3)) == (True, True, True)
    assert axes(poisson((16, 16), spacing=(1.0, 3.0))) == (True, False)
    assert axes(poisson((8, 8, 8), spacing=(2.0, 1.0, 1.0))) == (False, True, True)
    assert axes(poisson((1, 16))) == (False, True)  # one cell: never coarsened
    # a high-contrast isotropic field: every cell counts once, no false anisotropy
    rng = np.random.default_rng(4)
    a = np.exp(6.0 * rng.standard_normal((40, 30)))
    assert axes(poisson((40, 30), coefficient=a)) == (True, True)


def test_stretched_grids_converge_far_faster_than_cg():
    system = poisson((64, 64), spacing=(1.0, 10.0))
    b = np.random.default_rng(7).standard_normal(system.n)
    solver = MGPCSolver(system)
    result = solver.solve(b, rtol=1e-8)
    reference = solve(system, b, method="cg", rtol=1e-8)
    assert result.converged
    assert 10 * result.iterations < reference.iterations
    levels = solver.hierarchy.levels
    assert levels[0].axes == (True, False)  # semi-coarsening first
    assert [lvl.gamma for lvl in levels[:3]] == [1, 2, 1]  # W-steps every other level


@pytest.mark.parametrize("shape", [(36, 30), (10, 12, 9), (20, 16)])
def test_singular_pure_neumann_matrix_without_pinning(shape):
    # the singular matrix as another code would write it: no pinned cell
    system = poisson(shape, boundary="neumann", pin="none", spacing=(1.0,) * len(shape))
    A = system.A
    assert abs(A @ np.ones(A.shape[0])).max() < 1e-12  # constants are its null space
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    b -= b.mean()  # consistent
    solver = MGPCSolver(system)
    result = solver.solve(b, rtol=1e-8)
    assert result.converged
    assert np.linalg.norm(b - A @ result.x) <= 1e-8 * np.linalg.norm(b) * 1.0001
    assert 3 * result.iterations < solve(system, b, method="cg", rtol=1e-8).iterations
    r32 = MGPCSolver(system, dtype=torch.float32).solve(b, rtol=1e-5)
    assert r32.converged and r32.iterations <= result.iterations
    if solver.hierarchy.num_levels == 1:  # the whole grid is the coarsest level: M = A^+
        assert result.iterations == 1
    elif len(shape) == 2:  # M is still SPD (the coarsest solve is a pseudo-inverse)
        M = dense_preconditioner(solver)
        assert np.abs(M - M.T).max() <= 1e-12 * np.abs(M).max()
        eig = np.linalg.eigvalsh(0.5 * (M + M.T))
        assert eig[0] > 1e-8 * eig[-1]


def test_indefinite_matrix_is_refused_clearly():
    from neurosolve.data import LinearSystem
    from neurosolve.data.grids import Grid

    A = (poisson((16, 16)).A - 300.0 * sp.eye(256)).tocsr()  # diagonal stays positive
    assert A.diagonal().min() > 0
    with pytest.raises(InvalidInputError, match="not positive semi-definite"):
        MGPCSolver(LinearSystem(A=A, grid=Grid((16, 16))))


def test_prolongation_is_restriction_transpose():
    rng = np.random.default_rng(0)
    shape = (5, 4, 3)
    fluid = torch.from_numpy((rng.random(shape) < 0.7).astype(float))[None, None]
    u = torch.from_numpy(rng.standard_normal(shape))[None, None] * fluid
    uc = torch.from_numpy(rng.standard_normal((3, 2, 2)))[None, None]
    lhs = float((restrict(u, shape) * uc).sum())
    rhs = float((u * prolong(uc, shape, fluid)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-14)


def test_apply_stencil_matches_matrix():
    system = obstacle_system((6, 5, 7), 4)
    op = StencilOperator.from_system(system)
    x = np.random.default_rng(1).standard_normal(system.n)
    field = np.zeros(system.grid.shape)
    field[system.grid.fluid] = x
    out = apply_stencil(
        op.diagonal[None, None], op.neighbours[None], torch.from_numpy(field)[None, None]
    )
    assert np.allclose(out[0, 0].numpy()[system.grid.fluid], system.A @ x, rtol=1e-13)


CONVERGENCE = {
    "poisson3d-16-mixed-s21": lambda: obstacle_system((16, 16, 16), 21),
    "poisson3d-15x17x13-spheres-s22": lambda: poisson(
        (15, 17, 13), flags=obstacle_flags((15, 17, 13), "spheres", 22, boundary_air="top")
    ),
    "poisson2d-40-contrast1e2-s23": lambda: varcoef_system((40, 40), 1e2, 23),
}


@pytest.mark.parametrize("case", sorted(CONVERGENCE))
def test_mgpc_pcg_converges_far_faster_than_cg(case):
    system = CONVERGENCE[case]()
    b = np.random.default_rng(5).standard_normal(system.n)
    result = solve(system, b, method="mgpc-pcg", rtol=1e-8)
    reference = solve(system, b, method="cg", rtol=1e-8)
    assert result.converged and reference.converged
    assert np.linalg.norm(b - system.A @ result.x) <= 1e-8 * np.linalg.norm(b) * 1.0001
    assert 3 * result.iterations < reference.iterations
    cond = result.info["condition_estimate"]
    assert 1.0 <= cond < 100.0
    assert result.setup_seconds > 0
    assert result.info["levels"] >= 2


def test_block_rhs_and_float32():
    system = obstacle_system((12, 12, 12), 31)
    b = np.random.default_rng(2).standard_normal((system.n, 3))
    result = make_solver("mgpc-pcg", system).solve(b, rtol=1e-8)
    assert result.converged
    assert (
        np.linalg.norm(b - system.A @ result.x, axis=0).max()
        <= 1e-8 * np.linalg.norm(b, axis=0).min() * 1.0001
    )
    r32 = make_solver("mgpc-pcg", system, dtype=torch.float32).solve(b[:, 0], rtol=1e-5)
    assert r32.converged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    system = obstacle_system((16, 16, 16), 41)
    b = np.random.default_rng(3).standard_normal(system.n)
    cpu = solve(system, b, method="mgpc-pcg", rtol=1e-8)
    gpu = solve(system, b, method="mgpc-pcg", rtol=1e-8, device="cuda")
    assert gpu.converged and abs(gpu.iterations - cpu.iterations) <= 1


def test_training_steps_lower_the_loss_and_reach_every_parameter():
    torch.manual_seed(0)
    net = MGPCNet(width=6, layers=1)
    x, v = mgpc_samples(np.random.default_rng(0), dim=2, resolution=12, group=2)
    batch = (x.float(), v.float())
    first = mgpc_loss(net, batch)
    first.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        if name not in ("level_bias", "level_scale"):  # buckets of absent levels get none
            assert float(p.grad.abs().sum()) > 0, name
    assert float(net.level_scale.grad.abs().sum()) > 0
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(8):
        opt.zero_grad()
        loss = mgpc_loss(net, batch)
        loss.backward()
        opt.step()
    assert float(mgpc_loss(net, batch).detach()) < 0.9 * float(first.detach())


def test_loss_is_zero_for_an_exact_inverse_and_scale_invariant():
    # 8x8 has no coarser level (max_coarse=64 in the loss): M is the exact inverse
    x, v = mgpc_samples(np.random.default_rng(1), dim=2, resolution=8, group=2)
    net = MGPCNet(width=4, layers=1).double()
    assert abs(float(mgpc_loss(net, (x, v)))) < 1e-12
    x, v = mgpc_samples(np.random.default_rng(1), dim=2, resolution=20, group=2)
    with torch.no_grad():
        a = float(mgpc_loss(net, (x, v)))
        assert a == pytest.approx(float(mgpc_loss(net, (x, 3.0 * v))), rel=1e-10)
    assert 1e-4 < a < 1.0


def test_checkpoint_round_trip(tmp_path):
    net = random_net(2)
    path = save_checkpoint(
        tmp_path / "m.pt", kind="mgpc", kwargs=net.config(), state_dict=net.state_dict()
    )
    loaded = load_mgpc_model(path)
    system = obstacle_system((9, 9, 9), 5)
    b = np.random.default_rng(0).standard_normal(system.n)
    a = MGPCSolver(system, model=net).solve(b, rtol=1e-10)
    c = MGPCSolver(system, model=path).solve(b, rtol=1e-10)
    assert a.iterations == c.iterations
    np.testing.assert_allclose(a.x, c.x, rtol=1e-12, atol=1e-14)
    assert loaded.config() == net.config()
    other = save_checkpoint(tmp_path / "o.pt", kind="dcdm", kwargs={}, state_dict={})
    with pytest.raises(FileFormatError, match="not a 'mgpc' model"):
        load_mgpc_model(other)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_mgpc_model(tmp_path / "missing.pt")
    # a checkpoint of the earlier format (no level_scale): named, with the way out
    state = {k: v for k, v in net.state_dict().items() if k != "level_scale"}
    old = save_checkpoint(tmp_path / "old.pt", kind="mgpc", kwargs=net.config(), state_dict=state)
    with pytest.raises(FileFormatError, match="missing level_scale.*Retrain"):
        load_mgpc_model(old)


def test_shipped_model_is_small_and_trained():
    from neurosolve.checkpoint import shipped_path

    path = shipped_path("mgpc")
    assert path.stat().st_size < 2 * 1024 * 1024
    net = load_mgpc_model()
    assert float(net.level_bias.detach().abs().sum()) > 0  # moved away from its initial value


@pytest.mark.parametrize("shape", [(7, 5, 9), (1, 9, 4), (13, 1), (3, 3, 3)])
def test_odd_and_degenerate_sizes(shape):
    flags = np.full(shape, FLUID, dtype=np.int8)
    system = poisson(shape, flags=flags)
    b = np.random.default_rng(0).standard_normal(system.n)
    result = solve(system, b, method="mgpc-pcg", rtol=1e-10)
    assert result.converged


def test_bad_input():
    system = obstacle_system((8, 8, 8), 1)
    with pytest.raises(InvalidInputError, match="needs a grid"):
        make_solver("mgpc-pcg", system.A)
    with pytest.raises(InvalidInputError, match="dtype"):
        MGPCSolver(system, dtype=torch.int32)
    with pytest.raises(InvalidInputError, match="width"):
        MGPCNet(width=0)
    with pytest.raises(InvalidInputError, match="cycle must be one of"):
        MGPCNet(cycle="F")


def test_w_cycle_beats_v_cycle_and_cost_is_counted():
    system = obstacle_system((24, 24, 24), 51)
    b = np.random.default_rng(6).standard_normal(system.n)
    trained = load_mgpc_model()
    v_net = MGPCNet(**{**trained.config(), "cycle": "V"})
    v_net.load_state_dict(trained.state_dict())
    w = MGPCSolver(system, model=trained, max_coarse=128)
    v = MGPCSolver(system, model=v_net, max_coarse=128)
    rw, rv = w.solve(b, rtol=1e-8), v.solve(b, rtol=1e-8)
    assert rw.converged and rv.converged
    assert rw.iterations < rv.iterations
    assert rw.info["cycle"] == "W" and rv.info["cycle"] == "V"
    # 24^3 -> 12^3 -> 6^3 (216 > 128) -> 3^3: W visits the levels 1, 2, 4 times
    nu = trained.smoothing_steps
    expected_w = 2 * nu * (1 + 2 / 8 + 4 / 64) + (1 / 8 + 2 / 64 + 4 / 512)
    expected_v = 2 * nu * (1 + 1 / 8 + 1 / 64)
    assert rw.info["cycle_matvec_equivalents"] == pytest.approx(expected_w, rel=1e-12)
    assert rv.info["cycle_matvec_equivalents"] == pytest.approx(expected_v, rel=1e-12)


def test_cli_trains_a_model(tmp_path, capsys):
    from neurosolve.cli import main

    out = tmp_path / "m.pt"
    code = main(
        [
            "train", "mgpc", "--out", str(out), "--groups", "2", "--val-groups", "1",
            "--group-size", "1", "--resolutions", "6", "--dims", "2", "--width", "4",
            "--layers", "1", "--epochs", "1", "--cycle", "V", "--smoothing-steps", "2",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0 and out.is_file()
    trained = load_mgpc_model(out)
    assert (trained.cycle, trained.smoothing_steps) == ("V", 2)
    assert "model written" in capsys.readouterr().out
    assert (tmp_path / "m.pt.run" / "metrics.json").is_file()
    system = obstacle_system((8, 8, 8), 2)
    assert solve(system, np.ones(system.n), method="mgpc-pcg", model=out, rtol=1e-8).converged
