"""Reading and writing linear systems: Matrix Market and ``.npz``, with validation.

:func:`load_system` reads a matrix (and a right-hand side next to it, the SuiteSparse
convention) from ``.mtx`` or ``.npz`` and checks it with :func:`check_spd_matrix`, the
package's one test of "looks like an SPD system matrix". :func:`save_system` writes the
same formats atomically (through :func:`neurosolve._util.io.atomic_write_many`), keeping
grid information in ``.npz`` files so a saved system loads back with its grid.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from neurosolve._util.io import atomic_write_many
from neurosolve.data.grids import Grid, check_shape
from neurosolve.data.systems import LinearSystem, _check_vector
from neurosolve.errors import FileFormatError, InvalidInputError

__all__ = ["check_spd_matrix", "load_system", "save_system"]


def check_spd_matrix(A, *, name: str = "matrix", symmetry_tol: float = 1e-10) -> sp.csr_matrix:
    """Validate a matrix as a candidate SPD system matrix and return float64 CSR.

    Checks: 2-D, square, non-empty, real, finite, symmetric within ``symmetry_tol``
    (``max|A - A^T| <= symmetry_tol * max|A|``) and a strictly positive diagonal. These
    are necessary conditions; definiteness itself is not tested here (that would cost a
    factorization) -- CG reports a breakdown on an indefinite matrix.

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
        M = A
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
    if not M.has_canonical_format:
        M = M.copy()  # never reorder the caller's arrays in place
        M.sum_duplicates()  # also sorts the indices
    if not np.isfinite(M.data).all():
        raise InvalidInputError(f"{name} contains NaN or Inf entries")
    scale = float(np.abs(M.data).max()) if M.nnz else 0.0
    asym = abs(M - M.T)
    err = float(asym.max()) if asym.nnz else 0.0
    if err > symmetry_tol * scale:
        raise InvalidInputError(
            f"{name} is not symmetric: max |A - A^T| = {err:.3g} > {symmetry_tol:g} * "
            f"max |A| = {symmetry_tol * scale:.3g}"
        )
    diag = M.diagonal()
    bad = np.flatnonzero(diag <= 0)
    if bad.size:
        raise InvalidInputError(
            f"{name} has a non-positive diagonal ({bad.size} entr{'y' if bad.size == 1 else 'ies'}"
            f", first at row {bad[0]}: {diag[bad[0]]:.3g}); it cannot be positive definite"
        )
    return M


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
    if not path.is_file():
        raise FileFormatError(f"system file not found: {path}")
    suffix = path.suffix.lower()
    b = None
    meta: dict = {}
    if suffix == ".mtx":
        A = _read_mtx(path, "matrix")
        rhs = _rhs_path(path)
        if rhs.is_file():
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


def _read_mtx(path: Path, what: str):
    try:
        return scipy.io.mmread(str(path))
    except Exception as exc:  # scipy raises ValueError/OSError/... on malformed files
        raise FileFormatError(f"{path}: cannot read the {what} as Matrix Market: {exc}") from exc


_NPZ_MATRIX_KEYS = ("A_data", "A_indices", "A_indptr", "A_shape")


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if set(_NPZ_MATRIX_KEYS) <= keys:
                A = sp.csr_matrix(
                    (z["A_data"], z["A_indices"], z["A_indptr"]),
                    shape=tuple(int(s) for s in z["A_shape"]),
                )
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
                return sp.load_npz(path), None, {}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
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

