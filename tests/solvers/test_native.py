"""Native (numba) CPU kernels: agreement with the torch forms, fallbacks, switches, threads.

The torch forms of :mod:`neurosolve.solvers.stencil` and of the MGPC transfers are the
reference here (they are checked against explicit neighbour sums in ``test_stencil.py``
and ``test_compiled_kernel.py``); every case runs both, with the native kernels switched
on and off, and compares them.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings

import numpy as np
import pytest
import torch

from neurosolve.data import obstacle_flags, poisson
from neurosolve.solvers import native, native_matrix, native_vectors
from neurosolve.solvers.mgpc import MGPCSolver
from neurosolve.solvers.mgpc.hierarchy import prolong, restrict
from neurosolve.solvers.stencil import apply_stencil, smoothing_step, stencil_residual

pytestmark = pytest.mark.skipif(not native.available(), reason="numba is not installed")

TOL = {torch.float32: 2e-6, torch.float64: 1e-14}


@pytest.fixture(autouse=True)
def _switch_restored():
    previous = native.set_native(None)
    yield
    native.set_native(previous)


@pytest.fixture(params=[1, 2, 3], ids=["serial", "2-chunks", "3-chunks"])
def kernel_chunks(request, monkeypatch):
    """The kernels on one thread, or split in 2 or 3 chunks whatever the size (parallel)."""
    if request.param > 1:
        monkeypatch.setattr(native, "_min_cells", 1)  # every call large enough
    with native.kernel_threads(request.param):
        yield request.param


def torch_form(fn, *args):
    """``fn(*args)`` with the native kernels switched off (the torch reference)."""
    before = native.set_native(False)
    try:
        return fn(*args)
    finally:
        native.set_native(before)


def stencil_case(shape, stencils=1, fields=(1, 1), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    d = (2 * ndim + torch.rand(stencils, 1, *shape, generator=g)).to(dtype)
    c = (-torch.rand(stencils, 2 * ndim, *shape, generator=g)).to(dtype)
    w = (0.2 * torch.rand(stencils, 1, *shape, generator=g)).to(dtype)
    u = torch.randn(*fields, *shape, generator=g).to(dtype)
    f = torch.randn(*fields, *shape, generator=g).to(dtype)
    return d, c, w, u, f


def assert_close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(float(want.abs().max()), 1.0)
    assert float((got - want).abs().max()) <= TOL[dtype] * scale


SHAPES = [(7, 5, 6), (1, 4, 3), (3, 1, 1), (9, 4), (1, 6), (5, 1)]
BATCHES = [(1, (1, 1)), (1, (3, 2)), (3, (3, 1)), (2, (2, 3))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"Gs{b[0]}-G{b[1][0]}K{b[1][1]}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_stencil_kernels_match_torch(shape, batch, dtype, kernel_chunks):
    d, c, w, u, f = stencil_case(shape, batch[0], batch[1], dtype)
    cases = [
        (apply_stencil, (d, c, u)),
        (stencil_residual, (d, c, u, f)),
        (smoothing_step, (d, c, w, u, f)),
    ]
    for fn, args in cases:
        assert native.stencil_pass(0, d, c, u) is not None  # the native path is taken
        assert_close(fn(*args), torch_form(fn, *args), dtype)


def test_modes_are_the_three_operations():
    d, c, w, u, f = stencil_case((6, 5, 4))
    Au = torch_form(apply_stencil, d, c, u)
    assert_close(native.stencil_pass(native.PRODUCT, d, c, u), Au, torch.float64)
    assert_close(native.stencil_pass(native.RESIDUAL, d, c, u, f), f - Au, torch.float64)
    step = native.stencil_pass(native.SMOOTHING, d, c, u, f, w)
    assert_close(step, u + w * (f - Au), torch.float64)


def test_couplings_to_outside_cells_are_ignored_as_in_torch():
    """A nonzero coupling across the grid's edge multiplies the zero padding in torch."""
    d, c, _, u, _ = stencil_case((4, 5, 3))
    c = c - 1.0  # every coupling nonzero, the ones leaving the grid too
    assert_close(apply_stencil(d, c, u), torch_form(apply_stencil, d, c, u), torch.float64)


