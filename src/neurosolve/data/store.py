"""HDF5 storage of generated datasets.

A dataset file holds two arrays, ``x`` (inputs) and ``y`` (targets), each of shape
``(N, C, *spatial)`` (time, where it applies, is a channel axis), float32 unless asked
otherwise, chunked one sample per chunk. Root attributes describe where the data came from:

============== ==============================================================
``format``     ``"neurosolve-dataset"``: marks the file as ours
``format_version`` layout version (:data:`FORMAT_VERSION`)
``generator``  registered generator name (``"darcy"``, ...)
``params``     the generator's full keyword parameters, canonical JSON
``seed``       sample ``i`` was drawn from ``numpy.random.default_rng([seed, i])``
``version``    neurosolve version that wrote the file
``samples``    size of the full dataset this file belongs to
``first``      global index of the file's first sample (non-zero for a shard)
``chunk``      samples per call of the generator (a batch)
``completed``  samples written so far; equals ``len(x)`` once the file is complete
============== ==============================================================

Byte-identical files
--------------------
Two runs with the same arguments give the same bytes. Nothing time-dependent is stored
(``track_times=False``) and the file layout is fixed when the file is created: both arrays
use *early* space allocation, so writing samples later (in one go, in batches, resumed after
an interruption, or copied from shards by :func:`merge`) only fills bytes in place and
updates the fixed-size ``completed`` attribute. The final file therefore depends only on its
header and its data, not on the history of the run. Space is reserved without writing fill
values, so creating a file for a large dataset is instant and costs no disk writes.

Checksums
---------
A third dataset, ``crc32`` ``(N, 2)`` uint32, holds the CRC-32 of every sample's stored
bytes (little-endian) of ``x`` and ``y``; every read checks it, and the metadata uses the
HDF5 1.10 format, which checksums it too. Corrupted bytes are therefore reported as
:class:`~neurosolve.errors.FileFormatError` instead of being read silently. (HDF5's own
Fletcher-32 filter would also do, but a filtered dataset writes every chunk when space is
reserved, i.e. the whole file twice.) Compression is not used: it would make chunk sizes
data-dependent and defeat in-place writes (and float32 fields barely compress).

Atomic writes
-------------
Files are written under ``<name>.part`` and renamed to ``<name>`` only when complete, so a
file under its final name is always whole. See :mod:`neurosolve.data.generate` for the
resumable generation built on top of this module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from neurosolve._version import __version__
from neurosolve.errors import FileFormatError, InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "DTYPES",
    "DatasetHeader",
    "FileInUseError",
    "ForeignFileError",
    "H5Dataset",  # noqa: F822 -- built on first access, see __getattr__
    "merge",
    "part_path",
    "read_arrays",
    "read_info",
]

logger = logging.getLogger(__name__)

#: Value of the ``format`` attribute of every dataset file.
FORMAT = "neurosolve-dataset"
#: Version of the layout described in the module docstring.
FORMAT_VERSION = 1
#: Storage dtypes a dataset may use.
DTYPES = ("float32", "float64")

# Pinned bounds keep the layout independent of the library's default. The low bound is the
# oldest format on purpose: its superblock has no "file open for write" consistency flag, so
# a .part file left by a killed process (SIGKILL, power cut of the process) reopens and the
# run resumes where it stopped instead of starting over. Sample data are guarded by the
# per-sample CRC instead of HDF5's metadata checksums.
_LIBVER = ("earliest", "v110")
_HEADER_ATTRS = (
    "format",
    "format_version",
    "generator",
    "params",
    "seed",
    "version",
    "samples",
    "first",
    "chunk",
)
# Samples read at once when streaming statistics or copying shards.
_BLOCK = 64
# Per-sample CRC-32 of the stored bytes of x (column 0) and y (column 1).
_CRC = "crc32"
_ARRAYS = ("x", "y")


def _checksums(block: np.ndarray) -> np.ndarray:
    """CRC-32 of each sample (first axis) of a block, over its little-endian bytes."""
    little = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<"))
    return np.array([zlib.crc32(little[i].view(np.uint8)) for i in range(len(little))], "u4")


class ForeignFileError(FileFormatError):
    """A readable HDF5 file that was not written by neurosolve."""


class FileInUseError(FileFormatError):
    """Another process holds the file open for writing (HDF5 file lock)."""


def part_path(path: str | os.PathLike) -> Path:
    """Name of the file a write goes to before it is renamed to ``path``.

    Examples
    --------
    >>> part_path("data/darcy.h5").name
    'darcy.h5.part'
    """
    path = Path(path)
    return path.with_name(path.name + ".part")


def canonical_json(params: Mapping[str, Any]) -> str:
    """Serialize parameters as canonical JSON (sorted keys, no spaces, no NaN).

    Examples
    --------
    >>> canonical_json({"b": 1.5, "a": "x"})
    '{"a":"x","b":1.5}'
    """
    try:
        return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"parameters must be finite JSON values: {exc}") from exc


@dataclass(frozen=True)
class DatasetHeader:
    """What a dataset file says about its contents (its root attributes but ``completed``).

    Parameters
    ----------
    generator : str
        Registered generator name.
    params : str
        The generator's keyword parameters as canonical JSON (see :func:`canonical_json`).
    seed : int
        Sample ``i`` draws from ``numpy.random.default_rng([seed, i])``.
    samples : int
        Size of the full dataset.
    first : int
        Global index of the first sample this file holds.
    count : int
        Number of samples this file holds (``len(x)``).
    chunk : int
        Samples per call of the generator.
    dtype : str
        Storage dtype, one of :data:`DTYPES`.
    version : str
        neurosolve version that wrote the file.

    Examples
    --------
    >>> h = DatasetHeader("darcy", '{"resolution":8}', seed=0, samples=10, first=0, count=10,
    ...                   chunk=4, dtype="float32", version="0.1.0")
    >>> h.is_shard, h.param_dict
    (False, {'resolution': 8})
    """

    generator: str
    params: str
    seed: int
    samples: int
    first: int
    count: int
    chunk: int
    dtype: str
    version: str = __version__

    @property
    def param_dict(self) -> dict[str, Any]:
        """The parameters as a dictionary."""
        return json.loads(self.params)

    @property
    def is_shard(self) -> bool:
        """Whether the file holds only part of the full dataset."""
        return self.first != 0 or self.count != self.samples

    def differences(self, other: DatasetHeader, *, ignore: Sequence[str] = ()) -> list[str]:
        """Fields in which two headers differ, as readable ``name: a != b`` strings."""
        mine, theirs = asdict(self), asdict(other)
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}"
            for key in mine
            if key not in ignore and mine[key] != theirs[key]
        ]


def _attr(attrs: h5py.AttributeManager, name: str, path: Path) -> Any:
    if name not in attrs:
        raise FileFormatError(f"{path}: attribute {name!r} missing; the file is damaged")
    value = attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    elif isinstance(value, np.generic):
        value = value.item()
    return value


def _open(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open a file with h5py, turning its errors into FileFormatError."""
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a dataset file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        if "unable to lock file" in str(exc):
            raise FileInUseError(
                f"{path}: in use by another process (HDF5 file lock); wait for it to finish"
            ) from exc
        raise FileFormatError(
            f"{path}: cannot be opened as HDF5 (truncated, corrupted or not HDF5): "
            f"{_h5_reason(exc)}"
        ) from exc


