"""Atomic file writes: a reader never sees a half-written file under its final name.

Every file the package writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination's directory, flushed to disk, given mode 0644 (``mkstemp``
creates 0600, and results are meant to be shared), and renamed over the destination. A
failure at any point removes the temporary file and leaves the destination as it was.

Before a command writes, :func:`check_output` decides whether the destination may be
written at all (never onto one of the command's inputs, never onto a device, a directory or
a FIFO, never over an existing file without ``--overwrite``), and :func:`exclusive_lock`
keeps two processes from filling the same partial file at once. A full disk surfaces as
:class:`~neurosolve.errors.OutOfSpaceError`, one line naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from neurosolve.errors import InvalidInputError, OutOfSpaceError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_many",
    "atomic_write_text",
    "check_output",
    "check_output_folder",
    "exclusive_lock",
    "no_space",
]

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
    # A symlink is written through: its target is replaced, the link itself stays a link.
    finals = [Path(os.path.realpath(p)) if p.is_symlink() else p for p in targets]
    temps: list[str] = []
    try:
        for path, (_, write) in zip(finals, jobs, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary(path, suffix)
            temps.append(tmp)
            try:
                write(tmp)
                _fsync(tmp)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise no_space(path) from exc
                raise
            os.chmod(tmp, mode)
        for path, tmp in zip(finals, temps, strict=True):
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


def no_space(path: str | os.PathLike) -> OutOfSpaceError:
    """The error to raise when the disk fills up while writing ``path``.

    Examples
    --------
    >>> str(no_space("out/x.npy"))
    'no space left on device writing out/x.npy'
    """
    return OutOfSpaceError(f"no space left on device writing {path}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    what: str = "output",
) -> Path:
    """Check that a command may write ``path``; return it as a :class:`~pathlib.Path`.

    Refused, each with one line naming the path: writing onto one of the command's
    ``inputs`` (the same file, also through another name or a link), onto an existing node
    that is not a regular file (a directory, a character or block device, a FIFO, a
    socket), into a folder that does not exist (a mistyped folder makes no new tree), and
    over an existing file unless ``overwrite``. A symlink to a regular file counts as that
    file: writers replace the link's target and keep the link.

    Parameters
    ----------
    path : path-like
        The destination.
    inputs : iterable of path-like
        Files the same command reads (``None`` entries are skipped).
    overwrite : bool, default False
        Whether an existing regular file may be replaced (``--overwrite``).
    what : str
        How the message names the destination (``"output"``, ``"--json"``, ...).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
        Naming the reason.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "A.mtx").write_text("x")
    >>> check_output(d / "x.npy", inputs=[d / "A.mtx"]).name
    'x.npy'
    >>> check_output(d / "A.mtx", inputs=[d / "A.mtx"], overwrite=True)
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: output ... is also an input of this command; ...
    >>> check_output(d, what="--out")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: --out ... is a directory, not a file
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise InvalidInputError(
                f"{what} {path} is also an input of this command; writing it would destroy "
                "the input: choose another name"
            )
    try:
        mode = os.stat(path).st_mode  # follows a symlink to what it points at
    except FileNotFoundError:
        if path.is_symlink():
            raise InvalidInputError(f"{what} {path} is a dangling symlink") from None
        if not path.parent.is_dir():
            raise InvalidInputError(f"{what} folder {path.parent} does not exist") from None
        return path
    except OSError as exc:
        raise InvalidInputError(f"{what} {path}: {exc.strerror.lower()}") from None
    if stat.S_ISDIR(mode):
        raise InvalidInputError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = {
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket",
        }.get(stat.S_IFMT(mode), "not a regular file")
        raise InvalidInputError(f"{what} {path} is {kind}; refusing to replace it with a file")
    if not overwrite:
        raise InvalidInputError(f"{what} {path} exists; pass --overwrite to replace it")
    return path


def check_output_folder(
    path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (), what="--out"
) -> Path:
    """Check that ``path`` can be an output folder (a run folder, a report folder).

    An existing folder is fine (a run folder is resumed, a report folder refilled); an
    existing file, device or FIFO, or one of the command's ``inputs``, is refused.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output_folder(d / "run") == d / "run"
    True
    >>> _ = (d / "notes.txt").write_text("keep me")
    >>> check_output_folder(d / "notes.txt")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: --out ...notes.txt exists and is not a folder; ...
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise InvalidInputError(f"{what} {path} is also an input of this command")
    if path.exists() and not path.is_dir():
        raise InvalidInputError(
            f"{what} {path} exists and is not a folder; choose a folder name (nothing there is "
            "replaced)"
        )
    return path


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on ``<path>.lock`` for the ``with`` block.

    A second process (or a second ``with`` in this one) asking for the same lock is refused
    at once, not made to wait: two writers of one partial file would corrupt it. The lock
    is released when the block ends or the process dies (``flock``); the ``.lock`` file is
    removed on a clean exit.

    Raises
    ------
    InvalidInputError
        When another writer holds the lock.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> with exclusive_lock(out):
    ...     with exclusive_lock(out):
    ...         pass
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: output ...d.h5 is being written by another process ...
    """
    lock = Path(f"{path}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder unlinks the lock file before releasing it: a lock won on that
            # unlinked file would not exclude a third process, so it counts as held.
            if os.fstat(fd).st_ino != os.stat(lock).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            raise InvalidInputError(
                f"{what} {path} is being written by another process (lock {lock.name} is "
                "held); wait for it to finish"
            ) from None
        try:
            yield lock
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