def test_non_contiguous_fields():
    d, c, w, _, _ = stencil_case((5, 5, 5))
    u = torch.randn(1, 1, 5, 5, 5, dtype=torch.float64).transpose(2, 4)
    f = torch.randn(1, 1, 5, 5, 5, dtype=torch.float64)[..., ::1]
    assert not u.is_contiguous()
    got = smoothing_step(d, c, w, u, f)
    assert_close(got, torch_form(smoothing_step, d, c, w, u, f), torch.float64)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("seed", range(4))
def test_csr_statistics_match_numpy(seed, index_dtype, kernel_chunks):
    import scipy.sparse as sp

    from neurosolve.data.io import entry_statistics

    rng = np.random.default_rng(seed)
    n = 40
    B = sp.random(n, n, density=0.15, random_state=rng, format="csr")
    cases = {
        "symmetric": (B + B.T).tocsr(),
        "values off": (B + B.T + sp.csr_matrix(([1e-3], ([3], [7])), shape=(n, n))).tocsr(),
        "entry above only": (B + B.T + sp.csr_matrix(([0.5], ([1], [30])), shape=(n, n))).tocsr(),
        "entry below only": (B + B.T + sp.csr_matrix(([-2.0], ([30], [2])), shape=(n, n))).tocsr(),
        "general": B,
        "empty": sp.csr_matrix((n, n)),
        "positive diagonal": (B + B.T + 5 * sp.eye(n)).tocsr(),
        "negative diagonal entry": (
            B
            + B.T
            + 5 * sp.eye(n)
            - 9 * sp.eye(n, k=0).multiply(sp.csr_matrix(([1.0], ([7], [7])), shape=(n, n)))
        ).tocsr(),
    }
    for name, A in cases.items():
        A = A.astype(np.float64)
        A.sum_duplicates()
        A.indices, A.indptr = A.indices.astype(index_dtype), A.indptr.astype(index_dtype)
        assert native_matrix.csr_statistics(A) == entry_statistics(A), name
    bad = cases["positive diagonal"].copy()
    bad.data[3] = np.nan
    assert native_matrix.csr_statistics(bad)[0] is False and entry_statistics(bad)[0] is False


def test_csr_statistics_on_a_grid_matrix_with_far_partners(kernel_chunks):
    # rows whose partners sit n^2 rows away: the per-row cursors must pair them exactly
    import scipy.sparse as sp

    from neurosolve.data import obstacle_flags, poisson
    from neurosolve.data.io import entry_statistics

    shape = (9, 10, 11)
    A = poisson(shape, flags=obstacle_flags(shape, "mixed", np.random.default_rng(3))).A.tocsr()
    assert native_matrix.csr_statistics(A) == entry_statistics(A)
    assert native_matrix.csr_statistics(A)[2] == 0.0  # exactly symmetric
    n = A.shape[0]
    bumps = {
        "value off far above": ([0.25], ([5], [5 + 110])),
        "entry far below only": ([-0.5], ([n - 1], [n - 1 - 111])),
    }
    for name, (v, (i, j)) in bumps.items():
        B = (A + sp.csr_matrix((v, (i, j)), shape=A.shape)).tocsr()
        B.sum_duplicates()
        assert native_matrix.csr_statistics(B) == entry_statistics(B), name
        assert native_matrix.csr_statistics(B)[2] == pytest.approx(
            abs(v[0]) if "only" in name else 0.25
        )


