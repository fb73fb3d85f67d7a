"""HDF5 storage of generated datasets: format, writer, reader and shard merge.

A dataset file holds two arrays, ``x`` (inputs) and ``y`` (targets), each of shape
``(N, C, *spatial)``, with a header of root attributes saying where the data came from
(generator, parameters, seed, version) and a CRC-32 per sample; two runs with the same
arguments give the same bytes. The submodules hold one concern each:

- :mod:`~neurosolve.data.store.format`: the layout (documented there), the header, opening
  and validating files;
- :mod:`~neurosolve.data.store.writer`: :func:`create_file` and :class:`Writer`;
- :mod:`~neurosolve.data.store.reader`: :func:`read_info`, :func:`read_arrays` and the torch
  dataset :class:`H5Dataset` (built on first access, so that importing this package does
  not import torch);
- :mod:`~neurosolve.data.store.merge`: :func:`merge` of shard files.

Files are written under ``<name>.part`` and renamed when complete; see
:mod:`neurosolve.data.generate` for the resumable generation built on top.
"""

from typing import Any

from neurosolve.data.store.format import (
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    DatasetHeader,
    FileInUseError,
    ForeignFileError,
    canonical_json,
    part_path,
    read_header,
)
from neurosolve.data.store.merge import iter_blocks, merge
from neurosolve.data.store.reader import read_arrays, read_info
from neurosolve.data.store.writer import Writer, create_file

__all__ = [
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "DatasetHeader",
    "FileInUseError",
    "ForeignFileError",
    "H5Dataset",  # noqa: F822 -- built on first access, see __getattr__
    "Writer",
    "canonical_json",
    "create_file",
    "iter_blocks",
    "merge",
    "part_path",
    "read_arrays",
    "read_header",
    "read_info",
]


def __getattr__(name: str) -> Any:
    # H5Dataset subclasses torch.utils.data.Dataset: import torch only when it is asked for.
    if name == "H5Dataset":
        from neurosolve.data.store import reader

        globals()["H5Dataset"] = reader.H5Dataset
        return reader.H5Dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
