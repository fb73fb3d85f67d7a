"""CPU kernels compiled by numba: the stencil kernel and the aggregation transfers, one pass each.

On the CPU the multigrid cycle is a long chain of small array passes: at 64^3 an MGPC
application is about 60 of them over 4 levels, and the coarse levels are so small that
torch's fixed cost per operation (10-30 us, a dozen operations per stencil product in the
eager form) is most of the time. numba compiles these loops to machine code with LLVM, which
ships inside its wheel: no C compiler is needed, the code is cached on disk
(``cache=True``), so a second process loads it in milliseconds instead of compiling again,
and a call costs about 2 us. One loop per product visits each cell once, reads the
coefficients and the seven values and writes the result: the fused pass that
:mod:`neurosolve.solvers.compiled` gets from inductor, without its 10-30 s of compiling per
process.

The kernels here are the CPU form of these operations, with the same arguments and results
as their torch forms (which remain the reference, the GPU path and the autograd path):

- :func:`stencil_pass`: ``A u``, ``f - A u`` and the smoothing step ``u + w (f - A u)`` of
  :mod:`neurosolve.solvers.stencil` (5-point 2D and 7-point 3D stencils);
- :func:`block_sum` and :func:`inject`: the aggregation restriction (sum over blocks of 2 or
  1 cells per axis) and its transpose times the fluid mask, of the MGPC hierarchy;
- :func:`galerkin`: the Galerkin coarse stencil of that aggregation;
- :func:`chunk_features` and :func:`neighbour_sum`: the per-cell passes of the MGPC network
  (its input features and its message passing; the layers' GEMMs stay with torch).

Each returns ``None`` when it does not apply, and the caller then runs the torch form: numba
is not installed or fails to load, native kernels are switched off, a tensor is not on the
CPU, needs a gradient, or the dtypes, shapes or broadcasting differ from the plain case.
Per cell the stencil's terms are summed in the torch form's order (diagonal, then ``-e_0,
+e_0, -e_1, ...``) and block sums in lexicographic order; results agree with the torch forms
to rounding (``tests/solvers/test_native.py``).

Switches: native kernels are ON by default where numba imports; ``NEUROSOLVE_NATIVE=0``
(or ``false``/``no``/``off``) or :func:`set_native` turns them off.

Threads: a kernel runs on ``torch.get_num_threads()`` threads (the package's thread policy
sets that), or on the count of an enclosing :func:`kernel_threads` block (a solver that
keeps torch's own pool at one thread while its kernels use more: the two pools' waiting
threads would compete for the same cores). Unless ``NUMBA_THREADING_LAYER`` says otherwise,
numba's ``tbb`` layer runs them where the ``tbb`` package is installed (a dependency on
Linux and Windows x86-64), else its ``workqueue`` layer: both are fork safe and sleep
rather than spin when idle, but waking the workqueue's threads costs about 100 us a call
against a few for tbb's (``benchmarks/native_threads.py``). So a call goes parallel only
when the array it writes has at least :data:`PARALLEL_MIN_CELLS` cells for the layer in use
(measured on 2 cores); smaller ones, and a call that finds the layer busy in another
thread, run serially.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from neurosolve._util.switches import EnvSwitch
from neurosolve.errors import InvalidInputError

__all__ = [
    "available",
    "axis_shares",
    "block_sum",
    "caller",
    "chunk_features",
    "chunks",
    "galerkin",
    "in_kernel_block",
    "inject",
    "kernel",
    "kernel_thread_count",
    "kernel_threads",
    "native_enabled",
    "neighbour_sum",
    "plain",
    "run",
    "set_native",
    "smoother_weights",
    "stencil_pass",
]

logger = logging.getLogger(__name__)

ENV_SWITCH = "NEUROSOLVE_NATIVE"
SWITCH = EnvSwitch(ENV_SWITCH, default=True)
#: Modes of :func:`stencil_pass`.
PRODUCT, RESIDUAL, SMOOTHING = 0, 1, 2
_DTYPES = (torch.float32, torch.float64)
#: Cells a kernel must write to run on more than one thread, per numba threading layer: where
#: two threads beat one for the 7-point smoothing pass on 2 cores (``tbb``: from 16^3 to 32^3;
#: ``omp``: 8^3 to 16^3; ``workqueue``: 64^3 to 128^3; ``benchmarks/native_threads.py``).
PARALLEL_MIN_CELLS = {"tbb": 16384, "omp": 4096, "workqueue": 1 << 20}

_kernels: dict[str, Any] | None = None  # compiled dispatchers, once loaded
_load_failed = False
_busy = threading.Lock()  # the parallel threading layer, one caller at a time
_load_lock = threading.Lock()


def native_enabled() -> bool:
    """Whether native kernels may run: :func:`set_native`, else ``NEUROSOLVE_NATIVE``.

    Examples
    --------
    >>> previous = set_native(False)
    >>> native_enabled()
    False
    >>> _ = set_native(previous)
    """
    return SWITCH.enabled()


def set_native(enabled: bool | None) -> bool | None:
    """Turn native kernels on or off for the process; ``None`` hands back to the environment.

    Returns the previous setting (``None`` when the environment decided).

    Examples
    --------
    >>> previous = set_native(False)
    >>> set_native(previous) is False
    True
    """
    return SWITCH.set(enabled)


def available() -> bool:
    """Whether the native kernels are switched on and numba has loaded them.

    The first call imports numba and loads (or compiles) the kernels; a failure is logged
    and warned about once, and the torch forms run from then on.

    Examples
    --------
    >>> isinstance(available(), bool)
    True
    """
    return (_kernels is not None or _load() is not None) and SWITCH.enabled()


def _load() -> dict[str, Any] | None:
    global _kernels, _load_failed
    if _kernels is not None or _load_failed:
        return _kernels
    with _load_lock:
        if _kernels is None and not _load_failed:
            try:
                if "NUMBA_THREADING_LAYER" not in os.environ:
                    import numba

                    # tbb where installed, else workqueue: never the GNU OpenMP layer,
                    # which is not fork safe (a forked child using it aborts)
                    numba.config.THREADING_LAYER = "default"
                    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]
                from neurosolve.solvers import _native_loops

                _kernels = _native_loops.dispatchers()
            except Exception as exc:  # noqa: BLE001 - numba missing or broken: torch forms
                _load_failed = True
                logger.info("native kernels unavailable: %s", exc)
                if not isinstance(exc, ImportError):
                    warnings.warn(
                        f"numba failed to load neurosolve's native kernels ({type(exc).__name__}"
                        f": {exc}); the torch forms run instead (correct, slower). Set "
                        f"{ENV_SWITCH}=0 to skip them",
                        RuntimeWarning,
                        stacklevel=3,
                    )
    return _kernels


def _plain(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> bool:
    """CPU tensors of one float dtype, with no gradient to record."""
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t.dtype != dtype or (grad and t.requires_grad) or t.device.type != "cpu":
            return False
    return True


def _array(t: torch.Tensor) -> np.ndarray:
    """A C-ordered numpy view of ``t`` (a copy only if ``t`` is not contiguous).

    Written for the fixed cost of a call: a coarse level's whole pass takes a few
    microseconds, so every method call saved here counts.
    """
    if t.requires_grad:
        t = t.detach()
    return (t if t.is_contiguous() else t.contiguous()).numpy()


def run(name: str, *args: Any) -> None:
    """Call kernel ``name`` on the threads in effect (serially if small or busy).

    The low-level entry for callers that hold numpy arrays of the kernel's exact form
    (C-ordered, one float dtype, the shapes of :mod:`~neurosolve.solvers._native_loops`)
    and have checked :func:`available`: nothing is checked here. The last argument is the
    array the kernel writes; its size decides between one thread and several.
    """
    kernels = _kernels
    assert kernels is not None  # callers checked available()
    threads = _THREADS.get() or torch.get_num_threads()
    if threads == 1 or args[-1].size < _parallel_min_cells() or not _busy.acquire(blocking=False):
        kernels[name + "_serial"](*args)
        return
    try:
        _set_numba_threads(threads)
        kernels[name](*args)
    finally:
        _busy.release()


@contextlib.contextmanager
def chunks(cells: int) -> Iterator[int]:
    """Chunks for a chunked kernel over ``cells`` items: its threads, holding the layer.

    Yields 1 (run the serial entry) where :func:`run` would run serially; else the thread
    count, with the parallel threading layer held for the block (call the parallel entry
    inside).

    Examples
    --------
    >>> with kernel_threads(1), chunks(10**6) as count:
    ...     count
    1
    """
    threads = _THREADS.get() or torch.get_num_threads()
    if threads == 1 or cells < _parallel_min_cells() or not _busy.acquire(blocking=False):
        yield 1
        return
    try:
        _set_numba_threads(threads)
        yield threads
    finally:
        _busy.release()


def kernel(name: str) -> Callable[..., Any]:
    """The compiled entry ``name`` of the kernels' table (callers checked :func:`available`).

    Examples
    --------
    >>> available() is False or callable(kernel("stencil3_serial"))
    True
    """
    assert _kernels is not None
    return _kernels[name]


def plain(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> bool:
    """Whether ``tensors`` are CPU tensors of ``dtype`` (float32/64) with no gradient to record.

    Examples
    --------
    >>> plain([torch.ones(2)], torch.float32), plain([torch.ones(2)], torch.float64)
    (True, False)
    """
    return dtype in _DTYPES and _plain(tensors, dtype)


def caller(name: str, cells: int) -> Callable[..., None]:
    """The call :func:`run` would make now for kernel ``name`` writing ``cells`` values.

    For a caller that runs a kernel many times on arrays of one size (the cycle on a
    level): the serial entry itself where the threads in effect or the size say serial
    (no per-call test), else :func:`run` for the kernel (which takes the layer per call).

    Examples
    --------
    >>> available() is False or caller("stencil3", 8) is _kernels["stencil3_serial"]
    True
    """
    assert _kernels is not None  # callers checked available()
    if kernel_thread_count() == 1 or cells < _parallel_min_cells():
        return _kernels[name + "_serial"]
    return functools.partial(run, name)


# The native threads of an enclosing kernel_threads block (None: torch's count).
_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "native_threads", default=None
)
_numba = threading.local()  # .threads: the count last given to numba (per thread, as numba's)
_min_cells: int | None = None  # PARALLEL_MIN_CELLS of the layer in use, once known


@contextlib.contextmanager
def kernel_threads(count: int | None) -> Iterator[None]:
    """Run the native kernels of a block on ``count`` threads, whatever torch's count is.

    ``None`` leaves them on torch's count. The count is capped by numba's thread pool
    (``NUMBA_NUM_THREADS``, the machine's cores by default).

    Examples
    --------
    >>> with kernel_threads(2):
    ...     out = stencil_pass(PRODUCT, torch.ones(1, 1, 4), torch.zeros(1, 2, 4),
    ...                        torch.ones(1, 1, 4))
    >>> out is None or out.tolist() == [[[1.0, 1.0, 1.0, 1.0]]]
    True
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise InvalidInputError(f"kernel threads must be an integer >= 1 or None, got {count!r}")
    token = _THREADS.set(count)
    try:
        yield
    finally:
        _THREADS.reset(token)


def in_kernel_block() -> bool:
    """Whether a :func:`kernel_threads` block with a count is active (a solver's own threads).

    Examples
    --------
    >>> in_kernel_block()
    False
    >>> with kernel_threads(1):
    ...     in_kernel_block()
    True
    """
    return _THREADS.get() is not None


def kernel_thread_count() -> int:
    """The threads a native kernel would run on now (before the size test of :func:`run`).

    Examples
    --------
    >>> with kernel_threads(3):
    ...     kernel_thread_count()
    3
    """
    return _THREADS.get() or torch.get_num_threads()


def _set_numba_threads(threads: int) -> None:
    """Set the thread count of numba's next parallel call (starting its pool on first use).

    numba keeps the count per calling thread; so does the record of the last one set here.
    """
    if threads != getattr(_numba, "threads", 0):
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        _numba.threads = threads


def _parallel_min_cells() -> int:
    """The parallel threshold of the threading layer numba runs (which starts its pool)."""
    global _min_cells
    if _min_cells is None:
        import numba

        with _busy:
            _set_numba_threads(max(2, getattr(_numba, "threads", 0)))
            layer = numba.threading_layer()
        _min_cells = PARALLEL_MIN_CELLS.get(layer, PARALLEL_MIN_CELLS["workqueue"])
    return _min_cells


def stencil_pass(
    mode: int,
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    u: torch.Tensor,
    f: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    symmetric: bool = False,
) -> torch.Tensor | None:
    """``A u`` (mode 0), ``f - A u`` (1) or ``u + w (f - A u)`` (2) in one pass; or ``None``.

    The arguments are those of :func:`~neurosolve.solvers.stencil.apply_stencil`,
    :func:`~neurosolve.solvers.stencil.stencil_residual` and
    :func:`~neurosolve.solvers.stencil.smoothing_step`: ``diagonal (Gs, 1, *S)``,
    ``couplings (Gs, 2 d, *S)``, ``weights (Gs, 1, *S)``, fields ``u`` and ``f`` of shape
    ``(G, K, *S)`` with ``Gs`` 1 or ``G``. ``None`` means "not the plain case" (see the
    module), and the caller runs the torch form. ``symmetric`` promises exactly symmetric
    couplings (``couplings[2 a + 1]`` at a cell equals ``couplings[2 a]`` at its ``+e_a``
    neighbour): the loop then reads the ``-e_a`` channels only, for the same result.

    Examples
    --------
    >>> d = torch.full((1, 1, 3), 2.0)
    >>> c = torch.tensor([[[0.0, -1.0, -1.0], [-1.0, -1.0, 0.0]]])
    >>> out = stencil_pass(PRODUCT, d, c, torch.ones(1, 1, 3))
    >>> out is None or out.tolist() == [[[1.0, 0.0, 1.0]]]
    True
    """
    if not 2 <= u.dim() - 2 <= 3 or not available():
        return None
    dtype, shape = u.dtype, tuple(u.shape)
    G, S = shape[0], shape[2:]
    stencils = 1 if diagonal.shape[0] == 1 else G
    wanted = (stencils, 1, *S)
    if (
        dtype not in _DTYPES
        or tuple(diagonal.shape) != wanted
        or tuple(couplings.shape) != (stencils, 2 * len(S), *S)
        or (f is not None and tuple(f.shape) != shape)
        or (weights is not None and tuple(weights.shape) != wanted)
    ):
        return None
    tensors = [t for t in (diagonal, couplings, u, f, weights) if t is not None]
    if not _plain(tensors, dtype):
        return None
    out = torch.empty(shape, dtype=dtype)
    d, c, x = _array(diagonal), _array(couplings), _array(u)
    rhs = _array(f) if f is not None else x  # unread in mode 0
    w = _array(weights) if weights is not None else d  # read in mode 2 only
    run(f"stencil{len(S)}", int(mode), bool(symmetric), d, c, x, rhs, w, out.numpy())
    return out


def block_sum(x: torch.Tensor, factors: Sequence[int]) -> torch.Tensor | None:
    """Sums over blocks of ``factors`` (2 or 1 per axis) cells, with a ragged last block.

    ``(G, C, *S) -> (G, C, *ceil(S / factors))``: the restriction of the MGPC hierarchy
    (the torch form zero-pads odd sizes first); ``None`` where it does not apply.

    Examples
    --------
    >>> out = block_sum(torch.ones(1, 1, 5, 2), (2, 1))
    >>> out is None or out[0, 0].tolist() == [[2.0, 2.0], [2.0, 2.0], [1.0, 1.0]]
    True
    """
    ndim = x.dim() - 2
    if not 2 <= ndim <= 3 or len(factors) != ndim or not available():
        return None
    if x.dtype not in _DTYPES or not _plain([x], x.dtype) or any(f not in (1, 2) for f in factors):
        return None
    coarse = [-(-s // f) for s, f in zip(x.shape[2:], factors, strict=True)]
    out = torch.empty((*x.shape[:2], *coarse), dtype=x.dtype)
    run(f"block_sum{ndim}", _array(x), np.asarray(factors, dtype=np.int64), out.numpy())
    return out


def inject(uc: torch.Tensor, fluid: torch.Tensor, factors: Sequence[int]) -> torch.Tensor | None:
    """``P uc``: every fine cell takes its block's coarse value, times the fine fluid mask.

    ``uc (G, K, *C)``, ``fluid (Gs, 1, *S)`` with ``Gs`` 1 or ``G`` and ``C = ceil(S /
    factors)``: the prolongation of the MGPC hierarchy; ``None`` where it does not apply.

    Examples
    --------
    >>> out = inject(torch.tensor([[[[1.0], [2.0]]]]), torch.ones(1, 1, 3, 1), (2, 1))
    >>> out is None or out[0, 0, :, 0].tolist() == [1.0, 1.0, 2.0]
    True
    """
    ndim = uc.dim() - 2
    if not 2 <= ndim <= 3 or len(factors) != ndim or not available():
        return None
    G, K = uc.shape[:2]
    S = tuple(fluid.shape[2:])
    coarse = tuple(-(-s // f) for s, f in zip(S, factors, strict=True))
    if (
        uc.dtype not in _DTYPES
        or tuple(uc.shape[2:]) != coarse
        or fluid.dim() != uc.dim()
        or fluid.shape[1] != 1
        or fluid.shape[0] not in (1, G)
        or any(f not in (1, 2) for f in factors)
        or not _plain([uc, fluid], uc.dtype)
    ):
        return None
    out = torch.empty((G, K, *S), dtype=uc.dtype)
    index = np.asarray(factors, dtype=np.int64)
    run(f"inject{ndim}", _array(uc), _array(fluid), index, False, out.numpy())
    return out


def chunk_features(
    diagonal: torch.Tensor,
    couplings: torch.Tensor,
    fluid: torch.Tensor,
    first: int,
    last: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The MGPC network's float32 features of planes ``first:last`` (first grid axis).

    The stencil ``(G, 1, *S)``, ``(G, 2 d, *S)`` and fluid mask ``(G, 1, *S)`` are whole
    levels (float32 or float64, one dtype); returns the features ``(G, 6, cells)`` and the
    averaging weights ``(G, 2 d, last - first, *S[1:])`` of
    :func:`~neurosolve.solvers.mgpc.network.level_features`, or ``None``.

    Examples
    --------
    >>> d, c = torch.full((1, 1, 3, 1), 2.0), torch.zeros(1, 4, 3, 1)
    >>> c[0, 0, 1:, 0], c[0, 1, :2, 0] = -1.0, -1.0
    >>> out = chunk_features(d, c, torch.ones(1, 1, 3, 1), 0, 3)
    >>> out is None or out[1][0, :2, 1, 0].tolist() == [0.5, 0.5]
    True
    """
    ndim = diagonal.dim() - 2
    if not 2 <= ndim <= 3 or not available() or not 0 <= first < last <= diagonal.shape[2]:
        return None
    G, S = diagonal.shape[0], tuple(diagonal.shape[2:])
    if (
        diagonal.dtype not in _DTYPES
        or tuple(diagonal.shape) != (G, 1, *S)
        or tuple(couplings.shape) != (G, 2 * ndim, *S)
        or tuple(fluid.shape) != (G, 1, *S)
        or not _plain([diagonal, couplings, fluid], diagonal.dtype)
    ):
        return None
    planes = (last - first, *S[1:])
    feats = torch.empty((G, 6, int(np.prod(planes))), dtype=torch.float32)
    weights = torch.empty((G, 2 * ndim, *planes), dtype=torch.float32)
    arrays = [_array(t) for t in (diagonal, couplings, fluid)] + [weights.numpy()]
    if ndim == 2:  # as 3D with a unit middle axis (the features ignore the couplings' order)
        arrays = [a.reshape(*a.shape[:3], 1, a.shape[3]) for a in arrays]
    d, c, fl, w = arrays
    run("features", d, c, fl, int(first), feats.numpy(), w)
    return feats, weights


def neighbour_sum(out: torch.Tensor, weights: torch.Tensor, padded: torch.Tensor) -> bool:
    """``out += sum_j w_j h(c + e_j)`` in place (the MGPC network's message passing).

    ``out (G, C, *S)`` (a view may be strided), ``weights (G, 2 d, *S)``, ``padded (G, C,
    *(S + 2))``: ``h`` with one more cell on every side. Returns whether it ran (``False``:
    the caller runs the torch form).

    Examples
    --------
    >>> out = torch.zeros(1, 1, 2, 1)
    >>> weights = torch.tensor([[[[0.0], [1.0]], [[1.0], [0.0]], [[0.0], [0.0]], [[0.0], [0.0]]]])
    >>> padded = torch.zeros(1, 1, 4, 3)
    >>> padded[0, 0, 1:3, 1] = torch.tensor([5.0, 7.0])
    >>> ran = neighbour_sum(out, weights, padded)
    >>> not ran or out.flatten().tolist() == [7.0, 5.0]
    True
    """
    ndim = out.dim() - 2
    if not 2 <= ndim <= 3 or not available():
        return False
    G, C, *S = out.shape
    if (
        out.dtype not in _DTYPES
        or tuple(weights.shape) != (G, 2 * ndim, *S)
        or tuple(padded.shape) != (G, C, *(n + 2 for n in S))
        or not _plain([out, weights, padded], out.dtype)
        or out.requires_grad
    ):
        return False
    run(f"neighbours{ndim}", out.detach().numpy(), _array(weights), _array(padded))
    return True


def smoother_weights(
    theta: torch.Tensor, diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor
) -> torch.Tensor | None:
    """MGPC's smoother weights ``theta / sum_j |a_ij|`` (zero off the fluid), in one pass.

    ``theta (G, K, *S)`` (float32 or the stencil's dtype) and the stencil and mask ``(G, 1,
    *S)``, ``(G, 2 d, *S)``, ``(G, 1, *S)`` (one float dtype); the result has the
    stencil's dtype, or ``None``.

    Examples
    --------
    >>> d = torch.full((1, 1, 2, 1), 2.0, dtype=torch.float64)
    >>> c = torch.zeros(1, 4, 2, 1, dtype=torch.float64)
    >>> c[0, 1, 0, 0], c[0, 0, 1, 0] = -1.0, -1.0
    >>> fluid = torch.tensor([[[[1.0], [0.0]]]], dtype=torch.float64)
    >>> out = smoother_weights(torch.ones(1, 1, 2, 1), d, c, fluid)
    >>> out is None or out.flatten().tolist() == [1 / 3, 0.0]
    True
    """
    ndim = diagonal.dim() - 2
    if not 2 <= ndim <= 3 or not available():
        return None
    G, S = diagonal.shape[0], tuple(diagonal.shape[2:])
    if (
        diagonal.dtype not in _DTYPES
        or theta.dim() != diagonal.dim()
        or tuple(theta.shape[2:]) != S
        or theta.shape[0] != G
        or tuple(couplings.shape) != (G, 2 * ndim, *S)
        or tuple(fluid.shape) != (G, 1, *S)
        or not _plain([diagonal, couplings, fluid], diagonal.dtype)
        or not (_plain([theta], torch.float32) or _plain([theta], diagonal.dtype))
    ):
        return None
    out = torch.empty(theta.shape, dtype=diagonal.dtype)
    arrays = [_array(t) for t in (theta, diagonal, couplings, fluid)] + [out.numpy()]
    if ndim == 2:  # as 3D with a unit middle axis
        arrays = [a.reshape(*a.shape[:3], 1, a.shape[3]) for a in arrays]
    run("smoother", *arrays)
    return out


def axis_shares(couplings: torch.Tensor) -> tuple[list[float], int] | None:
    """Per axis, the summed share of the couplings over coupled cells, and their count.

    ``couplings (G, 2 d, *S)`` (float32 or float64): for every cell with a non-zero
    coupling, ``(|a_{-e_a}| + |a_{+e_a}|) / sum_j |a_j|`` is added to axis ``a``'s sum (one
    pass, the statistic of :func:`~neurosolve.solvers.mgpc.hierarchy.coarsening_axes`), or
    ``None``.

    Examples
    --------
    >>> c = torch.zeros(1, 4, 2, 1, dtype=torch.float64)
    >>> c[0, 1, 0, 0], c[0, 3, 0, 0] = -1.0, -3.0  # one coupled cell: shares 1/4 and 3/4
    >>> axis_shares(c) in (None, ([0.25, 0.75], 1))
    True
    """
    if (
        couplings.dim() < 3
        or couplings.shape[1] % 2
        or couplings.dtype not in _DTYPES
        or not available()
        or not _plain([couplings], couplings.dtype)
    ):
        return None
    flat = _array(couplings).reshape(couplings.shape[0], couplings.shape[1], -1)
    with chunks(flat.shape[0] * flat.shape[2]) as count:
        sums, counts = np.zeros((count, couplings.shape[1] // 2)), np.zeros(count, np.int64)
        name = "axis_shares" if count > 1 else "axis_shares_serial"
        _kernels[name](flat, sums, counts)  # type: ignore[index]
    return sums.sum(axis=0).tolist(), int(counts.sum())


def galerkin(
    diagonal: torch.Tensor, couplings: torch.Tensor, fluid: torch.Tensor, factors: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Coarse diagonal, couplings (the ``+e_a`` channels only) and fluid mask of ``R A R^T``.

    The fine stencil and mask ``(G, 1, *S)``, ``(G, 2 d, *S)``, ``(G, 1, *S)`` (one float
    dtype), ``factors`` 2 or 1 per axis; the coarse grid is ``ceil(S / factors)``. The
    ``-e_a`` channels are left zero: they are the ``+e_a`` ones of the previous coarse cell
    (see :func:`~neurosolve.solvers.mgpc.hierarchy.galerkin_coarsen`). ``None`` where it
    does not apply.

    Examples
    --------
    >>> d = torch.full((1, 1, 4, 1), 2.0)
    >>> c = torch.zeros(1, 4, 4, 1)
    >>> c[0, 1, :3, 0] = -1.0  # couplings to +e_0
    >>> out = galerkin(d, c, torch.ones(1, 1, 4, 1), (2, 1))
    >>> out is None or (out[0].flatten().tolist(), out[1][0, 1, :, 0].tolist()) == (
    ...     [2.0, 2.0], [-1.0, 0.0])
    True
    """
    ndim = diagonal.dim() - 2
    if not 2 <= ndim <= 3 or len(factors) != ndim or not available():
        return None
    G, S = diagonal.shape[0], tuple(diagonal.shape[2:])
    if (
        diagonal.dtype not in _DTYPES
        or tuple(couplings.shape) != (G, 2 * ndim, *S)
        or tuple(fluid.shape) != (G, 1, *S)
        or any(f not in (1, 2) for f in factors)
        or not _plain([diagonal, couplings, fluid], diagonal.dtype)
    ):
        return None
    coarse = tuple(-(-n // f) for n, f in zip(S, factors, strict=True))
    cd = torch.empty((G, 1, *coarse), dtype=diagonal.dtype)
    cc = torch.zeros((G, 2 * ndim, *coarse), dtype=diagonal.dtype)
    cf = torch.empty((G, 1, *coarse), dtype=diagonal.dtype)
    arrays = [_array(t) for t in (diagonal, couplings, fluid)] + [
        cd.numpy(),
        cc.numpy(),
        cf.numpy(),
    ]
    factors3, axis_of = list(factors), [0, 1, 2]
    if ndim == 2:  # as 3D with a unit middle axis
        arrays = [a.reshape(*a.shape[:3], 1, a.shape[3]) for a in arrays]
        factors3, axis_of = [factors[0], 1, factors[1]], [0, -1, 1]
    d, c, fl, out_d, out_c, out_f = arrays
    index = np.asarray(factors3, dtype=np.int64), np.asarray(axis_of, dtype=np.int64)
    run("galerkin", d, c, fl, *index, out_d, out_c, out_f)
    return cd, cc, cf