@pytest.mark.parametrize(
    "shape", [(9, 10, 11), (12, 9), (1, 6, 5)], ids=lambda s: "x".join(map(str, s))
)
def test_stencil_statistics_match_the_csr_ones(shape, kernel_chunks):
    # the statistics of the stencil read equal those of the CSR matrix it came from: the
    # largest entry, the largest asymmetry (entries out of the grid compared with zero),
    # the non-positive diagonal entries, and non-finite values anywhere
    import scipy.sparse as sp

    from neurosolve.data.io import entry_statistics
    from neurosolve.solvers.stencil import stencil_from_csr

    flags = obstacle_flags(shape, "mixed", 5) if min(shape) > 2 else None
    system = poisson(shape, flags=flags, boundary="neumann")
    A, grid = system.A.tocsr(), system.grid
    n = A.shape[0]
    rng = np.random.default_rng(4)
    cases = {"as it is": A}
    for k in range(6):  # one entry changed, whose partner stays: an asymmetry
        B = A.copy()
        B.data[rng.integers(B.nnz)] *= 1.5 + k
        cases[f"value off {k}"] = B
    for row in (0, n // 2, n - 1):  # a diagonal entry not > 0 (the first one is named)
        B = A.tolil()
        B[row, row] = -1.0 if row else 0.0
        cases[f"diagonal {row}"] = B.tocsr()
    B = A.copy()
    B.data[B.indices != np.repeat(np.arange(n), np.diff(B.indptr))] *= 1e300  # overflow
    cases["huge"] = B
    for value in (np.nan, np.inf, -np.inf):
        B = A.copy()
        B.data[rng.integers(B.nnz)] = value
        cases[f"not finite {value}"] = B
    for name, B in cases.items():
        B = sp.csr_matrix(B)
        B.sum_duplicates()
        diagonal, couplings = stencil_from_csr(B, grid, check_finite=False)
        got = native_matrix.stencil_statistics(diagonal, couplings, grid.fluid)
        want = entry_statistics(B)
        if not want[0]:  # not finite: nothing else is reported
            assert got[0] is False, name
            continue
        if got[4] >= 0:  # the first bad diagonal's flat cell -> its row
            cell = got[4]
            got = (*got[:4], int(np.count_nonzero(grid.fluid.reshape(-1)[:cell])), got[5])
        assert got == want, name


def test_csr_scatter_writes_every_slot(kernel_chunks):
    # the scatter writes every slot of every cell (zero where no entry lands, on solid
    # cells too), so the buffer it gets need not be zeroed: NaN in, the numpy form's out
    from neurosolve.solvers.stencil import stencil_from_csr
    from neurosolve.solvers.stencil_read import _slot_table

    for shape in [(10, 9, 8), (13, 11), (1, 5, 7)]:
        flags = obstacle_flags(shape, "mixed", 1) if min(shape) > 2 else None
        system = poisson(shape, flags=flags)
        A, grid = system.A.tocsr(), system.grid
        A.data[::5] = 0.0  # rows with an explicit zero take the loop, not the 7-entry form
        cells = np.flatnonzero(grid.fluid.ravel())
        out = np.full((2 * grid.ndim + 1) * grid.num_cells, np.nan)
        table = _slot_table(tuple(grid.shape))
        assert native_matrix.scatter_entries(A.indptr, A.indices, A.data, cells, table, out)
        diagonal, couplings = torch_form(stencil_from_csr, A, grid)
        want = np.concatenate([couplings.reshape(-1), diagonal.reshape(-1)])
        np.testing.assert_array_equal(out, want)


def test_csr_statistics_refuse_other_forms():
    import scipy.sparse as sp

    A = sp.csr_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]]))
    assert native_matrix.csr_statistics(A.tocoo()) is None
    assert native_matrix.csr_statistics(A.astype(np.float32)) is None
    unsorted = sp.csr_matrix((A.data[::-1], A.indices[::-1], A.indptr), shape=A.shape)
    unsorted.has_sorted_indices = False
    assert native_matrix.csr_statistics(unsorted) is None
    native.set_native(False)
    assert native_matrix.csr_statistics(A) is None


def test_check_spd_same_verdict_with_native_symmetry():
    import scipy.sparse as sp

    from neurosolve.data import check_spd_matrix
    from neurosolve.errors import InvalidInputError
    from neurosolve.solvers.system import check_spd

    A = poisson((5, 4, 3)).A.tocsr()
    assert (check_spd(A) != check_spd_matrix(A)).nnz == 0
    bad = (A + sp.csr_matrix(([1e-6], ([0], [11])), shape=A.shape)).tocsr()
    messages = []
    for check in (check_spd, check_spd_matrix, lambda M, name: torch_form(check_spd, M, name)):
        with pytest.raises(InvalidInputError, match="not symmetric") as info:
            check(bad, name="A")
        messages.append(str(info.value))
    assert len(set(messages)) == 1  # the same number in the same message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((7, 6, 5), None),
        ((7, 6, 5), (True, False, True)),
        ((1, 3, 4), (False, True, True)),
        ((8, 8, 8), (False, False, True)),
        ((9, 6), None),
        ((5, 3), (False, True)),
        ((1, 1), None),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_transfers_match_torch(shape, axes, dtype, kernel_chunks):
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 3, *shape, generator=g).to(dtype)
    fluid = (torch.rand(2, 1, *shape, generator=g) > 0.3).to(dtype)
    rc = restrict(u, shape, axes)
    assert_close(rc, torch_form(restrict, u, shape, axes), dtype)
    for mask in (fluid, fluid[:1]):  # per matrix, and one mask for all
        got = prolong(rc, shape, mask, axes)
        assert_close(got, torch_form(prolong, rc, shape, mask, axes), dtype)


