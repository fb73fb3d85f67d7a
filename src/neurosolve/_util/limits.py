"""Size limits checked before anything is allocated or written.

A file or an argument declares a size (rows of a matrix, samples of a dataset, channels of
a model, a grid); the data behind it is allocated later. :func:`check_memory` and
:func:`check_disk` compare an estimate of that allocation with the machine's memory and the
destination's free space first, so a 92-byte file declaring 10^8 rows is refused at once
with a message naming the estimate, instead of swapping for minutes or ending in a
``MemoryError`` traceback.

The memory limit is half the physical memory, or ``NEUROSOLVE_MAX_BYTES`` (bytes) when that
environment variable is set: the one knob for machines where half is too much or too
little.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from neurosolve.errors import InvalidInputError

__all__ = ["check_disk", "check_memory", "format_bytes", "memory_limit"]


def format_bytes(n: float) -> str:
    """Bytes in a unit a person reads at a glance.

    Examples
    --------
    >>> format_bytes(512), format_bytes(7.4e9), format_bytes(1.44e12)
    ('512 B', '6.9 GiB', '1.3 TiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def memory_limit() -> int:
    """Bytes one allocation may take: ``NEUROSOLVE_MAX_BYTES``, else half the memory.

    Examples
    --------
    >>> memory_limit() > 0
    True
    """
    text = os.environ.get("NEUROSOLVE_MAX_BYTES")
    if text:
        try:
            return int(float(text))
        except ValueError:
            raise InvalidInputError(
                f"NEUROSOLVE_MAX_BYTES must be a number of bytes, got {text!r}"
            ) from None
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 8 << 30


def check_memory(estimate: float, what: str) -> None:
    """Refuse an allocation of about ``estimate`` bytes above :func:`memory_limit`.

    Parameters
    ----------
    estimate : float
        Bytes the operation would allocate.
    what : str
        What would be allocated, for the message (``"loading A.mtx (3e8 rows)"``).

    Raises
    ------
    InvalidInputError
        Naming the estimate and the limit.

    Examples
    --------
    >>> check_memory(1e3, "a small array")
    >>> check_memory(1e30, "a 10^15 x 10^15 grid")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: a 10^15 x 10^15 grid would need about ... of memory, ...
    """
    limit = memory_limit()
    if estimate > limit:
        raise InvalidInputError(
            f"{what} would need about {format_bytes(estimate)} of memory, more than the "
            f"limit of {format_bytes(limit)} (half the memory; set NEUROSOLVE_MAX_BYTES "
            "to change it)"
        )


def check_disk(path: str | os.PathLike, estimate: float, what: str) -> None:
    """Refuse writing about ``estimate`` bytes next to ``path`` when the disk has less free.

    Raises
    ------
    InvalidInputError
        Naming the estimate and the free space.

    Examples
    --------
    >>> import tempfile
    >>> check_disk(tempfile.mkdtemp() + "/d.h5", 10, "a tiny dataset")
    >>> check_disk(tempfile.mkdtemp() + "/d.h5", 1e30, "10^10 samples")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: 10^10 samples would need about ... of disk, ...
    """
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder if str(folder) else ".").free
    except OSError:  # the folder does not exist: the caller's own check names that
        return
    if estimate > free:
        raise InvalidInputError(
            f"{what} would need about {format_bytes(estimate)} of disk, but {folder} has "
            f"{format_bytes(free)} free"
        )