def _h5_reason(exc: BaseException) -> str:
    # h5py messages look like "Unable to synchronously open file (truncated file: ...)";
    # the part in parentheses is the useful one.
    text = str(exc)
    if "(" in text and text.endswith(")"):
        return text[text.index("(") + 1 : -1]
    return text


def _read_header(f: h5py.File, path: Path) -> tuple[DatasetHeader, int]:
    """Validate an open file's layout and return its header and completed count."""
    try:
        marker = f.attrs.get("format")
    except (OSError, KeyError, RuntimeError) as exc:
        raise FileFormatError(f"{path}: metadata unreadable (corrupted): {exc}") from exc
    if isinstance(marker, bytes):
        marker = marker.decode()
    if marker != FORMAT:
        raise ForeignFileError(
            f"{path}: not a neurosolve dataset (HDF5 file without format={FORMAT!r} attribute)"
        )
    try:
        fmt = int(_attr(f.attrs, "format_version", path))
        if fmt != FORMAT_VERSION:
            raise FileFormatError(
                f"{path}: dataset format version {fmt} is not supported (this neurosolve "
                f"{__version__} reads version {FORMAT_VERSION})"
            )
        values = {name: _attr(f.attrs, name, path) for name in _HEADER_ATTRS[2:]}
        completed = int(_attr(f.attrs, "completed", path))
        if any(name not in f for name in (*_ARRAYS, _CRC)):
            raise FileFormatError(
                f"{path}: datasets 'x', 'y' and {_CRC!r} are missing; the file is damaged"
            )
        x, y, crc_shape = f["x"], f["y"], f[_CRC].shape
        dtype = str(x.dtype)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{path}: metadata unreadable (corrupted): {exc}") from exc
    count = x.shape[0] if x.ndim else -1
    if (
        x.ndim < 2
        or y.ndim < 2
        or y.shape[0] != count
        or crc_shape != (count, 2)
        or str(y.dtype) != dtype
        or dtype not in DTYPES
        or not 0 <= completed <= count
    ):
        raise FileFormatError(
            f"{path}: inconsistent layout (x {x.shape} {x.dtype}, y {y.shape} {y.dtype}, "
            f"completed={completed}); the file is damaged"
        )
    try:
        json.loads(values["params"])
        header = DatasetHeader(
            generator=str(values["generator"]),
            params=str(values["params"]),
            seed=int(values["seed"]),
            samples=int(values["samples"]),
            first=int(values["first"]),
            count=int(count),
            chunk=int(values["chunk"]),
            dtype=dtype,
            version=str(values["version"]),
        )
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: malformed attributes ({exc}); the file is damaged") from exc
    if header.first < 0 or header.first + header.count > header.samples or header.chunk < 1:
        raise FileFormatError(
            f"{path}: inconsistent attributes (first={header.first}, count={header.count}, "
            f"samples={header.samples}, chunk={header.chunk}); the file is damaged"
        )
    return header, completed


