"""benchmarks/darcy_operators.py: the peer library's FNO beside ours, or a note without it."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "darcy_operators.py"
TINY = [
    "--equal-budget",
    "--kinds", "piecewise",
    "--resolution", "12",
    "--train", "8",
    "--val", "4",
    "--test", "4",
    "--epochs", "1",
    "--krylov", "0",
    "--quiet",
    "--no-plots",
]  # fmt: skip


def _load():
    spec = importlib.util.spec_from_file_location("darcy_operators_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(bench, tmp_path, models):
    out = tmp_path / "darcy.json"
    argv = [*TINY, "--models", models, "--data-dir", str(tmp_path), "--out", str(out)]
    argv += ["--run-dir", str(tmp_path / "runs")]
    assert bench.main(argv) == 0
    return json.loads(out.read_text())


def test_without_the_peer_the_row_is_skipped_with_a_note(tmp_path, monkeypatch):
    bench = _load()
    monkeypatch.setattr(bench, "peer_fno_class", lambda: None)
    data = _run(bench, tmp_path, "neuralop_fno,fno2d")
    assert [r["model"] for r in data["results"]] == ["fno2d"]
    assert data["notes"] == [bench.PEER_MISSING]
    assert data["acceptance"] == []


def test_the_peer_trains_on_the_same_files_through_our_trainer(tmp_path):
    pytest.importorskip("neuralop")
    bench = _load()
    data = _run(bench, tmp_path, "neuralop_fno,fno2d")
    rows = {r["model"]: r for r in data["results"]}
    assert set(rows) == {"neuralop_fno", "fno2d"}
    peer, ours = rows["neuralop_fno"], rows["fno2d"]
    assert peer["rel_l2_vs_peer"] == 1.0
    assert ours["rel_l2_vs_peer"] == pytest.approx(ours["test_rel_l2"] / peer["test_rel_l2"])
    assert peer["parameters"] > 0 and len(peer["history"]) == 1
    assert data["peer"].startswith("neuraloperator ")
    assert len(data["acceptance"]) == 1 and data["acceptance"][0].startswith("piecewise: fno2d")
    # the best model reloads from its checkpoint (tensors only, no peer metadata)
    from neurosolve.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "runs" / "piecewise-neuralop_fno" / "model.pt")
    assert ckpt["kind"] == "neuralop_fno"
    assert all(hasattr(v, "shape") for v in ckpt["state_dict"].values())
