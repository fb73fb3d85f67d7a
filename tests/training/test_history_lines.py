"""Readable names and one-line epoch summaries of training records."""

from neurosolve.training.history import epoch_line, metric_label


def test_metric_labels_are_readable():
    assert metric_label("train_loss") == "training loss"
    assert metric_label("val_l2") == "validation rel. L2 error"
    assert metric_label("val_rel_h1") == "validation rel. H1 error"
    assert metric_label("val_cycle_gain") == "validation cycle gain"


def test_epoch_line_lists_losses_and_seconds():
    record = {"epoch": 3, "train_loss": 0.5, "val_loss": 0.25, "lr": 1e-3, "ok": True}
    record.update(train_seconds=1.0, val_seconds=0.25)
    line = epoch_line(record, 5)
    assert line == "epoch 3/5: train_loss 5.000e-01, val_loss 2.500e-01 (1.2 s)"
    assert epoch_line({"epoch": 1, "train_loss": 1.0}).startswith("epoch 1: ")
