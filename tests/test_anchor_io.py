import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from neurosolve.data import poisson

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "anchor.py"
spec = importlib.util.spec_from_file_location("anchor", SCRIPT)
anchor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(anchor)


def _read_mat(path):
    """PETSc's binary Mat layout, parsed independently of the writer."""
    raw = Path(path).read_bytes()
    classid, rows, cols, nnz = np.frombuffer(raw[:16], dtype=">i4")
    lengths = np.frombuffer(raw[16 : 16 + 4 * rows], dtype=">i4")
    start = 16 + 4 * rows
    indices = np.frombuffer(raw[start : start + 4 * nnz], dtype=">i4")
    values = np.frombuffer(raw[start + 4 * nnz :], dtype=">f8")
    assert values.size == nnz  # nothing before or after the declared arrays
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return classid, sp.csr_matrix((values, indices, indptr), shape=(rows, cols))


def test_petsc_matrix_round_trip_with_big_endian_header(tmp_path):
    A = poisson((5, 4, 3)).A
    path = anchor.write_petsc_mat(tmp_path / "A.dat", A)
    raw = path.read_bytes()
    assert raw[:4] == (1211216).to_bytes(4, "big")  # MAT_FILE_CLASSID, big-endian
    assert raw[4:8] == A.shape[0].to_bytes(4, "big")
    classid, B = _read_mat(path)
    assert classid == anchor.MAT_CLASSID
    assert B.shape == A.shape and B.nnz == A.nnz
    assert abs(B - A).max() == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_unsorted_duplicated_and_empty_rows_are_written_canonically(tmp_path):
    # row 1 empty, row 0 with unsorted columns and a duplicate entry, a rectangular shape
    A = sp.csr_matrix(
        (np.array([3.0, 1.0, 2.0, -1.5]), np.array([4, 0, 4, 2]), np.array([0, 3, 3, 4])),
        shape=(3, 5),
    )
    _, B = _read_mat(anchor.write_petsc_mat(tmp_path / "A.dat", A))
    assert B.shape == (3, 5)
    np.testing.assert_array_equal(np.diff(B.indptr), [2, 0, 1])
    assert list(B.indices[:2]) == [0, 4]  # sorted within the row, duplicates summed
    np.testing.assert_array_equal(B.toarray(), A.toarray())


def test_petsc_vector_round_trip(tmp_path):
    v = np.random.default_rng(0).standard_normal(17)
    raw = anchor.write_petsc_vec(tmp_path / "b.dat", v).read_bytes()
    header = np.frombuffer(raw[:8], dtype=">i4")
    assert header.tolist() == [1211214, 17]
    np.testing.assert_array_equal(np.frombuffer(raw[8:], dtype=">f8"), v)
    assert len(raw) == 8 + 8 * 17


def test_a_petsc_solution_that_misses_the_tolerance_is_not_converged(tmp_path):
    system = poisson((6, 6))
    system.b = np.ones(system.n)
    exact = sp.linalg.spsolve(system.A.tocsc(), system.b)
    args = SimpleNamespace(rtol=1e-6)
    rows = []
    for k, x in enumerate((exact, exact * (1 + 1e-3))):
        np.save(tmp_path / f"x{k}.npy", x)
        run = {"iterations": 3, "setup_seconds": 0.1, "solve_seconds": 0.2, "reason": 2}
        run.update(true_residual=0.0, x=str(tmp_path / f"x{k}.npy"))
        item = {"name": "p", "n": system.n, "repeats": [run]}
        rows.append(anchor.petsc_row(item, 0, system, args))
    assert rows[0]["converged"] and rows[0]["true_residual"] < 1e-12
    assert rows[1]["claimed_converged"] and not rows[1]["converged"]
    assert rows[1]["true_residual"] > 1e-6
    assert not list(tmp_path.glob("x*.npy"))  # read back, then removed