def read_header(path: str | os.PathLike) -> tuple[DatasetHeader, int, tuple, tuple]:
    """Read a dataset file's header.

    Returns
    -------
    header : DatasetHeader
    completed : int
        Samples written so far (``header.count`` for a complete file).
    x_shape, y_shape : tuple of int
        Shapes of the two arrays.

    Raises
    ------
    FileFormatError
        If the file is missing, not HDF5, truncated, damaged or not a neurosolve dataset.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> _ = generate("poisson", out, samples=2, seed=3, params={"resolution": 8},
    ...              progress=False)
    >>> header, completed, x_shape, y_shape = read_header(out)
    >>> header.seed, completed, x_shape
    (3, 2, (2, 2, 8, 8))
    """
    path = Path(path)
    with _open(path) as f:
        header, completed = _read_header(f, path)
        return header, completed, tuple(f["x"].shape), tuple(f["y"].shape)


def create_file(path: Path, header: DatasetHeader, x_shape: tuple, y_shape: tuple) -> None:
    """Create an empty dataset file with its final layout (``completed = 0``).

    ``x_shape`` and ``y_shape`` are the per-sample shapes ``(C, *spatial)``. Fill it with
    :class:`Writer`; :func:`neurosolve.data.generate.generate` and :func:`merge` do both.
    """
    if header.dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {DTYPES}, got {header.dtype!r}")
    # Early allocation fixes the layout now; FILL_TIME_NEVER reserves the space without
    # writing zeros into it (unwritten bytes read as zeros and fail their checksum).
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    with h5py.File(path, "w", libver=_LIBVER, track_times=False) as f:
        for name, shape in (("x", x_shape), ("y", y_shape)):
            f.create_dataset(
                name,
                shape=(header.count, *shape),
                dtype=header.dtype,
                chunks=(1, *shape),
                track_times=False,
                dcpl=dcpl.copy(),
            )
        f.create_dataset(
            _CRC, shape=(header.count, 2), dtype="u4", track_times=False, dcpl=dcpl.copy()
        )
        attrs = {
            "format": FORMAT,
            "format_version": np.int64(FORMAT_VERSION),
            "generator": header.generator,
            "params": header.params,
            "seed": np.int64(header.seed),
            "version": header.version,
            "samples": np.int64(header.samples),
            "first": np.int64(header.first),
            "chunk": np.int64(header.chunk),
            "completed": np.int64(0),
        }
        for key, value in attrs.items():
            f.attrs[key] = value


