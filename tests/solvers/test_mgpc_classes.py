"""MGPC network value classes: shared values are exact, and the network's outputs unchanged.

:func:`~neurosolve.solvers.mgpc.classes.value_classes` may let two cells share a value only
where their stencil rows within ``k`` steps are equal; that is checked here against a
brute-force comparison of the neighbourhoods. The network run on one cell per value
(:meth:`MGPCNet.slot_outputs`) must give the dense pass's smoother weights on every cell,
on 2D and 3D levels of solid walls, obstacles, air faces and variable coefficients, and
the dense pass must still run where nothing repeats.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.data.grids import Grid
from neurosolve.solvers import native
from neurosolve.solvers.mgpc import hierarchy as hmod
from neurosolve.solvers.mgpc import network
from neurosolve.solvers.mgpc.classes import cells_of, expand_slots, value_classes
from neurosolve.solvers.mgpc.network import MGPCNet
from neurosolve.solvers.mgpc.solver import load_mgpc_model
from neurosolve.solvers.stencil import StencilOperator

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")


def level_of(system) -> hmod.Level:
    """The finest MGPC level of a system (float64, one matrix)."""
    op = StencilOperator.from_matrix(system.A.tocsr(), system.grid)
    fluid = op.fluid_mask[None, None].to(op.diagonal.dtype)
    return hmod.Level(op.diagonal[None, None], op.neighbours[None], fluid)


def scenes():
    """Levels with repeats of several kinds (2D and 3D), by name."""
    box = obstacle_flags((16, 14, 12), "mixed", 3, boundary_air="top")
    yield "closed-box-3d", level_of(poisson(Grid(box.shape, flags=box, boundary="neumann")))
    spheres = obstacle_flags((14, 12, 10), "spheres", 1)
    yield "dirichlet-3d", level_of(poisson(Grid(spheres.shape, flags=spheres)))
    walls = obstacle_flags((40, 30), "mixed", 2)
    yield "walls-2d", level_of(poisson(Grid(walls.shape, flags=walls, boundary="neumann")))
    yield "thin-3d", level_of(poisson((1, 20, 16)))
    yield "line-2d", level_of(poisson((30, 1)))
    jump = np.ones((14, 12, 10))
    jump[7:, :, 5:] = 100.0  # a coefficient jump: repeats on either side
    yield "jump-3d", level_of(poisson((14, 12, 10), coefficient=jump, boundary="neumann"))


SCENES = dict(scenes())


def rows(level: hmod.Level) -> np.ndarray:
    """Every cell's row (diagonal, couplings, fluid) as ``(*S, 2 d + 2)``."""
    stacked = torch.cat([level.diagonal, level.couplings, level.fluid], dim=1)[0]
    return np.moveaxis(stacked.numpy(), 0, -1)


def neighbourhood(table: np.ndarray, cell: tuple[int, ...], k: int) -> list:
    """Rows at every offset of at most ``k`` stencil steps (``None`` outside the grid)."""
    ndim = len(cell)
    out = []
    for delta in itertools.product(range(-k, k + 1), repeat=ndim):
        if sum(map(abs, delta)) > k:
            continue
        at = tuple(c + d for c, d in zip(cell, delta, strict=True))
        inside = all(0 <= a < n for a, n in zip(at, table.shape[:ndim], strict=True))
        out.append(table[at].tolist() if inside else None)
    return out


@pytest.mark.parametrize("name", sorted(SCENES))
def test_cells_share_a_value_only_with_equal_neighbourhoods(name):
    level = SCENES[name]
    table = rows(level)
    shape = level.shape
    found = value_classes(level.diagonal, level.couplings, level.fluid, 2)
    assert found is not None and len(found) == 3
    counts = []
    for k, (slot, heads) in enumerate(found):
        assert slot.shape == (int(np.prod(shape)),) and slot.dtype == torch.int32
        counts.append(heads.numel())
        assert torch.equal(slot[heads.long()], torch.arange(heads.numel(), dtype=torch.int32))
        for x in range(slot.numel()):
            head = int(heads[slot[x]])
            if head != x:
                cell, other = np.unravel_index(x, shape), np.unravel_index(head, shape)
                assert neighbourhood(table, cell, k) == neighbourhood(table, other, k), (k, x)
    assert counts == sorted(counts)  # deeper layers distinguish more cells


def test_a_dirichlet_box_has_one_value_per_distance_to_its_faces():
    level = level_of(poisson((20, 20, 20)))  # one row per face/edge/corner pattern, interior
    found = value_classes(level.diagonal, level.couplings, level.fluid, 3)
    # after k layers a cell is told apart by its distance to each face, up to k + 1: per
    # axis the first and last k + 1 positions and one interior value
    assert [heads.numel() for _, heads in found] == [(2 * k + 3) ** 3 for k in range(4)]
    d = level.diagonal * (1 + torch.rand_like(level.diagonal))  # every row distinct
    _, heads = value_classes(d, level.couplings, level.fluid, 2)[-1]
    assert heads.numel() == 8000


