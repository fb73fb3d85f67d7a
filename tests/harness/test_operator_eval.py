import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from neurosolve.data.darcy import darcy_coefficient, darcy_system, solve_darcy
from neurosolve.errors import InvalidInputError
from neurosolve.harness.operator_eval import (
    darcy_krylov_evaluation,
    evaluate_operator,
    summarize_krylov,
)


@pytest.fixture(scope="module")
def darcy_pair():
    a = darcy_coefficient((16, 16), "piecewise", np.random.default_rng(3))
    return a, solve_darcy(a, rtol=1e-12)


def test_exact_prediction_needs_no_iterations(darcy_pair):
    a, u = darcy_pair
    rec = darcy_krylov_evaluation(a, u, methods=("cg", "amg-sa-pcg"))
    assert rec["residual"] < 1e-10 and rec["error"] < 1e-10
    for name, m in rec["methods"].items():
        assert m["iterations_warm"] == 0, name
        assert m["iterations_saved"] == m["iterations_cold"] > 0, name
        assert m["converged_cold"] and m["converged_warm"]


def test_residual_and_error_are_the_discrete_quantities(darcy_pair):
    a, u = darcy_pair
    rng = np.random.default_rng(0)
    pred = u + 1e-3 * rng.standard_normal(u.shape)
    rec = darcy_krylov_evaluation(a, pred, methods=("cg",), inference_time=1e-3)
    system = darcy_system(a)
    expected = np.linalg.norm(system.b - system.A @ pred.ravel()) / np.linalg.norm(system.b)
    assert rec["residual"] == pytest.approx(expected, rel=1e-12)
    assert rec["error"] == pytest.approx(np.linalg.norm(pred - u) / np.linalg.norm(u), rel=1e-6)
    m = rec["methods"]["cg"]
    assert m["iterations_to_match"] is not None and "speedup_at_prediction_accuracy" in m
    assert 0 < m["iterations_to_match_error"] <= m["iterations_cold"]
    assert "speedup_at_prediction_error" in m


def test_better_prediction_saves_more_iterations(darcy_pair):
    a, u = darcy_pair
    smooth = np.outer(np.sin(np.linspace(0, np.pi, 16)), np.sin(np.linspace(0, np.pi, 16)))
    saved = [
        darcy_krylov_evaluation(a, u + eps * u.max() * smooth, methods=("cg",))["methods"]["cg"][
            "iterations_saved"
        ]
        for eps in (1e-1, 1e-4)
    ]
    assert saved[1] > saved[0]


def test_bad_prediction_is_refused(darcy_pair):
    a, u = darcy_pair
    with pytest.raises(InvalidInputError, match="differ"):
        darcy_krylov_evaluation(a, u[:8], methods=("cg",))
    bad = u.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        darcy_krylov_evaluation(a, bad, methods=("cg",))


class _Exact(torch.nn.Module):
    """An 'operator' that looks the answer up (to test the evaluation plumbing)."""

    def __init__(self, xs, ys):
        super().__init__()
        self.xs, self.ys = xs, ys

    def forward(self, x):
        idx = [int(torch.argmin((self.xs - xi).flatten(1).abs().sum(1))) for xi in x]
        return self.ys[idx].to(x.dtype)


def test_evaluate_operator_with_krylov_and_png(tmp_path, darcy_pair):
    a, u = darcy_pair
    xs = torch.from_numpy(np.stack([a, 2 * a])[:, None]).float()
    ys = torch.from_numpy(np.stack([u, u / 2])[:, None]).float()
    res = evaluate_operator(
        _Exact(xs, ys),
        TensorDataset(xs, ys),
        krylov_samples=2,
        krylov_methods=("cg",),
        png=tmp_path / "p.png",
    )
    assert res["rel_l2"] == 0.0 and res["rel_h1"] == 0.0
    assert (tmp_path / "p.png").stat().st_size > 1000
    k = res["krylov"]
    assert k["samples"] == 2 and k["error_median"] < 1e-6  # float32 copies of u
    assert summarize_krylov(res["krylov_records"]) == k