class Writer:
    """Fill a file made by :func:`create_file`, sample block by sample block.

    Every :meth:`write` flushes the data before it advances ``completed``, so an
    interruption leaves ``completed`` at or below what is really on disk.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> header = DatasetHeader("mine", "{}", seed=0, samples=3, first=0, count=3, chunk=1,
    ...                        dtype="float32")
    >>> create_file(path, header, (1, 4), (1, 4))
    >>> with Writer(path) as w:
    ...     w.write(0, np.ones((2, 1, 4)), np.zeros((2, 1, 4)))
    >>> read_info(path)["completed"], read_info(path)["complete"]
    (2, False)
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = _open(self.path, "r+")
        try:
            self.header, self.completed = _read_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise

    def write(self, start: int, x: np.ndarray, y: np.ndarray) -> None:
        """Write samples ``start .. start + len(x)`` (local indices) and mark them done."""
        stop = start + x.shape[0]
        crc = np.empty((x.shape[0], 2), dtype="u4")
        for column, (name, data) in enumerate(zip(_ARRAYS, (x, y), strict=True)):
            target = self._file[name]
            if data.shape[1:] != target.shape[1:] or stop > target.shape[0]:
                raise InvalidInputError(
                    f"{self.path}: samples of shape {data.shape[1:]} for {name!r} do not fit "
                    f"the file's {target.shape[1:]}; the generator's output shape changed"
                )
            data = np.ascontiguousarray(data, dtype=target.dtype)
            target[start:stop] = data
            crc[:, column] = _checksums(data)
        self._file[_CRC][start:stop] = crc
        self._file.flush()
        self.completed = max(self.completed, stop)
        self._file.attrs["completed"] = np.int64(self.completed)
        self._file.flush()

    def close(self, *, sync: bool = False) -> None:
        """Close the file; with ``sync=True`` also force it to disk."""
        if self._file.id.valid:
            self._file.close()
        if sync:
            with open(self.path, "rb+") as fh:
                os.fsync(fh.fileno())

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_info(path: str | os.PathLike, *, stats: bool = False) -> dict[str, Any]:
    """Describe a dataset file.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`neurosolve.data.generate.generate` or :func:`merge`.
    stats : bool, default False
        Also compute ``min``, ``max`` and ``mean`` of each array (reads the whole file).

    Returns
    -------
    dict
        ``generator``, ``params`` (dict), ``seed``, ``version``, ``format_version``,
        ``samples`` (full dataset size), ``first``, ``count`` (samples in this file),
        ``completed``, ``complete`` (bool), ``chunk``, ``dtype``, ``x_shape``, ``y_shape``,
        ``path``; with ``stats=True`` also ``x_stats`` and ``y_stats`` dicts.

    Raises
    ------
    FileFormatError
        If the file is missing, truncated, corrupted or not a neurosolve dataset.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> _ = generate("poisson", out, samples=2, seed=0, params={"resolution": 8},
    ...              progress=False)
    >>> info = read_info(out)
    >>> info["generator"], info["x_shape"], info["complete"]
    ('poisson', (2, 2, 8, 8), True)
    """
    path = Path(path)
    with _open(path) as f:
        header, completed = _read_header(f, path)
        info: dict[str, Any] = {
            "path": str(path),
            "generator": header.generator,
            "params": header.param_dict,
            "seed": header.seed,
            "version": header.version,
            "format_version": FORMAT_VERSION,
            "samples": header.samples,
            "first": header.first,
            "count": header.count,
            "completed": completed,
            "complete": completed == header.count,
            "chunk": header.chunk,
            "dtype": header.dtype,
            "x_shape": tuple(f["x"].shape),
            "y_shape": tuple(f["y"].shape),
        }
        if stats:
            for name in ("x", "y"):
                info[f"{name}_stats"] = _stats(f, name, completed, path)
    return info


def _read_block(f: h5py.File, name: str, start: int, stop: int, path: Path) -> np.ndarray:
    """Samples ``start .. stop`` of array ``name``, checked against their checksums."""
    try:
        block = f[name][start:stop]
        expected = f[_CRC][start:stop, _ARRAYS.index(name)]
    except (OSError, RuntimeError, ValueError) as exc:
        raise FileFormatError(
            f"{path}: samples {start}..{stop - 1} of {name!r} are unreadable (corrupted or "
            f"truncated): {_h5_reason(exc)}"
        ) from exc
    bad = np.flatnonzero(_checksums(block) != expected)
    if bad.size:
        raise FileFormatError(
            f"{path}: sample {start + int(bad[0])} of {name!r} is corrupted (checksum "
            f"mismatch{f'; {bad.size} samples in all' if bad.size > 1 else ''})"
        )
    return block


def _stats(f: h5py.File, name: str, count: int, path: Path) -> dict[str, float]:
    lo, hi, total, size = np.inf, -np.inf, 0.0, 0
    for start in range(0, count, _BLOCK):
        block = _read_block(f, name, start, min(count, start + _BLOCK), path)
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
        total += float(block.sum(dtype=np.float64))
        size += block.size
    if size == 0:
        return {"min": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {"min": lo, "max": hi, "mean": total / size}


def _require_complete(path: Path, header: DatasetHeader, completed: int) -> None:
    if completed != header.count:
        raise FileFormatError(
            f"{path}: incomplete dataset ({completed} of {header.count} samples written); "
            "rerun the generate command that made it to finish it"
        )


def read_arrays(
    path: str | os.PathLike, *, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load samples ``start .. stop`` of a complete dataset file into memory.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> _ = generate("poisson", out, samples=3, seed=0, params={"resolution": 8},
    ...              progress=False)
    >>> x, y = read_arrays(out, stop=2)
    >>> x.shape, y.dtype
    ((2, 2, 8, 8), dtype('float32'))
    """
    path = Path(path)
    with _open(path) as f:
        header, completed = _read_header(f, path)
        _require_complete(path, header, completed)
        stop = header.count if stop is None else stop
        if not 0 <= start <= stop <= header.count:
            raise InvalidInputError(
                f"sample range {start}..{stop} is outside 0..{header.count} of {path}"
            )
        return (
            _read_block(f, "x", start, stop, path),
            _read_block(f, "y", start, stop, path),
        )


