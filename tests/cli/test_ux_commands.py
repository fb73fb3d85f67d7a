"""Issue 16, CLI: solve --json, bench's exit status, one train summary, evaluate over several
files, refine's saved results, the Navier-Stokes work estimate, progress lines off a
terminal, --format/--dpi and the TOML fallback."""

import json
import sys
import types

import h5py
import numpy as np
import pytest
import torch

from neurosolve.cli import build_parser, main
from neurosolve.data import poisson, save_system
from neurosolve.data.generate import generate
from neurosolve.data.store import read_info
from neurosolve.harness.records import BenchmarkResults, RunRecord

NS_TINY = dict(resolution=8, sim_resolution=16, dt=0.05, record_every=0.2, t_in=3, t_out=3)


def test_solve_json_summary(tmp_path, capsys):
    path = save_system(tmp_path / "sys.mtx", poisson((8, 8)))
    summary = tmp_path / "out" / "solve.json"
    code = main(["solve", str(path), "--method", "cg", "--json", str(summary), "--quiet"])
    assert code == 0
    assert f"summary: {summary}" in capsys.readouterr().out
    data = json.loads(summary.read_text())
    assert data["method"] == "cg" and data["status"] == "converged" and data["converged"]
    assert data["iterations"] > 0 and data["n"] == 64
    assert 0 < data["final_relative_residual"] <= 1e-6
    assert data["setup_seconds"] >= 0 and data["solve_seconds"] >= 0
    assert {"torch", "omp_num_threads", "cpu_count"} <= set(data["threads"])
    assert data["reason"] and data["rtol"] == 1e-6


