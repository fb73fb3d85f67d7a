"""Compiled kernels with an eager fallback: :class:`CompiledKernel` and its switches.

A :class:`CompiledKernel` wraps a pure tensor function (the stencil product, the residual,
a smoothing step). On its first large enough call it is compiled by ``torch.compile``
(inductor: one fused C++/OpenMP loop on the CPU, Triton on CUDA); if compiling fails (no
C++ compiler, no Triton, an unsupported backend) it warns once and runs the plain eager
function from then on, so the package works wherever torch does. The two forms compute the
same operations in the same order; results agree to rounding (the compiler may contract a
multiply and an add into one FMA).

On the CPU the package's default kernels are not these but the numba loops of
:mod:`neurosolve.solvers.native` (no compiling per process, a 2 us call); the stencil module
asks a kernel :meth:`CompiledKernel.wants_compiled` first, so with compiling switched on
the large fields go to inductor and the rest to the native loops.

Switches:

- compiling is OFF by default: ``NEUROSOLVE_COMPILE=1`` (or ``true``/``yes``/``on``) in
  the environment, or :func:`set_compile` in code, turns it on. Measured on 2 CPU cores,
  compiled kernels make an MGPC-PCG frame (setup + 7 iterations) 1.56x faster at 128^3
  and 1.17x at 64^3 (``benchmarks/anchor.py``: ``anchor.json`` compiled against
  ``anchor_mgpc_eager.json``), but a fresh process pays 10-30 s of compiling before its
  first solve (about 10 s with the disk cache filled; ``benchmarks/stencil_kernel.py``):
  compiling pays for long sequences (a few dozen frames at 128^3), not for the one-off
  solve, so it is the user's choice;
- calls whose fields have fewer than ``min_numel`` elements, and calls that must record
  an autograd graph (training), always run eagerly: there the compiled call's fixed
  overhead (guards, a wrapper) is not worth it, and training never waits for a compiler.

Shapes are compiled dynamic (``dynamic=True``): one kernel per dtype, dimension and
device serves every grid size, so a multigrid hierarchy (one shape per level) compiles
once instead of once per level; measured at 64^3 and 128^3 the dynamic kernel runs as
fast as one specialized to the shape (``benchmarks/stencil_kernel.py``).

Compiled code is cached on disk (inductor's FX-graph and AOT-autograd caches), so a second
process loads it instead of compiling again. Unless ``TORCHINDUCTOR_CACHE_DIR`` is set, the
cache lives in ``$XDG_CACHE_HOME/neurosolve/inductor`` (default
``~/.cache/neurosolve/inductor``); it is configured at the first compile, never at import.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from neurosolve._util.switches import EnvSwitch

__all__ = ["CompiledKernel", "cache_directory", "compile_enabled", "set_compile"]

logger = logging.getLogger(__name__)

ENV_SWITCH = "NEUROSOLVE_COMPILE"
SWITCH = EnvSwitch(ENV_SWITCH, default=False)
_warned = False  # one warning per process for a compiler that does not work
_lock = threading.Lock()


def compile_enabled() -> bool:
    """Whether kernels may be compiled: :func:`set_compile`, else ``NEUROSOLVE_COMPILE``.

    Examples
    --------
    >>> previous = set_compile(False)
    >>> compile_enabled()
    False
    >>> _ = set_compile(previous)
    """
    return SWITCH.enabled()


def set_compile(enabled: bool | None) -> bool | None:
    """Turn compiling on or off for the whole process; ``None`` hands back to the environment.

    Returns the previous setting (``None`` when the environment decided), so a caller can
    restore it. Kernels already compiled are not discarded; they are only not called.

    Examples
    --------
    >>> previous = set_compile(False)
    >>> set_compile(previous) is False
    True
    """
    return SWITCH.set(enabled)


def cache_directory() -> Path:
    """Where compiled kernels are cached: ``TORCHINDUCTOR_CACHE_DIR`` or a per-user folder.

    Examples
    --------
    >>> cache_directory().name in ("inductor", Path(os.environ.get(
    ...     "TORCHINDUCTOR_CACHE_DIR", "inductor")).name)
    True
    """
    given = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neurosolve" / "inductor"


def _configure_cache() -> None:
    """Point inductor at the persistent cache and turn its on-disk caches on (first compile)."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        folder = cache_directory()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only home: inductor's own default (a temp folder)
            logger.info("compile cache folder %s not usable (%s); using inductor's", folder, exc)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    # respect a user's explicit choice in the environment; otherwise cache on disk
    if "TORCHINDUCTOR_FX_GRAPH_CACHE" not in os.environ:
        inductor_config.fx_graph_cache = True
    if "TORCHINDUCTOR_AUTOGRAD_CACHE" not in os.environ:
        functorch_config.enable_autograd_cache = True


def _warn_fallback(name: str, exc: BaseException) -> None:
    """Warn (once per process) that a kernel runs eagerly because compiling failed."""
    global _warned
    logger.info("kernel %r: compiling failed, running eagerly: %s", name, exc)
    with _lock:
        if _warned:
            return
        _warned = True
    first = str(exc).strip().splitlines()
    warnings.warn(
        f"torch.compile failed for the {name} kernel ({type(exc).__name__}: "
        f"{first[0] if first else ''}); neurosolve runs its kernels eagerly instead (correct, "
        f"slower). Install a C++ compiler (CPU) or Triton (CUDA), or set {ENV_SWITCH}=0 to "
        "skip compiling",
        RuntimeWarning,
        stacklevel=3,
    )


