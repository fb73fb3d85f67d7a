import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from neurosolve.checkpoint import load_checkpoint
from neurosolve.errors import InvalidInputError, TrainingDivergedError
from neurosolve.operators import UnitGaussianNormalizer, load_operator
from neurosolve.operators.losses import relative_l2
from neurosolve.operators.mgno import MgNO
from neurosolve.training import ModelSpec, TrainConfig, Trainer, supervised_loss


def _smooth_data(n, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    kernel = torch.ones(1, 1, 3, 3) / 9
    smooth = torch.nn.functional.conv2d(x, kernel, padding=1)
    y = 3 * smooth + smooth**2
    return TensorDataset(x, y)


class _DropNet(nn.Module):
    """Tiny conv net with dropout, so resumption must restore the RNG too."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.b = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.b(self.drop(torch.tanh(self.a(x))))


def _config(**kw):
    base = dict(
        epochs=4, batch_size=4, lr=5e-3, val_fraction=0.25, progress=False, plot=False, seed=7
    )
    base.update(kw)
    return TrainConfig(**base)


def _fresh(tmp, loss_fn=None, **kw):
    torch.manual_seed(123)
    model = _DropNet()
    loss_fn = loss_fn or supervised_loss(relative_l2)
    return model, Trainer(model, loss_fn, _config(**kw), tmp, metrics={"l2": loss_fn})


def test_tiny_mgno_overfits_four_samples(tmp_path):
    data = _smooth_data(4)
    xn = UnitGaussianNormalizer.fit(data.tensors[0])
    yn = UnitGaussianNormalizer.fit(data.tensors[1])
    model = MgNO(1, 1, channels=8, layers=2, levels=3)
    loss_fn = supervised_loss(relative_l2, xn, yn)
    cfg = TrainConfig(
        epochs=30,
        batch_size=2,
        lr=1e-2,
        schedule="constant",
        val_fraction=0.0,
        progress=False,
        plot=False,
    )
    history = Trainer(model, loss_fn, cfg, tmp_path, normalizers={"x": xn, "y": yn}).fit(data)
    first, last = history["epochs"][0]["train_loss"], history["epochs"][-1]["train_loss"]
    assert last < first / 10


class _Interrupt(Exception):
    pass


def test_resume_gives_bit_identical_weights(tmp_path):
    data = _smooth_data(16)
    full_model, full = _fresh(tmp_path / "full")
    full.fit(data)

    calls = {"n": 0}
    base = supervised_loss(relative_l2)

    def interrupting(model, batch):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 8:  # epoch 3, step 2 (3 steps per epoch)
                raise _Interrupt
        return base(model, batch)

    _, first = _fresh(tmp_path / "cut", loss_fn=interrupting)
    with pytest.raises(_Interrupt):
        first.fit(data)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["extra"]["trainer"]["epoch"] == 2

    torch.manual_seed(999)  # a different global RNG state and fresh weights
    resumed_model = _DropNet()
    resumed = Trainer(resumed_model, base, _config(), tmp_path / "cut", metrics={"l2": base})
    history = resumed.fit(data)
    assert [h["epoch"] for h in history["epochs"]] == [1, 2, 3, 4]
    for (name, a), b in zip(
        full_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    full_hist = json.loads((tmp_path / "full" / "metrics.json").read_text())["epochs"]
    assert [h["train_loss"] for h in full_hist] == [h["train_loss"] for h in history["epochs"]]


def test_resume_with_other_settings_is_refused(tmp_path):
    data = _smooth_data(8)
    _, trainer = _fresh(tmp_path, epochs=1)
    trainer.fit(data)
    _, other = _fresh(tmp_path, epochs=1, lr=1e-1)
    with pytest.raises(InvalidInputError, match="other settings.*lr"):
        other.fit(data)
    _, again = _fresh(tmp_path, epochs=1, lr=1e-1)
    assert len(again.fit(data, resume=False)["epochs"]) == 1


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path):
    data = _smooth_data(16)
    base = supervised_loss(relative_l2)
    calls = {"n": 0}

    def exploding(model, batch):
        if model.training:
            calls["n"] += 1
            if calls["n"] == 5:  # epoch 2, step 2
                return base(model, batch) * float("nan")
        return base(model, batch)

    _, trainer = _fresh(tmp_path, loss_fn=exploding)
    with pytest.raises(TrainingDivergedError, match="epoch 2, step 2.*last good checkpoint"):
        trainer.fit(data)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["extra"]["trainer"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_outputs_best_model_and_normalizers(tmp_path):
    data = _smooth_data(16)
    xn = UnitGaussianNormalizer.fit(data, index=0)
    yn = UnitGaussianNormalizer.fit(data, index=1)
    net = MgNO(1, 1, channels=4, layers=1, levels=2)
    loss_fn = supervised_loss(relative_l2, xn, yn)
    trainer = Trainer(
        net,
        loss_fn,
        _config(epochs=3, plot=True),
        tmp_path,
        model_spec=ModelSpec("mgno", net.config()),
        normalizers={"x": xn, "y": yn},
        metrics={"l2": loss_fn},
    )
    history = trainer.fit(data)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and "val_l2" in metrics["epochs"][0]
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    best = history["best_epoch"]
    vals = [h["val_loss"] for h in history["epochs"]]
    assert vals[best - 1] == min(vals)
    op = load_operator(tmp_path / "model.pt", kind="mgno")
    assert load_checkpoint(tmp_path / "model.pt")["extra"]["epoch"] == best
    x, y = data.tensors
    with torch.no_grad():
        err = float(relative_l2(op(x), y))
    assert err == pytest.approx(history["epochs"][best - 1]["val_loss"], rel=2.0)
    torch.testing.assert_close(op.x_normalizer.mean, xn.mean)


def test_normalizer_fit_from_dataset_matches_tensor():
    data = _smooth_data(10)
    a = UnitGaussianNormalizer.fit(data, index=1)
    b = UnitGaussianNormalizer.fit(data.tensors[1])
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.std, b.std)
    z = b.encode(data.tensors[1])
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-3


@pytest.mark.parametrize(
    "kw",
    [
        dict(epochs=0),
        dict(optimizer="sgd"),
        dict(schedule="step"),
        dict(val_fraction=1.0),
        dict(lr=-1.0),
        dict(grad_clip=0.0),
    ],
)
def test_bad_config_raises(kw):
    with pytest.raises(InvalidInputError):
        TrainConfig(**kw)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_schedules_and_optimizers_run(tmp_path, schedule, optimizer):
    data = _smooth_data(8)
    _, trainer = _fresh(
        tmp_path, epochs=2, schedule=schedule, optimizer=optimizer, grad_clip=1.0, weight_decay=1e-4
    )
    history = trainer.fit(data)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history["epochs"])
