"""Opening a dataset file for the ``train`` and ``evaluate`` commands.

A dataset written by ``neurosolve generate`` is read into memory as a
:class:`torch.utils.data.TensorDataset` when it is small (faster than HDF5 reads every
epoch) and otherwise streamed from disk through :class:`neurosolve.data.store.H5Dataset`.
torch and h5py are imported inside the function.
"""

from __future__ import annotations

import functools
from typing import Any

from neurosolve._util.validate import integer

__all__ = ["IN_MEMORY_BYTES", "load_dataset"]

#: Datasets up to this size are loaded into memory for training.
IN_MEMORY_BYTES = 2 * 1024**3


def load_dataset(path: str, max_samples: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The samples of a dataset file (the first ``max_samples`` of them) and its info.

    Parameters
    ----------
    path : str
        A dataset file written by ``neurosolve generate``.
    max_samples : int, optional
        Use only the first this many samples (``--max-samples``).

    Returns
    -------
    dataset : torch.utils.data.Dataset
        ``(x, y)`` pairs, float32.
    info : dict
        :func:`neurosolve.data.store.read_info` of the file.

    Raises
    ------
    InvalidInputError
        If ``max_samples`` is below 1.
    """
    import torch
    from torch.utils.data import Subset, TensorDataset

    from neurosolve.data.store import H5Dataset, read_arrays, read_info
    from neurosolve.data.store.reader import fingerprint

    info = read_info(path)
    count = info["count"]
    if max_samples is not None:
        count = min(count, integer(max_samples, "--max-samples"))
    itemsize = 8 if info["dtype"] == "float64" else 4
    size = count * itemsize * (_prod(info["x_shape"][1:]) + _prod(info["y_shape"][1:]))
    if size <= IN_MEMORY_BYTES:
        x, y = read_arrays(path, stop=count)
        data = TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y).float())
        # what the trainer records to refuse resuming on other data
        data.fingerprint = functools.partial(fingerprint, path, range(count))
        return data, info
    ds = H5Dataset(path)
    return (ds if count == len(ds) else Subset(ds, range(count))), info


def _prod(shape: Any) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
