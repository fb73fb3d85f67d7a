"""The thread policy of a solve: how many intra-op threads torch may use, and for how long.

torch runs its CPU kernels on an OpenMP pool of ``torch.get_num_threads()`` threads. On a
small problem the pool costs more than it saves (a barrier per kernel, a few microseconds
each, against kernels of a few microseconds), and on a machine where other jobs run its
threads spin while they wait for a core: an identical solve may take ten times longer. A
solve therefore runs under :func:`torch_threads`, which sets the count for the duration of
the call and restores it afterwards.

The default policy, ``"auto"``, runs problems below :data:`SERIAL_BELOW` unknowns on one
thread and leaves torch's own setting alone above it. The size is measured, not guessed:
``benchmarks/thread_policy.py`` times torch CG per iteration at 1 and 2 threads from 16^3 to
128^3 and reports the crossover (``benchmarks/results/thread_policy.json``).

A policy applies once: inside an active :func:`torch_threads` block an inner ``"auto"``
(a solver used by another solver, every solve of a benchmark run under ``--threads``)
keeps the count the outer block set; an inner explicit count still applies.

The same count applies to the BLAS/LAPACK libraries numpy and scipy loaded (through
threadpoolctl), whose OpenBLAS threads spin the same way.

torch is imported by the methods that use it; this module only touches it when it is
already loaded (a scipy-only solve never pays torch's import).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

from neurosolve.errors import InvalidInputError

__all__ = ["SERIAL_BELOW", "check_threads", "resolve_threads", "torch_threads"]

#: ``"auto"`` runs problems with fewer unknowns (times right-hand sides) on one thread.
#: Measured by ``benchmarks/thread_policy.py`` on the project machine (2 cores shared by
#: other jobs, load average 10-15): a second thread made torch CG 3.5 to 50 times slower per
#: iteration at every size from 16^3 to 128^3, with the CSR and the stencil operator, so
#: one thread up to 128^3 (2,097,152 unknowns); above it torch's setting, unmeasured here.
SERIAL_BELOW = 129**3

# Set while a torch_threads block is active: an inner "auto" then keeps the outer count.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("torch_threads", default=False)


def check_threads(threads: Any, name: str = "threads") -> int | str | None:
    """Validate a thread setting: ``"auto"``, ``None`` (leave torch alone) or an int >= 1.

    Raises
    ------
    InvalidInputError
        Naming ``name`` and the value it got.

    Examples
    --------
    >>> check_threads(2), check_threads("auto"), check_threads("3"), check_threads(None)
    (2, 'auto', 3, None)
    >>> check_threads(0)
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: threads must be 'auto', None or an integer >= 1, got 0
    """
    if threads is None or threads == "auto":
        return threads
    value = threads
    if isinstance(threads, str) and threads.strip().isdigit():
        value = int(threads)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be 'auto', None or an integer >= 1, got {threads!r}")
    return value


def resolve_threads(threads: int | str | None, size: int | None) -> int | None:
    """The count a solve of ``size`` unknowns runs under (None: leave torch's setting).

    Parameters
    ----------
    threads : {"auto"} or int or None
        The setting (checked by :func:`check_threads`).
    size : int, optional
        Unknowns times right-hand sides; ``None`` when unknown (``"auto"`` then leaves
        torch's setting alone).

    Examples
    --------
    >>> resolve_threads("auto", 16**3), resolve_threads("auto", 256**3), resolve_threads(3, 8)
    (1, None, 3)
    """
    threads = check_threads(threads)
    if threads == "auto":
        return 1 if size is not None and size < SERIAL_BELOW else None
    return threads


@contextlib.contextmanager
def torch_threads(
    threads: int | str | None = "auto", size: int | None = None
) -> Iterator[int | None]:
    """Run a block with torch's intra-op thread count set by the policy, then restore it.

    Parameters
    ----------
    threads : {"auto"} or int or None
        ``"auto"``: one thread below :data:`SERIAL_BELOW` unknowns, torch's setting above
        (or the count of an enclosing block); an int: exactly that many; ``None``: leave
        the setting alone.
    size : int, optional
        Problem size for ``"auto"`` (unknowns times right-hand sides).

    Yields
    ------
    int or None
        The thread count in effect inside the block (None when torch is not loaded).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1) as inside:
    ...     inside, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
    """
    count = resolve_threads(threads, size)
    outer = _ACTIVE.get()
    if threads == "auto" and outer:
        count = None  # the enclosing block decided
    torch = sys.modules.get("torch")
    if torch is None:
        yield None
        return
    before = torch.get_num_threads()
    token = _ACTIVE.set(outer or count is not None)
    changed = count is not None and count != before
    if changed:
        torch.set_num_threads(count)
    try:
        with _blas_threads(count):
            yield torch.get_num_threads()
    finally:
        if changed:
            torch.set_num_threads(before)
        _ACTIVE.reset(token)


_controller: tuple[Any, int] | None = None  # threadpoolctl's controller, len(sys.modules)


def _blas_threads(count: int | None) -> contextlib.AbstractContextManager:
    """Limit the BLAS/LAPACK libraries' threads (numpy's, scipy's OpenBLAS) to ``count``.

    The same policy as torch's pool: an MGPC setup's coarsest inverse is LAPACK through
    scipy, and its OpenBLAS threads spin like torch's on a loaded machine (measured: a 64^3
    setup took 4.2 s with two OpenBLAS threads and another job running, 0.29 s with one).
    threadpoolctl finds the loaded libraries; its controller is built once and again when
    modules were imported since (a new extension may bring a new BLAS), because building
    one costs about 4 ms and using it 0.1 ms. Without threadpoolctl, nothing is limited.
    """
    global _controller
    if count is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if _controller is None or _controller[1] != len(sys.modules):
        _controller = (ThreadpoolController(), len(sys.modules))
    return _controller[0].limit(limits=count, user_api="blas")
