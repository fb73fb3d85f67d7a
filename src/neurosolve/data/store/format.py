"""The dataset file format: its layout, header, checksums, and opening and validating files.

Everything the writer, the reader and the merge of :mod:`neurosolve.data.store` agree on
lives here: the constants of the layout, :class:`DatasetHeader`, the per-sample CRC and
the checks that turn a foreign, truncated or locked file into a clear error.

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
an interruption, or copied from shards by :func:`~neurosolve.data.store.merge`) only fills
bytes in place and updates the fixed-size ``completed`` attribute. The final file therefore
depends only on its header and its data, not on the history of the run. Space is reserved
without writing fill values, so creating a file for a large dataset is instant and costs no
disk writes.

Checksums
---------
A third dataset, ``crc32`` ``(N, 2)`` uint32, holds the CRC-32 of every sample's stored
bytes (little-endian) of ``x`` and ``y``; every read checks it, and the metadata uses the
HDF5 1.10 format, which checksums it too. Corrupted bytes are therefore reported as
:class:`~neurosolve.errors.FileFormatError` instead of being read silently.

HDF5's own Fletcher-32 filter (h5py's ``fletcher32=True``) was considered and not taken: a
filtered dataset writes every chunk when its space is reserved, so the instant, write-free
creation above becomes a write of the whole file before the data is written again (measured
with h5py: 400 samples of 128^2 float32 occupy 25.6 MB on disk right after creation with
the filter, 0.6 MB without). Its failure is also HDF5's generic "filter returned failure
during read", and its 16-bit sums detect fewer errors than CRC-32. Compression is not used:
it would make chunk sizes data-dependent and defeat in-place writes (and float32 fields
barely compress).

Atomic writes
-------------
Files are written under ``<name>.part`` (generation, resumable) or a temporary name
(:func:`~neurosolve.data.store.merge`) and renamed to ``<name>`` only when complete, so a
file under its final name is always whole. See :mod:`neurosolve.data.generate` for the
resumable generation built on top of this module.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurosolve._util.limits import format_bytes
from neurosolve._version import __version__
from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = [
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "DatasetHeader",
    "FileInUseError",
    "ForeignFileError",
    "canonical_json",
    "part_path",
    "read_header",
]

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
        nodes = [f[name] for name in (*_ARRAYS, _CRC)]
        groups = [
            n
            for n, node in zip((*_ARRAYS, _CRC), nodes, strict=True)
            if not isinstance(node, h5py.Dataset)
        ]
        if groups:
            raise FileFormatError(
                f"{path}: {', '.join(map(repr, groups))} must be an array (HDF5 dataset), "
                "found a group; the file is damaged or not a neurosolve dataset"
            )
        x, y, crc_shape = nodes[0], nodes[1], nodes[2].shape
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
    _check_declared_size(path, x, y, completed)
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


def _check_declared_size(path: Path, x: h5py.Dataset, y: h5py.Dataset, completed: int) -> None:
    """Refuse a file claiming more written samples than its bytes can hold.

    The arrays are stored uncompressed and allocated when the file is made, so the
    ``completed`` samples take at least their raw size on disk. A few kilobytes declaring
    10^9 samples would otherwise make a reader allocate (or scan) gigabytes.
    """
    per_sample = (
        sum(float(np.prod(a.shape[1:], dtype=np.float64)) * a.dtype.itemsize for a in (x, y))
        + 2 * np.dtype("u4").itemsize
    )
    need = completed * per_sample
    size = path.stat().st_size
    if need > size:
        raise FileFormatError(
            f"{path}: declares {completed} written samples of {per_sample:.0f} bytes "
            f"({format_bytes(need)}) but the file has {format_bytes(size)}; the file is "
            "damaged or forged"
        )


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
