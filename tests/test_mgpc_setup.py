"""The vectorized MGPC setup (issue 13) against reference computations, on small random grids.

Every fast setup function is checked against a direct, obviously correct computation: the
CSR-to-stencil read against dense-matrix lookups (and its refusals, message for message),
the channels-last network against the channels-first formulation it replaced, the Galerkin
coarse stencils against ``R A R^T`` formed with explicit matrices, the coarsest dense matrix
against the stencil applied to the identity, and the coarsest inverse against
``numpy.linalg``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from neurosolve.data import poisson
from neurosolve.data.grids import FLUID, SOLID, Grid
from neurosolve.errors import InvalidInputError
from neurosolve.solvers.mgpc import hierarchy, network
from neurosolve.solvers.mgpc.network import MGPCNet, level_features
from neurosolve.solvers.stencil import apply_stencil, stencil_from_csr

SHAPES = [(1, 1), (1, 5), (6, 1), (5, 7), (4, 1, 3), (1, 4, 4), (3, 4, 5), (6, 5, 4)]


def random_grid(shape, rng, solid=0.25):
    flags = np.where(rng.random(shape) < solid, SOLID, FLUID).astype(np.int8)
    flags.flat[int(rng.integers(flags.size))] = FLUID  # at least one unknown
    return Grid(shape, flags=flags)


def neighbour(cell, a, sign, shape):
    """The face neighbour of ``cell`` along ``a`` (``sign`` -1 or +1), or None outside."""
    other = list(cell)
    other[a] += sign
    return tuple(other) if 0 <= other[a] < shape[a] else None


def random_stencil_matrix(grid, rng):
    """A random symmetric matrix on the 5/7-point pattern of ``grid`` (no structure assumed)."""
    cells = np.flatnonzero(grid.fluid.ravel())
    index = -np.ones(grid.num_cells, dtype=np.int64)
    index[cells] = np.arange(cells.size)
    rows, cols, vals = [], [], []
    for i, c in enumerate(cells):
        cell = np.unravel_index(c, grid.shape)
        rows.append(i), cols.append(i), vals.append(4.0 + rng.random())
        for a in range(grid.ndim):
            other = neighbour(cell, a, 1, grid.shape)
            if other is None or index[np.ravel_multi_index(other, grid.shape)] < 0:
                continue
            j = int(index[np.ravel_multi_index(other, grid.shape)])
            v = -rng.random() - 0.1
            rows += [i, j]
            cols += [j, i]
            vals += [v, v]
    n = cells.size
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def reference_stencil(A, grid):
    """Diagonal and couplings by dense lookups, or None if ``A`` has an entry off the pattern."""
    dense = A.toarray()
    cells = np.flatnonzero(grid.fluid.ravel())
    index = -np.ones(grid.num_cells, dtype=np.int64)
    index[cells] = np.arange(cells.size)
    diagonal = np.zeros(grid.shape)
    couplings = np.zeros((2 * grid.ndim, *grid.shape))
    used = np.zeros(dense.shape, dtype=bool)
    for i, c in enumerate(cells):
        cell = np.unravel_index(c, grid.shape)
        diagonal[cell] = dense[i, i]
        used[i, i] = True
        for a in range(grid.ndim):
            for side, sign in ((0, -1), (1, 1)):
                other = neighbour(cell, a, sign, grid.shape)
                if other is None:
                    continue
                j = int(index[np.ravel_multi_index(other, grid.shape)])
                if j >= 0:
                    couplings[(2 * a + side, *cell)] = dense[i, j]
                    used[i, j] = True
    if np.any(dense[~used] != 0):
        return None
    return diagonal, couplings


def assert_bitwise(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float64 and g.shape == e.shape
        np.testing.assert_array_equal(g, e)
        assert not np.signbit(g[g == 0]).any()  # no negative zeros from explicit -0.0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_stencil_read_matches_dense_lookup(shape, seed):
    rng = np.random.default_rng(seed)
    grid = random_grid(shape, rng)
    A = random_stencil_matrix(grid, rng)
    assert_bitwise(stencil_from_csr(A, grid), reference_stencil(A, grid))


def test_stencil_read_of_assembled_systems():
    rng = np.random.default_rng(3)
    for shape in [(9, 8), (6, 5, 7)]:
        grid = random_grid(shape, rng)
        system = poisson(grid.shape, flags=grid.flags, boundary="neumann")
        assert_bitwise(stencil_from_csr(system.A, system.grid), reference_stencil(system.A, grid))


def test_stencil_read_sums_duplicates_and_drops_explicit_zeros():
    rng = np.random.default_rng(4)
    grid = random_grid((4, 5, 3), rng)
    A = random_stencil_matrix(grid, rng).tocoo()
    n = A.shape[0]
    half = rng.random(A.nnz) < 0.5  # every entry split into two summands, some of them
    rows = np.concatenate([A.row, A.row[half]])
    cols = np.concatenate([A.col, A.col[half]])
    vals = np.concatenate([np.where(half, 0.5 * A.data, A.data), 0.5 * A.data[half]])
    far = (np.arange(n), (np.arange(n) + n // 2 + 1) % n)  # off the pattern, but zero
    rows = np.concatenate([rows, far[0], far[0]])
    cols = np.concatenate([cols, far[1], far[1]])
    vals = np.concatenate([vals, np.full(n, -0.0), np.zeros(n)])
    messy = sp.coo_matrix((vals, (rows, cols)), shape=A.shape)
    expected = reference_stencil(messy.tocsr(), grid)
    assert expected is not None
    assert_bitwise(stencil_from_csr(messy, grid), expected)
    assert_bitwise(stencil_from_csr(messy.tocsr(), grid), expected)


def test_stencil_read_keeps_explicit_negative_zero_on_the_pattern_positive():
    system = poisson((3, 4))
    A = system.A.tocsr(copy=True)
    first = int(np.flatnonzero(A.data < 0)[0])
    A.data[first] = -0.0
    expected = reference_stencil(A, system.grid)
    assert_bitwise(stencil_from_csr(A, system.grid), expected)


OFF_PATTERN = [
    # (shape, entries set symmetrically, message)
    (
        (5, 5),
        [(0, 4)],
        "matrix has 2 entries off the 5-point stencil of grid (5, 5), "
        "e.g. A[0, 4] couples cells (0, 0) and (0, 4)",
    ),
    (
        (5, 5),
        [(3, 9), (4, 5)],
        "matrix has 4 entries off the 5-point stencil of grid (5, 5), "
        "e.g. A[3, 9] couples cells (0, 3) and (1, 4)",
    ),
    (
        (3, 4, 5),
        [(4, 5)],
        "matrix has 2 entries off the 7-point stencil of grid (3, 4, 5), "
        "e.g. A[4, 5] couples cells (0, 0, 4) and (0, 1, 0)",
    ),
    (
        (3, 4, 5),
        [(15, 20)],
        "matrix has 2 entries off the 7-point stencil of grid "
        "(3, 4, 5), e.g. A[15, 20] couples cells (0, 3, 0) and (1, 0, 0)",
    ),
    (
        (3, 4, 5),
        [(0, 59)],
        "matrix has 2 entries off the 7-point stencil of grid (3, 4, 5), "
        "e.g. A[0, 59] couples cells (0, 0, 0) and (2, 3, 4)",
    ),
]


@pytest.mark.parametrize(("shape", "entries", "message"), OFF_PATTERN)
def test_stencil_read_refuses_entries_off_the_pattern(shape, entries, message):
    """Wrap-around along every axis and far couplings: the count and the first entry."""
    system = poisson(shape)
    A = system.A.tolil()
    for i, j in entries:
        A[i, j] = A[j, i] = -1.0
    with pytest.raises(InvalidInputError) as err:
        stencil_from_csr(A.tocsr(), system.grid)
    assert str(err.value) == message


@pytest.mark.parametrize("seed", range(6))
def test_stencil_read_refuses_random_stray_entries(seed):
    rng = np.random.default_rng(10 + seed)
    grid = random_grid([(6, 7), (4, 5, 3), (1, 6, 5)][seed % 3], rng)
    A = random_stencil_matrix(grid, rng).tolil()
    n = A.shape[0]
    for _ in range(1 + seed % 2):
        i, j = (int(v) for v in rng.integers(n, size=2))
        A[i, j] = A[j, i] = 1.5
    A = A.tocsr()
    if reference_stencil(A, grid) is not None:  # landed on the pattern: read exactly
        assert_bitwise(stencil_from_csr(A, grid), reference_stencil(A, grid))
        return
    with pytest.raises(InvalidInputError, match="entries off the"):
        stencil_from_csr(A, grid)


def test_stencil_read_refusals_before_the_pattern():
    system = poisson((4, 4))
    bad = system.A.tocsr(copy=True)
    bad.data[3] = np.nan
    with pytest.raises(InvalidInputError, match="NaN/Inf"):
        stencil_from_csr(bad, system.grid)
    with pytest.raises(InvalidInputError, match="16x16 but the grid has 20 fluid cells"):
        stencil_from_csr(system.A, Grid((4, 5)))
    with pytest.raises(InvalidInputError, match="scipy sparse"):
        stencil_from_csr(system.A.toarray(), system.grid)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
def random_stencil_tensors(shape, G, seed, dtype=torch.float64):
    """Random symmetric stencils ``(G, 1, *S)``, ``(G, 2 d, *S)`` and 0/1 fluid masks.

    Couplings join fluid neighbours only (some are missing), and are zero off the fluid.
    """
    gen = torch.Generator().manual_seed(seed)
    ndim = len(shape)
    fluid = (torch.rand(G, 1, *shape, generator=gen) > 0.2).to(dtype)
    couplings = torch.zeros(G, 2 * ndim, *shape, dtype=dtype)
    for a in range(ndim):
        n = shape[a]
        if n == 1:
            continue
        both = fluid.narrow(2 + a, 0, n - 1) * fluid.narrow(2 + a, 1, n - 1)
        both = both * (torch.rand(both.shape, generator=gen) > 0.2)  # missing neighbours
        hi = -torch.rand(both.shape, generator=gen, dtype=dtype) * both
        couplings[:, 2 * a + 1 : 2 * a + 2].narrow(2 + a, 0, n - 1).copy_(hi)
        couplings[:, 2 * a : 2 * a + 1].narrow(2 + a, 1, n - 1).copy_(hi)
    diagonal = (couplings.abs().sum(dim=1, keepdim=True) + 0.5) * fluid
    return diagonal, couplings, fluid


def reference_forward(net, diagonal, couplings, fluid, level):
    """The network, written as per-cell ``nn.Linear`` layers on channels-first fields."""
    ndim = diagonal.dim() - 2
    d, c, f = (t.to(torch.float64) for t in (diagonal, couplings, fluid))
    safe = torch.where(f > 0, d, torch.ones_like(d))
    ratio = c.abs() / safe
    total = ratio.sum(dim=1, keepdim=True)
    count = (c != 0).to(d.dtype).sum(dim=1, keepdim=True)
    feats = (
        torch.cat(
            [f, total, ratio.amax(dim=1, keepdim=True), total / count.clamp(min=1.0)]
            + [count / (2 * ndim), torch.full_like(total, 1.0 / (2 * ndim))],
            dim=1,
        )
        * f
    )
    weights = ratio / total.clamp(min=torch.finfo(torch.float64).tiny)
    p = {k: v.double() for k, v in net.state_dict().items()}

    def lin(name, h, bias=True):
        out = torch.einsum("oi,gi...->go...", p[f"{name}.weight"], h)
        return out + p[f"{name}.bias"].reshape(1, -1, *[1] * ndim) if bias else out

    h = torch.nn.functional.gelu(lin("lift", feats))
    zero = torch.zeros_like(h[:, :1])
    for k in range(net.layers):
        avg = apply_stencil(zero, weights, h)
        h = torch.nn.functional.gelu(lin(f"self_maps.{k}", h) + lin(f"nbr_maps.{k}", avg, False))
    bucket = min(level, net.level_buckets - 1)
    out = lin("head", h) + p["level_bias"][bucket].reshape(1, -1, *[1] * ndim)
    return 0.05 + 1.9 * torch.sigmoid(out)


@pytest.mark.parametrize(("shape", "G"), [((7, 5), 1), ((6, 4), 3), ((5, 4, 3), 1), ((4, 3, 5), 2)])
@pytest.mark.parametrize("level", [0, 5])
@pytest.mark.parametrize("chunk_cells", [1, 30, 1 << 15])  # chunks of 1, 2-7 planes, all
def test_network_matches_the_per_cell_formulation(shape, G, level, chunk_cells, monkeypatch):
    monkeypatch.setattr(network, "_CHUNK_CELLS", chunk_cells)
    torch.manual_seed(0)
    net = MGPCNet(width=6, layers=2, smoothing_steps=2)
    with torch.no_grad():
        for q in net.parameters():
            q.normal_(0.0, 1.0)
    d, c, f = random_stencil_tensors(shape, G, seed=G + level)
    expected = reference_forward(net, d, c, f, level)
    with torch.no_grad():
        theta, s = net(d, c, f, level=level)
    assert theta.shape == (G, 2, *shape) and theta.dtype == torch.float32
    torch.testing.assert_close(theta.double(), expected, rtol=0, atol=2e-6)  # float32 pass
    assert float(s.detach()) == float(net.over_correction(level).detach())
    net.double()  # in float64 the two formulations agree to float64 rounding
    with torch.no_grad():
        theta64, _ = net(d, c, f, level=level)
    torch.testing.assert_close(theta64, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk_cells", [1, 1 << 15])
def test_network_backward_reaches_every_parameter(chunk_cells, monkeypatch):
    monkeypatch.setattr(network, "_CHUNK_CELLS", chunk_cells)
    torch.manual_seed(1)
    net = MGPCNet(width=5, layers=2)
    d, c, f = random_stencil_tensors((5, 6), 2, seed=3)
    theta, s = net(d, c, f, level=1)
    (theta.square().mean() + s).backward()
    for name, q in net.named_parameters():
        if name.startswith("level_") or name.startswith("head"):
            continue  # tested below: buckets other than the one used get no gradient
        assert q.grad is not None and bool(q.grad.abs().sum() > 0), name
    assert bool(net.level_bias.grad[1].abs().sum() > 0)
    assert bool(net.level_scale.grad[1] != 0) and bool(net.head.weight.grad.abs().sum() > 0)


def test_level_features_layout():
    d, c, f = random_stencil_tensors((4, 5, 3), 2, seed=5)
    feats, weights = level_features(d, c, f)
    assert feats.shape == (2, 6, 4, 5, 3) and weights.shape == c.shape
    torch.testing.assert_close(feats[:, 0:1], f)
    present = (c != 0).sum(dim=1, keepdim=True).double()
    torch.testing.assert_close(feats[:, 4:5], present / 6 * f)
    fluid_rows = (present > 0).expand_as(weights)
    sums = weights.sum(dim=1, keepdim=True).expand_as(weights)
    torch.testing.assert_close(sums[fluid_rows], torch.ones_like(sums[fluid_rows]))


# ---------------------------------------------------------------------------------------------
# The hierarchy
# ---------------------------------------------------------------------------------------------
def dense_of(diagonal, couplings, shape):
    """Dense ``(N, N)`` matrix of one stencil (numpy, loops over cells and directions)."""
    n = int(np.prod(shape))
    mat = np.zeros((n, n))
    for i in range(n):
        cell = np.unravel_index(i, shape)
        mat[i, i] = diagonal[(0, *cell)]
        for a in range(len(shape)):
            for side, sign in ((0, -1), (1, 1)):
                other = neighbour(cell, a, sign, shape)
                if other is not None:
                    mat[i, np.ravel_multi_index(other, shape)] += couplings[(2 * a + side, *cell)]
    return mat


def aggregation(shape, axes):
    """The restriction ``R`` (coarse x fine) summing each block of fine cells."""
    factors = [2 if c else 1 for c in axes]
    coarse = [-(-s // f) for s, f in zip(shape, factors, strict=True)]
    R = np.zeros((int(np.prod(coarse)), int(np.prod(shape))))
    for i in range(R.shape[1]):
        cell = np.unravel_index(i, shape)
        block = tuple(c // f for c, f in zip(cell, factors, strict=True))
        R[np.ravel_multi_index(block, coarse), i] = 1.0
    return R, tuple(coarse)


GALERKIN = [((6,), None), ((7, 5), None), ((7, 5), (False, True)), ((4, 6), (True, False))]
GALERKIN += [((5, 4, 3), None), ((4, 5, 6), (True, False, True)), ((3, 1, 4), (True, False, True))]


@pytest.mark.parametrize(("shape", "axes"), GALERKIN)
def test_galerkin_coarsen_is_r_a_rt(shape, axes):
    d, c, f = random_stencil_tensors(shape, 2, seed=len(shape))
    dc, nc, fc = hierarchy.galerkin_coarsen(d, c, f, axes)
    R, coarse = aggregation(shape, axes or (True,) * len(shape))
    assert dc.shape == (2, 1, *coarse) and nc.shape == (2, 2 * len(shape), *coarse)
    for g in range(2):
        A = dense_of(d[g].numpy(), c[g].numpy(), shape)
        expected = R @ A @ R.T
        got = dense_of(dc[g].numpy(), nc[g].numpy(), coarse)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * np.abs(A).max())
        np.testing.assert_array_equal(fc[g, 0].numpy().ravel(), (R @ f[g].numpy().ravel()) > 0)


def test_coarsening_axes_match_the_mean_shares():
    gen = torch.Generator().manual_seed(7)
    for shape in [(6, 8), (5, 4, 6), (1, 6, 5)]:
        c = -torch.rand(2, 2 * len(shape), *shape, generator=gen, dtype=torch.float64)
        c[:, 0] *= 6.0  # strong couplings along axis 0
        c[0, :, 0] = 0.0  # some uncoupled cells
        a = c.abs().numpy()
        pair = a[:, 0::2] + a[:, 1::2]
        total = pair.sum(axis=1)
        coupled = total > 0
        share = [pair[:, k][coupled] / total[coupled] for k in range(len(shape))]
        per_axis = [x.sum() / coupled.sum() for x in share]
        expected = tuple(
            shape[k] > 1 and per_axis[k] >= 0.5 * max(per_axis) for k in range(len(shape))
        )
        assert hierarchy.coarsening_axes(c) == expected


@pytest.mark.parametrize("shape", [(5,), (4, 3), (3, 1, 4), (1, 4, 2), (2, 3, 4)])
def test_dense_matrix_is_the_stencil_applied_to_the_identity(shape):
    d, c, f = random_stencil_tensors(shape, 2, seed=11)
    d = d + (1.0 - f)  # something non-zero off the fluid too: it must be overwritten
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    cols = [apply_stencil(d[g : g + 1], c[g : g + 1], basis[:, None]) for g in range(2)]
    expected = torch.stack([col.reshape(n, n).T for col in cols])
    expected = expected + torch.diag_embed(1.0 - f.reshape(2, n))
    got = hierarchy._dense_matrix(d, c, f)
    assert torch.equal(got, expected)


def spd_stencil_matrices(shape, G, seed):
    d, c, f = random_stencil_tensors(shape, G, seed)
    return hierarchy._dense_matrix(d, c, f)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_coarsest_inverse_of_spd_matrices(dtype):
    dense = spd_stencil_matrices((4, 3, 5), 3, seed=2)
    inverse = hierarchy.coarsest_inverse(dense.to(dtype))
    assert inverse.dtype == dtype and torch.equal(inverse, inverse.transpose(-1, -2))
    expected = np.linalg.inv(dense.numpy())
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    scale = np.abs(expected).max()
    np.testing.assert_allclose(inverse.double().numpy(), expected, rtol=0, atol=tol * scale)


def test_coarsest_inverse_pseudo_inverse_and_refusal():
    T = np.diag(np.full(6, 2.0)) - np.eye(6, k=1) - np.eye(6, k=-1)
    T[0, 0] = T[-1, -1] = 1.0  # 1D pure-Neumann Laplacian: singular
    spd = spd_stencil_matrices((6,), 1, seed=4)[0].numpy()
    dense = torch.from_numpy(np.stack([T, spd]))
    inverse = hierarchy.coarsest_inverse(dense)
    assert torch.equal(inverse, inverse.transpose(-1, -2))
    for g, expected in enumerate([np.linalg.pinv(T), np.linalg.pinv(spd)]):
        np.testing.assert_allclose(inverse[g].numpy(), expected, rtol=0, atol=1e-11)
    indefinite = torch.from_numpy(np.stack([spd, spd - 2.0 * np.eye(6) * np.abs(spd).max()]))
    with pytest.raises(InvalidInputError, match="not positive semi-definite"):
        hierarchy.coarsest_inverse(indefinite)


def test_smoother_weights_are_theta_over_the_absolute_row_sums():
    net = MGPCNet(width=4, layers=1)
    d, c, f = random_stencil_tensors((6, 5, 4), 1, seed=9)
    levels = [hierarchy.Level(d, c, f), hierarchy.Level(*hierarchy.galerkin_coarsen(d, c, f))]
    with torch.no_grad():
        hierarchy._set_smoothers(net, levels)
        theta, _ = net(d, c, f, level=0)
    rowsum = d.abs() + c.abs().sum(dim=1, keepdim=True)
    expected = torch.where(f > 0, theta.double() / rowsum, 0.0)
    torch.testing.assert_close(levels[0].weights, expected, rtol=1e-15, atol=0)
    assert levels[0].weights.dtype == torch.float64 and levels[1].weights is None
    assert float(levels[1].scale) == float(net.over_correction(1).detach())


def test_cholesky_inverse_lapack_and_torch_routes_agree():
    dense = spd_stencil_matrices((3, 4, 4), 2, seed=6)
    lapack = hierarchy._cholesky_inverse(dense, host=True)
    routed = hierarchy._cholesky_inverse(dense, host=False)
    assert torch.equal(lapack, lapack.transpose(-1, -2))
    assert torch.equal(routed, routed.transpose(-1, -2))
    torch.testing.assert_close(lapack, routed, rtol=1e-12, atol=1e-14)
    singular = dense.clone()
    singular[0] = torch.ones(48, 48, dtype=torch.float64)  # rank one: no usable factor
    assert hierarchy._cholesky_inverse(singular, host=True) is None
    assert hierarchy._cholesky_inverse(singular, host=False) is None
