"""How each foreign layout is read: file access, format detection and per-layout plans.

A *plan* (:class:`_Plan`) says how many samples a file holds, their shapes in the package's
layout ``(C, *spatial)``, and how to read a block of them; :func:`open_plan` opens a file and
builds the plan of its layout. The layouts and their sources are described in
:mod:`neurosolve.data.external`, which holds the public functions built on these plans.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurosolve._util.limits import check_memory
from neurosolve._util.validate import integer
from neurosolve.errors import FileFormatError, InvalidInputError, NeurosolveError

__all__ = ["FNO_KINDS", "FORMATS", "LayoutError", "NonFiniteDataError", "detect_format"]

#: Formats :func:`neurosolve.data.external.import_dataset` reads.
FORMATS = ("fno-mat", "pdebench")
#: Kinds of FNO ``.mat`` file.
FNO_KINDS = ("darcy", "navier-stokes")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
_COORDS = ("x-coordinate", "y-coordinate", "z-coordinate")
_MAT_DTYPES = {"double": "f8", "single": "f4", "int8": "i1", "uint8": "u1", "int16": "i2"}
_MAT_DTYPES.update({"uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8"})
_MAT_DTYPES.update({"uint64": "u8", "logical": "u1"})


class LayoutError(FileFormatError):
    """A file whose contents do not match the layout it is read as (keys, shapes)."""


class NonFiniteDataError(FileFormatError):
    """A sample of a foreign file holds NaN or Inf."""


# ----------------------------------------------------------------------- file access


@dataclass
class _Var:
    """One array of a file, indexed in its documented axis order.

    ``data`` is a numpy array, an h5py dataset or a :class:`_V5Array`; ``reverse`` marks a
    MATLAB v7.3 array, whose HDF5 axes are the reverse of MATLAB's.
    """

    name: str
    data: Any
    path: Path
    reverse: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(int(n) for n in self.data.shape)
        return shape[::-1] if self.reverse else shape

    def take(self, *index: slice | int) -> np.ndarray:
        """The elements at ``index`` (documented axis order) as a numpy array."""
        full = tuple(index) + (slice(None),) * (len(self.shape) - len(index))
        try:
            out = np.asarray(self.data[full[::-1] if self.reverse else full])
        except NeurosolveError:
            raise
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise FileFormatError(
                f"{self.path}: {self.name!r} is unreadable (truncated or corrupted): {exc}"
            ) from exc
        return out.T if self.reverse else out


class _V5Array:
    """A variable of a MATLAB v5 file: its shape from the listing, data loaded on first use."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], mat_class: str):
        self.path, self.name, self.shape, self.mat_class = path, name, shape, mat_class
        self._array: np.ndarray | None = None

    def __getitem__(self, index: Any) -> np.ndarray:
        if self._array is None:
            import scipy.io

            itemsize = np.dtype(_MAT_DTYPES.get(self.mat_class, "f8")).itemsize
            check_memory(
                float(np.prod(self.shape, dtype=np.float64)) * itemsize,
                f"reading {self.name!r} of {self.path.name} (a MATLAB v5 file is read whole)",
            )
            try:
                array = scipy.io.loadmat(self.path, variable_names=[self.name])[self.name]
            except (ValueError, OSError, TypeError, KeyError, EOFError) as exc:
                raise FileFormatError(
                    f"{self.path}: {self.name!r} is unreadable (truncated or corrupted MATLAB "
                    f"v5 file): {exc}"
                ) from exc
            if np.iscomplexobj(array):
                raise LayoutError(f"{self.path}: {self.name!r} is complex; a real array is needed")
            self._array = array
        return self._array[index]


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a data file")
    return path