def _recompile_limit_errors() -> tuple[type[BaseException], ...]:
    try:
        from torch._dynamo.exc import FailOnRecompileLimitHit
    except ImportError:  # another torch version: every failure counts as a failure
        return ()
    return (FailOnRecompileLimitHit,)


_RECOMPILE_LIMIT = _recompile_limit_errors()


def _plain(arg: Any) -> Any:
    """A tensor as a plain (non-view) alias with the canonical strides of its layout.

    The compiled code guards on how an argument is laid out (is it a view, its base, the
    strides of size-1 axes); aliasing every contiguous argument the same way keeps one
    compiled kernel for all the ways the same data arrives (no copy is made).
    """
    if not isinstance(arg, torch.Tensor):
        return arg
    plain = arg.detach()
    if plain.is_contiguous():
        strides, step = [], 1
        for size in reversed(plain.shape):
            strides.append(step)
            step *= max(int(size), 1)
        canonical = tuple(reversed(strides))
        if plain.stride() != canonical:
            plain = plain.as_strided(plain.shape, canonical).detach()
    return plain


class CompiledKernel:
    """A pure tensor function, compiled at first use, eager where compiling fails.

    Parameters
    ----------
    fn : callable
        The eager function (tensors in, one tensor out, no side effects). It is also the
        fallback, so both forms compute the same thing.
    name : str
        Name used in warnings and logs.
    min_numel : int
        Calls whose sizing argument has fewer elements run eagerly.
    size_arg : int, optional
        Position of the sizing argument (e.g. a stencil's coefficient array, so that many
        fields on a tiny grid stay eager); default the largest tensor argument.
    dynamic : bool
        Compile with symbolic shapes (one kernel for all sizes).

    Attributes
    ----------
    compile_seconds : float or None
        Wall time of the first compiled call (tracing, code generation or a cache load, and
        the run), once there was one.
    failed : bool
        Whether compiling failed; the kernel then runs eagerly for the rest of the process.

    Examples
    --------
    >>> kernel = CompiledKernel(lambda a, b: a * b + 1.0, name="axpb", min_numel=10**9)
    >>> kernel(torch.ones(3), torch.full((3,), 2.0))  # small: eager, nothing compiled
    tensor([3., 3., 3.])
    >>> kernel.compiled
    False
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        *,
        name: str,
        min_numel: int = 32768,
        size_arg: int | None = None,
        dynamic: bool = True,
    ) -> None:
        self.fn = fn
        self.name = name
        self.min_numel = int(min_numel)
        self.size_arg = size_arg
        self.dynamic = bool(dynamic)
        self.failed = False
        self.compile_seconds: float | None = None
        self._compiled: Callable[..., torch.Tensor] | None = None

    @property
    def compiled(self) -> bool:
        """Whether a compiled form exists and is in use."""
        return self._compiled is not None and not self.failed

    def wants_compiled(self, args: tuple[Any, ...]) -> bool:
        """Whether this call goes to the compiled form (see the module's switches)."""
        if self.failed or not compile_enabled():
            return False
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if not tensors:
            return False
        if self.size_arg is not None and isinstance(args[self.size_arg], torch.Tensor):
            size = args[self.size_arg].numel()
        else:
            size = max(t.numel() for t in tensors)
        if size < self.min_numel:
            return False
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return False  # training: eager autograd, no compile inside a training step
        return True

    def __call__(self, *args: Any) -> Any:
        """``fn(*args)``, compiled when :meth:`wants_compiled` says so."""
        if torch.compiler.is_compiling():  # inside another kernel's trace: inline fn
            return self.fn(*args)
        if not self.wants_compiled(args):
            return self.fn(*args)
        first = self._compiled is None
        try:
            if first:
                _configure_cache()
                self._compiled = torch.compile(self.fn, dynamic=self.dynamic, fullgraph=True)
            t0 = time.perf_counter()
            out = self._compiled(*(_plain(a) for a in args))
            if first:
                self.compile_seconds = time.perf_counter() - t0
            return out
        except Exception as exc:  # noqa: BLE001 - any compiler failure; eager decides below
            # Bad input fails eagerly too and is re-raised as the eager error; anything the
            # eager function survives was the compiler's failure (missing g++, Triton, ...).
            out = self.fn(*args)
            if isinstance(exc, _RECOMPILE_LIMIT):
                # this kernel already has dynamo's maximum of variants (dtypes, dimensions,
                # layouts): this layout runs eagerly, the compiled ones stay in use
                logger.debug("kernel %r: recompile limit, this call eager", self.name)
                return out
            self.failed = True
            _warn_fallback(self.name, exc)
            return out

    def __repr__(self) -> str:
        state = "failed (eager)" if self.failed else "compiled" if self.compiled else "eager"
        return f"CompiledKernel({self.name!r}, {state}, min_numel={self.min_numel})"
