import json
import subprocess
import sys

import numpy as np
import pytest

from neurosolve.cli import main
from neurosolve.cli.options import parse_grid, parse_options
from neurosolve.data import poisson, save_system
from neurosolve.errors import InvalidInputError
from neurosolve.harness.records import load_results
from neurosolve.harness.suites import SUITES, ProblemSpec, SequenceSpec, Suite


@pytest.fixture
def system_file(tmp_path):
    system = poisson((10, 10))
    return system, save_system(tmp_path / "sys.mtx", system)


def _tiny_suite():
    return Suite(
        "tiny",
        problems=[ProblemSpec(shape=(12, 12)), ProblemSpec(shape=(6, 6, 6), obstacles="spheres")],
        sequences=[SequenceSpec(shape=(8, 8), frames=2, count=1, radius=0.2)],
    )


def test_bench_writes_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(SUITES, "tiny", _tiny_suite)
    out = tmp_path / "res"
    code = main(
        [
            "bench",
            "--suite",
            "tiny",
            "--methods",
            "scipy-cg,amg-sa-pcg",
            "--rtol",
            "1e-8",
            "--out",
            str(out),
            "--quiet",
            "--no-warmup",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| poisson3d-6-spheres | " in printed and "sequence2d-8-2frames" in printed
    assert str(out / "results.json") in printed
    res = load_results(out / "results.json")
    assert len(res.runs) == 2 * 2 and len(res.sequences) == 2
    assert all(r.converged for r in res.runs) and res.rtol == 1e-8
    assert res.options["warmup"] is False
    assert "amg-sa-pcg" in (out / "results.md").read_text()
    for name in ("residuals_iteration.png", "residuals_time.png", "sequences.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert (out / name).stat().st_size > 5000


def test_bench_problems_file(tmp_path, capsys):
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "mine", "problems": [{"shape": [12, 12]}]}))
    code = main(
        [
            "bench",
            "--problems",
            str(suite),
            "--methods",
            "amg-rs",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert code == 0
    assert "| poisson2d-12 | 144 | amg-rs |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--methods", "cg,nope"], "unknown method"),
        (["--suite", "nope"], "unknown suite"),
        (["--rtol", "-1"], "rtol"),
        (["--problems", "missing.json"], "not found"),
        (["--option", "cg=3"], "METHOD.KEY=VALUE"),
    ],
)
def test_bench_bad_input_exit_2(tmp_path, capsys, args, match):
    code = main(["bench", "--out", str(tmp_path / "o"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_solve_prints_and_writes_solution(tmp_path, system_file, capsys):
    system, path = system_file
    b = np.linspace(1.0, 2.0, system.n)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "x.npy"
    code = main(
        [
            "solve",
            str(path),
            "--method",
            "amg-sa-pcg",
            "--rtol",
            "1e-8",
            "--rhs",
            str(tmp_path / "b.npy"),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "iterations:" in printed and "true relative residual:" in printed
    x = np.load(out)
    assert np.linalg.norm(b - system.A @ x) <= 1.01e-8 * np.linalg.norm(b)


def test_solve_with_grid_and_default_rhs(system_file, capsys):
    _, path = system_file
    code = main(["solve", str(path), "--method", "cg", "--grid", "10x10", "--quiet"])
    assert code == 0
    assert "rhs: ones" in capsys.readouterr().out


def test_solve_not_converged_exit_1(system_file, capsys):
    _, path = system_file
    code = main(["solve", str(path), "--method", "scipy-cg", "--maxiter", "1", "--quiet"])
    assert code == 1
    assert "maxiter" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing.mtx", "not found"),
        (lambda d: _write(d / "garbage.mtx", "this is not a matrix\n"), "Matrix Market"),
        (lambda d: _write(d / "m.txt", "1 2 3"), "extension"),
    ],
)
def test_solve_bad_file_exit_2(tmp_path, capsys, make, match):
    code = main(["solve", str(make(tmp_path)), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert match in err and len(err.strip().splitlines()) == 1


def test_solve_bad_rhs_and_grid_exit_2(tmp_path, system_file, capsys):
    _, path = system_file
    np.save(tmp_path / "short.npy", np.ones(3))
    assert main(["solve", str(path), "--rhs", str(tmp_path / "short.npy"), "--quiet"]) == 2
    assert "3 entries" in capsys.readouterr().err
    assert main(["solve", str(path), "--grid", "7x7", "--quiet"]) == 2
    assert "fluid cells" in capsys.readouterr().err
    assert main(["solve", str(path), "--grid", "abc", "--quiet"]) == 2
    capsys.readouterr()
    assert main(["solve", str(path), "--method", "scipy-cg", "--option", "scipy-cg.x=1"]) == 2
    assert "rejected its options" in capsys.readouterr().err


def _write(path, text):
    path.write_text(text)
    return path


def test_parse_helpers():
    assert parse_grid("8X8x8") == (8, 8, 8)
    with pytest.raises(InvalidInputError):
        parse_grid("8")
    assert parse_options(["a.b=[1, 2]", "a.c=x"]) == {"a": {"b": [1, 2], "c": "x"}}


def test_console_entry_point(system_file):
    _, path = system_file
    proc = subprocess.run(
        [sys.executable, "-m", "neurosolve", "solve", str(path), "--method", "amg-rs-pcg"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "status: converged" in proc.stdout
