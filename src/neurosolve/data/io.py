"""Reading and writing linear systems: Matrix Market and ``.npz``, with validation.

:func:`load_system` reads a matrix (and a right-hand side next to it, the SuiteSparse
convention) from ``.mtx`` or ``.npz`` and checks it with :func:`check_spd_matrix`, the
package's one test of "looks like an SPD system matrix"; its first step,
:func:`check_csr_structure`, validates the sparse structure (shape, ``indptr``, column
indices) before any arithmetic touches it, since scipy's kernels trust those arrays and
read out of bounds on a damaged file. Before a file is parsed, the sizes its header declares
are compared with the file's own size and with the memory the load would take
(:func:`neurosolve._util.limits.check_memory`). :func:`save_system` writes the
same formats atomically (through :func:`neurosolve._util.io.atomic_write_many`), keeping
grid information in ``.npz`` files so a saved system loads back with its grid.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
import scipy.sparse as sp

from neurosolve._util.io import atomic_write_many
from neurosolve._util.limits import check_memory, format_bytes
from neurosolve.data.grids import Grid, check_shape
from neurosolve.data.systems import LinearSystem, _check_vector
from neurosolve.errors import FileFormatError, InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "check_csr_structure",
    "check_entry_statistics",
    "check_spd_matrix",
    "load_system",
    "save_system",
]

#: Formats whose raw ``indptr``/``indices`` arrays are checked before scipy touches them.
_COMPRESSED = ("csr", "csc", "bsr")


def _check_index_array(a, name: str, label: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{name}: {label} must be a 1-D integer array, got {a.ndim}-D {a.dtype}"
        )
    return a


def _check_shape(shape, name: str) -> tuple[int, int]:
    try:
        rows, cols = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: shape must be two integers, got {shape!r}") from None
    if rows < 0 or cols < 0:
        raise InvalidInputError(f"{name}: negative shape {(rows, cols)}")
    return rows, cols


def _check_compressed(
    indptr, indices, data, shape: tuple[int, int], name: str, minor_name: str = "column"
) -> None:
    """The CSR (or CSC) invariants scipy's kernels rely on, checked with numpy only.

    ``shape`` is (major, minor): (rows, columns) for CSR, (columns, rows) for CSC, whose
    ``indices`` are row indices (``minor_name="row"``).
    """
    indptr = _check_index_array(indptr, name, "indptr")
    indices = _check_index_array(indices, name, f"{minor_name} indices")
    data = np.asarray(data)
    major, minor = shape
    if indptr.size != major + 1:
        raise InvalidInputError(
            f"{name}: indptr has {indptr.size} entries, the shape {shape} needs {major + 1}"
        )
    if data.ndim != 1 or data.size != indices.size:
        raise InvalidInputError(
            f"{name}: {data.size} values for {indices.size} {minor_name} indices (data shape "
            f"{data.shape})"
        )
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.size:
        raise InvalidInputError(
            f"{name}: indptr must start at 0 and end at the number of entries {indices.size}, "
            f"got {int(indptr[0])} ... {int(indptr[-1])}"
        )
    steps = np.diff(indptr.astype(np.int64))
    if steps.size and steps.min() < 0:
        row = int(np.flatnonzero(steps < 0)[0])
        raise InvalidInputError(f"{name}: indptr is not monotone (it decreases at row {row})")
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= minor:
            bad = lo if lo < 0 else hi
            raise InvalidInputError(
                f"{name}: {minor_name} index {bad} is outside 0..{minor - 1} (shape {shape})"
            )


def check_csr_structure(A, name: str = "matrix") -> sp.csr_matrix:
    """Validate a sparse matrix's structure and return it as canonical CSR.

    Checks, before any arithmetic: a 2-D shape of non-negative sizes, a real or integer
    dtype, and for compressed formats (CSR, CSC, BSR) the raw arrays: ``indptr`` of length
    ``rows + 1``, starting at 0, ending at the number of entries and never decreasing,
    and every column index in ``[0, ncols)`` (COO: every row and column index in range).
    scipy's kernels trust these arrays; a damaged one makes them read or write out of
    bounds. The result has sorted indices and no duplicates (duplicates are summed); the
    caller's arrays are never modified in place.

    Parameters
    ----------
    A : scipy.sparse matrix or array
        The matrix.
    name : str
        How messages name it (``"matrix in A.npz"``).

    Returns
    -------
    scipy.sparse.csr_matrix
        The same values, canonical CSR, the input's dtype.

    Raises
    ------
    InvalidInputError
        Naming the first broken invariant.

    Examples
    --------
    >>> good = sp.csr_matrix((np.ones(2), np.array([0, 1]), np.array([0, 1, 2])), shape=(2, 2))
    >>> check_csr_structure(good).nnz
    2
    >>> bad = sp.csr_matrix((2, 2))
    >>> bad.indices, bad.indptr, bad.data = np.array([0, 10**9]), np.array([0, 1, 2]), np.ones(2)
    >>> check_csr_structure(bad)
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: matrix: column index 1000000000 is outside 0..1 ...
    """
    if not sp.issparse(A):
        raise InvalidInputError(f"{name} is not a scipy sparse matrix")
    if len(A.shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {A.shape}")
    shape = _check_shape(A.shape, name)
    if np.dtype(A.dtype).kind not in "biuf":
        raise InvalidInputError(f"{name} must be real, got dtype {A.dtype}")
    fmt = A.format
    if fmt in _COMPRESSED:
        blocks = (1, 1) if fmt != "bsr" else A.blocksize
        if fmt == "bsr" and (shape[0] % blocks[0] or shape[1] % blocks[1]):
            raise InvalidInputError(f"{name}: shape {shape} is not a multiple of {blocks}")
        major = (shape[0] // blocks[0], shape[1] // blocks[1])
        if fmt == "csc":
            major = (shape[1], shape[0])
        data = A.data if fmt != "bsr" else np.zeros(np.asarray(A.indices).size)
        _check_compressed(
            A.indptr, A.indices, data, major, name, "row" if fmt == "csc" else "column"
        )
    elif fmt == "coo":
        coords = getattr(A, "coords", None) or (A.row, A.col)
        for axis, idx in enumerate(coords):
            idx = _check_index_array(idx, name, ("row", "column")[axis] + " indices")
            if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= shape[axis]):
                raise InvalidInputError(
                    f"{name}: {('row', 'column')[axis]} index outside 0..{shape[axis] - 1}"
                )
    M = A if fmt == "csr" and isinstance(A, sp.csr_matrix) else sp.csr_matrix(A)
    if not M.has_canonical_format:
        M = M.copy()  # never reorder the caller's arrays in place
        M.sum_duplicates()  # also sorts the indices
    return M


def entry_statistics(M: sp.csr_matrix) -> tuple[bool, float, float, int, int, float]:
    """What :func:`check_spd_matrix` checks of a canonical float64 CSR matrix's entries.

    Returns ``(finite, max|A|, max|A - A^T|, count of diagonal entries <= 0, the first such
    row, its value)`` (``-1`` and ``0.0`` when there is none; a missing diagonal entry is a
    zero). With a NaN or Inf entry only ``finite`` (False) is meaningful.

    Examples
    --------
    >>> entry_statistics(sp.csr_matrix(np.array([[2.0, -1.0], [-0.5, 0.0]])))
    (True, 2.0, 0.5, 1, 1, 0.0)
    """
    if not np.isfinite(M.data).all():
        return False, float("nan"), float("nan"), 0, -1, 0.0
    scale = float(np.abs(M.data).max()) if M.nnz else 0.0
    asym = abs(M - M.T)
    err = float(asym.max()) if asym.nnz else 0.0
    diag = M.diagonal()
    bad = np.flatnonzero(diag <= 0)
    first = int(bad[0]) if bad.size else -1
    return True, scale, err, int(bad.size), first, float(diag[first]) if bad.size else 0.0


def check_spd_matrix(
    A,
    *,
    name: str = "matrix",
    symmetry_tol: float = 1e-10,
    statistics: Callable[[sp.csr_matrix], tuple | None] | None = None,
) -> sp.csr_matrix:
    """Validate a matrix as a candidate SPD system matrix and return float64 CSR.

    Checks: the sparse structure first (:func:`check_csr_structure`, before any
    arithmetic), then 2-D, square, non-empty, real, finite, symmetric within ``symmetry_tol``
    (``max|A - A^T| <= symmetry_tol * max|A|``) and a strictly positive diagonal. These
    are necessary conditions; definiteness itself is not tested here (that would cost a
    factorization) -- CG reports a breakdown on an indefinite matrix.

    ``statistics`` computes :func:`entry_statistics` of the canonical float64 CSR form in a
    faster way (the solvers pass their native one-pass kernel); when it is ``None`` or
    returns ``None``, numpy and scipy compute them.

    Raises
    ------
    InvalidInputError
        Naming the first failed check.

    Examples
    --------
    >>> check_spd_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]])).nnz
    4
    >>> check_spd_matrix(np.array([[2.0, 1.0], [0.0, 2.0]]))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: matrix is not symmetric: ...
    """
    if sp.issparse(A):
        M = check_csr_structure(A, name)
    else:
        arr = np.asarray(A)
        if arr.dtype == object:
            raise InvalidInputError(f"{name} is not a numeric array or scipy sparse matrix")
        if arr.ndim != 2:
            raise InvalidInputError(f"{name} must be 2-D, got {arr.ndim}-D array")
        M = arr
    if len(M.shape) != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {M.shape}")
    if M.shape[0] != M.shape[1]:
        raise InvalidInputError(f"{name} is not square: shape {M.shape}")
    if M.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {M.shape})")
    if np.dtype(M.dtype).kind not in "biuf":
        raise InvalidInputError(f"{name} must be real, got dtype {M.dtype}")
    M = sp.csr_matrix(M, dtype=np.float64)  # shares the caller's arrays when it can
    if not M.has_canonical_format:  # a dense input: its CSR is new, sort it in place
        M.sum_duplicates()
    stats = statistics(M) if statistics is not None else None
    check_entry_statistics(stats if stats is not None else entry_statistics(M), name, symmetry_tol)
    return M


def check_entry_statistics(
    stats: tuple[bool, float, float, int, int, float], name: str, symmetry_tol: float = 1e-10
) -> None:
    """Raise :func:`check_spd_matrix`'s error for the :func:`entry_statistics` ``stats``.

    Finite first, then symmetric within ``symmetry_tol`` (relative to ``max |A|``), then a
    positive diagonal; nothing happens when all three hold.

    Examples
    --------
    >>> check_entry_statistics((True, 2.0, 0.0, 0, -1, 0.0), "A")
    >>> check_entry_statistics((True, 2.0, 0.0, 1, 3, -1.0), "A")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: A has a non-positive diagonal (1 entry, first at row 3: ...
    """
    finite, scale, err, bad, first, value = stats
    if not finite:
        raise InvalidInputError(f"{name} contains NaN or Inf entries")
    if err > symmetry_tol * scale:
        raise InvalidInputError(
            f"{name} is not symmetric: max |A - A^T| = {err:.3g} > {symmetry_tol:g} * "
            f"max |A| = {symmetry_tol * scale:.3g}"
        )
    if bad:
        raise InvalidInputError(
            f"{name} has a non-positive diagonal ({bad} entr{'y' if bad == 1 else 'ies'}"
            f", first at row {first}: {value:.3g}); it cannot be positive definite"
        )


def _rhs_path(path: Path) -> Path:
    """SuiteSparse convention: the right-hand side of ``name.mtx`` is ``name_b.mtx``."""
    return path.with_name(path.stem + "_b.mtx")


def load_system(
    path: str | os.PathLike,
    *,
    grid: Grid | tuple[int, ...] | None = None,
    flags: np.ndarray | None = None,
) -> LinearSystem:
    """Load and validate a system from Matrix Market (``.mtx``) or ``.npz``.

    ``.mtx``: the matrix (general or symmetric storage); a right-hand side is read from
    ``<stem>_b.mtx`` next to it if present (the SuiteSparse convention). ``.npz``: either
    the layout written by :func:`save_system` (matrix, optional ``b``, grid shape, spacing,
    boundary and flags) or a plain ``scipy.sparse.save_npz`` file.

    Parameters
    ----------
    path : str or Path
        File to read.
    grid : Grid or tuple of int, optional
        Grid of the unknowns, or just its shape (overrides grid information in the file).
    flags : numpy.ndarray, optional
        Cell flags; with ``grid`` a shape or ``None``, builds a Dirichlet-boundary
        :class:`Grid` with these flags.

    Raises
    ------
    FileFormatError
        Missing, unreadable or malformed file, unknown extension.
    InvalidInputError
        The matrix fails :func:`check_spd_matrix`, or ``b`` / the grid does not match it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> from neurosolve.data.systems import poisson
    >>> s = poisson((3, 3))
    >>> p = save_system(d / "p.mtx", s, b=np.ones(9))
    >>> t = load_system(p)
    >>> t.n, float(abs(t.A - s.A).max()), t.b[:2]
    (9, 0.0, array([1., 1.]))
    """
    path = Path(path)
    _check_readable(path, "system file")
    suffix = path.suffix.lower()
    b = None
    meta: dict = {}
    if suffix == ".mtx":
        A = _read_mtx(path, "matrix")
        rhs = _rhs_path(path)
        if rhs.exists():
            _check_readable(rhs, "right-hand side file")
            bm = _read_mtx(rhs, "right-hand side")
            b = np.asarray(bm.toarray() if sp.issparse(bm) else bm).ravel()
    elif suffix == ".npz":
        A, b, meta = _read_npz(path)
    else:
        raise FileFormatError(
            f"{path}: unknown system file extension {path.suffix!r} (use .mtx or .npz)"
        )
    A = check_spd_matrix(A, name=f"matrix in {path.name}")
    if grid is not None and not isinstance(grid, Grid):
        grid = Grid(check_shape(grid), flags=flags)
    if grid is None and flags is not None:
        grid = Grid(np.asarray(flags).shape, flags=flags)
    if grid is None and "grid_shape" in meta:
        try:
            grid = Grid(
                tuple(int(s) for s in meta["grid_shape"]),
                spacing=meta.get("spacing"),
                flags=meta.get("flags"),
                boundary=str(meta.get("boundary", "dirichlet")),
            )
        except InvalidInputError as exc:
            raise FileFormatError(f"{path}: invalid grid information: {exc}") from exc
    if grid is not None and grid.num_unknowns != A.shape[0]:
        fix = ""  # a matrix without its solid cells needs the flags saying which they are
        if flags is None and A.shape[0] < grid.num_unknowns:
            fix = "; if the matrix leaves out solid cells, pass flags= (the cell flags) too"
        raise InvalidInputError(
            f"{path.name}: matrix has {A.shape[0]} rows but the grid has "
            f"{grid.num_unknowns} fluid cells{fix}"
        )
    if b is not None:
        b = _check_vector(b, A.shape[0], f"right-hand side in {path.name}")
    coef = meta.get("coefficient")
    return LinearSystem(
        A=A,
        grid=grid,
        b=b,
        name=str(meta.get("name", path.stem)),
        coefficient=None if coef is None else np.asarray(coef, dtype=np.float64),
    )


def _check_readable(path: Path, what: str) -> None:
    """One clear reason for a path that cannot be read: missing, a folder, no permission."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileFormatError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise FileFormatError(f"{what} {path}: {exc.strerror.lower()}") from None
    if stat.S_ISDIR(mode):
        raise FileFormatError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise FileFormatError(f"{what} {path} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise FileFormatError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise FileFormatError(f"{what} {path}: {exc.strerror.lower()}") from None


#: Fewest bytes one entry line takes: "1 1\n" (pattern) / "1\n" (dense array).
_MIN_COORDINATE_BYTES = 4
_MIN_ARRAY_BYTES = 2


def _mtx_header(path: Path, what: str) -> tuple[str, str, tuple[int, ...]]:
    """Banner fields (format, symmetry) and the size line of a Matrix Market file."""
    try:
        with open(path, "rb") as fh:
            banner = fh.readline(1024).decode("ascii", "replace").split()
            line = b"%"
            for _ in range(100_000):  # comment lines before the size line
                line = fh.readline(1024)
                if not line or not line.lstrip().startswith(b"%"):
                    break
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if len(banner) != 5 or banner[0].lower() != "%%matrixmarket":
        raise FileFormatError(
            f"{path}: cannot read the {what} as Matrix Market: Line 1: Not a Matrix Market "
            "file. Missing banner."
        )
    try:
        sizes = tuple(int(v) for v in line.split())
    except ValueError:
        sizes = ()
    fmt = banner[2].lower()
    if len(sizes) != (3 if fmt == "coordinate" else 2) or min(sizes) < 0:
        raise FileFormatError(
            f"{path}: cannot read the {what} as Matrix Market: malformed size line "
            f"{line.decode('ascii', 'replace').strip()!r}"
        )
    return fmt, banner[4].lower(), sizes


def _check_mtx_sizes(path: Path, what: str) -> str:
    """Refuse a header whose sizes the file cannot hold or the memory cannot take."""
    fmt, symmetry, sizes = _mtx_header(path, what)
    rows, cols = sizes[:2]
    entries = sizes[2] if fmt == "coordinate" else rows * cols
    if symmetry != "general" and rows != cols:
        raise FileFormatError(f"{path}: a {symmetry} Matrix Market matrix must be square")
    per_entry = _MIN_COORDINATE_BYTES if fmt == "coordinate" else _MIN_ARRAY_BYTES
    size = path.stat().st_size
    if entries * per_entry > size:
        raise FileFormatError(
            f"{path}: cannot read the {what} as Matrix Market: the header declares "
            f"{rows} x {cols} with {entries} entries, but the "
            f"file has only {size} bytes (an entry takes at least {per_entry}); truncated "
            "or damaged"
        )
    if what == "matrix" and fmt == "coordinate" and entries < rows:
        raise InvalidInputError(
            f"{path}: declares {rows} rows but only {entries} entries; a matrix with a "
            "positive diagonal needs at least one entry per row"
        )
    # coordinates and values as int64/float64 (twice for mirrored symmetric entries), the
    # CSR copy, and the row pointer of each
    factor = 2 if symmetry != "general" else 1
    estimate = 8.0 * (rows + 1) * 2 + 24.0 * entries * factor * 2
    check_memory(estimate, f"reading {path.name} ({rows} x {cols}, {entries} entries)")
    return symmetry


def _read_mtx(path: Path, what: str):
    symmetry = _check_mtx_sizes(path, what)
    try:
        A = scipy.io.mmread(str(path))
    except MemoryError:
        raise InvalidInputError(f"{path}: not enough memory to read the {what}") from None
    except Exception as exc:  # scipy raises ValueError/OSError/... on malformed files
        raise FileFormatError(f"{path}: cannot read the {what} as Matrix Market: {exc}") from exc
    if symmetry != "general" and sp.issparse(A):
        _check_one_triangle(A.tocoo(), path)
    return A


def _check_one_triangle(A: sp.coo_matrix, path: Path) -> None:
    # The reader mirrors every off-diagonal entry of a symmetric file; a file that lists
    # both triangles therefore comes back with each off-diagonal position twice, and
    # summing would double those entries. Refused rather than guessed at: the file is
    # wrong for its own header, and which half is meant cannot be known.
    off = A.row != A.col
    if not off.any():
        return
    keys = A.row[off].astype(np.int64) * A.shape[1] + A.col[off]
    repeated = keys.size - np.unique(keys).size
    if repeated:
        raise FileFormatError(
            f"{path}: the header says 'symmetric' but the file lists entries in both "
            f"triangles ({repeated // 2} off-diagonal positions given twice); symmetric "
            "storage keeps one triangle: drop the upper one or write the header as 'general'"
        )


_NPZ_MATRIX_KEYS = ("A_data", "A_indices", "A_indptr", "A_shape")


def _check_npz_sizes(z, path: Path) -> None:
    # The uncompressed size of every member, from the zip directory, before any is read:
    # a few kilobytes of compressed zeros can declare gigabytes.
    total = sum(info.file_size for info in z.zip.infolist())
    check_memory(2.0 * total, f"reading {path.name} ({format_bytes(total)} uncompressed)")


def _npz_csr(z, path: Path) -> sp.csr_matrix:
    """The save_system layout's matrix, its structure checked before scipy builds it."""
    name = f"matrix in {path.name}"
    shape = np.asarray(z["A_shape"])
    if shape.shape != (2,) or shape.dtype.kind not in "iu":
        raise InvalidInputError(f"{name}: A_shape must be two integers, got {shape.tolist()}")
    rows, cols = _check_shape(shape, name)
    data, indices, indptr = z["A_data"], z["A_indices"], z["A_indptr"]
    if data.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be real, got dtype {data.dtype}")
    _check_compressed(indptr, indices, data, (rows, cols), name)
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def _npz_scipy(z, path: Path) -> sp.csr_matrix:
    """A ``scipy.sparse.save_npz`` file, checked before scipy builds the matrix."""
    name = f"matrix in {path.name}"
    raw = np.asarray(z["format"]).ravel()[:1].tolist() or [""]
    fmt = raw[0].decode("ascii", "replace") if isinstance(raw[0], bytes) else str(raw[0])
    rows, cols = _check_shape(np.asarray(z["shape"]).tolist(), name)
    if fmt not in ("csr", "csc"):
        raise InvalidInputError(f"{name}: sparse format {fmt!r} is not supported (csr, csc)")
    major = (rows, cols) if fmt == "csr" else (cols, rows)
    if z["data"].dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be real, got dtype {z['data'].dtype}")
    _check_compressed(z["indptr"], z["indices"], z["data"], major, name)
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    return cls((z["data"], z["indices"], z["indptr"]), shape=(rows, cols)).tocsr()


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            _check_npz_sizes(z, path)
            if set(_NPZ_MATRIX_KEYS) <= keys:
                A = _npz_csr(z, path)
                b = z["b"] if "b" in keys else None
                meta = {
                    k: z[k] for k in ("grid_shape", "spacing", "flags", "coefficient") if k in keys
                }
                for k in ("boundary", "name"):
                    if k in keys:
                        meta[k] = str(z[k])
                if "spacing" in meta:
                    meta["spacing"] = tuple(float(h) for h in meta["spacing"])
                return A, b, meta
            if {"data", "indices", "indptr", "shape", "format"} <= keys:
                return _npz_scipy(z, path), None, {}
    except InvalidInputError:
        raise
    except PermissionError:
        raise FileFormatError(f"{path}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise FileFormatError(f"{path} is a directory, not a file") from None
        raise FileFormatError(f"{path}: cannot read as .npz system: {exc}") from exc
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{path}: cannot read as .npz system: {exc}") from exc
    raise FileFormatError(
        f"{path}: .npz file holds no matrix (expected keys {_NPZ_MATRIX_KEYS} as written by "
        f"save_system, or a scipy.sparse.save_npz file); found {sorted(keys)}"
    )


def save_system(
    path: str | os.PathLike,
    system_or_A: LinearSystem | sp.spmatrix | np.ndarray,
    b: np.ndarray | None = None,
) -> Path:
    """Write a system (or a bare matrix) as ``.mtx`` or ``.npz``, atomically.

    ``.mtx`` stores the matrix in symmetric Matrix Market format and, when there is a
    right-hand side, ``b`` as ``<stem>_b.mtx`` (dense array format); without one, a stale
    ``<stem>_b.mtx`` from an earlier save is removed. ``.npz`` stores the
    CSR arrays, ``b`` and, for a :class:`LinearSystem` with a grid, its shape, spacing,
    boundary, flags and coefficient. Files are written to a temporary name and renamed,
    so a failed write never leaves a partial file.

    Parameters
    ----------
    path : str or Path
        Destination; the suffix picks the format.
    system_or_A : LinearSystem or sparse matrix
        What to save; a bare matrix is validated with :func:`check_spd_matrix`.
    b : numpy.ndarray, optional
        Right-hand side (defaults to ``system.b``).

    Returns
    -------
    Path
        The matrix file written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.systems import poisson
    >>> p = save_system(pathlib.Path(tempfile.mkdtemp()) / "s.npz", poisson((2, 3)))
    >>> load_system(p).grid.shape
    (2, 3)
    """
    path = Path(path)
    if isinstance(system_or_A, LinearSystem):
        system = system_or_A
        A = check_spd_matrix(system.A, name="system matrix")
    else:
        A = check_spd_matrix(system_or_A)
        system = LinearSystem(A=A, grid=None)
    if b is None:
        b = system.b
    if b is not None:
        b = _check_vector(b, A.shape[0], "right-hand side b")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output directory does not exist: {path.parent}")
    suffix = path.suffix.lower()
    if suffix == ".mtx":
        comment = f" neurosolve system {system.name}" if system.name else ""
        jobs = [
            (
                path,
                lambda t: scipy.io.mmwrite(
                    t, A, comment=comment, symmetry="symmetric", precision=17
                ),
            )
        ]
        if b is not None:
            jobs.append(
                (_rhs_path(path), lambda t: scipy.io.mmwrite(t, b.reshape(-1, 1), precision=17))
            )
        atomic_write_many(jobs, suffix=".mtx")
        if b is None and _rhs_path(path).is_file():
            # a right-hand side left from an earlier save would be paired with this matrix
            _rhs_path(path).unlink()
    elif suffix == ".npz":
        arrays = {
            "A_data": A.data,
            "A_indices": A.indices,
            "A_indptr": A.indptr,
            "A_shape": np.asarray(A.shape, dtype=np.int64),
            "name": np.asarray(system.name),
        }
        if b is not None:
            arrays["b"] = b
        if system.grid is not None:
            g = system.grid
            arrays.update(
                grid_shape=np.asarray(g.shape, dtype=np.int64),
                spacing=np.asarray(g.spacing, dtype=np.float64),
                boundary=np.asarray(g.boundary),
                flags=g.flags,
            )
        if system.coefficient is not None:
            arrays["coefficient"] = np.asarray(system.coefficient, dtype=np.float64)

        def write(t):
            with open(t, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        atomic_write_many([(path, write)], suffix=".npz")
    else:
        raise InvalidInputError(
            f"unknown system file extension {path.suffix!r} for {path} (use .mtx or .npz)"
        )
    return path
