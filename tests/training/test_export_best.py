"""Trainer.export_best: the one copy of a run's best model to its final place."""

import os

import pytest
import torch
from torch.utils.data import TensorDataset

from neurosolve.checkpoint import load_checkpoint
from neurosolve.errors import InvalidInputError
from neurosolve.training import TrainConfig, Trainer, supervised_loss


def _trainer(run):
    config = TrainConfig(epochs=1, batch_size=4, val_fraction=0, progress=False, plot=False)
    loss = supervised_loss(torch.nn.functional.mse_loss)
    return Trainer(torch.nn.Linear(2, 2), loss, config, run)


def _fit(trainer):
    trainer.fit(TensorDataset(torch.randn(8, 2), torch.randn(8, 2)))
    return trainer


def test_export_best_copies_model_pt_with_shared_permissions(tmp_path):
    trainer = _fit(_trainer(tmp_path / "run"))
    out = trainer.export_best(tmp_path / "models" / "net.pt")
    assert out == tmp_path / "models" / "net.pt"
    assert out.read_bytes() == trainer.model_path.read_bytes()
    assert load_checkpoint(out)["kind"] == "custom"
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in out.parent.iterdir()) == ["net.pt"]  # no temporary left


def test_export_best_onto_model_pt_itself_is_a_no_op(tmp_path):
    trainer = _fit(_trainer(tmp_path / "run"))
    before = trainer.model_path.stat().st_mtime_ns
    assert trainer.export_best(trainer.model_path) == trainer.model_path
    assert trainer.model_path.stat().st_mtime_ns == before


def test_export_best_before_any_epoch_raises_and_writes_nothing(tmp_path):
    trainer = _trainer(tmp_path / "run")
    with pytest.raises(InvalidInputError, match="without writing"):
        trainer.export_best(tmp_path / "net.pt")
    assert not (tmp_path / "net.pt").exists()


def test_interrupted_export_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    import shutil

    trainer = _fit(_trainer(tmp_path / "run"))
    out = tmp_path / "net.pt"

    def half_copy(src, dst, *args, **kwargs):
        data = open(src, "rb").read()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", half_copy)
    with pytest.raises(KeyboardInterrupt):
        trainer.export_best(out)
    assert not out.exists()
    assert [p for p in os.listdir(tmp_path) if p != "run"] == []