def test_bench_exits_1_and_names_the_failed_run(tmp_path, capsys, monkeypatch):
    import neurosolve.harness.runner as runner

    def fake_run_suite(suite, methods, **kwargs):
        ok = RunRecord("p1", "cg", n=4, iterations=2, converged=True, claimed_converged=True)
        bad = RunRecord("p1", "amg-sa-pcg", n=4, error="ValueError: boom")
        return BenchmarkResults("fake", 1e-6, runs=[ok, bad])

    monkeypatch.setattr(runner, "run_suite", fake_run_suite)
    code = main(["bench", "--methods", "cg,amg-sa-pcg", "--out", str(tmp_path / "b"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "amg-sa-pcg failed on p1: ValueError: boom" in captured.err
    assert "1 of 2 runs failed" in captured.err
    assert (tmp_path / "b" / "results.json").is_file()  # the report is still written


def test_bench_exits_0_without_errors(tmp_path, monkeypatch):
    import neurosolve.harness.runner as runner

    ok = RunRecord("p1", "cg", n=4, iterations=2, converged=True, claimed_converged=True)
    monkeypatch.setattr(runner, "run_suite", lambda *a, **k: BenchmarkResults("f", 1e-6, [ok]))
    assert main(["bench", "--methods", "cg", "--out", str(tmp_path / "b"), "--quiet"]) == 0


@pytest.fixture(scope="module")
def darcy_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("darcy-sweep")
    params = {"kind": "piecewise"}
    train = generate(
        "darcy", d / "train.h5", samples=8, seed=0, params={**params, "resolution": 12},
        progress=False,
    )  # fmt: skip
    tests = [
        generate(
            "darcy",
            d / f"test{r}.h5",
            samples=2,
            seed=1,
            params={**params, "resolution": r},
            progress=False,
        )  # fmt: skip
        for r in (12, 16)
    ]
    return train, tests


def _train_mgno(train, run, *extra):
    argv = ["train", "mgno", "--data", str(train), "--out", str(run), "--epochs", "2"]
    argv += ["--batch-size", "4", "--channels", "3", "--layers", "1", "--levels", "2", *extra]
    return main(argv)


def _summary_shape(out: str) -> list[str]:
    return [line.split(" ")[0] for line in out.strip().splitlines()]


def test_train_prints_one_summary_and_epoch_lines_off_a_terminal(darcy_sweep, tmp_path, capsys):
    train, _ = darcy_sweep
    run = tmp_path / "run"
    assert _train_mgno(train, run, "--format", "svg", "--dpi", "80") == 0
    captured = capsys.readouterr()
    # stderr is not a terminal under pytest: one line per epoch, no bar
    epoch_lines = [line for line in captured.err.splitlines() if ": epoch " in line]
    assert len(epoch_lines) == 2 and "epoch 2/2: train_loss" in epoch_lines[1]
    assert "val_l2" in epoch_lines[1]
    assert _summary_shape(captured.out) == ["trained", "best", "seconds", "model", "wrote"]
    assert "model written to" in captured.out and "val_l2" in captured.out
    # --format svg: the learning curve is drawn again as SVG
    assert (run / "learning_curve.svg").read_text().lstrip().startswith("<?xml")
    assert str(run / "learning_curve.svg") in captured.out
    # --quiet: no progress lines
    assert _train_mgno(train, tmp_path / "quiet", "--quiet") == 0
    assert ": epoch " not in capsys.readouterr().err


def test_evaluate_several_files_one_row_each(darcy_sweep, tmp_path, capsys):
    train, tests = darcy_sweep
    run = tmp_path / "run"
    assert _train_mgno(train, run, "--quiet") == 0
    capsys.readouterr()
    report = tmp_path / "sweep.json"
    argv = ["evaluate", str(run / "model.pt"), "--krylov", "0", "--json", str(report), "-q"]
    for path in tests:
        argv += ["--data", str(path)]
    assert main([*argv, "--format", "pdf"]) == 0
    out = capsys.readouterr().out
    assert "| data | resolution |" in out
    assert f"| {tests[0]} | 12x12 | 2 |" in out and f"| {tests[1]} | 16x16 | 2 |" in out
    data = json.loads(report.read_text())
    assert [row["resolution"] for row in data["rows"]] == ["12x12", "16x16"]
    assert [d["data"] for d in data["datasets"]] == [str(p) for p in tests]
    for path in tests:  # one picture per file, in the format asked for
        picture = run / f"model_evaluation_{path.stem}.pdf"
        assert picture.read_bytes()[:4] == b"%PDF"
    # one file: the former layout, plus its row
    single = tmp_path / "one.json"
    argv = ["evaluate", str(run / "model.pt"), "--data", str(tests[0]), "--krylov", "0"]
    assert main([*argv, "--json", str(single), "-q"]) == 0
    data = json.loads(single.read_text())
    assert data["samples"] == 2 and len(data["rows"]) == 1


def test_train_sfno_summary_names_and_refine_saves(tmp_path, capsys):
    train = generate(
        "navier-stokes", tmp_path / "train.h5", samples=4, seed=0, params=NS_TINY, progress=False
    )
    test = generate(
        "navier-stokes", tmp_path / "test.h5", samples=2, seed=1, params=NS_TINY, progress=False
    )
    run = tmp_path / "run"
    argv = ["train", "sfno", "--data", str(train), "--out", str(run), "--epochs", "1", "-q"]
    argv += ["--batch-size", "2", "--modes", "3", "3", "2", "--width", "4", "--layers", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # the same summary as train mgno / fno, no JSON blob, the same metric names
    assert _summary_shape(out) == ["trained", "best", "seconds", "model", "wrote"]
    assert "{" not in out and "val_l2" in out and "val_rel_l2" not in out
    epoch = json.loads((run / "metrics.json").read_text())["epochs"][0]
    assert {"val_l2", "val_h1"} <= set(epoch)
    # the reference code's architecture by default, recorded in the checkpoint
    kwargs = torch.load(run / "model.pt", weights_only=False)["kwargs"]
    assert kwargs["time_features"] == 8 and kwargs["projection"] == "linear"
    assert kwargs["input_norm"] is True and kwargs["latent_steps"] == 10
    first = tmp_path / "first"
    argv_first = [*argv[:5], str(first), *argv[6:], "--sfno-config", "first"]
    assert main(argv_first) == 0
    capsys.readouterr()
    kwargs = torch.load(first / "model.pt", weights_only=False)["kwargs"]
    assert kwargs.get("time_features", 0) == 0 and kwargs["latent_steps"] is None

    figure = tmp_path / "figs" / "refined.svg"
    figure.parent.mkdir()  # outputs go into existing folders (a typo makes no new tree)
    predictions = tmp_path / "pred.npz"
    argv = ["refine", str(run / "model.pt"), "--data", str(test), "--steps", "2", "-q"]
    argv += ["--predictions", str(predictions), "--figure", str(figure), "--format", "svg"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    saved = np.load(predictions)
    assert saved["refined"].shape == saved["initial"].shape == saved["truth"].shape
    assert saved["refined"].shape == (2, 3, 8, 8)
    assert figure.read_text().lstrip().startswith("<?xml")
    weights = run / "model_refined.pt"  # the default: next to the model
    ckpt = torch.load(weights, weights_only=False)
    assert ckpt["extra"]["batches"] == 1 and ckpt["extra"]["source"] == str(run / "model.pt")
    assert any(k.startswith("batch0.") for k in ckpt["state_dict"])
    assert str(weights) in out and str(figure) in out
    # the HDF5 default and --no-save
    assert main(argv[:7] + ["--no-save"]) == 0
    assert not (run / "model_refined.h5").exists()
    assert main(argv[:7]) == 0
    with h5py.File(run / "model_refined.h5") as f:
        assert f["refined"].shape == (2, 3, 8, 8)
    assert (run / "model_refined.png").read_bytes()[:4] == b"\x89PNG"


def test_navier_stokes_estimate_and_small_request_default(tmp_path, capsys):
    from neurosolve.cli.data import navier_stokes_work

    work = navier_stokes_work(
        {"sim_resolution": 128, "dt": 5e-3, "t_final": None, "burn_in": 0.0,
         "record_every": 1.0, "t_in": 10, "t_out": None}, samples=8,
    )  # fmt: skip
    assert work["steps"] == 10_000 and work["grid_steps"] == 10_000 * 128**2 * 8
    assert work["seconds"] > 60  # the half hour is not "quick"
    out = tmp_path / "ns.h5"
    argv = ["generate", "navier-stokes", "--samples", "2", "--resolution", "8", "--dt", "0.05"]
    argv += ["--record-every", "0.2", "--t-in", "2", "--t-out", "2", "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    # printed before the run: 2 samples x (4 snapshots x 0.2 / 0.05) steps x 16^2
    assert "navier-stokes: 2 samples x 16 time steps x 16^2 grid" in err
    assert read_info(out)["params"]["sim_resolution"] == 16  # 2 x --resolution
    # an explicit --sim-resolution wins; --quiet prints nothing
    out2 = tmp_path / "ns2.h5"
    assert main([*argv[:-1], str(out2), "--sim-resolution", "24", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert read_info(out2)["params"]["sim_resolution"] == 24


def test_every_drawing_command_takes_format_and_dpi():
    parser = build_parser()
    commands = [
        ["train", "mgno", "--data", "d.h5", "--out", "r"],
        ["train", "sfno", "--data", "d.h5", "--out", "r"],
        ["train", "dcdm", "--out", "m.pt"],
        ["train", "mgpc", "--out", "m.pt"],
        ["evaluate", "m.pt", "--data", "d.h5"],
        ["bench"],
        ["refine", "m.pt", "--data", "d.h5"],
    ]
    for argv in commands:
        args = parser.parse_args([*argv, "--format", "pdf", "--dpi", "200"])
        assert (args.format, args.dpi) == ("pdf", 200.0), argv
        assert parser.parse_args(argv).format == "png"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--format", "jpg"])


def test_toml_suite_falls_back_to_tomli(tmp_path, monkeypatch):
    import tomllib

    from neurosolve.harness.suite_files import load_suite

    fake = types.ModuleType("tomli")
    fake.loads = tomllib.loads
    fake.TOMLDecodeError = tomllib.TOMLDecodeError
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    monkeypatch.setitem(sys.modules, "tomli", fake)
    path = tmp_path / "suite.toml"
    path.write_text('name = "mine"\n[[problems]]\nshape = [8, 8]\n')
    suite = load_suite(path)
    assert suite.name == "mine" and len(suite.problems) == 1


def test_train_fno_pads_a_fixed_fraction_of_the_domain(darcy_sweep, tmp_path):
    train, _ = darcy_sweep  # 12x12 training grid
    run = tmp_path / "fno"
    argv = ["train", "fno", "--data", str(train), "--out", str(run), "--epochs", "1", "-q"]
    argv += ["--batch-size", "4", "--modes", "3", "--width", "4", "--layers", "1", "--padding", "3"]
    assert main(argv) == 0
    kwargs = torch.load(run / "model.pt", weights_only=False)["kwargs"]
    assert kwargs["padding"] == 3 and kwargs["padding_grid"] == 12
    from neurosolve.checkpoint import load_model

    model, _ = load_model(run / "model.pt")
    model = getattr(model, "operator", model)  # under its normalizers
    # 3 cells on the 12-cell training grid are 6 cells on a 24-cell grid: the same domain
    assert model.padding_cells(12) == 3 and model.padding_cells(24) == 6
