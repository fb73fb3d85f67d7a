"""Atomic file writes: a reader never sees a half-written file under its final name.

Every file the package writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination's directory, flushed to disk, given mode 0644 (``mkstemp``
creates 0600, and results are meant to be shared), and renamed over the destination. A
failure at any point removes the temporary file and leaves the destination as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_many", "atomic_write_text"]

#: Permission bits of every file the package writes.
FILE_MODE = 0o644


def _temporary(path: Path, suffix: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    return tmp


def _fsync(path: str) -> None:
    # Some writers (h5py, matplotlib) close the file themselves: reopen to flush it to disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without fsync (some FUSE mounts)
        pass
    finally:
        os.close(fd)


def atomic_write_many(
    jobs: Sequence[tuple[str | os.PathLike, Callable[[str], object]]],
    *,
    suffix: str = "",
    mode: int = FILE_MODE,
) -> list[Path]:
    """Write several files, then rename them all; nothing is renamed unless every write worked.

    Parameters
    ----------
    jobs : sequence of (path, write)
        ``write(tmp)`` writes the content of ``path`` to the temporary file name ``tmp``
        (a ``str``, since some writers want a name rather than an open file).
    suffix : str
        Appended to the temporary names, for writers that choose the format by extension
        (``".png"`` for matplotlib, ``".npz"`` for numpy).
    mode : int
        Permission bits of the written files.

    Returns
    -------
    list of pathlib.Path
        The destinations, in the order given.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> paths = atomic_write_many([(d / "a.txt", lambda t: pathlib.Path(t).write_text("a")),
    ...                            (d / "b.txt", lambda t: pathlib.Path(t).write_text("b"))])
    >>> [p.read_text() for p in paths]
    ['a', 'b']
    """
    targets = [Path(p) for p, _ in jobs]
    temps: list[str] = []
    try:
        for path, (_, write) in zip(targets, jobs, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary(path, suffix)
            temps.append(tmp)
            write(tmp)
            _fsync(tmp)
            os.chmod(tmp, mode)
        for path, tmp in zip(targets, temps, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return targets


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], object],
    *,
    suffix: str = "",
    mode: int = FILE_MODE,
) -> Path:
    """Write one file atomically through ``write(tmp)``; see :func:`atomic_write_many`.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = atomic_write(d / "x.npy", lambda t: np.save(open(t, "wb"), np.arange(3)))
    >>> np.load(p).tolist(), oct(p.stat().st_mode & 0o777)
    ([0, 1, 2], '0o644')
    """
    return atomic_write_many([(path, write)], suffix=suffix, mode=mode)[0]


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = atomic_write_bytes(pathlib.Path(tempfile.mkdtemp()) / "b", b"xy")
    >>> p.read_bytes()
    b'xy'
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), mode=mode)


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int = FILE_MODE) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = atomic_write_text(pathlib.Path(tempfile.mkdtemp()) / "t.json", "{}")
    >>> p.read_text()
    '{}'
    """
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), mode=mode)