def detect_format(path: str | os.PathLike) -> tuple[str, str]:
    """What a file is, from its header: ``(format, container)``.

    Returns ``("fno-mat", "v5")`` for a MATLAB v5/v7 file, ``("fno-mat", "v7.3")`` for an
    HDF5 file with MATLAB's 512-byte header, and ``("hdf5", "hdf5")`` for any other HDF5
    file (PDEBench, or FNO keys without MATLAB's header: :func:`describe` tells them apart
    by their keys).

    Raises
    ------
    LayoutError
        A file that is neither a MATLAB ``.mat`` file (v5 or v7.3) nor HDF5.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "darcy.mat"
    >>> scipy.io.savemat(path, {"coeff": np.ones((2, 4, 4)), "sol": np.zeros((2, 4, 4))})
    >>> detect_format(path)
    ('fno-mat', 'v5')
    """
    path = _existing(path)
    with open(path, "rb") as fh:
        head = fh.read(128)
    matlab = len(head) == 128 and head.startswith(b"MATLAB")
    try:
        hdf5 = head.startswith(_HDF5_SIGNATURE) or bool(h5py.is_hdf5(str(path)))
    except OSError:
        hdf5 = False
    if hdf5:
        return ("fno-mat", "v7.3") if matlab else ("hdf5", "hdf5")
    if matlab:
        mark = head[126:128]
        major = head[125] if mark == b"IM" else head[124] if mark == b"MI" else -1
        if major == 1:
            return "fno-mat", "v5"
        raise LayoutError(
            f"{path}: MATLAB file of an unsupported version (header bytes 124..127 "
            f"{head[124:128]!r}); save it with -v7 or -v7.3"
        )
    raise LayoutError(
        f"{path}: neither a MATLAB .mat file (v5 or v7.3) nor an HDF5 file (PDEBench); "
        f"it starts with {head[:16]!r}"
    )


def _check_v5_length(path: Path) -> None:
    """Refuse a truncated v5 file: its data elements must end where the file ends.

    After the 128-byte header a v5 file is a sequence of elements, each an 8-byte tag (data
    type, byte count) and its bytes; matrices (type 14) are padded to 8 bytes. scipy's
    listing stops quietly at a cut, which would otherwise read as a missing key.
    """
    size, pos = path.stat().st_size, 128
    with open(path, "rb") as fh:
        order = "<" if fh.read(128)[126:128] == b"IM" else ">"
        while pos + 8 <= size:
            fh.seek(pos)
            tag = fh.read(8)
            kind, nbytes = struct.unpack(order + "II", tag)
            end = pos + 8 + nbytes + ((-nbytes) % 8 if kind == 14 else 0)
            if pos + 8 + nbytes > size:
                raise FileFormatError(
                    f"{path}: truncated MATLAB v5 file (an element at byte {pos} declares "
                    f"{nbytes} bytes, the file ends at byte {size})"
                )
            pos = end
    if pos < size:
        raise FileFormatError(f"{path}: truncated MATLAB v5 file (it ends inside a tag)")


def _mat_vars(path: Path, container: str, f: h5py.File | None) -> dict[str, _Var]:
    """The numeric variables of a MATLAB file (v5 listing or v7.3 HDF5 root)."""
    out: dict[str, _Var] = {}
    if container == "v5":
        import scipy.io

        _check_v5_length(path)
        try:
            listing = scipy.io.whosmat(path)
        except (ValueError, OSError, TypeError, NotImplementedError) as exc:
            raise FileFormatError(f"{path}: unreadable MATLAB v5 file: {exc}") from exc
        for name, shape, mat_class in listing:
            if mat_class in _MAT_DTYPES:
                out[name] = _Var(name, _V5Array(path, name, tuple(shape), mat_class), path)
        return out
    assert f is not None
    for name in f:
        node = f[name]
        kind = node.attrs.get("MATLAB_class", b"double") if isinstance(node, h5py.Dataset) else b""
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if isinstance(node, h5py.Dataset) and node.dtype.kind in "fiub" and kind in _MAT_DTYPES:
            out[name] = _Var(name, node, path, reverse=True)
    return out


# ------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class _Options:
    kind: str | None = None
    t_in: int | None = None
    t_out: int | None = None
    subsample: int = 1
    time_stride: int = 1
    fields: tuple[str, ...] | None = None
    initial: bool = False
    limit: int | None = None


