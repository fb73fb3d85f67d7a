"""The MGPC cycle in native passes: bit for bit the torch cycle, and when it stands aside.

The torch form of :meth:`Hierarchy.apply` is the reference (its SPD property and its
agreement with explicit matrices are tested in ``test_mgpc.py``); the native cycle runs
the same operations in the same order, so the two must agree exactly.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.solvers import compiled, native
from neurosolve.solvers.mgpc import MGPCNet, MGPCSolver
from neurosolve.solvers.mgpc.hierarchy import Hierarchy
from neurosolve.solvers.mgpc.native_cycle import NativeCycle
from neurosolve.solvers.stencil import StencilOperator

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")


@pytest.fixture(autouse=True)
def _switches_restored():
    before = native.set_native(None)
    yield
    native.set_native(before)


def hierarchy(shape, *, dtype=torch.float64, stencils=1, cycle="W", spacing=None, seed=0):
    """A hierarchy of ``stencils`` obstacle problems on ``shape`` (random network)."""
    torch.manual_seed(seed)
    ops = []
    for g in range(stencils):
        flags = obstacle_flags(shape, "boxes", seed + g, count=1 + g)
        ops.append(StencilOperator.from_system(poisson(shape, flags=flags, spacing=spacing)))
    with torch.no_grad():
        d = torch.stack([op.diagonal[None] for op in ops]).to(dtype)
        c = torch.stack([op.neighbours for op in ops]).to(dtype)
        f = torch.stack([op.fluid_mask[None] for op in ops]).to(dtype)
        return Hierarchy.build(MGPCNet(cycle=cycle), d, c, f, max_coarse=8)


def fields(h, k, seed=1):
    fine = h.levels[0]
    g = torch.Generator().manual_seed(seed)
    G = fine.diagonal.shape[0]
    r = torch.randn(G, k, *fine.shape, generator=g, dtype=fine.diagonal.dtype)
    return r * fine.fluid


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("shape", "stencils", "k", "cycle"),
    [
        ((12, 10, 9), 1, 1, "W"),
        ((12, 10, 9), 2, 3, "W"),
        ((11, 7, 6), 1, 2, "V"),
        ((17, 13), 1, 1, "W"),
        ((17, 13), 3, 2, "V"),
    ],
)
def test_native_cycle_is_the_torch_cycle_bit_for_bit(shape, stencils, k, cycle, dtype):
    h = hierarchy(shape, dtype=dtype, stencils=stencils, cycle=cycle)
    assert len(h.levels) >= 3
    r = fields(h, k)
    with torch.no_grad():
        cycle_ = NativeCycle.build(h)
        assert cycle_ is not None
        got = cycle_.apply(r)
        want = h.apply(r, native_cycle=False)
        assert torch.equal(got, want)
        assert torch.equal(h.apply(r), want)  # the default path takes the native cycle
        assert torch.equal(cycle_.apply(r), want)  # work arrays reused: the same again


def test_semi_coarsening_and_damped_w_steps():
    h = hierarchy((16, 12, 6), spacing=(1.0, 1.0, 0.25))
    assert any(lvl.axes is not None and not all(lvl.axes) for lvl in h.levels[:-1])
    for lvl in h.levels[:-1]:
        if lvl.gamma == 2:
            lvl.tau = 0.8  # damping, as the bounds set it where needed
    r = fields(h, 2)
    with torch.no_grad():
        assert torch.equal(h.apply(r), h.apply(r, native_cycle=False))


def test_changed_level_tensors_are_seen():
    h = hierarchy((10, 9, 8))
    r = fields(h, 1)
    with torch.no_grad():
        before = h.apply(r)
        h.levels[0].weights.mul_(0.5)  # in place: a new version of the same tensor
        after = h.apply(r)
        assert not torch.equal(before, after)
        assert torch.equal(after, h.apply(r, native_cycle=False))
        h.levels[1].scale = h.levels[1].scale * 0.9  # a new tensor
        assert torch.equal(h.apply(r), h.apply(r, native_cycle=False))


def test_autograd_takes_the_torch_cycle():
    torch.manual_seed(0)
    op = StencilOperator.from_system(poisson((8, 8, 8)))
    net = MGPCNet()
    h = Hierarchy.build(
        net,
        op.diagonal[None, None],
        op.neighbours[None],
        op.fluid_mask[None, None].double(),
        max_coarse=8,
    )
    assert h.levels[0].weights.requires_grad
    r = fields(h, 1)
    out = h.apply(r)
    assert out.grad_fn is not None  # recorded: the native cycle stood aside
    out.square().sum().backward()
    assert net.head.bias.grad is not None and bool(net.head.bias.grad.abs().sum() > 0)


def test_stands_aside_without_native_or_under_compile(monkeypatch):
    h = hierarchy((9, 8, 7))
    native.set_native(False)
    assert NativeCycle.build(h) is None
    native.set_native(True)
    monkeypatch.setattr(compiled.SWITCH, "override", True)
    assert NativeCycle.build(h) is None
    monkeypatch.setattr(compiled.SWITCH, "override", None)
    cycle = NativeCycle.build(h)
    assert cycle is not None
    r = fields(h, 1)
    assert cycle.apply(r.float()) is None  # another dtype
    assert cycle.apply(r[..., :-1]) is None  # another grid


def test_concurrent_callers_get_the_same_result():
    h = hierarchy((12, 10, 9))
    r = fields(h, 1)
    with torch.no_grad():
        want = h.apply(r, native_cycle=False)
    results, errors = [], []

    def work():
        try:
            with torch.no_grad():
                for _ in range(20):
                    results.append(torch.equal(h.apply(r), want))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 60 and all(results)


@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_mgpc_iterations_unchanged(precision):
    flags = obstacle_flags((20, 20, 20), "spheres", 3, count=3)
    system = poisson((20, 20, 20), flags=flags)
    b = np.random.default_rng(4).standard_normal(system.A.shape[0])
    runs = {}
    for on in (True, False):
        native.set_native(on)
        solver = MGPCSolver(system, precision=precision)
        runs[on] = solver.solve(b, rtol=1e-10)
    assert runs[True].converged and runs[True].iterations == runs[False].iterations
    np.testing.assert_allclose(
        runs[True].x, runs[False].x, rtol=0, atol=1e-9 * np.abs(runs[False].x).max()
    )


def test_default_coarsest_level_follows_the_cycle():
    system = poisson((16, 16, 16))
    native.set_native(True)
    fine = MGPCSolver(system).hierarchy
    native.set_native(False)
    coarse = MGPCSolver(system).hierarchy
    assert [lvl.shape for lvl in fine.levels][-1] == (4, 4, 4)  # <= 64 cells: native cycle
    assert [lvl.shape for lvl in coarse.levels][-1] == (8, 8, 8)  # <= 512 cells: torch cycle
    assert MGPCSolver(system, max_coarse=512).hierarchy.num_levels == coarse.num_levels
