"""benchmarks/sfno_refiner.py --ablation: one change at a time, resumable, same budget."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sfno_refiner.py"
TINY = [
    "--ablation",
    "--resolution", "8",
    "--sim-resolution", "8",
    "--sim-dt", "0.05",
    "--record-every", "0.25",
    "--t-in", "3",
    "--t-out", "3",
    "--train", "6",
    "--test", "2",
    "--epochs", "1",
    "--batch-size", "3",
    "--modes", "2", "2", "2",
    "--fno-modes", "2", "2", "2",
    "--width", "4",
    "--fc-width", "4",
    "--time-padding", "1",
    "--quiet",
]  # fmt: skip


def _load():
    spec = importlib.util.spec_from_file_location("sfno_refiner_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_rows_are_resumed_and_one_change_each(tmp_path, monkeypatch):
    bench = _load()
    out = tmp_path / "ablation.json"
    cache = tmp_path / "data.npz"
    argv = [*TINY, "--data-cache", str(cache), "--out", str(out)]
    assert bench.main([*argv, "--variants", "base,no_first_skip"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fno3d", "base", "no_first_skip"]
    assert rows[2]["changes"] == {"first_skip": False}
    # same budget for every row, and one 1x1 conv fewer without the first pointwise path
    assert len({json.dumps(r["settings"], sort_keys=True) for r in rows}) == 1
    assert rows[1]["parameters"] - rows[2]["parameters"] == 4 * 4 + 4
    # a second call trains only what is missing
    trained = []
    real_train = bench.train
    monkeypatch.setattr(
        bench, "train", lambda kind, *a, **k: trained.append(kind) or real_train(kind, *a, **k)
    )
    assert bench.main([*argv, "--variants", "base,input_norm"]) == 0
    assert trained == ["sfno"]
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fno3d", "base", "no_first_skip", "input_norm"]
