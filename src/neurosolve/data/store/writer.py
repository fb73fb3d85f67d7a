"""Writing dataset files: create one with its final layout, then fill it block by block.

:func:`create_file` fixes the whole layout (early allocation, no fill values) so that later
writes only fill bytes in place; :class:`Writer` writes samples with their checksums and
advances the ``completed`` attribute after the data are flushed, which is what makes an
interrupted generation resumable (see :mod:`neurosolve.data.store.format`).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from neurosolve.data.store.format import (
    _ARRAYS,
    _CRC,
    _LIBVER,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    DatasetHeader,
    _checksums,
    _open,
    _read_header,
)
from neurosolve.errors import InvalidInputError

__all__ = ["Writer", "create_file"]


def create_file(path: Path, header: DatasetHeader, x_shape: tuple, y_shape: tuple) -> None:
    """Create an empty dataset file with its final layout (``completed = 0``).

    ``x_shape`` and ``y_shape`` are the per-sample shapes ``(C, *spatial)``. Fill it with
    :class:`Writer`; :func:`neurosolve.data.generate.generate` and
    :func:`~neurosolve.data.store.merge` do both.
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
    >>> from neurosolve.data.store import read_info
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

