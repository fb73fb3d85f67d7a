"""benchmarks/zero_shot.py: trained once, evaluated on every grid, reruns reuse the models."""

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = [
    "--darcy-train-resolution", "12",
    "--darcy-resolutions", "12,16",
    "--darcy-test", "3",
    "--darcy-train", "6",
    "--darcy-epochs", "1",
    "--ns-train-resolution", "8",
    "--ns-resolutions", "8,16",
    "--ns-sim-resolution", "16",
    "--ns-train", "4",
    "--ns-test", "2",
    "--ns-epochs", "1",
    "--ns-args", "--t-in 2 --t-out 2 --record-every 0.5 --sim-dt 0.05 --width 4 --fc-width 4",
    "--quiet",
]  # fmt: skip


def _load():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling benchmarks
    try:
        spec = importlib.util.spec_from_file_location("zero_shot_bench", BENCH / "zero_shot.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_zero_shot_tables_and_reuse(tmp_path, monkeypatch):
    bench = _load()
    out = tmp_path / "zs.json"
    argv = [*TINY, "--run-dir", str(tmp_path), "--data-dir", str(tmp_path), "--out", str(out)]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["darcy"]["models"]) == {"mgno", "fno2d", "fno2d, padding scaled"}
    assert set(data["navier_stokes"]["models"]) == {
        "fno3d",
        "sfno-first",
        "sfno-reference",
        "sfno-tuned",
    }
    for part in ("darcy", "navier_stokes"):
        for row in data[part]["models"].values():
            grids = [g["resolution"] for g in row["grids"]]
            assert grids == ([12, 16] if part == "darcy" else [8, 16])
            assert all(0 < g["rel_l2"] < 10 for g in row["grids"])
    # on the training grid both FNO2d rows are the same model
    fno = data["darcy"]["models"]
    assert fno["fno2d"]["grids"][0]["rel_l2"] == fno["fno2d, padding scaled"]["grids"][0]["rel_l2"]
    # a rerun trains nothing
    monkeypatch.setattr(bench.ns, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(bench, "train_operator", lambda *a, **k: (_ for _ in ()).throw(KeyError))
    assert bench.main([*argv, "--skip", "darcy"]) == 0