def _options(**kw: Any) -> _Options:
    kind = kw.get("kind")
    if kind is not None and kind not in FNO_KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(FNO_KINDS)}, got {kind!r}")
    for name in ("t_in", "t_out", "limit"):
        if kw.get(name) is not None:
            kw[name] = integer(kw[name], name)
    for name in ("subsample", "time_stride"):
        kw[name] = integer(kw.get(name, 1), name)
    if kw.get("fields") is not None:
        kw["fields"] = tuple(str(s) for s in kw["fields"])
    kw["initial"] = bool(kw.get("initial", False))
    return _Options(**kw)


@dataclass
class _Plan:
    """How to read one file: sample count and shapes, a block reader, header parameters."""

    layout: str
    samples: int
    x_shape: tuple[int, ...]
    y_shape: tuple[int, ...]
    read: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    sources: tuple[str, str]
    params: dict[str, Any] = field(default_factory=dict)


def _require(found: dict[str, Any], names: Sequence[str], what: str, path: Path) -> list[Any]:
    missing = [n for n in names if n not in found]
    if missing:
        keys = ", ".join(map(repr, sorted(found))) or "none"
        raise LayoutError(
            f"{path}: not {what}: key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} missing (keys found: {keys})"
        )
    return [found[n] for n in names]


def _shape_error(path: Path, var: _Var, expected: str, extra: str = "") -> LayoutError:
    note = " (MATLAB v7.3: after reversing the HDF5 axes)" if var.reverse else ""
    return LayoutError(
        f"{path}: {var.name!r} has shape {var.shape}{note}, expected {expected}{extra}"
    )


def _square(path: Path, var: _Var, ndim: int, expected: str) -> tuple[int, int]:
    """``(N, s)`` of an array ``(N, s, s, ...)`` of ``ndim`` axes, or a clear error."""
    shape = var.shape
    if len(shape) != ndim:
        raise _shape_error(path, var, expected)
    if shape[1] != shape[2]:
        raise _shape_error(path, var, expected, f": the grid {shape[1]} x {shape[2]} is not square")
    return shape[0], shape[1]


def _time_window(path: Path, frames: int, opts: _Options) -> tuple[int, int, int]:
    """``(t_in, t_out, stop)``: frames ``range(0, stop, time_stride)`` are read."""
    available = len(range(0, frames, opts.time_stride))
    t_in = 10 if opts.t_in is None else opts.t_in
    t_out = available - t_in if opts.t_out is None else opts.t_out
    kept = f"{frames} frames ({available} kept with time_stride {opts.time_stride})"
    if opts.t_out is None and t_out < 1:
        raise InvalidInputError(
            f"{path}: {kept} leave no target frame after t_in={t_in}; lower --t-in"
        )
    if t_in + t_out > available:
        raise InvalidInputError(
            f"{path}: {kept} do not hold t_in={t_in} input and t_out={t_out} target "
            "frames; lower --t-in/--t-out"
        )
    return t_in, t_out, (t_in + t_out - 1) * opts.time_stride + 1


