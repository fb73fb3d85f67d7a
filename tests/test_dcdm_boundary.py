"""DCDM with boundary-aware input: geometry channels, ghost layers, scene data, deep U-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurosolve.data.grids import AIR, FLUID, SOLID
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.dcdm.network import DCDMNet, flags_channel, geometry_input
from neurosolve.solvers.dcdm.ritz import SCENES, ritz_samples, scene_system
from neurosolve.solvers.dcdm.solver import DCDMSolver, load_dcdm_model
from neurosolve.solvers.dcdm.training import batch_inputs, dcdm_loss
from neurosolve.solvers.stencil import apply_stencil


def _flags(shape):
    flags = np.full(shape, FLUID, dtype=np.int8)
    flags[(0,) * len(shape)] = SOLID
    flags[-1] = AIR
    return torch.as_tensor(flags)[None, None]


@pytest.mark.parametrize("walls,outside", [(True, SOLID), (False, AIR)])
def test_ghost_layer_holds_the_boundary_cell_type(walls, outside):
    flags = _flags((4, 5))
    geo = geometry_input(flags, walls, channels=2, ghost=1)
    assert geo.shape == (1, 2, 6, 7)
    fluid, solid = geo[0, 0], geo[0, 1]
    border = torch.ones(6, 7, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert torch.all(fluid[border] == 0)
    assert torch.all(solid[border] == float(outside == SOLID))
    # inside: the masks of the cells, air is neither
    assert torch.equal(fluid[1:-1, 1:-1], (flags[0, 0] == FLUID).float())
    assert torch.equal(solid[1:-1, 1:-1], (flags[0, 0] == SOLID).float())


def test_signed_channel_without_ghost_is_the_old_encoding():
    flags = _flags((3, 4, 5))
    assert torch.equal(geometry_input(flags, True, channels=1), flags_channel(flags))
    with pytest.raises(InvalidInputError):
        geometry_input(flags, True, channels=3)


def test_per_sample_walls_in_one_batch():
    flags = torch.cat([_flags((4, 4))] * 2)
    geo = geometry_input(flags, torch.tensor([True, False]), channels=1, ghost=2)
    assert geo[0, 0, 0, 0] == -1.0 and geo[1, 0, 0, 0] == 0.0


@pytest.mark.parametrize(
    "options",
    [
        dict(levels=1, coarsest=2),
        dict(levels=2, backbone="mgno", mg_layers=1),
    ],
)
def test_boundary_aware_network_crops_masks_and_trains_every_parameter(options):
    torch.manual_seed(0)
    shape = (6, 7, 5)
    net = DCDMNet(dim=3, width=4, in_channels=3, ghost=1, skip=False, **options)
    flags = _flags(shape)
    geo = geometry_input(flags, True, channels=2, ghost=1)
    x = torch.cat([torch.randn(2, 1, 8, 9, 7), geo.expand(2, -1, -1, -1, -1)], 1)
    out = net(x)
    assert out.shape == (2, 1, *shape)
    assert torch.all(out[:, 0][:, flags[0, 0] != FLUID] == 0)
    out.square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_adaptive_depth_reuses_weights_and_grows_with_the_grid():
    deep = DCDMNet(dim=2, width=4, levels=2, coarsest=2)
    fixed = DCDMNet(dim=2, width=4, levels=2)
    assert sum(p.numel() for p in deep.parameters()) == sum(p.numel() for p in fixed.parameters())
    assert [deep.depth((n, n)) for n in (4, 8, 16, 33)] == [2, 2, 3, 5]
    assert fixed.depth((64, 64)) == 2
    # a point source reaches the far corner of a 33x33 grid only through the deep levels
    torch.manual_seed(1)
    for net in (deep, fixed):
        torch.nn.init.normal_(net.project.weight)
    x = torch.zeros(1, 1, 33, 33)
    x[0, 0, 0, 0] = 1.0
    with torch.no_grad():
        reach = [(net(x) - net(torch.zeros_like(x)))[0, 0, -1, -1] for net in (deep, fixed)]
    assert reach[0] != 0.0 and reach[1] == 0.0


def test_bad_new_arguments_are_refused():
    with pytest.raises(InvalidInputError):
        DCDMNet(ghost=-1)
    with pytest.raises(InvalidInputError):
        DCDMNet(backbone="transformer")
    with pytest.raises(InvalidInputError):
        DCDMNet(in_channels=4)


def test_shipped_model_loads_with_the_defaults_of_the_new_arguments():
    model = load_dcdm_model()
    assert model.ghost == 0 and model.coarsest == 0 and model.backbone == "unet"


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_scene_systems_have_their_boundary_and_air(scene):
    system = scene_system((8, 9, 10), scene, np.random.default_rng(3), contrast=10.0)
    boundary, air = SCENES[scene]
    assert system.grid.boundary == boundary
    top = system.grid.flags[-1]
    assert bool((top == AIR).all()) == (air is not None)
    assert system.A.shape[0] == int((system.grid.flags == FLUID).sum())
    with pytest.raises(InvalidInputError):
        scene_system((8, 8, 8), "ocean", np.random.default_rng(0))


def test_scene_samples_carry_walls_and_exact_operators():
    rngs = [np.random.default_rng([5, i]) for i in range(4)]
    x, y = ritz_samples(
        rngs,
        dim=2,
        resolution=10,
        geometry="varied",
        scenes="open-top,dirichlet",
        lanczos_steps=12,
    )
    assert x.shape == (4, 3, 10, 10) and y.shape == (4, 5, 10, 10)
    again, _ = ritz_samples(
        [np.random.default_rng([5, i]) for i in range(4)],
        dim=2,
        resolution=10,
        geometry="varied",
        scenes="open-top,dirichlet",
        lanczos_steps=12,
    )
    np.testing.assert_array_equal(x, again)
    for i in range(4):
        walls = bool(x[i, 2, 0, 0])
        assert np.all(x[i, 2] == float(walls))
        # the open-top scene has solid walls and AIR on top; the Dirichlet one neither
        assert walls == bool((x[i, 1, -1] == AIR).all())
        flags = x[i, 1].astype(np.int8)
        from neurosolve.data import poisson

        system = poisson((10, 10), flags=flags, boundary="neumann" if walls else "dirichlet")
        v = np.random.default_rng(i).standard_normal(system.n)
        field = np.zeros((10, 10))
        field[flags == FLUID] = v
        t = torch.tensor(y[i : i + 1])
        Av = apply_stencil(t[:, :1], t[:, 1:], torch.tensor(field)[None, None])
        np.testing.assert_allclose(Av[0, 0].numpy()[flags == FLUID], system.A @ v, atol=1e-9)


def test_training_and_solver_build_the_same_network_input():
    net = DCDMNet(dim=2, width=4, in_channels=3, ghost=1)
    rng = np.random.default_rng([7, 0])
    x, y = ritz_samples(
        [rng], dim=2, resolution=9, geometry="boxes", scenes="open-top", lanczos_steps=10
    )
    batch = torch.tensor(x).float()
    inputs, _ = batch_inputs(net, batch)
    from neurosolve.data import poisson
    from neurosolve.solvers.dcdm.solver import network_input

    flags = x[0, 1].astype(np.int8)
    solver = DCDMSolver(poisson((9, 9), flags=flags, boundary="neumann"), model=net)
    fluid = torch.as_tensor(flags == FLUID)
    direct = network_input(batch[:, :1] * fluid, fluid, solver.geometry)
    torch.testing.assert_close(inputs, direct)
    assert dcdm_loss(net, (batch, torch.tensor(y).float())).item() > 0


def test_solver_with_a_ghost_model_converges_on_an_open_top_box():
    torch.manual_seed(0)
    net = DCDMNet(dim=3, width=4, levels=1, coarsest=2, in_channels=3, ghost=1)
    system = scene_system((8, 8, 8), "open-top", np.random.default_rng(0), geometry="mixed")
    b = np.random.default_rng(1).standard_normal(system.n)
    result = DCDMSolver(system, model=net).solve(b, rtol=1e-8)
    assert result.converged
    assert np.linalg.norm(b - system.A @ result.x) <= 1e-8 * np.linalg.norm(b)


@pytest.mark.parametrize("channels", [2, 3])
def test_dirichlet_ghost_layer_computes_what_zero_padding_computes(channels):
    torch.manual_seed(2)
    plain = DCDMNet(dim=3, width=4, levels=2, in_channels=channels, skip=False)
    ghosted = DCDMNet(dim=3, width=4, levels=2, in_channels=channels, skip=False, ghost=1)
    ghosted.load_state_dict(plain.state_dict())
    flags = _flags((6, 7, 8))
    r = torch.randn(1, 1, 6, 7, 8) * (flags == FLUID)
    x0 = torch.cat([r, geometry_input(flags, False, channels=channels - 1)], 1)
    g = geometry_input(flags, False, channels=channels - 1, ghost=1)
    x1 = torch.cat([torch.nn.functional.pad(r, (1,) * 6), g], 1)
    with torch.no_grad():
        torch.testing.assert_close(ghosted(x1), plain(x0), rtol=0, atol=1e-6)
        # walls change what the network computes near them
        walls = torch.cat(
            [x1[:, :1], geometry_input(flags, True, channels=channels - 1, ghost=1)], 1
        )
        assert not torch.allclose(ghosted(walls), plain(x0))


def test_fine_tuning_start_must_fit_the_network(tmp_path):
    from neurosolve.checkpoint import shipped_path
    from neurosolve.solvers.dcdm.training import train_dcdm

    with pytest.raises(InvalidInputError, match="do not fit"):
        train_dcdm(tmp_path / "m.pt", width=8, init=shipped_path("dcdm"), samples=1)
    assert not (tmp_path / "m.pt.run").exists()
