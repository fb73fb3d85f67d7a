import json

import pytest

from neurosolve.cli import main
from neurosolve.data.generate import generate


@pytest.fixture(scope="module")
def darcy_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("darcy")
    params = {"resolution": 12, "kind": "piecewise"}
    train = generate("darcy", d / "train.h5", samples=10, seed=0, params=params, progress=False)
    test = generate("darcy", d / "test.h5", samples=3, seed=1, params=params, progress=False)
    return train, test


SMALL_MGNO = ["--channels", "3", "--layers", "1", "--levels", "2", "--quiet"]


def test_train_resume_and_evaluate_mgno(darcy_files, tmp_path, capsys):
    train, test = darcy_files
    run = tmp_path / "run"
    argv = [
        "train",
        "mgno",
        "--data",
        str(train),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(run),
        *SMALL_MGNO,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best epoch" in out and "parameters" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and metrics["model"]["kind"] == "mgno"
    assert (run / "learning_curve.png").exists()
    # rerunning the same command finds the finished run and changes nothing
    before = (run / "model.pt").read_bytes()
    assert main(argv) == 0
    assert (run / "model.pt").read_bytes() == before

    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(run / "model.pt"),
                "--data",
                str(test),
                "--krylov",
                "1",
                "--methods",
                "cg",
                "--json",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "relative L2" in out and "| cg |" in out
    data = json.loads(report.read_text())
    assert data["samples"] == 3 and data["krylov"]["samples"] == 1
    assert (run / "model_evaluation.png").exists()


def test_train_fno_with_validation_file(darcy_files, tmp_path):
    train, test = darcy_files
    run = tmp_path / "fno"
    assert (
        main(
            [
                "train",
                "fno",
                "--data",
                str(train),
                "--val",
                str(test),
                "--epochs",
                "1",
                "--out",
                str(run),
                "--modes",
                "3",
                "--width",
                "4",
                "--layers",
                "1",
                "--padding",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"]["kind"] == "fno2d" and "val_h1" in metrics["epochs"][0]


def test_evaluate_refuses_foreign_checkpoint(darcy_files, tmp_path, capsys):
    _, test = darcy_files
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bogus), "--data", str(test)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_train_refuses_missing_data(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "mgno",
                "--data",
                str(tmp_path / "none.h5"),
                "--out",
                str(tmp_path / "r"),
                *SMALL_MGNO,
            ]
        )
        == 2
    )
    assert "none.h5" in capsys.readouterr().err