class _H5DatasetBase:
    """A lazy map-style torch dataset over a dataset file.

    The file is opened on first access in each process (and reopened after a fork), so the
    dataset works with ``DataLoader(num_workers > 0)``; only the samples asked for are read.

    Parameters
    ----------
    path : str or PathLike
        A complete dataset file.
    dtype : torch.dtype, optional
        dtype of the returned tensors (default ``torch.float32``).
    indices : sequence of int, optional
        Use only these samples (local indices into the file), in this order.

    Attributes
    ----------
    info : dict
        :func:`read_info` of the file.
    x_shape, y_shape : tuple of int
        Shape ``(C, *spatial)`` of one input and one target.

    Raises
    ------
    FileFormatError
        If the file is missing, damaged, foreign or incomplete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> from neurosolve.data.store import H5Dataset
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> _ = generate("poisson", out, samples=3, seed=0, params={"resolution": 8},
    ...              progress=False)
    >>> ds = H5Dataset(out, indices=[2, 0])
    >>> x, y = ds[0]
    >>> len(ds), tuple(x.shape), x.dtype
    (2, (2, 8, 8), torch.float32)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        indices: Sequence[int] | None = None,
    ):
        import torch

        dtype = torch.float32 if dtype is None else dtype
        self.path = Path(path)
        self.info = read_info(self.path)
        header_count = self.info["count"]
        if not self.info["complete"]:
            raise FileFormatError(
                f"{self.path}: incomplete dataset ({self.info['completed']} of "
                f"{header_count} samples written); rerun the generate command to finish it"
            )
        if not isinstance(dtype, torch.dtype):
            raise InvalidInputError(f"dtype must be a torch.dtype, got {dtype!r}")
        self.dtype = dtype
        if indices is None:
            self.indices = np.arange(header_count)
        else:
            self.indices = np.asarray(indices)
            if self.indices.ndim != 1 or not np.issubdtype(self.indices.dtype, np.integer):
                raise InvalidInputError("indices must be a 1-D sequence of integers")
            bad = (self.indices < 0) | (self.indices >= header_count)
            if bad.any():
                raise InvalidInputError(
                    f"index {int(self.indices[bad][0])} is outside the file's "
                    f"{header_count} samples"
                )
        self.x_shape = self.info["x_shape"][1:]
        self.y_shape = self.info["y_shape"][1:]
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            # A handle inherited through fork must not be used: open a fresh one.
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        n = len(self.indices)
        if not isinstance(item, (int, np.integer)):
            raise InvalidInputError(f"index must be an integer, got {type(item).__name__}")
        if not -n <= item < n:
            raise IndexError(f"index {item} out of range for a dataset of {n} samples")
        i = int(self.indices[item])
        f = self._handle()
        x = _read_block(f, "x", i, i + 1, self.path)[0]
        y = _read_block(f, "y", i, i + 1, self.path)[0]
        return torch.from_numpy(x).to(self.dtype), torch.from_numpy(y).to(self.dtype)

    def close(self) -> None:
        """Close this process's file handle (it is reopened on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"H5Dataset({str(self.path)!r}, generator={self.info['generator']!r}, "
            f"samples={len(self)}, x={self.x_shape}, y={self.y_shape})"
        )


