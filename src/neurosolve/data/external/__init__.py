"""Reading datasets in public formats: FNO's ``.mat`` files and PDEBench's HDF5 files.

Users often hold operator-learning data already. This module reads two common formats into
the package's own sample layout, ``x`` and ``y`` of shape ``(N, C, *spatial)`` (time as a
channel axis), and :func:`import_dataset` writes them into a dataset file of
:mod:`neurosolve.data.store`, so that ``neurosolve train`` and every reader work on them
unchanged. :func:`describe` says what a file holds, :func:`read_fno_mat` and
:func:`read_pdebench` return the arrays, :func:`iter_blocks_of` streams them.

Layouts read (checked against the authors' public code, see the sources below)
------------------------------------------------------------------------------
FNO (Li et al. 2021), MATLAB files:

- Darcy (``piececonst_r421_N1024_smooth1.mat``): ``coeff`` and ``sol``, both ``(N, s, s)``;
  here ``x = coeff[:, None]``, ``y = sol[:, None]``. The authors subsample with a stride
  ``r`` (``[::r, ::r]``, 421 -> 85 for ``r = 5``), which ``subsample`` reproduces.
- Navier-Stokes (``ns_V1e-3_N5000_T50.mat``): ``u`` ``(N, s, s, T)``, the vorticity
  trajectory, ``a`` ``(N, s, s)`` the initial vorticity, some files also ``t``. The
  authors map ``u[..., :10]`` to ``u[..., 10:50]``; here ``x = u[..., :t_in]`` and
  ``y = u[..., t_in:t_in + t_out]`` with time moved to the channel axis (the layout of
  ``neurosolve generate navier-stokes``), ``initial=True`` puts ``a`` first.
- MATLAB v5/v7 files are read with :func:`scipy.io.loadmat`; v7.3 files are HDF5 files
  with a 512-byte user block whose first 128 bytes are MATLAB's header (116 bytes of text
  starting ``MATLAB``, the version ``0x0200`` at byte 124 and the endian mark ``IM``/``MI``
  at 126). MATLAB stores arrays column-major, so HDF5 sees the axes reversed: FNO's
  ``MatReader`` transposes all axes, and so does this module, block by block. An HDF5 file
  without MATLAB's header holding FNO's keys is read the same way (as ``MatReader`` does).

PDEBench (Takamoto et al. 2022), HDF5 files:

- 2D Darcy (``2D_DarcyFlow_beta1.0_Train.hdf5``): ``nu`` ``(N, s, s)`` the coefficient and
  ``tensor`` ``(N, 1, s, s)`` the solution, plus ``x-coordinate`` and ``y-coordinate``.
- Scalar time series (1D advection, Burgers, ...): ``tensor`` ``(N, T, *spatial)`` with
  ``x-coordinate`` and ``t-coordinate``.
- Compressible CFD: ``density``, ``pressure``, ``Vx`` (, ``Vy``, ``Vz``), each
  ``(N, T, *spatial)``; the channels are taken in that order.
- Incompressible Navier-Stokes (``ns_incom_inhom_2d_512-0.h5``): ``velocity``
  ``(N, T, s, s, 2)``, ``particles`` ``(N, T, s, s, 1)``, ``force`` ``(N, s, s, 2)`` and
  ``t`` ``(N, T)``; by default ``velocity`` frames and the (time-independent) ``force``
  are read, ``force`` as extra input channels.
- Per-sample groups (``2D_rdb_NA_NA.h5`` shallow water, ``2D_diff-react_NA_NA.h5``,
  ``1D_diff-sorp_NA_NA.h5``): groups
  ``"0000"``, ``"0001"``, ... each with ``data`` ``(T, *spatial, C)`` and ``grid/x``
  (``grid/y``), ``grid/t``.

Time-dependent samples become ``x`` = the first ``t_in`` frames (default 10, PDEBench's and
FNO's ``initial_step``/``T_in``) and ``y`` = the next ``t_out`` frames (default: the rest),
after keeping every ``time_stride``-th frame; with ``C`` components a sample's channels are
time-major (channel ``t * C + c``). A field with one component at one time is exactly the
``(t, *spatial)`` window the spatio-temporal models take.

Sources: ``zongyi-li/fourier_neural_operator`` ``fourier_2d.py`` and ``fourier_3d.py`` (keys,
subsampling, time windows) and the ``MatReader`` of its ``utilities3.py`` (h5py fallback
reversing the axes); ``pdebench/PDEBench`` ``pdebench/models/fno/utils.py`` (``FNODataset``:
``tensor``/``nu``/CFD fields and the coordinates; ``FNODatasetMult``: the per-sample groups),
``pdebench/data_gen/src/data_io.py`` (the incompressible Navier-Stokes fields and shapes) and
``sim_radial_dam_break.py`` (``{seed:04d}/data``, ``grid/x``, ``grid/y``, ``grid/t``), and its
``data_download`` README (file names); the MAT-file header (128 bytes: 116 of text, the
version at byte 124, the endian mark at 126; v7.3: version 2 and a 512-byte HDF5 user
block) as the notes of ``dthul/matfile`` and the ``matio`` readers describe it.

Reading is memory-safe for HDF5 (v7.3 and PDEBench): samples are read block by block (at
most :data:`BLOCK_BYTES` at once) and a 10 GB file is never loaded whole. A v5 file has no
random access and is loaded one variable at a time, after a memory check. Errors are typed:
:class:`LayoutError` (missing keys, listing those found; wrong shapes; a non-square grid
where the layout is square; a file that is neither format), :class:`NonFiniteDataError`
(NaN/Inf, naming the first bad sample), :class:`~neurosolve.errors.InvalidInputError` (bad
options).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurosolve._util.io import atomic_write, check_output, exclusive_lock
from neurosolve._util.limits import check_disk, check_memory
from neurosolve._util.progress import progress_bar
from neurosolve.data.external.layouts import (
    FNO_KINDS,
    FORMATS,
    LayoutError,
    NonFiniteDataError,
    _existing,
    _options,
    _Plan,
    detect_format,
    open_plan,
)
from neurosolve.data.store.format import DTYPES, DatasetHeader, canonical_json
from neurosolve.data.store.merge import iter_blocks
from neurosolve.data.store.writer import Writer, create_file
from neurosolve.errors import InvalidInputError

__all__ = [
    "BLOCK_BYTES",
    "FNO_KINDS",
    "FORMATS",
    "LayoutError",
    "NonFiniteDataError",
    "describe",
    "detect_format",
    "import_dataset",
    "iter_blocks_of",
    "read_fno_mat",
    "read_pdebench",
]

#: Most bytes of samples read from a file at once.
BLOCK_BYTES = 64 * 1024**2


def _checked(path: Path, plan: _Plan, a: int, b: int, dtype: str) -> tuple[np.ndarray, ...]:
    """Samples ``a .. b`` of a plan, cast to ``dtype`` and checked finite."""
    out = []
    for label, source, raw in zip(("x", "y"), plan.sources, plan.read(a, b), strict=True):
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, by sample
            data = np.ascontiguousarray(raw, dtype=dtype)
        finite = np.isfinite(data.reshape(len(data), -1)).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            overflow = bool(np.isfinite(np.asarray(raw[i], dtype=np.float64)).all())
            what = f"values beyond {dtype}'s range" if overflow else "NaN or Inf"
            raise NonFiniteDataError(
                f"{path}: sample {a + i} holds {what} in {label} (from {source!r}); "
                "clean the file, or import the samples before it with --limit"
            )
        out.append(data)
    return tuple(out)


def _block(plan: _Plan) -> int:
    per_sample = 8 * (int(np.prod(plan.x_shape)) + int(np.prod(plan.y_shape)))
    return max(1, min(plan.samples, BLOCK_BYTES // max(per_sample, 1)))


def describe(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """What a foreign file holds and how it will be read, without reading the samples.

    Parameters
    ----------
    path : path-like
        An FNO ``.mat`` or a PDEBench HDF5 file.
    format : {"fno-mat", "pdebench"}, optional
        Default: detected from the header and the keys.
    **options
        ``kind``, ``t_in``, ``t_out``, ``subsample``, ``time_stride``, ``fields``,
        ``initial``, ``limit``: as :func:`import_dataset`.

    Returns
    -------
    dict
        ``path``, ``format``, ``container`` (``"v5"``, ``"v7.3"`` or ``"hdf5"``),
        ``layout``, ``count`` (samples read), ``x_shape``, ``y_shape`` (``(N, C, ...)``),
        ``params`` (what the imported file records).

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ns.mat"
    >>> scipy.io.savemat(path, {"a": np.zeros((3, 8, 8)), "u": np.ones((3, 8, 8, 12))})
    >>> info = describe(path, t_in=4)
    >>> info["layout"], info["x_shape"], info["y_shape"]
    ('navier-stokes', (3, 4, 8, 8), (3, 8, 8, 8))
    """
    opts = _options(**options)
    with open_plan(path, format, opts) as (fmt, container, plan):
        return {
            "path": str(path),
            "format": fmt,
            "container": container,
            "layout": plan.layout,
            "count": plan.samples,
            "x_shape": (plan.samples, *plan.x_shape),
            "y_shape": (plan.samples, *plan.y_shape),
            "params": {"layout": plan.layout, "source": Path(path).name, **plan.params},
        }


def iter_blocks_of(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    dtype: str = "float32",
    **options: Any,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream a foreign file as ``(start, x, y)`` blocks of at most :data:`BLOCK_BYTES`.

    Options as :func:`describe`; every block is cast to ``dtype`` and checked finite.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "darcy.mat"
    >>> scipy.io.savemat(path, {"coeff": np.ones((5, 4, 4)), "sol": np.zeros((5, 4, 4))})
    >>> [(start, x.shape) for start, x, y in iter_blocks_of(path)]
    [(0, (5, 1, 4, 4))]
    """
    if dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    opts = _options(**options)
    with open_plan(path, format, opts) as (_, _, plan):
        for a, b in iter_blocks(0, plan.samples, _block(plan)):
            x, y = _checked(Path(path), plan, a, b, dtype)
            yield a, x, y


