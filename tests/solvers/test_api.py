"""The solver API as scipy / pyamg / PyTorch users hold it (issue 16, "Solver API").

- a scipy ``LinearOperator`` defined by ``matvec`` only is called on 1-D vectors;
- every solver with a linear preconditioner hands it out by ``aspreconditioner()``, and
  scipy's own ``cg`` with it takes as many steps as the package's PCG;
- option names are checked (``M=`` is scipy's alias; ``tol=`` gets "did you mean rtol?");
- ``x`` comes back in the dtype of ``b``;
- the facade, ``H5Dataset``'s docstring and ``as_dict``, ``py.typed``, ``load_system``'s hint;
- ic-pcg runs ilupp's IChol(0) when installed, the own factor otherwise, and says which.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import neurosolve
from neurosolve.data import obstacle_flags, poisson, save_system
from neurosolve.errors import InvalidInputError
from neurosolve.solvers import available, make_solver, method_options, solve
from neurosolve.solvers.baselines.ic0 import IncompleteCholesky
from neurosolve.solvers.krylov.preconditioners import apply_linear_operator

ROOT = Path(__file__).resolve().parents[2]


def varcoef(shape=(16, 16), seed=0):
    rng = np.random.default_rng(seed)
    return poisson(shape, coefficient=np.exp(rng.normal(size=shape)))


class Recorder:
    """A ``matvec`` that records the shapes it is called with: ``v / d``, as in the issue."""

    def __init__(self, d):
        self.d, self.shapes = d, []

    def __call__(self, v):
        self.shapes.append(np.shape(v))
        return v / self.d


# ------------------------------------------------------------ 1. LinearOperator as scipy calls it


def test_matvec_only_preconditioner_gets_vectors_and_matches_jacobi():
    system = varcoef()
    d = system.A.diagonal()
    rec = Recorder(d)
    M = spla.LinearOperator(system.A.shape, matvec=rec, dtype=np.float64)
    b = np.ones(system.n)
    result = solve(system, b, method="pcg", preconditioner=M, rtol=1e-8)
    jacobi = solve(system, b, method="pcg-jacobi", rtol=1e-8)
    assert result.converged
    assert abs(result.iterations - jacobi.iterations) <= 1
    assert rec.shapes and set(rec.shapes) == {(system.n,)}  # never an (n, 1) column


def test_matvec_only_preconditioner_on_a_block_goes_column_by_column():
    system = varcoef()
    rec = Recorder(system.A.diagonal())
    M = spla.LinearOperator(system.A.shape, matvec=rec, dtype=np.float64)
    B = np.random.default_rng(1).normal(size=(system.n, 3))
    result = solve(system, B, method="pcg", M=M, rtol=1e-8)
    assert result.converged and result.x.shape == (system.n, 3)
    assert set(rec.shapes) == {(system.n,)}


def test_matvec_only_operator_as_A():
    d = np.arange(1.0, 21.0)
    rec = Recorder(1.0 / d)  # v / (1/d) = d v
    A = spla.LinearOperator((20, 20), matvec=rec, dtype=np.float64)
    for b in (np.ones(20), np.ones((20, 2))):
        result = solve(A, b, method="cg", rtol=1e-10)
        assert result.converged
        np.testing.assert_allclose(result.x, (b.T / d).T, rtol=1e-8)
    assert set(rec.shapes) == {(20,)}


def test_apply_linear_operator_uses_a_genuine_block_product():
    A = sp.random(12, 12, density=0.3, random_state=0, format="csr") + sp.eye(12)
    calls = []

    class Wrapped(spla.LinearOperator):
        def __init__(self):
            super().__init__(np.float64, A.shape)

        def _matvec(self, x):
            calls.append("matvec")
            return A @ x

        def _matmat(self, X):
            calls.append("matmat")
            return A @ X

    X = np.random.default_rng(2).normal(size=(12, 4))
    np.testing.assert_allclose(apply_linear_operator(Wrapped(), X), A @ X)
    np.testing.assert_allclose(apply_linear_operator(spla.aslinearoperator(A), X), A @ X)
    np.testing.assert_allclose(apply_linear_operator(Wrapped(), X[:, 0]), A @ X[:, 0])
    assert calls == ["matmat", "matvec"]


# ------------------------------------------------------------ 2. aspreconditioner for scipy's cg

# method -> options; each solver's aspreconditioner() is M= for scipy.sparse.linalg.cg
PRECONDITIONED = {
    "ic-pcg": {},
    "amg-sa-pcg": {},
    "amg-rs-pcg": {},
    "pcg-jacobi": {},
    "scipy-cg-jacobi": {},
    "pcg": {"preconditioner": "matrix"},
    "mgpc-pcg": {},
}


def _scipy_iterations(A, b, M, rtol):
    count = [0]

    def cb(_):
        count[0] += 1

    x, code = spla.cg(A, b, M=M, rtol=rtol, atol=0.0, maxiter=2000, callback=cb)
    return x, code, count[0]


@pytest.mark.parametrize("method", sorted(PRECONDITIONED))
def test_aspreconditioner_in_scipy_cg(method):
    system = varcoef((24, 24), seed=3)
    options = dict(PRECONDITIONED[method])
    if options.get("preconditioner") == "matrix":
        options["preconditioner"] = sp.diags(1.0 / system.A.diagonal()).tocsr()
    solver = make_solver(method, system, **options)
    M = solver.aspreconditioner()
    assert isinstance(M, spla.LinearOperator) and M.shape == (system.n, system.n)
    b = np.random.default_rng(4).normal(size=system.n)
    own = solver.solve(b, rtol=1e-8)
    x, code, steps = _scipy_iterations(system.A, b, M, 1e-8)
    assert own.converged and code == 0
    assert np.linalg.norm(b - system.A @ x) <= 1.01e-8 * np.linalg.norm(b)
    # the same preconditioned CG: the same number of steps, give or take rounding
    assert abs(steps - own.iterations) <= max(2, own.iterations // 10), (steps, own.iterations)
    # a linear map: M(u + 2v) = M u + 2 M v; a block is its columns
    u, v = np.random.default_rng(5).normal(size=(2, system.n))
    np.testing.assert_allclose(M @ (u + 2 * v), M @ u + 2 * (M @ v), rtol=1e-9, atol=1e-12)
    block = apply_linear_operator(M, np.stack([u, v], axis=1))
    np.testing.assert_allclose(block, np.stack([M @ u, M @ v], axis=1), rtol=1e-9, atol=1e-12)


def test_torch_aspreconditioner_on_a_grid_with_obstacles():
    system = poisson((9, 8, 7), flags=obstacle_flags((9, 8, 7), "boxes", 1, count=2))
    solver = make_solver("pcg-jacobi", system)
    assert type(solver.op).__name__ == "StencilOperator"  # internal layout != unknowns
    U = np.random.default_rng(0).normal(size=(system.n, 3))
    expected = U / system.A.diagonal()[:, None]
    M = solver.aspreconditioner()
    np.testing.assert_allclose(M @ U, expected, rtol=1e-14)
    np.testing.assert_allclose(M @ U[:, 1], expected[:, 1], rtol=1e-14)


@pytest.mark.parametrize("method", ["cg", "scipy-cg", "fcg"])
def test_no_preconditioner_to_hand_out(method):
    solver = make_solver(method, varcoef((8, 8)))
    with pytest.raises(InvalidInputError, match="not a fixed linear map"):
        solver.aspreconditioner()


def test_dcdm_says_why_it_has_no_preconditioner():
    solver = make_solver("dcdm", poisson((4, 4, 4)))
    with pytest.raises(InvalidInputError, match="nonlinear"):
        solver.aspreconditioner()


# ------------------------------------------------------------ 3. option names


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        ("cg", {"tol": 1e-8}, ["'cg'", "did you mean 'rtol'?", "options of 'cg'", "device"]),
        ("pcg", {"precondtioner": "jacobi"}, ["did you mean 'preconditioner'?"]),
        ("amg-sa-pcg", {"cylce": "W"}, ["'amg-sa-pcg'", "did you mean 'cycle'?"]),
        ("scipy-cg", {"M": "jacobi"}, ["takes no preconditioner"]),
        ("mgpc-pcg", {"bogus": 1}, ["'mgpc-pcg'", "'bogus'", "options of 'mgpc-pcg'"]),
    ],
    ids=["tol", "misspelled", "amg-misspelled", "M-without-preconditioner", "mgpc"],
)
def test_unknown_option_names_the_method_and_its_options(method, options, words):
    system = varcoef((8, 8))
    with pytest.raises(InvalidInputError) as info:
        solve(system, np.ones(system.n), method=method, **options)
    assert not isinstance(info.value, TypeError)
    for word in words:
        assert word in str(info.value)


def test_solve_arguments_given_to_make_solver_are_pointed_at_solve():
    with pytest.raises(InvalidInputError, match=r"maxiter is an argument of solve\(\)"):
        make_solver("ic-pcg", varcoef((8, 8)), maxiter=5)


def test_M_is_scipys_name_of_preconditioner():
    system = varcoef((12, 12))
    b = np.ones(system.n)
    Minv = sp.diags(1.0 / system.A.diagonal()).tocsr()
    by_m = solve(system, b, method="pcg", M=Minv, rtol=1e-10)
    by_name = solve(system, b, method="pcg", preconditioner=Minv, rtol=1e-10)
    assert by_m.converged and by_m.iterations == by_name.iterations
    np.testing.assert_allclose(by_m.x, by_name.x)
    assert make_solver("fcg", system, M="jacobi").precond_label == "jacobi"
    with pytest.raises(InvalidInputError, match="once"):
        make_solver("pcg", system, M=Minv, preconditioner=Minv)


def test_pcg_jacobi_refuses_another_preconditioner():
    system = varcoef((8, 8))
    with pytest.raises(InvalidInputError, match="pcg-jacobi always uses"):
        make_solver("pcg-jacobi", system, M=sp.eye(system.n).tocsr())
    assert make_solver("pcg-jacobi", system, preconditioner="jacobi").precond_label == "jacobi"


def test_method_options_of_every_method():
    for method in available():
        names = method_options(method)
        assert names is None or all(isinstance(name, str) for name in names)
    assert "preconditioner" in method_options("pcg")
    assert "backend" in method_options("ic-pcg")
    assert "preconditioner" not in method_options("scipy-cg")


# ------------------------------------------------------------ 4. x in the dtype of b


@pytest.mark.parametrize("method", sorted(available()))
def test_x_keeps_the_dtype_of_b(method):
    system = poisson((6, 6, 6))
    options = {"M": "jacobi"} if method == "pcg" else {}
    b32 = np.random.default_rng(6).normal(size=system.n).astype(np.float32)
    result = solve(system, b32, method=method, rtol=1e-4, **options)
    assert isinstance(result.x, np.ndarray) and result.x.dtype == np.float32
    tensor = solve(system, torch.from_numpy(b32), method=method, rtol=1e-4, **options)
    assert isinstance(tensor.x, torch.Tensor) and tensor.x.dtype == torch.float32
    assert tensor.x.device == torch.device("cpu")
    b64 = b32.astype(np.float64)
    assert solve(system, b64, method=method, rtol=1e-4, **options).x.dtype == np.float64


def test_a_float32_iteration_is_not_widened():
    system = poisson((8, 8))
    b = torch.ones(system.n, dtype=torch.float64)
    result = solve(system, b, method="cg", dtype=torch.float32, rtol=1e-5)
    assert result.x.dtype == torch.float32
    block = make_solver("cg", system).solve(np.ones((system.n, 2), dtype=np.float32))
    assert block.x.dtype == np.float32 and block.x.shape == (system.n, 2)


# ------------------------------------------------------------ 5. facade, docs, typing, hints


def test_facade_exports_solve_and_make_solver():
    assert {"solve", "make_solver"} <= set(dir(neurosolve))
    assert neurosolve.make_solver is make_solver and neurosolve.solve is solve


def test_h5dataset_has_its_docstring():
    from neurosolve.data.store import H5Dataset

    assert H5Dataset.__doc__ and "map-style torch dataset" in H5Dataset.__doc__
    assert "as_dict" in H5Dataset.__doc__


def test_py_typed_is_shipped():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    assert (ROOT / "src" / "neurosolve" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["neurosolve"]
    assert "ilupp" in config["project"]["optional-dependencies"]


def test_load_system_says_flags_is_the_fix(tmp_path):
    from neurosolve.data import load_system

    flags = obstacle_flags((10, 10), "boxes", 3, count=2)
    system = poisson((10, 10), flags=flags)
    assert system.n < 100  # solid cells dropped from the matrix
    path = tmp_path / "system.mtx"
    save_system(path, system)
    with pytest.raises(InvalidInputError, match="flags="):
        load_system(path, grid=(10, 10))
    assert load_system(path, grid=(10, 10), flags=flags).n == system.n


# ------------------------------------------------------------ 6. H5Dataset(as_dict=True)


def test_h5dataset_as_dict(tmp_path):
    from torch.utils.data import DataLoader

    from neurosolve.data.generate import generate
    from neurosolve.data.store import H5Dataset

    out = tmp_path / "d.h5"
    generate("poisson", out, samples=3, seed=0, params={"resolution": 8}, progress=False)
    plain, keyed = H5Dataset(out), H5Dataset(out, as_dict=True)
    x, y = plain[1]
    item = keyed[1]
    assert sorted(item) == ["x", "y"]
    assert torch.equal(item["x"], x) and torch.equal(item["y"], y)
    batch = next(iter(DataLoader(keyed, batch_size=3)))
    assert batch["x"].shape == (3, *x.shape) and batch["y"].shape == (3, *y.shape)
    with pytest.raises(InvalidInputError, match="as_dict"):
        H5Dataset(out, as_dict="yes")


# ------------------------------------------------------------ 7. IC(0): ilupp or our own


@pytest.fixture
def without_ilupp(monkeypatch):
    monkeypatch.setitem(sys.modules, "ilupp", None)  # `import ilupp` raises ImportError


def test_ic0_falls_back_without_ilupp(without_ilupp):
    system = varcoef((12, 12))
    ic = IncompleteCholesky(system.A)
    assert ic.backend == "neurosolve" and ic.label == "ic0 (neurosolve)"
    for b in (np.ones(system.n), np.ones((system.n, 2))):
        result = solve(system, b, method="ic-pcg", rtol=1e-8)
        assert result.converged
        assert result.info.preconditioner == "ic0 (neurosolve)"
        assert result.info["ic0_shift"] == 0.0
    with pytest.raises(InvalidInputError, match="pip install ilupp"):
        IncompleteCholesky(system.A, backend="ilupp")


def test_ic0_backend_is_checked():
    with pytest.raises(InvalidInputError, match="backend"):
        IncompleteCholesky(sp.eye(3).tocsr(), backend="mkl")
    with pytest.raises(InvalidInputError, match="backend"):
        make_solver("ic-pcg", sp.eye(3).tocsr(), backend="fast")


def test_ic0_own_backend_on_request():
    system = varcoef((10, 10))
    result = solve(system, np.ones(system.n), method="ic-pcg", backend="neurosolve")
    assert result.converged and result.info.preconditioner == "ic0 (neurosolve)"


@pytest.mark.parametrize(
    "system_id", ["2d-varcoef", "3d-obstacles", "shifted-nonM"], ids=lambda s: s
)
def test_ilupp_and_own_factor_agree(system_id):
    pytest.importorskip("ilupp")
    if system_id == "2d-varcoef":
        A = varcoef((20, 20), seed=7).A
    elif system_id == "3d-obstacles":
        A = poisson((7, 6, 8), flags=obstacle_flags((7, 6, 8), "boxes", 2, count=2)).A
    else:  # SPD, not an M-matrix: IC(0) needs a shift (0.1) in both implementations
        B = sp.random(12, 12, density=0.25, random_state=2, format="csr") + 0.3 * sp.eye(12)
        A = (B.T @ B).tocsr()
        A = ((A + A.T) / 2).tocsr()
    fast = IncompleteCholesky(A, backend="ilupp")
    own = IncompleteCholesky(A, backend="neurosolve")
    assert fast.backend == "ilupp" and own.backend == "neurosolve"
    assert fast.shift == own.shift
    assert (fast.shift > 0) == (system_id == "shifted-nonM")
    scale = abs(own.L).max()
    assert abs(fast.L - own.L).max() <= 1e-12 * scale
    r = np.random.default_rng(8).normal(size=(A.shape[0], 2))
    np.testing.assert_allclose(fast.solve(r), own.solve(r), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.solve(r[:, 0]), own.solve(r[:, 0]), rtol=1e-10, atol=1e-12)


def test_ic_pcg_uses_ilupp_when_installed():
    pytest.importorskip("ilupp")
    system = varcoef((16, 16), seed=9)
    b = np.ones(system.n)
    fast = solve(system, b, method="ic-pcg", rtol=1e-8)
    own = solve(system, b, method="ic-pcg", rtol=1e-8, backend="neurosolve")
    assert fast.info.preconditioner == "ic0 (ilupp)"
    assert fast.converged and abs(fast.iterations - own.iterations) <= 1
