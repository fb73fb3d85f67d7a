"""Reading dataset files: their description, whole arrays, and a lazy torch dataset.

:func:`read_info` describes a file (and optionally streams statistics), :func:`read_arrays`
loads sample ranges as numpy arrays, and :class:`H5Dataset` is the map-style torch dataset
the trainers use. Every sample read is checked against its stored CRC-32, so corruption is
reported instead of returned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from neurosolve.data.store.format import (
    _ARRAYS,
    _BLOCK,
    _CRC,
    FORMAT_VERSION,
    DatasetHeader,
    _checksums,
    _h5_reason,
    _open,
    _read_header,
)
from neurosolve.errors import FileFormatError, InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "H5Dataset",  # noqa: F822 -- built on first access, see __getattr__
    "read_arrays",
    "read_info",
]


def read_info(path: str | os.PathLike, *, stats: bool = False) -> dict[str, Any]:
    """Describe a dataset file.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`neurosolve.data.generate.generate` or
        :func:`~neurosolve.data.store.merge`.
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


def fingerprint(path: str | os.PathLike, indices: Sequence[int] | None = None) -> dict[str, Any]:
    """What identifies a dataset file's samples, for resume checks.

    The header (generator, parameters, seed, range, shapes, dtype), a SHA-256 of the
    per-sample checksums stored in the file (so other samples under the same header differ
    too) and one of the sample indices used (default: all). The path is left out: a moved
    file holds the same data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
    >>> _ = generate("poisson", out, samples=2, seed=0, params={"resolution": 8},
    ...              progress=False)
    >>> fp = fingerprint(out)
    >>> fp["generator"], fp["seed"], len(fp["checksums"])
    ('poisson', 0, 64)
    """
    import hashlib

    path = Path(path)
    with _open(path) as f:
        header, completed = _read_header(f, path)
        _require_complete(path, header, completed)
        crc = np.ascontiguousarray(f[_CRC][:])
        out: dict[str, Any] = {
            "generator": header.generator,
            "params": header.param_dict,
            "seed": header.seed,
            "samples": header.samples,
            "first": header.first,
            "count": header.count,
            "dtype": header.dtype,
            "x_shape": list(f["x"].shape),
            "y_shape": list(f["y"].shape),
        }
    out["checksums"] = hashlib.sha256(crc.tobytes()).hexdigest()
    used = np.arange(header.count) if indices is None else np.asarray(indices)
    out["indices"] = hashlib.sha256(used.astype(np.int64).tobytes()).hexdigest()
    return out


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
    as_dict : bool, default False
        Items as ``{"x": x, "y": y}`` instead of ``(x, y)``, as neuraloperator's datasets
        give them; a ``DataLoader`` then yields dict batches.

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
    >>> from torch.utils.data import DataLoader
    >>> batch = next(iter(DataLoader(H5Dataset(out, as_dict=True), batch_size=2)))
    >>> sorted(batch), tuple(batch["y"].shape)
    (['x', 'y'], (2, 1, 8, 8))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        indices: Sequence[int] | None = None,
        as_dict: bool = False,
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
        if not isinstance(as_dict, (bool, np.bool_)):
            raise InvalidInputError(f"as_dict must be True or False, got {as_dict!r}")
        self.as_dict = bool(as_dict)
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

    def fingerprint(self) -> dict[str, Any]:
        """:func:`fingerprint` of the file and the samples this dataset yields.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from neurosolve.data.generate import generate
        >>> from neurosolve.data.store import H5Dataset
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "d.h5"
        >>> _ = generate("poisson", out, samples=2, seed=0, params={"resolution": 8},
        ...              progress=False)
        >>> H5Dataset(out).fingerprint()["seed"]
        0
        """
        return fingerprint(self.path, self.indices)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            # A handle inherited through fork must not be used: open a fresh one.
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file

    def __getitem__(
        self, item: int
    ) -> tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
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
        x_t, y_t = torch.from_numpy(x).to(self.dtype), torch.from_numpy(y).to(self.dtype)
        return {"x": x_t, "y": y_t} if self.as_dict else (x_t, y_t)

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
            {"__module__": __name__, "__doc__": _H5DatasetBase.__doc__},
        )
        globals()["H5Dataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
