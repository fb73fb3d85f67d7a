"""Reading a CSR matrix on the native kernels: its stencil layout and its entry statistics.

- :func:`scatter_entries`: a CSR matrix's entries into the stencil layout (one pass, of
  :func:`~neurosolve.solvers.stencil.stencil_from_csr`);
- :func:`csr_statistics`: what the SPD check of :func:`~neurosolve.data.check_spd_matrix`
  needs of a CSR matrix (finite, ``max |A - A^T|``, the diagonal) in one pass, without
  forming ``A^T``;
- :func:`stencil_statistics`: the same read from the stencil layout, which holds every
  entry (the check of :meth:`StencilOperator.from_matrix
  <neurosolve.solvers.stencil.StencilOperator.from_matrix>`).

Each runs on the kernel threads in chunks of rows or planes
(:mod:`neurosolve.solvers._matrix_loops`) and returns ``None`` where the native kernels do
not run; the callers then take numpy's and scipy's forms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurosolve.solvers import native

__all__ = ["csr_statistics", "scatter_entries", "stencil_statistics"]


def scatter_entries(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    cells: np.ndarray,
    table: np.ndarray,
    out: np.ndarray,
) -> bool | None:
    """Scatter a CSR matrix's non-zero entries to ``out[slot * N + cell]``, in one pass.

    ``cells``: the grid cell of every row (rows and columns are the same unknowns),
    ``table[delta + N - 1]``: ``slot * N`` for a column-minus-row cell offset ``delta`` of
    the stencil, negative off it. Returns whether every entry was on the table (``out`` is
    then written in full, zero where no entry lands: it need not be zeroed first), or
    ``None`` when the native kernels are not available (``out`` untouched).

    Examples
    --------
    >>> table = np.array([0, 4, 2])  # N = 2: offsets -1, 0, +1 to slots 0, 2, 1
    >>> out = np.full(6, np.nan)
    >>> ok = scatter_entries(np.array([0, 2, 4]), np.array([0, 1, 0, 1]),
    ...                      np.array([2.0, -1.0, -1.0, 2.0]), np.array([0, 1]), table, out)
    >>> ok is None or (ok, out.tolist()) == (True, [0.0, -1.0, -1.0, 0.0, 2.0, 2.0])
    True
    """
    if not native.available():
        return None
    data = np.asarray(data, dtype=np.float64)
    with native.chunks(indptr.shape[0] - 1) as count:
        ok = np.zeros(count, np.bool_)
        name = "scatter_entries" if count > 1 else "scatter_entries_serial"
        native.kernel(name)(indptr, indices, data, cells, table, out, ok)
    return bool(ok.all())


def csr_statistics(matrix: Any) -> tuple[bool, float, float, int, int, float] | None:
    """:func:`~neurosolve.data.io.entry_statistics` of a canonical CSR matrix in one pass.

    The same values (finite, ``max|A|``, ``max|A - A^T|``, the non-positive diagonal
    entries) without forming ``A^T`` or any temporary array. ``matrix``: a scipy CSR
    matrix with sorted indices and no duplicates (as
    :func:`~neurosolve.data.check_csr_structure` returns it), float64 entries. ``None``
    when the native kernels are not available or the matrix is not in that form.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.csr_matrix(np.array([[2.0, -1.0, 0.0], [-1.5, 2.0, 0.0], [0.0, 0.0, -1.0]]))
    >>> stats = csr_statistics(A)
    >>> stats is None or stats == (True, 2.0, 0.5, 1, 2, -1.0)
    True
    """
    if not native.available() or getattr(matrix, "format", None) != "csr":
        return None
    if not matrix.has_canonical_format or matrix.dtype != np.float64:
        return None
    with native.chunks(matrix.shape[0]) as count:
        out = np.zeros((count, 6))
        name = "csr_statistics" if count > 1 else "csr_statistics_serial"
        native.kernel(name)(matrix.indptr, matrix.indices, matrix.data, out)
    return _merge_statistics(out)


def stencil_statistics(
    diagonal: np.ndarray, couplings: np.ndarray, fluid: np.ndarray
) -> tuple[bool, float, float, int, int, float] | None:
    """:func:`~neurosolve.data.io.entry_statistics` of a matrix read from its stencil form.

    ``diagonal (*S)``, ``couplings (2 d, *S)`` (float64, the layout of
    :func:`~neurosolve.solvers.stencil.stencil_from_csr`, which keeps every entry) and the
    fluid mask ``(*S)`` of a 2D or 3D grid: finite, ``max |A|``, ``max |A - A^T|``, the
    count of non-positive diagonal entries on fluid cells, the *flat cell index* of the
    first (-1: none) and its value; one pass, on the kernel threads. ``None`` where the
    kernels do not run.

    Examples
    --------
    >>> d, c = np.full((1, 3), 2.0), np.zeros((4, 1, 3))
    >>> c[3, 0, :2], c[2, 0, 1:] = -1.0, -1.0  # a 1D Laplacian on a 1 x 3 grid
    >>> out = stencil_statistics(d, c, np.ones((1, 3), dtype=bool))
    >>> out is None or out == (True, 2.0, 0.0, 0, -1, 0.0)
    True
    """
    ndim = diagonal.ndim
    if (
        not native.available()
        or ndim not in (2, 3)
        or couplings.shape != (2 * ndim, *diagonal.shape)
    ):
        return None
    if diagonal.dtype != np.float64 or couplings.dtype != np.float64:
        return None
    d, c, fl = diagonal, couplings, np.ascontiguousarray(fluid, dtype=np.bool_)
    axis_of = np.arange(ndim, dtype=np.int64)
    if ndim == 2:  # as 3D with a unit middle axis
        d, c, fl = d[:, None, :], c[:, :, None, :], fl[:, None, :]
        axis_of = np.array([0, 2], dtype=np.int64)
    d, c = np.ascontiguousarray(d), np.ascontiguousarray(c)
    with native.chunks(d.size) as count:
        out = np.zeros((count, 6))
        name = "stencil_statistics" if count > 1 else "stencil_statistics_serial"
        native.kernel(name)(d, c, fl, axis_of, out)
    return _merge_statistics(out)


def _merge_statistics(out: np.ndarray) -> tuple[bool, float, float, int, int, float]:
    """One verdict from the per-chunk rows of the statistics kernels (chunks in order)."""
    if not out[:, 0].all():
        return False, float("nan"), float("nan"), 0, -1, 0.0
    bad = out[:, 3] > 0
    first, value = (int(out[bad, 4][0]), float(out[bad, 5][0])) if bad.any() else (-1, 0.0)
    scale, err = float(out[:, 1].max()), float(out[:, 2].max())
    return True, scale, err, int(out[:, 3].sum()), first, value