def test_quick_run_without_petsc_notes_the_skip(tmp_path, capsys):
    argv = ["--quick", "--methods", "mgpc-pcg,cg,petsc-gamg-pcg,petsc-ic0-pcg"]
    argv += ["--petsc-python", str(tmp_path / "no-python"), "--out", str(tmp_path)]
    argv += ["--sizes", "8", "--frames", "2", "--name", "smoke"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert anchor.main(argv + ["--threads", "1"]) == 0
        assert torch.get_num_threads() == 2  # the pinned count was the run's, not ours
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    payload = json.loads((tmp_path / "smoke.json").read_text())
    assert payload["petsc"]["available"] is False
    assert "PETSc skipped" in payload["petsc"]["note"] and "PETSc skipped" in out.out
    assert (tmp_path / "smoke.png").stat().st_size > 0
    (seq,) = payload["sequences"]
    assert seq["grid"] == [8, 8, 8] and seq["frames"] == 2
    assert [b["method"] for b in seq["blocks"]] == ["mgpc-pcg", "cg"]
    for block in seq["blocks"] + payload["suite"]["blocks"]:
        assert block["converged_all"]
        assert block["max_true_residual"] <= 1e-6 * (1 + anchor.RECHECK_SLACK)
        assert len(block["repeats"]) == 1
        assert block["total_seconds_min"] == block["total_seconds_median"] > 0
    assert payload["torch_threads"] == 1
    assert "| mgpc-pcg | 1 x 1 |" in out.out


def test_method_specs_with_thread_counts():
    args = anchor.parse_args(["--methods", "mgpc-pcg@1,mgpc-pcg@2,petsc-ic0-pcg", "--quick"])
    assert [anchor.split_method(m) for m in args.methods] == [
        ("mgpc-pcg", 1),
        ("mgpc-pcg", 2),
        ("petsc-ic0-pcg", None),
    ]
    assert args.sizes == [10, 12] and args.frames == [2, 2]
    for bad in ("petsc-gamg-pcg@2", "mgpc-pcg@x", "cg,cg", "pcg-ilu"):
        with pytest.raises(SystemExit):
            anchor.parse_args(["--methods", bad])


def _block(label, method, engine, setup, solve, iterations=(5, 5)):
    rows = [
        {"setup_seconds": setup, "solve_seconds": solve, "iterations": it, "true_residual": 5e-7}
        for it in iterations
    ]
    for r in rows:
        r["converged"] = True
    block = {"label": label, "method": method, "engine": engine, "ranks": 1, "repeats": [rows]}
    return anchor.summarize(block)


def test_sequence_table_ratio_to_the_fastest_anchor_and_skipped_rows():
    seq = {
        "name": "box8",
        "unknowns": [100, 100],
        "blocks": [
            _block("mgpc-pcg", "mgpc-pcg", "neurosolve", 0.1, 0.2),
            _block("petsc-ic0-pcg np1", "petsc-ic0-pcg", "petsc", 0.0, 1.0, (30, 31)),
            _block("amg-sa-pcg", "amg-sa-pcg", "neurosolve", 0.5, 1.5),
            _block("cg", "cg", "neurosolve", 0.0, 0.05),  # fast, but not an anchor
            {"label": "dcdm", "method": "dcdm", "engine": "neurosolve", "ranks": 1},
        ],
    }
    seq["blocks"][-1]["skipped"] = "not run at 8^3 (--cap)"
    text = anchor.sequence_table(seq)
    assert "fastest anchor (PETSc, hypre, pyamg): petsc-ic0-pcg np1" in text
    assert "mgpc-pcg / fastest anchor: 0.30 (target <= 0.3)" in text
    assert "| dcdm | 1 x 1 | not run at 8^3 (--cap) |" in text
    assert "| 30-31 |" in text
    block = seq["blocks"][0]
    assert block["total_per_frame"] == pytest.approx(0.3)
    assert block["total_seconds_min"] == pytest.approx(0.6)


def test_repeats_give_min_and_median_and_the_best_repeat_per_frame():
    def rep(seconds, its):
        return [
            {"setup_seconds": 0.0, "solve_seconds": seconds, "iterations": its, "converged": True}
            | {"true_residual": 1e-7}
        ]

    block = anchor.summarize({"repeats": [rep(3.0, 7), rep(1.0, 6), rep(2.0, 8)]})
    assert block["total_seconds_min"] == 1.0 and block["total_seconds_median"] == 2.0
    assert block["iterations"] == [6] and block["total_per_frame"] == 1.0
    failed = rep(1.0, 0)
    failed[0].update(error="RuntimeError: boom", converged=False)
    block = anchor.summarize({"repeats": [failed]})
    assert "1 of 1 solves failed" in block["error"] and "total_per_frame" not in block
