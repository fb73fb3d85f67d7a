"""Tests of neurosolve.data.systems: discretization, geometry, right-hand sides, I/O."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st

from neurosolve.data import (
    LinearSystem,
    check_spd_matrix,
    divergence_rhs,
    load_system,
    make_rhs,
    obstacle_flags,
    poisson,
    poisson_samples,
    random_rhs,
    reference_solve,
    save_system,
    smooth_rhs,
    systems,
)
from neurosolve.data.grids import AIR, FLUID, SOLID, Grid
from neurosolve.errors import FileFormatError, InvalidInputError


def centres(shape):
    axes = [(np.arange(n) + 0.5) / n for n in shape]
    return np.meshgrid(*axes, indexing="ij")


def observed_orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


# ---------------------------------------------------------------------------------------
# Second-order convergence against manufactured solutions
# ---------------------------------------------------------------------------------------
def _sin_problem(shape):
    X = centres(shape)
    u = np.prod([np.sin(np.pi * x) for x in X], axis=0)
    return u, len(shape) * np.pi**2 * u


def _varcoef_problem(shape):
    x, y = centres(shape)
    u = np.sin(np.pi * x) * np.sin(np.pi * y)
    ux = np.pi * np.cos(np.pi * x) * np.sin(np.pi * y)
    uy = np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)
    a = 1.0 + x + y**2 + 0.5 * np.sin(2 * np.pi * x)
    ax = 1.0 + np.pi * np.cos(2 * np.pi * x)
    ay = 2.0 * y
    f = -(ax * ux + ay * uy - 2 * np.pi**2 * a * u)
    return u, f, a


@pytest.mark.parametrize(
    "case, sizes",
    [
        ("2d", [(16, 16), (32, 32), (64, 64)]),
        ("2d-rectangular", [(12, 20), (24, 40), (48, 80)]),
        ("3d", [(8, 8, 8), (16, 16, 16), (32, 32, 32)]),
        ("2d-varcoef", [(20, 20), (40, 40), (80, 80)]),
    ],
)
def test_dirichlet_second_order(case, sizes):
    errors = []
    for shape in sizes:
        if case == "2d-varcoef":
            u, f, a = _varcoef_problem(shape)
        else:
            (u, f), a = _sin_problem(shape), None
        s = poisson(shape, coefficient=a)
        assert s.pinned.size == 0
        uh = reference_solve(s.A, s.grid.to_vector(f))
        errors.append(float(np.abs(uh - u.ravel()).max()))
    orders = observed_orders(errors)
    print(f"{case}: max errors {errors}, observed orders {orders}")
    assert np.all(orders > 1.8)


def test_neumann_with_pin_second_order():
    errors = []
    for n in (16, 32, 64):
        x, y = centres((n, n))
        u = np.cos(np.pi * x) * np.cos(np.pi * y)
        s = poisson((n, n), boundary="neumann")
        assert s.pinned.tolist() == [0]
        b = s.make_compatible((2 * np.pi**2 * u).ravel())
        assert abs(b.sum()) < 1e-9 * np.abs(b).sum()
        uh = reference_solve(s.A, b)
        assert abs(uh[0]) < 1e-10 * np.abs(uh).max()  # the pinned cell is normalised to 0
        # the pinned solution solves the singular (unpinned) system exactly
        singular = poisson((n, n), boundary="neumann", pin="none")
        assert np.linalg.norm(b - singular.A @ uh) <= 1e-9 * np.linalg.norm(b)
        errors.append(float(np.abs((uh - uh.mean()) - (u.ravel() - u.mean())).max()))
    orders = observed_orders(errors)
    print(f"neumann+pin: max errors {errors}, observed orders {orders}")
    assert np.all(orders > 1.8)


def test_air_faces_second_order():
    # rows 0..n-1 fluid, row n AIR, Neumann walls: u = 0 on the AIR face x = L, zero flux
    # elsewhere; u = cos(pi x / 2L) cos(pi y) is exact.
    errors = []
    for n in (16, 32, 64):
        shape = (n + 1, n)
        flags = np.full(shape, FLUID, dtype=np.int8)
        flags[-1] = AIR
        s = poisson(shape, flags=flags, boundary="neumann")
        assert s.pinned.size == 0
        x, y = centres(shape)
        L = n / (n + 1)
        u = np.cos(np.pi * x / (2 * L)) * np.cos(np.pi * y)
        f = ((np.pi / (2 * L)) ** 2 + np.pi**2) * u
        uh = reference_solve(s.A, s.grid.to_vector(f))
        errors.append(float(np.abs(uh - s.grid.to_vector(u)).max()))
    orders = observed_orders(errors)
    print(f"air faces: max errors {errors}, observed orders {orders}")
    assert np.all(orders > 1.8)


# ---------------------------------------------------------------------------------------
# Exact assembly against a straightforward cell-by-cell reference
# ---------------------------------------------------------------------------------------
def loop_assembly(flags, a, boundary, spacing):
    shape = flags.shape
    fluid = flags == FLUID
    idx = -np.ones(shape, dtype=int)
    idx[fluid] = np.arange(fluid.sum())
    n = int(fluid.sum())
    A = np.zeros((n, n))
    for cell in zip(*np.nonzero(fluid), strict=True):
        i = idx[cell]
        for d in range(len(shape)):
            for step in (-1, 1):
                nb = list(cell)
                nb[d] += step
                h2 = spacing[d] ** 2
                if not 0 <= nb[d] < shape[d]:
                    if boundary == "dirichlet":
                        A[i, i] += 2 * a[cell] / h2
                    continue
                nb = tuple(nb)
                if flags[nb] == FLUID:
                    c = 2 * a[cell] * a[nb] / (a[cell] + a[nb]) / h2
                    A[i, i] += c
                    A[i, idx[nb]] -= c
                elif flags[nb] == AIR:
                    A[i, i] += 2 * a[cell] / h2
    return A


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
@pytest.mark.parametrize("shape", [(7, 5), (1, 6), (4, 3, 5)])
def test_assembly_matches_cell_loop(shape, boundary):
    rng = np.random.default_rng(3)
    flags = rng.choice([AIR, FLUID, FLUID, FLUID, SOLID], size=shape).astype(np.int8)
    flags.flat[0] = FLUID
    a = np.exp(rng.uniform(-4, 4, shape))  # contrast up to ~e^8
    spacing = tuple(rng.uniform(0.5, 2.0, len(shape)))
    s = poisson(shape, flags=flags, coefficient=a, boundary=boundary, spacing=spacing, pin="none")
    ref = loop_assembly(flags, a, boundary, spacing)
    np.testing.assert_allclose(s.A.toarray(), ref, rtol=1e-13, atol=0)
    assert s.A.dtype == np.float64 and s.A.format == "csr" and s.A.has_sorted_indices


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple),
    seed=st.integers(0, 2**31),
    boundary=st.sampled_from(["dirichlet", "neumann"]),
)
def test_random_flags_property(shape, seed, boundary):
    """Any flags/coefficients: exact stencil, and pinning makes every component definite."""
    rng = np.random.default_rng(seed)
    flags = rng.choice([AIR, FLUID, FLUID, SOLID, SOLID], size=shape).astype(np.int8)
    if not (flags == FLUID).any():
        flags.flat[rng.integers(flags.size)] = FLUID
    a = 10.0 ** rng.uniform(-2, 2, shape)
    s = poisson(shape, flags=flags, coefficient=a, boundary=boundary)
    singular = poisson(shape, flags=flags, coefficient=a, boundary=boundary, pin="none")
    ref = loop_assembly(flags, a, boundary, s.grid.spacing)
    np.testing.assert_allclose(singular.A.toarray(), ref, rtol=1e-13, atol=0)
    # pinning touches exactly the pinned diagonal entries
    diff = (s.A - singular.A).tocoo()
    assert sorted(diff.row[diff.data != 0].tolist()) == sorted(s.pinned.tolist())
    assert np.linalg.eigvalsh(s.A.toarray()).min() > 0
    # the singular matrix has one null vector per pinned component, and no more
    assert np.sum(np.linalg.eigvalsh(singular.A.toarray()) <= 1e-9 * np.abs(ref).max()) == (
        s.pinned.size
    )


def test_harmonic_mean_face_coefficient():
    a = np.array([[1.0, 1e4]])
    s = poisson((1, 2), coefficient=a, boundary="neumann", spacing=(1.0, 1.0), pin="none")
    c = 2 * 1e4 / (1 + 1e4)
    np.testing.assert_allclose(s.A.toarray(), [[c, -c], [-c, c]], rtol=1e-15)


# ---------------------------------------------------------------------------------------
# SPD on obstacle geometries; pinning
# ---------------------------------------------------------------------------------------
GEOMETRY_CASES = [
    (shape, kind, air, boundary)
    for shape in [(12, 12), (6, 7, 5)]
    for kind in ["none", "boxes", "spheres", "mixed"]
    for air in [None, "top", "free-surface"]
    for boundary in ["dirichlet", "neumann"]
]


@pytest.mark.parametrize(
    "shape, kind, air, boundary",
    GEOMETRY_CASES,
    ids=[f"{len(c[0])}d-{c[1]}-{c[2]}-{c[3]}" for c in GEOMETRY_CASES],
)
def test_obstacle_systems_are_spd_and_solvable(shape, kind, air, boundary):
    rng = np.random.default_rng(11)
    flags = obstacle_flags(shape, kind, rng, boundary_air=air)
    a = np.exp(rng.uniform(0, np.log(1e4), shape))  # contrast up to 1e4
    s = poisson(shape, flags=flags, coefficient=a, boundary=boundary)
    A = s.A.toarray()
    assert s.n == int((flags == FLUID).sum())
    assert np.array_equal(A, A.T)
    assert np.linalg.eigvalsh(A).min() > 0
    # 5/7-point M-matrix: non-positive off-diagonals, weakly diagonally dominant rows
    off = A - np.diag(np.diag(A))
    assert (off <= 0).all()
    assert ((s.A != 0).sum(axis=1) <= 2 * len(shape) + 1).all()
    assert (A.sum(axis=1) >= -1e-9 * np.abs(A).max()).all()
    b = divergence_rhs(s, rng)
    x = reference_solve(s.A, b)
    np.testing.assert_allclose(x, spla.spsolve(s.A.tocsc(), b), rtol=1e-8, atol=1e-12)


def test_enclosed_pocket_is_pinned_alone():
    flags = np.full((7, 7), FLUID, dtype=np.int8)
    flags[1:6, 1:6] = SOLID
    flags[3, 3] = FLUID  # isolated single cell: no neighbours, no Dirichlet contact
    flags[2, 2] = FLUID  # another isolated cell
    s = poisson((7, 7), flags=flags, boundary="dirichlet")
    idx = {cell: k for k, cell in enumerate(zip(*np.nonzero(flags == FLUID), strict=True))}
    assert sorted(s.pinned.tolist()) == sorted([idx[(2, 2)], idx[(3, 3)]])
    # pin value = a * sum_d 2 / h_d^2 = 4 * 49
    assert s.A[idx[(3, 3)], idx[(3, 3)]] == pytest.approx(4 * 49)
    assert np.linalg.eigvalsh(s.A.toarray()).min() > 0
    b = random_rhs(s, 0)
    assert b[idx[(3, 3)]] == 0.0 and b[idx[(2, 2)]] == 0.0  # compatible: mean removed


def test_pin_none_leaves_singular_and_bad_pin():
    s = poisson((4, 4), boundary="neumann", pin="none")
    assert s.pinned.size == 0
    np.testing.assert_allclose(s.A @ np.ones(16), 0, atol=1e-12)
    with pytest.raises(InvalidInputError, match="pin"):
        poisson((4, 4), pin="first")


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 3), (1, 1, 1), (3, 1, 4)])
@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_degenerate_and_odd_sizes_are_spd(shape, boundary):
    s = poisson(shape, boundary=boundary)
    assert s.A.shape == (np.prod(shape),) * 2
    assert np.linalg.eigvalsh(s.A.toarray()).min() > 0


def test_large_grid_nonzero_count():
    shape = (40, 40, 40)
    flags = obstacle_flags(shape, "mixed", np.random.default_rng(5))
    s = poisson(shape, flags=flags)
    fluid = flags == FLUID
    faces = sum(
        int((np.take(fluid, range(n - 1), axis=d) & np.take(fluid, range(1, n), axis=d)).sum())
        for d, n in enumerate(shape)
    )
    assert s.A.nnz == s.n + 2 * faces
    assert s.A.indices.dtype == np.int32


def test_poisson_input_errors():
    with pytest.raises(InvalidInputError, match="no fluid"):
        poisson((3, 3), flags=np.full((3, 3), SOLID))
    with pytest.raises(InvalidInputError, match="> 0"):
        poisson((3, 3), coefficient=-np.ones((3, 3)))
    with pytest.raises(InvalidInputError, match="NaN"):
        poisson((3, 3), coefficient=np.full((3, 3), np.nan))
    with pytest.raises(InvalidInputError, match="coefficient shape"):
        poisson((3, 3), coefficient=np.ones((3, 4)))
    with pytest.raises(InvalidInputError, match=">= 1"):
        poisson((0, 3))
    with pytest.raises(InvalidInputError, match="boundary"):
        poisson((3, 3), boundary="periodic")
    with pytest.raises(InvalidInputError, match="not both"):
        poisson(Grid((3, 3)), flags=np.ones((3, 3)))
    # coefficient values on non-fluid cells are ignored
    flags = np.ones((3, 3), dtype=np.int8)
    flags[0, 0] = SOLID
    a = np.ones((3, 3))
    a[0, 0] = np.nan
    assert poisson((3, 3), flags=flags, coefficient=a).n == 8


def test_grid_argument_equivalent():
    flags = obstacle_flags((10, 10), "boxes", 1)
    g = Grid((10, 10), flags=flags, boundary="neumann")
    a = poisson(g).A
    b = poisson((10, 10), flags=flags, boundary="neumann").A
    assert abs(a - b).max() == 0


# ---------------------------------------------------------------------------------------
# Geometry generator
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["none", "boxes", "spheres", "mixed"])
def test_obstacle_flags_properties(kind):
    f1 = obstacle_flags((32, 32), kind, np.random.default_rng(4))
    f2 = obstacle_flags((32, 32), kind, np.random.default_rng(4))
    assert f1.dtype == np.int8 and np.array_equal(f1, f2)
    solid = (f1 == SOLID).mean()
    assert solid <= 0.5
    assert (solid == 0) == (kind == "none")
    assert set(np.unique(f1)) <= {FLUID, SOLID}


def test_obstacle_flags_resolution_independent_geometry():
    coarse = obstacle_flags((16, 16, 16), "mixed", np.random.default_rng(8), count=4)
    fine = obstacle_flags((32, 32, 32), "mixed", np.random.default_rng(8), count=4)
    up = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert (up == fine).mean() > 0.9
    assert (fine == SOLID).any()


def test_obstacle_flags_air_regions():
    top = obstacle_flags((8, 6), "none", 0, boundary_air="top")
    assert (top[-1] == AIR).all() and (top[:-1] == FLUID).all()
    fs = obstacle_flags((20, 6, 5), "boxes", 3, boundary_air="free-surface")
    air_rows = np.flatnonzero((fs == AIR).all(axis=(1, 2)))
    assert 0.5 * 20 <= air_rows.min() <= 0.9 * 20 and air_rows.max() == 19
    assert not (fs[: air_rows.min()] == AIR).any()


def test_obstacle_flags_errors():
    with pytest.raises(InvalidInputError, match="unknown geometry"):
        obstacle_flags((8, 8), "blobs", 0)
    with pytest.raises(InvalidInputError, match="boundary_air"):
        obstacle_flags((8, 8), "boxes", 0, boundary_air="bottom")
    with pytest.raises(InvalidInputError, match="count"):
        obstacle_flags((8, 8), "boxes", 0, count=-1)
    with pytest.raises(InvalidInputError, match="rng"):
        obstacle_flags((8, 8), "boxes", "seed")


# ---------------------------------------------------------------------------------------
# Right-hand sides
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "smooth", "divergence", "smooth-divergence"])
def test_rhs_deterministic_and_compatible(kind):
    flags = np.full((10, 12), FLUID, dtype=np.int8)
    flags[4, :] = SOLID  # two floating components with Neumann walls
    s = poisson((10, 12), flags=flags, boundary="neumann")
    assert s.pinned.size == 2
    b1 = make_rhs(s, kind, np.random.default_rng(2))
    b2 = make_rhs(s, kind, np.random.default_rng(2))
    assert np.array_equal(b1, b2) and np.abs(b1).max() > 0
    for comp in range(2):
        assert abs(b1[s.floating == comp].sum()) < 1e-10 * np.abs(b1).sum()


def test_smooth_rhs_is_smooth():
    s = poisson((64, 64))
    b = s.grid.to_field(smooth_rhs(s, 0))
    r = s.grid.to_field(random_rhs(s, 0))
    rough = lambda f: np.abs(np.diff(f, axis=0)).mean() / np.abs(f).mean()  # noqa: E731
    assert rough(b) < 0.2 * rough(r)
    assert smooth_rhs(poisson((1, 7)), 0).shape == (7,)


def _face_flux_divergence(s: LinearSystem, u_faces, p):
    """div(u - grad p) per fluid cell, written cell by cell (independent of the module)."""
    g = s.grid
    full_p = g.to_field(p)
    out = np.zeros(g.shape)
    for cell in zip(*np.nonzero(g.fluid), strict=True):
        total = 0.0
        for d in range(g.ndim):
            h = g.spacing[d]
            for side, step in ((1, 1), (0, -1)):
                face = list(cell)
                face[d] += side  # face index along d: cell i has faces i and i+1
                nb = list(cell)
                nb[d] += step
                if not 0 <= nb[d] < g.shape[d]:
                    kind = AIR if g.boundary == "dirichlet" else SOLID
                else:
                    kind = g.flags[tuple(nb)]
                un = u_faces[d][tuple(face)]
                if kind == SOLID:
                    flux = 0.0
                elif kind == AIR:  # p = 0 at the face, half a cell away
                    flux = un - step * (0.0 - full_p[cell]) / (h / 2)
                else:
                    flux = un - step * (full_p[tuple(nb)] - full_p[cell]) / h
                total += step * flux / h
        out[cell] = total
    return g.to_vector(out)


@pytest.mark.parametrize("boundary", ["dirichlet", "neumann"])
def test_divergence_rhs_projection_is_divergence_free(boundary):
    shape = (9, 11)
    flags = obstacle_flags(shape, "mixed", np.random.default_rng(6), boundary_air="top")
    s = poisson(shape, flags=flags, boundary=boundary)
    # redraw the same face velocities the generator draws, to project them
    b = divergence_rhs(s, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    u_faces = []
    for d in range(2):
        fshape = list(shape)
        fshape[d] += 1
        u_faces.append(rng.standard_normal(fshape))
    p = reference_solve(s.A, b, rtol=1e-13)
    div = _face_flux_divergence(s, u_faces, p)
    assert np.abs(div).max() < 1e-8 * np.abs(b).max()


def test_smooth_divergence_is_smoother():
    s = poisson((48, 48), flags=obstacle_flags((48, 48), "none", 0, boundary_air="top"))
    noisy = s.grid.to_field(divergence_rhs(s, 1))
    smooth = s.grid.to_field(divergence_rhs(s, 1, velocity="smooth"))
    rough = lambda f: np.abs(np.diff(f, axis=1)).mean() / np.abs(f).mean()  # noqa: E731
    assert rough(smooth) < 0.3 * rough(noisy)
    with pytest.raises(InvalidInputError, match="velocity"):
        divergence_rhs(s, 1, velocity="curl-free")


def test_rhs_needs_grid():
    s = LinearSystem(A=poisson((3, 3)).A, grid=None)
    assert random_rhs(s, 0).shape == (9,)
    with pytest.raises(InvalidInputError, match="grid"):
        divergence_rhs(s, 0)
    with pytest.raises(InvalidInputError, match="unknown right-hand side"):
        make_rhs(s, "ones", 0)


# ---------------------------------------------------------------------------------------
# Validation and I/O
# ---------------------------------------------------------------------------------------
def test_check_spd_matrix_accepts_and_normalizes():
    M = sp.coo_matrix(np.array([[2, -1], [-1, 2]], dtype=np.int64))
    out = check_spd_matrix(M)
    assert out.format == "csr" and out.dtype == np.float64 and out.has_sorted_indices
    # unsorted indices with a duplicate: the result is canonical, the input untouched
    U = sp.csr_matrix(
        (np.array([-1.0, 1.0, 1.0, -1.0, 2.0]), np.array([1, 0, 0, 0, 1]), np.array([0, 3, 5])),
        shape=(2, 2),
    )
    before = U.indices.copy()
    out = check_spd_matrix(U)
    assert out.has_canonical_format and np.array_equal(out.toarray(), [[2, -1], [-1, 2]])
    assert np.array_equal(U.indices, before)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.ones((2, 3)), "not square"),
        (np.array([[2.0, 1.0], [0.0, 2.0]]), "not symmetric"),
        (np.array([[2.0, np.nan], [np.nan, 2.0]]), "NaN or Inf"),
        (np.array([[np.inf, 0.0], [0.0, 2.0]]), "NaN or Inf"),
        (np.array([[2.0, 0.0], [0.0, -1.0]]), "non-positive diagonal"),
        (sp.csr_matrix((3, 3)), "non-positive diagonal"),
        (np.zeros((0, 0)), "empty"),
        (np.ones((2, 2, 2)), "2-D"),
        (np.array([[1 + 1j, 0], [0, 1]]), "real"),
    ],
)
def test_check_spd_matrix_errors(matrix, message):
    with pytest.raises(InvalidInputError, match=message):
        check_spd_matrix(matrix)


def test_check_spd_matrix_symmetry_tolerance():
    A = np.array([[2.0, -1.0], [-1.0 + 1e-13, 2.0]])
    check_spd_matrix(A)
    with pytest.raises(InvalidInputError, match="not symmetric"):
        check_spd_matrix(A, symmetry_tol=1e-15)


def _system_with_everything():
    rng = np.random.default_rng(9)
    flags = obstacle_flags((7, 9), "mixed", rng, boundary_air="top")
    a = np.exp(rng.standard_normal((7, 9)))
    s = poisson((7, 9), flags=flags, coefficient=a, boundary="neumann", name="demo")
    s.b = random_rhs(s, rng)
    return s


@pytest.mark.parametrize("suffix", [".mtx", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    s = _system_with_everything()
    path = save_system(tmp_path / f"sys{suffix}", s)
    t = load_system(path)
    assert abs(t.A - s.A).max() == 0
    np.testing.assert_array_equal(t.b, s.b)
    if suffix == ".npz":
        assert t.grid.shape == s.grid.shape and t.grid.boundary == "neumann"
        np.testing.assert_array_equal(t.grid.flags, s.grid.flags)
        np.testing.assert_array_equal(t.coefficient, s.coefficient)
        assert t.name == "demo"
    else:
        assert t.grid is None
        assert (tmp_path / "sys_b.mtx").is_file()
        t2 = load_system(path, flags=s.grid.flags)
        assert t2.grid.shape == (7, 9) and t2.n == s.n
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["sys.mtx", "sys_b.mtx"] if suffix == ".mtx" else ["sys.npz"]
    )


def test_load_foreign_files(tmp_path):
    A = poisson((5, 4)).A
    scipy.io.mmwrite(str(tmp_path / "general.mtx"), A.tocoo())  # general storage
    assert abs(load_system(tmp_path / "general.mtx").A - A).max() == 0
    sp.save_npz(tmp_path / "scipy.npz", A)
    t = load_system(tmp_path / "scipy.npz", grid=(5, 4))
    assert abs(t.A - A).max() == 0 and t.grid.shape == (5, 4)
    p = save_system(tmp_path / "bare.npz", A, b=np.arange(20.0))
    np.testing.assert_array_equal(load_system(p).b, np.arange(20.0))


def test_load_errors(tmp_path):
    with pytest.raises(FileFormatError, match="not found"):
        load_system(tmp_path / "missing.mtx")
    (tmp_path / "garbage.mtx").write_text("this is not a matrix\n1 2 3\n")
    with pytest.raises(FileFormatError, match="Matrix Market"):
        load_system(tmp_path / "garbage.mtx")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FileFormatError, match="npz"):
        load_system(tmp_path / "garbage.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(FileFormatError, match="holds no matrix"):
        load_system(tmp_path / "other.npz")
    (tmp_path / "m.txt").write_text("1")
    with pytest.raises(FileFormatError, match="extension"):
        load_system(tmp_path / "m.txt")
    scipy.io.mmwrite(str(tmp_path / "nonsym.mtx"), sp.coo_matrix(np.array([[2.0, 1], [0, 2]])))
    with pytest.raises(InvalidInputError, match="not symmetric"):
        load_system(tmp_path / "nonsym.mtx")
    scipy.io.mmwrite(str(tmp_path / "ok.mtx"), poisson((2, 2)).A)
    scipy.io.mmwrite(str(tmp_path / "ok_b.mtx"), np.ones((3, 1)))
    with pytest.raises(InvalidInputError, match="shape"):
        load_system(tmp_path / "ok.mtx")
    (tmp_path / "ok_b.mtx").unlink()
    with pytest.raises(InvalidInputError, match="fluid cells"):
        load_system(tmp_path / "ok.mtx", grid=(3, 3))


def test_save_errors_leave_no_file(tmp_path, monkeypatch):
    with pytest.raises(InvalidInputError, match="not symmetric"):
        save_system(tmp_path / "bad.mtx", sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 2.0]])))
    with pytest.raises(InvalidInputError, match="extension"):
        save_system(tmp_path / "bad.txt", poisson((2, 2)))
    with pytest.raises(InvalidInputError, match="shape"):
        save_system(tmp_path / "bad.npz", poisson((2, 2)), b=np.ones(3))
    with pytest.raises(InvalidInputError, match="directory"):
        save_system(tmp_path / "nodir" / "a.npz", poisson((2, 2)))

    real_mmwrite = scipy.io.mmwrite
    calls = []

    def failing_mmwrite(target, *args, **kwargs):
        calls.append(target)
        if len(calls) == 1:  # the matrix is written fine, the right-hand side is not
            return real_mmwrite(target, *args, **kwargs)
        with open(target, "w") as fh:
            fh.write("%%MatrixMarket partial")
        raise OSError("disk full")

    monkeypatch.setattr(scipy.io, "mmwrite", failing_mmwrite)
    with pytest.raises(OSError, match="disk full"):
        save_system(tmp_path / "partial.mtx", poisson((2, 2)), b=np.ones(4))
    assert len(calls) == 2
    assert os.listdir(tmp_path) == []


def test_save_mtx_without_b_removes_stale_rhs(tmp_path):
    s = poisson((3, 2))
    save_system(tmp_path / "s.mtx", s, b=np.ones(6))
    assert load_system(tmp_path / "s.mtx").b is not None
    save_system(tmp_path / "s.mtx", s)
    assert load_system(tmp_path / "s.mtx").b is None
    assert os.listdir(tmp_path) == ["s.mtx"]


# ---------------------------------------------------------------------------------------
# Reference solve and samples
# ---------------------------------------------------------------------------------------
def test_reference_solve_amg_path_meets_tolerance():
    s = poisson((24, 24, 24), flags=obstacle_flags((24, 24, 24), "spheres", 2))
    b = smooth_rhs(s, 3)
    x = reference_solve(s.A, b, rtol=1e-10, direct_limit=0)
    assert np.linalg.norm(b - s.A @ x) <= 1e-10 * np.linalg.norm(b)
    assert np.array_equal(reference_solve(s.A, np.zeros(s.n)), np.zeros(s.n))


def test_poisson_samples_solve_their_systems():
    rngs = [np.random.default_rng([5, i]) for i in range(3)]
    x, y = poisson_samples(rngs, resolution=12, geometry="mixed", boundary_air="top")
    assert x.shape == (3, 2, 12, 12) and y.shape == (3, 1, 12, 12)
    for k in range(3):
        flags = x[k, 1].astype(np.int8)
        s = poisson((12, 12), flags=flags)
        b, u = s.grid.to_vector(x[k, 0]), s.grid.to_vector(y[k, 0])
        assert np.linalg.norm(b - s.A @ u) <= 1e-10 * np.linalg.norm(b)
        assert (y[k, 0][flags != FLUID] == 0).all()
    # sample i depends on its generator only
    x1, y1 = poisson_samples(
        [np.random.default_rng([5, 1])], resolution=12, geometry="mixed", boundary_air="top"
    )
    assert np.array_equal(x1[0], x[1]) and np.array_equal(y1[0], y[1])


def test_poisson_samples_3d_variable_coefficient():
    x, y = poisson_samples(
        [np.random.default_rng(0)],
        dim=3,
        resolution=8,
        rhs="smooth",
        coefficient="lognormal",
        boundary="neumann",
    )
    assert x.shape == (1, 3, 8, 8, 8) and (x[0, 2][x[0, 1] == FLUID] > 0).all()
    s = poisson((8,) * 3, flags=x[0, 1].astype(np.int8), coefficient=x[0, 2], boundary="neumann")
    b, u = s.grid.to_vector(x[0, 0]), s.grid.to_vector(y[0, 0])
    assert np.linalg.norm(b - s.A @ u) <= 1e-10 * np.linalg.norm(b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dim": 4}, "dim"),
        ({"resolution": 0}, "resolution"),
        ({"rhs": "ones"}, "right-hand side"),
        ({"geometry": "blobs"}, "geometry"),
        ({"coefficient": "wild"}, "coefficient"),
        ({"rtol": float("nan")}, "rtol"),
    ],
)
def test_poisson_samples_errors(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        poisson_samples([np.random.default_rng(0)], **{"resolution": 8, **kwargs})


def test_module_exports():
    for name in systems.__all__:
        assert hasattr(systems, name)