@pytest.mark.parametrize("name", sorted(SCENES))
@pytest.mark.parametrize("seed", [0, 1])
def test_slot_outputs_give_the_dense_smoother_weights(name, seed, monkeypatch):
    level = SCENES[name]
    torch.manual_seed(seed)
    net = MGPCNet(width=6, layers=3 - seed, smoothing_steps=2)
    monkeypatch.setattr(network, "_CLASS_FRACTION", 1.0)  # these small grids repeat less
    monkeypatch.setattr(network, "_CLASS_MIN_CELLS", 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        slots = net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=1)
        theta, s = net(level.diagonal, level.couplings, level.fluid, level=1)
        monkeypatch.setattr(network, "_CLASS_FRACTION", -1.0)  # the dense pass
        assert net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=1) is None
        dense, s_dense = net(level.diagonal, level.couplings, level.fluid, level=1)
    assert slots is not None
    values, slot, heads = slots
    assert heads.numel() < slot.numel()  # something repeats in every scene
    assert theta.shape == dense.shape == (1, 2, *level.shape)
    assert float((theta - dense).abs().max()) <= 2e-6
    assert torch.equal(s, s_dense)
    flat = dense.reshape(2, -1)
    assert float((values - flat[:, heads.long()].T).abs().max()) <= 2e-6


@pytest.mark.parametrize("name", ["closed-box-3d", "walls-2d"])
def test_hierarchy_weights_match_the_dense_pass(name, monkeypatch):
    level = SCENES[name]
    net = load_mgpc_model(None, device=torch.device("cpu"))
    monkeypatch.setattr(network, "_CLASS_FRACTION", 1.0)
    monkeypatch.setattr(network, "_CLASS_MIN_CELLS", 1)
    with torch.no_grad():
        levels = hmod._coarsen(hmod.Level(level.diagonal, level.couplings, level.fluid), 2, 8, 12)
        hmod._set_smoothers(net, levels)
        fast = [lvl.weights.clone() for lvl in levels[:-1]]
        monkeypatch.setattr(network, "_CLASS_FRACTION", -1.0)
        hmod._set_smoothers(net, levels)
    assert len(levels) >= 2
    for got, lvl in zip(fast, levels, strict=False):
        want = lvl.weights
        assert got.dtype == want.dtype == torch.float64 and got.shape == want.shape
        scale = float(want.abs().max())
        assert float((got - want).abs().max()) <= 1e-6 * scale
        assert bool((got[lvl.fluid.expand_as(got) == 0] == 0).all())


def test_random_coefficients_take_the_dense_pass(monkeypatch):
    monkeypatch.setattr(network, "_CLASS_MIN_CELLS", 1)
    coefficient = np.random.default_rng(3).uniform(1.0, 10.0, (10, 9, 8))
    level = level_of(poisson((10, 9, 8), coefficient=coefficient))
    net = MGPCNet(width=4, layers=2)
    with torch.no_grad():
        assert net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=0) is None
        theta, _ = net(level.diagonal, level.couplings, level.fluid, level=0)
    assert theta.shape == (1, 3, 10, 9, 8)


def test_autograd_batches_and_small_grids_take_the_dense_pass(monkeypatch):
    level = SCENES["closed-box-3d"]  # 2,688 cells: under the size where the passes pay
    net = MGPCNet(width=4, layers=2)
    with torch.no_grad():
        assert net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=0) is None
    monkeypatch.setattr(network, "_CLASS_MIN_CELLS", 1)
    with torch.no_grad():
        assert net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=0) is not None
    assert net.slot_outputs(level.diagonal, level.couplings, level.fluid, level=0) is None
    theta, _ = net(level.diagonal, level.couplings, level.fluid, level=0)
    theta.sum().backward()  # the dense pass records its graph
    assert net.lift.weight.grad is not None
    two = [torch.cat([t, t]) for t in (level.diagonal, level.couplings, level.fluid)]
    with torch.no_grad():
        assert net.slot_outputs(*two, level=0) is None


def test_native_switch_off_takes_the_dense_pass():
    level = SCENES["walls-2d"]
    before = native.set_native(False)
    try:
        assert value_classes(level.diagonal, level.couplings, level.fluid, 2) is None
        assert expand_slots(torch.ones(2, 1), torch.zeros(3, dtype=torch.int32)) is None
    finally:
        native.set_native(before)


def test_expand_and_cells_of_are_inverse_reads():
    field = torch.arange(24.0, dtype=torch.float64).reshape(1, 2, 3, 4)
    heads = torch.tensor([0, 5, 11], dtype=torch.int32)
    picked = cells_of(heads, field)[0]
    assert picked.shape == (1, 2, 3, 1)
    assert picked[0, :, :, 0].tolist() == [[0.0, 5.0, 11.0], [12.0, 17.0, 23.0]]
    slot = torch.tensor([0, 0, 1, 2, 2], dtype=torch.int32)
    out = expand_slots(picked[0, :, :, 0].T.contiguous(), slot)
    assert out.dtype == torch.float64
    assert out.tolist() == [[0.0, 0.0, 5.0, 11.0, 11.0], [12.0, 12.0, 17.0, 23.0, 23.0]]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_parallel_passes_give_the_serial_classes(name, monkeypatch):
    level = SCENES[name]
    with native.kernel_threads(1):
        serial = value_classes(level.diagonal, level.couplings, level.fluid, 2)
        values = torch.randn(serial[-1][1].numel(), 3, dtype=torch.float64)
        expanded = expand_slots(values, serial[-1][0])
    monkeypatch.setattr(native, "_min_cells", 1)  # every pass large enough for the threads
    with native.kernel_threads(3):
        split = value_classes(level.diagonal, level.couplings, level.fluid, 2)
        assert torch.equal(expand_slots(values, split[-1][0]), expanded)
    for (slot, heads), (slot3, heads3) in zip(serial, split, strict=True):
        assert torch.equal(slot, slot3) and torch.equal(heads, heads3)