def _split(
    frames: np.ndarray, t_in: int, t_out: int, static: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(b, t, *spatial, C)`` -> ``x (b, t_in*C [+ Cs], *spatial)``, ``y``."""

    def channels(window: np.ndarray) -> np.ndarray:
        window = np.moveaxis(window, -1, 2)  # (b, t, C, *spatial): time-major channels
        return window.reshape(window.shape[0], -1, *window.shape[3:])

    x, y = channels(frames[:, :t_in]), channels(frames[:, t_in : t_in + t_out])
    if static is not None:
        x = np.concatenate([x, np.moveaxis(static, -1, 1)], axis=1)
    return x, y


def _series_plan(
    layout: str,
    count: int,
    spatial: tuple[int, ...],
    components: int,
    window: tuple[int, int, int],
    frames: Callable[[int, int], np.ndarray],
    static: tuple[int, Callable[[int, int], np.ndarray]] | None = None,
) -> _Plan:
    """A plan for time series whose ``frames(a, b)`` gives ``(b - a, t, *spatial, C)``."""
    t_in, t_out, _ = window
    extra = 0 if static is None else static[0]

    def read(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return _split(frames(a, b), t_in, t_out, None if static is None else static[1](a, b))

    return _Plan(
        layout,
        count,
        (t_in * components + extra, *spatial),
        (t_out * components, *spatial),
        read,
        ("", ""),
        {"t_in": t_in, "t_out": t_out},
    )


def _strided(n: int, k: int) -> int:
    return len(range(0, n, k))


def _fno_plan(path: Path, found: dict[str, _Var], opts: _Options) -> _Plan:
    kind = opts.kind or ("darcy" if "coeff" in found else "navier-stokes")
    k = slice(None, None, opts.subsample)
    if kind == "darcy":
        coeff, sol = _require(found, ("coeff", "sol"), "an FNO Darcy file", path)
        n, s = _square(path, coeff, 3, "(N, s, s)")
        if sol.shape != coeff.shape:
            raise _shape_error(path, sol, f"{coeff.shape}, the shape of 'coeff'")
        ss = _strided(s, opts.subsample)

        def read(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            return coeff.take(slice(a, b), k, k)[:, None], sol.take(slice(a, b), k, k)[:, None]

        return _Plan("darcy", n, (1, ss, ss), (1, ss, ss), read, ("coeff", "sol"))
    (u,) = _require(found, ("u",), "an FNO Navier-Stokes file (or pass kind='darcy')", path)
    n, s = _square(path, u, 4, "(N, s, s, T)")
    frames_u = u.shape[3]
    a_var = found.get("a")
    if opts.initial or a_var is not None:
        if a_var is None:
            _require(found, ("a",), "an FNO Navier-Stokes file with the initial state", path)
        elif a_var.shape != (n, s, s):
            raise _shape_error(path, a_var, f"{(n, s, s)}, the initial state of 'u'")
    t = found.get("t")
    if t is not None and int(np.prod(t.shape)) != frames_u:
        raise _shape_error(path, t, f"{frames_u} times, one per frame of 'u'")
    window = _time_window(path, frames_u + int(opts.initial), opts)
    stop = window[2]

    def frames(a: int, b: int) -> np.ndarray:
        block = np.moveaxis(u.take(slice(a, b), k, k, slice(0, stop)), -1, 1)
        if opts.initial:
            block = np.concatenate([a_var.take(slice(a, b), k, k)[:, None], block], axis=1)
        return block[:, : stop : opts.time_stride, ..., None]

    ss = _strided(s, opts.subsample)
    plan = _series_plan("navier-stokes", n, (ss, ss), 1, window, frames)
    plan.sources = ("a', 'u" if opts.initial else "u", "u")
    plan.params.update(initial=opts.initial, time_stride=opts.time_stride)
    return plan


def _check_coords(path: Path, f: h5py.Group, names: Sequence[str], spatial: tuple) -> None:
    for name, size in zip(names, spatial, strict=False):
        if name in f and int(np.prod(f[name].shape)) != size:
            raise LayoutError(
                f"{path}: {name!r} has {int(np.prod(f[name].shape))} points but the data "
                f"have {size} along that axis"
            )


def _pdebench_darcy(path: Path, f: h5py.File, found: dict[str, _Var], opts: _Options) -> _Plan:
    nu, tensor = _require(found, ("nu", "tensor"), "a PDEBench Darcy file", path)
    n, s = _square(path, nu, 3, "(N, s, s)")
    if tensor.shape != (n, 1, s, s):
        raise _shape_error(path, tensor, f"{(n, 1, s, s)} to match 'nu'")
    _check_coords(path, f, _COORDS[:2], (s, s))
    k = slice(None, None, opts.subsample)
    ss = _strided(s, opts.subsample)

    def read(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return nu.take(slice(a, b), k, k)[:, None], tensor.take(slice(a, b), slice(None), k, k)

    return _Plan("darcy", n, (1, ss, ss), (1, ss, ss), read, ("nu", "tensor"))


def _pdebench_fields(path: Path, f: h5py.File, found: dict[str, _Var], opts: _Options) -> _Plan:
    """Single-file time series: ``tensor``, the CFD fields, or incompressible NS."""
    if "velocity" in found:
        layout, default = "ns-incompressible", ["velocity"] + (["force"] * ("force" in found))
        allowed = ("velocity", "particles", "force")
    elif "tensor" in found:
        layout, default, allowed = "scalar", ["tensor"], ("tensor",)
    else:
        layout, allowed = "cfd", _CFD_FIELDS
        default = [n for n in _CFD_FIELDS if n in found]
    names = list(opts.fields) if opts.fields is not None else default
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise InvalidInputError(
            f"fields for a PDEBench {layout} file are {', '.join(allowed)}; got {names}"
        )
    vars_ = _require(found, names, f"a PDEBench {layout} file", path)
    static = [v for v in vars_ if v.name == "force"]
    series = [v for v in vars_ if v.name != "force"]
    if not series:
        raise InvalidInputError("fields need at least one time-dependent field")
    vector = layout == "ns-incompressible"  # fields carry a trailing component axis
    ref = series[0]
    if len(ref.shape) < 3 + vector:
        raise _shape_error(path, ref, "(N, T, *spatial" + (", C)" if vector else ")"))
    n, frames_t = ref.shape[:2]
    spatial = ref.shape[2 : len(ref.shape) - vector]
    for v in series[1:]:
        if v.shape[: len(ref.shape) - vector] != ref.shape[: len(ref.shape) - vector]:
            raise _shape_error(
                path, v, f"{ref.shape[:-1] if vector else ref.shape} like {ref.name!r}"
            )
    for v in static:
        if v.shape[:-1] != (n, *spatial):
            raise _shape_error(path, v, f"{(n, *spatial)} + (components,)")
    _check_coords(path, f, _COORDS[: len(spatial)], spatial)
    window = _time_window(path, frames_t, opts)
    k = (slice(None, None, opts.subsample),) * len(spatial)
    tsl = slice(0, window[2], opts.time_stride)

    def frames(a: int, b: int) -> np.ndarray:
        parts = [v.take(slice(a, b), tsl, *k) for v in series]
        return np.concatenate(parts, -1) if vector else np.stack(parts, -1)

    comps = sum(v.shape[-1] for v in series) if vector else len(series)
    stat = None
    if static:
        stat = (static[0].shape[-1], lambda a, b: static[0].take(slice(a, b), *k))
    sub = tuple(_strided(m, opts.subsample) for m in spatial)
    plan = _series_plan(layout, n, sub, comps, window, frames, stat)
    plan.sources = (", ".join(names), ", ".join(v.name for v in series))
    plan.params.update(fields=names, time_stride=opts.time_stride)
    return plan


def _pdebench_groups(path: Path, f: h5py.File, opts: _Options) -> _Plan:
    """Per-sample groups ``"0000", ...`` holding ``data (T, *spatial, C)`` and ``grid/*``."""
    if opts.fields is not None:
        raise InvalidInputError("fields do not apply to PDEBench files of per-sample groups")
    names = sorted(k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k])
    first = _Var(f"{names[0]}/data", f[names[0]]["data"], path)
    shape = first.shape
    if len(shape) < 3:
        raise _shape_error(path, first, "(T, *spatial, C)")
    spatial = shape[1:-1]
    grid = f[names[0]].get("grid")
    if isinstance(grid, h5py.Group):
        _check_coords(path, grid, ("x", "y", "z")[: len(spatial)], spatial)
    window = _time_window(path, shape[0], opts)
    k = (slice(None, None, opts.subsample),) * len(spatial)
    tsl = slice(0, window[2], opts.time_stride)

    def frames(a: int, b: int) -> np.ndarray:
        block = []
        for name in names[a:b]:
            var = _Var(f"{name}/data", f[name]["data"], path)
            if var.shape != shape:
                raise _shape_error(path, var, f"{shape} like {first.name!r}")
            block.append(var.take(tsl, *k))
        return np.stack(block)

    sub = tuple(_strided(m, opts.subsample) for m in spatial)
    plan = _series_plan("groups", len(names), sub, shape[-1], window, frames)
    plan.sources = ("data", "data")
    plan.params["time_stride"] = opts.time_stride
    return plan


def _pdebench_plan(path: Path, f: h5py.File, opts: _Options) -> _Plan:
    found = {k: _Var(k, f[k], path) for k in f if isinstance(f[k], h5py.Dataset)}
    groups = [k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k]]
    tensor = found.get("tensor")
    if "nu" in found or (tensor is not None and len(tensor.shape) == 4 and tensor.shape[1] == 1):
        return _pdebench_darcy(path, f, found, opts)
    if any(n in found for n in ("tensor", "velocity", *_CFD_FIELDS)):
        return _pdebench_fields(path, f, found, opts)
    if groups:
        return _pdebench_groups(path, f, opts)
    keys = ", ".join(map(repr, sorted(f))) or "none"
    raise LayoutError(
        f"{path}: not a PDEBench file: none of 'nu'+'tensor', 'tensor', 'velocity', "
        f"'density' or per-sample groups with 'data' (keys found: {keys})"
    )


def _is_fno(found: dict[str, Any]) -> bool:
    return ("coeff" in found and "sol" in found) or "u" in found


@contextlib.contextmanager
def open_plan(path: str | os.PathLike, fmt: str | None, opts: _Options) -> Iterator[tuple]:
    """Open ``path`` and yield ``(format, container, plan)``; the file closes afterwards.

    Examples
    --------
    >>> import tempfile, pathlib, scipy.io, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "darcy.mat"
    >>> scipy.io.savemat(path, {"coeff": np.ones((3, 4, 4)), "sol": np.ones((3, 4, 4))})
    >>> with open_plan(path, None, _options(limit=2)) as (fmt, container, plan):
    ...     x, y = plan.read(0, plan.samples)
    >>> fmt, container, plan.layout, x.shape
    ('fno-mat', 'v5', 'darcy', (2, 1, 4, 4))
    """
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = _existing(path)
    detected, container = detect_format(path)
    if detected == "fno-mat" and fmt == "pdebench":
        raise LayoutError(f"{path}: a MATLAB {container} file, not PDEBench; use fno-mat")
    with contextlib.ExitStack() as stack:
        f = None
        if container != "v5":
            try:
                f = stack.enter_context(h5py.File(path, "r"))
            except OSError as exc:
                raise FileFormatError(f"{path}: unreadable HDF5 file: {exc}") from exc
        if detected == "hdf5":
            found = {k: 0 for k in f}
            detected = fmt or (
                "fno-mat" if _is_fno(found) and "tensor" not in found else "pdebench"
            )
        if detected == "pdebench":
            if opts.kind is not None or opts.initial:
                raise InvalidInputError("kind and initial apply to FNO .mat files only")
            plan = _pdebench_plan(path, f, opts)
        else:
            found = _mat_vars(path, container, f)
            if opts.fields is not None:
                raise InvalidInputError("fields apply to PDEBench files only")
            if not set(found) & {"coeff", "sol", "a", "u"} and opts.kind is None:
                keys = ", ".join(map(repr, sorted(found))) or "none"
                raise LayoutError(
                    f"{path}: not an FNO .mat file: neither 'coeff'+'sol' (Darcy) nor 'u' "
                    f"(Navier-Stokes) found (numeric keys found: {keys})"
                )
            plan = _fno_plan(path, found, opts)
            plan.params["matlab"] = container
        plan.params.update(subsample=opts.subsample, samples_in_file=plan.samples)
        if opts.limit is not None:
            plan.samples = min(plan.samples, opts.limit)
        yield detected, container, plan