def _read_all(path: str | os.PathLike, fmt: str, dtype: str, opts: dict) -> tuple:
    info = describe(path, format=fmt, **opts)
    itemsize = np.dtype(dtype).itemsize
    need = itemsize * sum(float(np.prod(info[k])) for k in ("x_shape", "y_shape"))
    check_memory(need, f"reading {info['count']} samples of {Path(path).name}")
    x = np.empty(info["x_shape"], dtype)
    y = np.empty(info["y_shape"], dtype)
    for start, xb, yb in iter_blocks_of(path, format=fmt, dtype=dtype, **opts):
        x[start : start + len(xb)], y[start : start + len(yb)] = xb, yb
    return x, y


def read_fno_mat(
    path: str | os.PathLike,
    kind: str | None = None,
    *,
    t_in: int = 10,
    t_out: int | None = None,
    subsample: int = 1,
    time_stride: int = 1,
    initial: bool = False,
    limit: int | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """Read an FNO ``.mat`` file (MATLAB v5 or v7.3) into ``x, y`` of shape ``(N, C, s, s)``.

    Parameters
    ----------
    path : path-like
        FNO's Darcy (``coeff``, ``sol``) or Navier-Stokes (``a``, ``u``) file.
    kind : {"darcy", "navier-stokes"}, optional
        Default: Darcy when ``coeff`` is present.
    t_in, t_out : int
        Navier-Stokes: input and target frames (``t_out`` default: the rest).
    subsample : int
        Keep every ``subsample``-th grid point (FNO's ``r``).
    time_stride : int
        Navier-Stokes: keep every ``time_stride``-th frame.
    initial : bool
        Navier-Stokes: the initial state ``a`` is the first frame.
    limit : int, optional
        Read only the first ``limit`` samples.
    dtype : {"float32", "float64"}

    Returns
    -------
    x, y : numpy.ndarray
        Darcy: ``(N, 1, s, s)`` each; Navier-Stokes: ``(N, t_in, s, s)`` and
        ``(N, t_out, s, s)``.

    Raises
    ------
    LayoutError
        Missing keys (the message lists those found), wrong shapes or a non-square grid.
    NonFiniteDataError
        A sample holds NaN or Inf.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "darcy.mat"
    >>> coeff = np.arange(2 * 9 * 9, dtype=float).reshape(2, 9, 9)
    >>> scipy.io.savemat(path, {"coeff": coeff, "sol": -coeff})
    >>> x, y = read_fno_mat(path, subsample=2)
    >>> x.shape, bool((x[:, 0] == coeff[:, ::2, ::2]).all())
    ((2, 1, 5, 5), True)
    """
    opts = dict(kind=kind, t_in=t_in, t_out=t_out, subsample=subsample)
    opts.update(time_stride=time_stride, initial=initial, limit=limit)
    return _read_all(path, "fno-mat", dtype, opts)


def read_pdebench(
    path: str | os.PathLike,
    *,
    t_in: int = 10,
    t_out: int | None = None,
    subsample: int = 1,
    time_stride: int = 1,
    fields: Sequence[str] | None = None,
    limit: int | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """Read a PDEBench HDF5 file into ``x, y`` of shape ``(N, C, *spatial)``.

    Darcy files give ``x = nu`` and ``y = tensor`` (one channel each); time series give
    ``t_in`` input and ``t_out`` target frames, components time-major (module notes).

    Parameters
    ----------
    path : path-like
        A PDEBench file (any layout of the module notes).
    t_in, t_out, subsample, time_stride, limit, dtype
        As :func:`read_fno_mat`.
    fields : sequence of str, optional
        Datasets to read from a CFD (``density``, ``pressure``, ``Vx``, ...) or
        incompressible Navier-Stokes file (``velocity``, ``particles``, ``force``).

    Returns
    -------
    x, y : numpy.ndarray

    Raises
    ------
    LayoutError, NonFiniteDataError
        As :func:`read_fno_mat`.

    Examples
    --------
    >>> import tempfile, pathlib, h5py, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "1D_Advection.hdf5"
    >>> with h5py.File(path, "w") as f:
    ...     f["tensor"] = np.arange(2 * 6 * 16, dtype="f4").reshape(2, 6, 16)
    ...     f["x-coordinate"] = np.linspace(0, 1, 16)
    >>> x, y = read_pdebench(path, t_in=2, t_out=3)
    >>> x.shape, y.shape
    ((2, 2, 16), (2, 3, 16))
    """
    opts = dict(t_in=t_in, t_out=t_out, subsample=subsample, time_stride=time_stride)
    opts.update(fields=fields, limit=limit)
    return _read_all(path, "pdebench", dtype, opts)


def import_dataset(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Write a foreign file into a dataset file that ``neurosolve train`` reads as it is.

    Samples are streamed block by block into the store's layout (one chunk and one CRC per
    sample) and the file is renamed into place when complete. Its header records
    ``generator`` = the format (``"fno-mat"`` or ``"pdebench"``), the layout, the source
    file name and the options as parameters, and seed 0 (the samples were not drawn here).

    Parameters
    ----------
    path : path-like
        The foreign file.
    out : path-like
        The dataset file to write.
    format : {"fno-mat", "pdebench"}, optional
        Default: detected.
    dtype : {"float32", "float64"}
    overwrite : bool
        Replace ``out`` if it exists.
    progress : bool
        Progress bar on a terminal, lines every few seconds otherwise.
    **options
        ``kind``, ``t_in``, ``t_out``, ``subsample``, ``time_stride``, ``fields``,
        ``initial``, ``limit``: as :func:`read_fno_mat` and :func:`read_pdebench`.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> from neurosolve.data.store import read_info, read_arrays
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> coeff = np.random.default_rng(0).random((4, 8, 8))
    >>> scipy.io.savemat(tmp / "darcy.mat", {"coeff": coeff, "sol": 2 * coeff})
    >>> out = import_dataset(tmp / "darcy.mat", tmp / "darcy.h5", progress=False)
    >>> info = read_info(out)
    >>> info["generator"], info["params"]["layout"], info["x_shape"]
    ('fno-mat', 'darcy', (4, 1, 8, 8))
    >>> bool((read_arrays(out)[1][:, 0] == (2 * coeff).astype("f4")).all())
    True
    """
    if dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    path, out = _existing(path), Path(out)
    check_output(out, inputs=(path,), overwrite=overwrite)
    opts = _options(**options)
    with open_plan(path, format, opts) as (fmt, _, plan):
        chunk = _block(plan)
        params = {"layout": plan.layout, "source": path.name, **plan.params}
        header = DatasetHeader(
            generator=fmt,
            params=canonical_json(params),
            seed=0,
            samples=plan.samples,
            first=0,
            count=plan.samples,
            chunk=chunk,
            dtype=dtype,
        )
        per_sample = int(np.prod(plan.x_shape)) + int(np.prod(plan.y_shape))
        size = plan.samples * (per_sample * np.dtype(dtype).itemsize + 8)
        check_disk(out, size, f"importing {plan.samples} samples")

        def write(tmp: str) -> None:
            create_file(Path(tmp), header, plan.x_shape, plan.y_shape)
            bar = progress_bar(
                total=plan.samples, enabled=progress, lines=True, desc="import", unit="sample"
            )
            with Writer(Path(tmp)) as writer, bar:
                for a, b in iter_blocks(0, plan.samples, chunk):
                    writer.write(a, *_checked(path, plan, a, b, dtype))
                    bar.update(b - a)

        with exclusive_lock(out):
            atomic_write(out, write, suffix=".h5")
    return out