def test_restriction_is_the_transpose_of_prolongation():
    g = torch.Generator().manual_seed(4)
    shape, axes = (7, 5, 6), (True, True, False)
    u = torch.randn(1, 1, *shape, generator=g, dtype=torch.float64)
    fluid = torch.ones(1, 1, *shape, dtype=torch.float64)
    vc = torch.randn_like(restrict(u, shape, axes))
    lhs = float((restrict(u, shape, axes) * vc).sum())
    rhs = float((u * prolong(vc, shape, fluid, axes)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-13)


def test_autograd_calls_take_the_torch_form():
    d, c, _, u, _ = stencil_case((4, 4, 4))
    u.requires_grad_(True)
    assert native.stencil_pass(native.PRODUCT, d, c, u) is None
    out = apply_stencil(d, c, u)
    out.sum().backward()  # the torch form records the graph
    assert u.grad is not None and torch.isfinite(u.grad).all()
    with torch.no_grad():  # no graph to record: native again
        assert native.stencil_pass(native.PRODUCT, d, c, u) is not None


def test_unusual_cases_fall_back_and_stay_correct():
    d, c, w, u, f = stencil_case((4, 5, 3), stencils=3, fields=(3, 1))
    one_field = u[:1]  # three stencils applied to one broadcast field
    assert native.stencil_pass(native.PRODUCT, d, c, one_field) is None
    got = apply_stencil(d, c, one_field)
    assert got.shape == (3, 1, 4, 5, 3)
    mixed = u.float()  # a float32 field with float64 coefficients
    assert native.stencil_pass(native.PRODUCT, d, c, mixed) is None
    assert torch.isfinite(apply_stencil(d, c, mixed)).all()
    assert (
        native.stencil_pass(native.PRODUCT, d[..., 0], c[..., 0], u[..., 0]) is None
    )  # 6 channels in 2D
    assert native.stencil_pass(native.PRODUCT, d[..., 0], c[:, :4, ..., 0], u[..., 0]) is not None
    assert native.block_sum(u.to(torch.int64), (2, 2, 2)) is None
    assert native.stencil_pass(native.PRODUCT, d[0, 0, 0], c[0, 0, 0], u[0, 0, 0]) is None


def test_switches(monkeypatch):
    d, c, _, u, _ = stencil_case((3, 3, 3))
    monkeypatch.setenv("NEUROSOLVE_NATIVE", "0")
    assert not native.native_enabled()
    assert native.stencil_pass(native.PRODUCT, d, c, u) is None
    assert native.set_native(True) is None
    assert native.native_enabled()
    native.set_native(None)
    monkeypatch.setenv("NEUROSOLVE_NATIVE", "yes")
    assert native.native_enabled()


def failing_load(monkeypatch, error: BaseException) -> None:
    """The next load of the native kernels raises ``error`` (numba missing or broken)."""
    import neurosolve.solvers._native_loops as loops

    def load():
        raise error

    monkeypatch.setattr(native, "_kernels", None)
    monkeypatch.setattr(native, "_load_failed", False)
    monkeypatch.setattr(loops, "dispatchers", load)


def test_a_broken_numba_warns_once_and_torch_runs(monkeypatch):
    failing_load(monkeypatch, RuntimeError("LLVM exploded"))
    d, c, _, u, _ = stencil_case((3, 4, 5))
    with pytest.warns(RuntimeWarning, match="LLVM exploded"):
        assert not native.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        assert not native.available()
        got = apply_stencil(d, c, u)
    assert_close(got, torch_form(apply_stencil, d, c, u), torch.float64)


def test_missing_numba_is_silent(monkeypatch):
    failing_load(monkeypatch, ImportError("No module named 'numba'"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.available()


def test_threads_and_concurrent_callers():
    """Two threads at once, two torch threads each: one gets the pool, one runs serially."""
    d, c, w, u, f = stencil_case((24, 20, 16))
    want = torch_form(smoothing_step, d, c, w, u, f)
    results: list[torch.Tensor] = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:

        def work():
            for _ in range(20):
                results.append(smoothing_step(d, c, w, u, f))

        workers = [threading.Thread(target=work) for _ in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    finally:
        torch.set_num_threads(before)
    assert len(results) == 40
    for got in results:
        assert_close(got, want, torch.float64)


def _child_product(queue):
    d, c, _, u, _ = stencil_case((16, 16, 16))
    queue.put(float(apply_stencil(d, c, u).abs().sum()))


def test_forked_child_runs_the_kernels():
    """A forked process (a data-loader worker) after the parent used the threads."""
    d, c, _, u, _ = stencil_case((16, 16, 16))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        want = float(apply_stencil(d, c, u).abs().sum())
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_product, args=(queue,))
        child.start()
        got = queue.get(timeout=120)
        child.join(timeout=60)
    finally:
        torch.set_num_threads(before)
    assert child.exitcode == 0
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_mgpc_solve_is_the_same_with_and_without_native(precision, kernel_chunks):
    shape = (16, 16, 16)
    system = poisson(
        shape, flags=obstacle_flags(shape, "mixed", 1, boundary_air="top"), boundary="neumann"
    )
    b = np.random.default_rng(0).standard_normal(system.n)
    with_native = MGPCSolver(system, precision=precision).solve(b, rtol=1e-10)
    before = native.set_native(False)
    try:
        without = MGPCSolver(system, precision=precision).solve(b, rtol=1e-10)
    finally:
        native.set_native(before)
    assert with_native.converged and without.converged
    assert abs(with_native.iterations - without.iterations) <= 1
    true = np.linalg.norm(b - system.A @ with_native.x) / np.linalg.norm(b)
    assert true <= 1e-10
    assert np.linalg.norm(with_native.x - without.x) <= 1e-8 * np.linalg.norm(without.x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape", [(6, 5, 4), (7, 3), (1, 2, 3)], ids=lambda s: "x".join(map(str, s))
)
def test_network_features_match_torch(shape, dtype, kernel_chunks):
    from neurosolve.solvers.mgpc.network import _features

    d, c, _, _, _ = stencil_case(shape, stencils=2, dtype=dtype)
    c[:, 1] = 0.0  # missing couplings (count < 2 d)
    fluid = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(5)) > 0.2
    fluid = fluid.to(dtype)
    first, last = (1, shape[0]) if shape[0] > 1 else (0, 1)
    got = native.chunk_features(d, c, fluid, first, last)
    assert got is not None
    sl = (slice(None), slice(None), slice(first, last))
    want = _features(d[sl].float(), c[sl].float(), fluid[sl].float())
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, torch.float32)


@pytest.mark.parametrize("shape", [(5, 4, 3), (6, 7)], ids=lambda s: "x".join(map(str, s)))
def test_network_neighbour_sums_match_torch(shape, kernel_chunks):
    from neurosolve.solvers.mgpc import network

    g = torch.Generator().manual_seed(6)
    out = torch.randn(2, 8, *shape, generator=g)[:, ::2]  # a strided view, as in the network
    weights = torch.rand(2, 2 * len(shape), *shape, generator=g)
    padded = torch.randn(2, 4, *(n + 2 for n in shape), generator=g)
    want = torch_form(network._add_neighbours, out.clone(), weights, padded)
    before = out.clone()
    assert native.neighbour_sum(out, weights, padded)
    assert_close(out, want, torch.float32)
    assert not torch.equal(out, before)  # in place, through the view
    assert not native.neighbour_sum(out.requires_grad_(True), weights, padded)


@pytest.mark.parametrize(
    "shape", [(6, 5, 4), (7, 3), (1, 4, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_csr_read_matches_numpy_form(shape, kernel_chunks):
    import scipy.sparse as sp

    from neurosolve.solvers.stencil import stencil_from_csr

    flags = obstacle_flags(shape, "boxes", 2) if min(shape) > 2 else None
    system = poisson(shape, flags=flags)
    A = system.A.tocsr().astype(np.float64)
    A.data[::7] = 0.0  # explicit zeros are dropped either way
    grid = system.grid
    got = stencil_from_csr(A, grid)
    want = torch_form(stencil_from_csr, A, grid)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)  # bit for bit: the same values, placed
    wrong = sp.csr_matrix(A + sp.eye(A.shape[0], k=2))  # entries off the stencil
    with pytest.raises(Exception, match="stencil|pattern|neighbour"):
        stencil_from_csr(wrong, grid)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((7, 6, 5), None),
        ((7, 6, 5), (False, True, True)),
        ((4, 1, 3), (True, False, True)),
        ((9, 6), None),
        ((5, 3), (True, False)),
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_galerkin_matches_torch(shape, axes, dtype, kernel_chunks):
    from neurosolve.solvers.mgpc.hierarchy import galerkin_coarsen

    d, c, _, _, _ = stencil_case(shape, stencils=2, dtype=dtype)
    fluid = torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(8)) > 0.2
    got = galerkin_coarsen(d, c, fluid, axes)
    want = torch_form(galerkin_coarsen, d, c, fluid, axes)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, dtype)


def symmetric_case(shape, dtype=torch.float64):
    """A random stencil whose couplings are exactly symmetric (as the layout's SPD ones)."""
    g = torch.Generator().manual_seed(9)
    ndim = len(shape)
    c = torch.zeros(1, 2 * ndim, *shape, dtype=dtype)
    for a in range(ndim):
        n = shape[a]
        up = -torch.rand(1, *shape, generator=g).to(dtype)
        up.narrow(1 + a, n - 1, 1).zero_()  # no coupling out of the grid
        c[:, 2 * a + 1] = up
        if n > 1:
            c[:, 2 * a].narrow(1 + a, 1, n - 1).copy_(up.narrow(1 + a, 0, n - 1))
    d = (2 * ndim + torch.rand(1, 1, *shape, generator=g)).to(dtype)
    return d, c


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape", [(6, 5, 4), (1, 5, 3), (7, 6), (5, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_symmetric_reads_give_the_same_result(shape, dtype):
    from neurosolve.solvers.stencil import exactly_symmetric

    d, c = symmetric_case(shape, dtype)
    assert exactly_symmetric(c)
    g = torch.Generator().manual_seed(10)
    u, f = (torch.randn(2, 3, *shape, generator=g).to(dtype) for _ in range(2))
    w = torch.rand(1, 1, *shape, generator=g).to(dtype)
    for fn, args in [
        (apply_stencil, (d, c, u)),
        (stencil_residual, (d, c, u, f)),
        (smoothing_step, (d, c, w, u, f)),
    ]:
        # the same loop with both reads: bit for bit, the same values are read
        assert torch.equal(fn(*args, symmetric=True), fn(*args))
        assert_close(fn(*args, symmetric=True), torch_form(fn, *args), dtype)
    skew = c.clone()
    a = next(a for a, n in enumerate(shape) if n > 1)
    skew[:, 2 * a + 1] *= 1.5
    assert not exactly_symmetric(skew)


def test_levels_and_operators_know_they_are_symmetric():
    from neurosolve.solvers.stencil import StencilOperator

    shape = (12, 12, 12)
    system = poisson(shape, flags=obstacle_flags(shape, "mixed", 3, boundary_air="top"))
    solver = MGPCSolver(system)
    assert all(lvl.symmetric for lvl in solver.hierarchy.levels)
    assert StencilOperator.from_system(system)._symmetric


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    "shape", [(6, 5, 4), (7, 3), (1, 4, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_smoother_weights_match_torch(shape, dtype, kernel_chunks):
    from neurosolve.solvers.mgpc import hierarchy

    d, c, _, _, _ = stencil_case(shape, stencils=2, dtype=dtype, seed=3)
    fluid = (torch.rand(2, 1, *shape, generator=torch.Generator().manual_seed(4)) > 0.3).to(dtype)
    theta = 0.05 + 1.9 * torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(5))
    level = hierarchy.Level(d, c, fluid)
    got = native.smoother_weights(theta, d, c, fluid)
    want = torch_form(hierarchy._smoother_weights, theta, level, dtype)
    assert got is not None
    assert_close(got, want, dtype)
    assert bool((got[fluid.expand_as(got) == 0] == 0).all())
    assert native.smoother_weights(theta, d, c[:, :1], fluid) is None  # wrong shapes: torch


@pytest.mark.parametrize(
    ("spacing", "expect"),
    [((1.0, 1.0, 1.0), (True, True, True)), ((1.0, 4.0, 1.0), (True, False, True))],
)
def test_coarsening_axes_native_and_torch_agree(spacing, expect, kernel_chunks):
    from neurosolve.solvers.mgpc.hierarchy import coarsening_axes
    from neurosolve.solvers.stencil import StencilOperator

    flags = obstacle_flags((12, 10, 8), "mixed", 4)
    op = StencilOperator.from_system(poisson((12, 10, 8), flags=flags, spacing=spacing))
    couplings = op.neighbours[None]
    sums, cells = native.axis_shares(couplings)
    assert cells == int((couplings.abs().sum(dim=1) > 0).sum())
    assert abs(sum(sums) - cells) <= 1e-9 * cells  # the shares of a cell sum to one
    assert coarsening_axes(couplings) == torch_form(coarsening_axes, couplings) == expect


def test_csr_read_of_an_uncanonical_matrix_sums_its_duplicates():
    import scipy.sparse as sp

    from neurosolve.solvers.stencil import stencil_from_csr

    system = poisson((5, 4, 3))
    A = system.A.tocsr()
    indices, data = [], []
    for r in range(A.shape[0]):  # every row's entries stored twice (halves), unsorted
        cols, vals = A.indices[A.indptr[r] : A.indptr[r + 1]], A.data[A.indptr[r] : A.indptr[r + 1]]
        indices += [cols[::-1], cols]
        data += [vals[::-1] / 2, vals / 2]
    twice = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), 2 * A.indptr), shape=A.shape
    )
    assert not twice.has_canonical_format and twice.nnz == 2 * A.nnz
    got = stencil_from_csr(twice, system.grid)
    want = stencil_from_csr(A, system.grid)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)  # halves of binary fractions: exact


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_vector_operations_on_the_kernel_threads(dtype, monkeypatch):
    g = torch.Generator().manual_seed(5)
    x, y = (torch.randn(1001, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    # outside a kernel_threads block: torch's forms
    assert native_vectors.dot(x, y) is None
    assert native_vectors.step(2.0, x, y.clone(), x, y.clone()) is None
    with native.kernel_threads(1):  # inside one: the serial loops
        serial = native_vectors.dot2(x, y, x)
        z, w = y.clone(), x.clone()
        rr1 = native_vectors.step(0.5, x, z, y, w)
        assert serial is not None and rr1 is not None
        assert float((z - (y + 0.5 * x)).abs().max()) <= TOL[dtype]
    monkeypatch.setattr(native, "_min_cells", 1)
    with native.kernel_threads(3):
        got = native_vectors.dot(x, y)
        assert got is not None and got.dtype == dtype
        want = float(torch.dot(x.double(), y.double()))
        rel = 1e-12 if dtype == torch.float64 else 1e-6  # a float32 result is rounded
        assert abs(float(got) - want) <= rel * float(x.double().abs() @ y.double().abs())
        z, w = y.clone(), x.clone()
        rr = native_vectors.step(0.5, x, z, y, w)  # z += 0.5 x, w -= 0.5 y; w^T w
        assert rr is not None and rr == pytest.approx(float(w.double() @ w.double()), rel=1e-6)
        assert float((z - (y + 0.5 * x)).abs().max()) <= TOL[dtype]
        assert float((w - (x - 0.5 * y)).abs().max()) <= TOL[dtype]
        both = native_vectors.dot2(x, y, x)
        assert both is not None and abs(float(both[0]) - float(got)) <= TOL[dtype] * abs(want)
        assert abs(float(both[1]) - float(x.double() @ x.double())) <= 1e-6 * float(x @ x)
        z = y.clone()
        assert native_vectors.xpay(x, z, -2.0)
        assert float((z - (x - 2.0 * y)).abs().max()) <= TOL[dtype] * 4
        other = torch.float64 if dtype == torch.float32 else torch.float32
        cast = native_vectors.cast(x, other)
        assert cast is not None and torch.equal(cast, x.to(other))
        assert native_vectors.cast(x, dtype) is None  # nothing to convert
        assert native_vectors.dot(x[::2], y[::2]) is None  # strided: torch's form
        assert native_vectors.dot(x, y.to(other)) is None  # mixed dtypes: torch's form


def test_kernel_threads_validates_and_nests():
    with pytest.raises(Exception, match="kernel threads"):
        with native.kernel_threads(0):
            pass
    with native.kernel_threads(3):
        assert native.kernel_thread_count() == 3
        with native.kernel_threads(None):
            assert native.kernel_thread_count() == torch.get_num_threads()
        assert native.kernel_thread_count() == 3
