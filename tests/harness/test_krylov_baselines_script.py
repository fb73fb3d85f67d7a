import importlib.util
import json
from pathlib import Path

from neurosolve.harness.records import BenchmarkResults

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "krylov_baselines.py"


def _load():
    spec = importlib.util.spec_from_file_location("krylov_baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_script_runs_on_tiny_problems(tmp_path, capsys):
    bench = _load()
    code = bench.main(
        [
            "--sizes-2d", "12",
            "--sizes-3d", "6",
            "--obstacles", "6",
            "--methods", "cg,scipy-cg",
            "--repeats", "1",
            "--bandwidth-mb", "4",
            "--no-warmup",
            "--quiet",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "krylov_baselines.json").read_text())
    results = BenchmarkResults.from_dict(data["harness"])
    assert {r.problem for r in results.runs} == {
        "poisson2d-12", "poisson3d-6", "poisson3d-6-obstacles"
    }  # fmt: skip
    assert all(r.converged for r in results.runs)
    assert [r["problem"] for r in data["torch_cg_vs_scipy_cg"]] == [
        "poisson2d-12", "poisson3d-6", "poisson3d-6-obstacles"
    ]  # fmt: skip
    assert all(r["ratio"] > 0 for r in data["torch_cg_vs_scipy_cg"])
    ops = {(r["problem"], r["operator"]) for r in data["matvec"]}
    assert ("poisson3d-6", "torch-stencil") in ops and ("poisson2d-12", "scipy-csr") in ops
    # compulsory bytes of a CSR matvec: values + column indices + row pointers + x + y
    csr = next(r for r in data["matvec"] if r["operator"] == "scipy-csr")
    assert csr["bytes"] == csr["nnz"] * (8 + 4) + (csr["n"] + 1) * 4 + 2 * csr["n"] * 8
    assert all(r["ratio_to_bound"] > 0 for r in data["matvec"])
    assert (tmp_path / "krylov_baselines_residuals_time.png").stat().st_size > 5000
    assert "torch CG vs scipy CG" in capsys.readouterr().out
