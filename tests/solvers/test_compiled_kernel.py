"""Compiled kernels: the eager fallback, the switches, the cache folder, compiled == eager.

Only ``test_compiled_equals_eager`` compiles (one tiny kernel, a few seconds); every other
test replaces ``torch.compile`` so that nothing is compiled.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from neurosolve.solvers import compiled as compiled_module
from neurosolve.solvers import stencil
from neurosolve.solvers.compiled import (
    CompiledKernel,
    cache_directory,
    compile_enabled,
    set_compile,
)


@pytest.fixture(autouse=True)
def _fresh_switches(monkeypatch):
    """Every test starts with the environment deciding (compiling asked for) and no warning."""
    monkeypatch.setattr(compiled_module.SWITCH, "override", None)
    monkeypatch.setattr(compiled_module, "_warned", False)
    monkeypatch.setenv("NEUROSOLVE_COMPILE", "1")


def stencil_case(shape=(5, 4, 3), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    d = 6.0 + torch.rand(1, 1, *shape, generator=g, dtype=dtype)
    c = -torch.rand(1, 2 * len(shape), *shape, generator=g, dtype=dtype)
    w = 0.1 * torch.rand(1, 1, *shape, generator=g, dtype=dtype)
    u = torch.randn(1, 1, *shape, generator=g, dtype=dtype)
    f = torch.randn(1, 1, *shape, generator=g, dtype=dtype)
    return d, c, w, u, f


def padded(case):
    """The arguments of the stencil module's kernels: the field ``u`` zero-padded."""
    d, c, w, u, f = case
    return d, c, w, stencil._pad(u), f


def dense_step(d, c, w, u, f):
    """``u + w (f - A u)`` from the explicit neighbour sums (a reference, not the kernel)."""
    Au = d * u
    for a in range(u.dim() - 2):
        ax = 2 + a
        lo = torch.zeros_like(u)
        hi = torch.zeros_like(u)
        n = u.shape[ax]
        lo.narrow(ax, 1, n - 1).copy_(u.narrow(ax, 0, n - 1))  # u(c - e_a)
        hi.narrow(ax, 0, n - 1).copy_(u.narrow(ax, 1, n - 1))  # u(c + e_a)
        Au = Au + c[:, 2 * a : 2 * a + 1] * lo + c[:, 2 * a + 1 : 2 * a + 2] * hi
    return u + w * (f - Au)


class FailingCompile:
    """Stands in for ``torch.compile``: counts its calls, returns a function that raises."""

    def __init__(self):
        self.calls = 0
        self.error = RuntimeError("no working C++ compiler found")

    def __call__(self, fn, **kwargs):
        self.calls += 1

        def broken(*args):
            raise self.error

        return broken


def forbid_compile(monkeypatch):
    def never(fn, **kwargs):
        raise AssertionError("torch.compile must not be called here")

    monkeypatch.setattr(compiled_module.torch, "compile", never)


def test_compile_failure_falls_back_to_eager_and_warns_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    fake = FailingCompile()
    monkeypatch.setattr(compiled_module.torch, "compile", fake)
    step = CompiledKernel(stencil._smoothing_step, name="step", min_numel=0)
    other = CompiledKernel(stencil._residual, name="residual", min_numel=0)
    case = stencil_case()
    with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler"):
        out = step(*padded(case))
    torch.testing.assert_close(out, dense_step(*case), rtol=1e-14, atol=1e-14)
    assert step.failed and not step.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, from this kernel or another
        again = step(*padded(case))
        other(case[0], case[1], stencil._pad(case[3]), case[4])
    assert torch.equal(again, out)
    assert fake.calls == 2  # once per kernel: a failed kernel never tries again
    assert "failed" in repr(step)


def test_bad_input_raises_the_eager_error_and_keeps_compiling(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiled_module.torch, "compile", FailingCompile())
    kernel = CompiledKernel(lambda a, b: a + b, name="add", min_numel=0)
    with pytest.raises(RuntimeError, match="size of tensor"):
        kernel(torch.ones(3), torch.ones(4))  # the eager error, not the compiler's
    assert not kernel.failed


def test_compiling_is_off_unless_asked_for(monkeypatch):
    monkeypatch.delenv("NEUROSOLVE_COMPILE")
    assert not compile_enabled()  # no NEUROSOLVE_COMPILE, no set_compile
    for value in ("1", "true", "ON", "yes"):
        monkeypatch.setenv("NEUROSOLVE_COMPILE", value)
        assert compile_enabled()


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no", "", "maybe"])
def test_environment_switch_disables_compiling(monkeypatch, value):
    monkeypatch.setenv("NEUROSOLVE_COMPILE", value)
    forbid_compile(monkeypatch)
    kernel = CompiledKernel(stencil._smoothing_step, name="step", min_numel=0)
    case = stencil_case()
    assert not compile_enabled()
    torch.testing.assert_close(kernel(*padded(case)), dense_step(*case), rtol=1e-14, atol=1e-14)
    assert not kernel.compiled and not kernel.failed