def __getattr__(name: str) -> Any:
    # H5Dataset subclasses torch.utils.data.Dataset; it is built on first use so that
    # importing this module (``neurosolve info``, ``merge``, generation) does not import torch.
    if name == "H5Dataset":
        import torch.utils.data

        cls = type(
            "H5Dataset",  # noqa: F822 -- built on first access, see __getattr__
            (_H5DatasetBase, torch.utils.data.Dataset),
            {"__module__": __name__},
        )
        globals()["H5Dataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def progress_bar(total: int, desc: str, progress: bool, initial: int = 0) -> tqdm:
    """A tqdm bar over samples, shown only when ``progress`` and stderr is a terminal."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="sample",
        disable=not progress or not sys.stderr.isatty(),
        leave=False,
    )


def iter_blocks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """Split ``start .. stop`` into consecutive ``(a, b)`` ranges of at most ``size``.

    Examples
    --------
    >>> list(iter_blocks(0, 5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    for a in range(start, stop, size):
        yield a, min(stop, a + size)


def merge(
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Join shard files into the full dataset.

    The shards must come from one generator, parameters, seed, dataset size, chunk, dtype
    and neurosolve version, be complete, and together cover every sample exactly once (in
    any order on the command line). The result is byte-identical to the file a single
    process writes with the same arguments.

    Parameters
    ----------
    shard_paths : sequence of path
        Files written with ``generate(..., shard=(i, n))``.
    out : path
        The merged file (written atomically).
    overwrite : bool, default False
        Replace ``out`` if it exists.
    progress : bool, default True
        Show a progress bar (only on a terminal).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    FileFormatError
        A shard is missing, damaged, foreign or incomplete.
    InvalidInputError
        Shards that do not belong together, leave gaps or overlap; ``out`` exists.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> shards = [generate("poisson", tmp / f"s{i}.h5", samples=4, seed=1, chunk=2,
    ...                    params={"resolution": 8}, shard=(i, 2), progress=False)
    ...           for i in range(2)]
    >>> merged = merge(shards, tmp / "all.h5", progress=False)
    >>> full = generate("poisson", tmp / "one.h5", samples=4, seed=1, chunk=2,
    ...                 params={"resolution": 8}, progress=False)
    >>> merged.read_bytes() == full.read_bytes()
    True
    """
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise InvalidInputError("merge needs at least one shard file")
    out = Path(out)
    if any(p.resolve() == out.resolve() for p in paths):
        raise InvalidInputError(f"the output {out} is also one of the shards")
    if out.exists() and not overwrite:
        raise InvalidInputError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    shards = []
    for p in paths:
        header, completed, x_shape, y_shape = read_header(p)
        _require_complete(p, header, completed)
        shards.append((header, x_shape[1:], y_shape[1:], p))
    shards.sort(key=lambda s: s[0].first)
    ref, ref_x, ref_y, ref_path = shards[0]
    for header, x_shape, y_shape, p in shards[1:]:
        diff = header.differences(ref, ignore=("first", "count"))
        if x_shape != ref_x or y_shape != ref_y:
            diff.append(f"sample shapes: {x_shape}, {y_shape} != {ref_x}, {ref_y}")
        if diff:
            raise InvalidInputError(
                f"{p} and {ref_path} are not shards of one dataset: " + "; ".join(diff)
            )
    expected = 0
    for header, _, _, p in shards:
        if header.first != expected:
            what = "overlaps the previous shard" if header.first < expected else "leaves a gap"
            raise InvalidInputError(
                f"{p} holds samples {header.first}..{header.first + header.count - 1}, which "
                f"{what} (expected the next shard to start at sample {expected})"
            )
        expected += header.count
    if expected != ref.samples:
        raise InvalidInputError(
            f"the shards hold samples 0..{expected - 1} but the dataset has {ref.samples}; "
            "a shard is missing"
        )
    full = DatasetHeader(
        generator=ref.generator,
        params=ref.params,
        seed=ref.seed,
        samples=ref.samples,
        first=0,
        count=ref.samples,
        chunk=ref.chunk,
        dtype=ref.dtype,
        version=ref.version,
    )
    tmp = part_path(out)
    tmp.unlink(missing_ok=True)
    create_file(tmp, full, ref_x, ref_y)
    try:
        with Writer(tmp) as writer, progress_bar(ref.samples, "merge", progress) as bar:
            for header, _, _, p in shards:
                with _open(p) as f:
                    for a, b in iter_blocks(0, header.count, _BLOCK):
                        writer.write(
                            header.first + a,
                            _read_block(f, "x", a, b, p),
                            _read_block(f, "y", a, b, p),
                        )
                        bar.update(b - a)
            writer.close(sync=True)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("merged %d shards into %s", len(shards), out)
    return out