def test_set_compile_overrides_the_environment_and_hands_back(monkeypatch):
    monkeypatch.setenv("NEUROSOLVE_COMPILE", "1")
    assert compile_enabled()
    assert set_compile(False) is None
    assert not compile_enabled()
    forbid_compile(monkeypatch)
    kernel = CompiledKernel(lambda a: 2 * a, name="double", min_numel=0)
    assert torch.equal(kernel(torch.ones(2)), torch.full((2,), 2.0))
    assert set_compile(None) is False
    assert compile_enabled()


def test_small_calls_and_training_calls_stay_eager(monkeypatch):
    forbid_compile(monkeypatch)
    small = CompiledKernel(lambda a, b: a * b, name="mul", min_numel=100)
    assert torch.equal(small(torch.ones(10), torch.ones(10)), torch.ones(10))
    big = CompiledKernel(lambda a, b: a * b, name="mul", min_numel=1)
    a = torch.ones(10, requires_grad=True)
    out = big(a, torch.full((10,), 3.0))  # needs an autograd graph: eager
    out.sum().backward()
    assert torch.equal(a.grad, torch.full((10,), 3.0))


def test_cache_folder_is_per_user_and_set_only_at_the_first_compile(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "neurosolve" / "inductor"
    assert cache_directory() == expected
    monkeypatch.setattr(compiled_module.torch, "compile", FailingCompile())
    kernel = CompiledKernel(lambda a: a + 1, name="inc", min_numel=100)
    kernel(torch.zeros(2))  # too small to compile: nothing configured
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ and not expected.exists()
    with pytest.warns(RuntimeWarning):
        kernel(torch.zeros(100))  # the first compile (it fails, as told) sets the cache up
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(expected)
    assert expected.is_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's wins
    assert cache_directory() == tmp_path / "mine"


def test_compiled_equals_eager(monkeypatch, tmp_path):
    """The one real compile of the suite: a tiny smoothing step (product and residual in it)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    kernel = CompiledKernel(stencil._smoothing_step, name="step", min_numel=0)
    case = stencil_case(shape=(6, 5, 4), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback here is a failure
        out = kernel(*padded(case))
    assert kernel.compiled and kernel.compile_seconds is not None
    eager = stencil._smoothing_step(*padded(case))
    # the same operations in the same order; the compiler may fuse a multiply-add (FMA)
    torch.testing.assert_close(out, eager, rtol=4 * torch.finfo(torch.float64).eps, atol=1e-15)
    torch.testing.assert_close(out, dense_step(*case), rtol=1e-13, atol=1e-13)
    # another size and a view as input reuse the kernel (dynamic shapes, plain aliases)
    bigger = stencil_case(shape=(9, 7, 8), seed=4)
    w3 = torch.cat([bigger[2]] * 3, dim=1)[:, 1:2]
    args = (bigger[0], bigger[1], w3, bigger[3], bigger[4])
    torch.testing.assert_close(kernel(*padded(args)), dense_step(*args), rtol=1e-13, atol=1e-13)
    assert any(tmp_path.rglob("*.py")), "nothing written to the compile cache"


@pytest.mark.parametrize("shape", [(7, 6), (5, 4, 3)])
def test_public_kernels_agree_with_the_reference(shape, monkeypatch):
    forbid_compile(monkeypatch)  # small fields: the eager forms
    d, c, w, u, f = stencil_case(shape=shape, seed=8)
    step = stencil.smoothing_step(d, c, w, u, f)
    torch.testing.assert_close(step, dense_step(d, c, w, u, f), rtol=1e-14, atol=1e-14)
    residual = stencil.stencil_residual(d, c, u, f)
    torch.testing.assert_close(residual, f - stencil.apply_stencil(d, c, u), rtol=0, atol=1e-14)
    with pytest.raises(Exception, match="do not fit"):
        stencil.smoothing_step(d, c[:, :2], w, u, f)


def test_recompile_limit_runs_that_call_eagerly_without_giving_up(monkeypatch):
    from torch._dynamo.exc import FailOnRecompileLimitHit

    fake = FailingCompile()
    fake.error = FailOnRecompileLimitHit("recompile limit reached")
    monkeypatch.setattr(compiled_module.torch, "compile", fake)
    kernel = CompiledKernel(lambda a: a * 3.0, name="triple", min_numel=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(kernel(torch.ones(2)), torch.full((2,), 3.0))
    assert not kernel.failed


def test_kernels_are_sized_by_the_grid_not_by_the_number_of_fields(monkeypatch):
    forbid_compile(monkeypatch)
    d, c, w, u, f = stencil_case(shape=(4, 4, 4))
    many = u.expand(1, 2 * stencil.MIN_COMPILED_NUMEL // u.numel(), 4, 4, 4).contiguous()
    assert many.numel() > stencil.MIN_COMPILED_NUMEL > c.numel()
    out = stencil.apply_stencil(d, c, many)  # a block of fields on a tiny grid: eager
    torch.testing.assert_close(out[:, :1], stencil.apply_stencil(d, c, u))
