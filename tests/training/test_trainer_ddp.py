"""Two-process DistributedDataParallel training on CPU (gloo) equals one process."""

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from neurosolve.checkpoint import load_checkpoint
from neurosolve.operators.losses import relative_l2
from neurosolve.training import TrainConfig, Trainer, supervised_loss

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 8, 8, generator=g, dtype=torch.float64)
    return TensorDataset(x, torch.tanh(x) + 0.5 * x)


def _model():
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 1)).double()


def _config():
    return TrainConfig(
        epochs=2, batch_size=4, lr=1e-2, val_fraction=0.25, progress=False, plot=False, seed=3
    )


def _worker(rank, world, port, out_dir):
    # the environment torchrun sets up; the Trainer creates (and destroys) the group itself
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    trainer = Trainer(_model(), supervised_loss(relative_l2), _config(), out_dir)
    assert trainer.world_size == world and trainer.is_main == (rank == 0)
    trainer.fit(_data())
    assert not dist.is_initialized()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_matches_single_process(tmp_path):
    single = _model()
    Trainer(single, supervised_loss(relative_l2), _config(), tmp_path / "one").fit(_data())
    # fork: the workers inherit the imported modules (spawn would re-import torch in each)
    context = mp.start_processes(
        _worker,
        args=(2, _free_port(), str(tmp_path / "two")),
        nprocs=2,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + 300  # a hung worker must fail the test, not stall CI
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP workers did not finish within 300 s")
    two = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    for name, value in single.state_dict().items():
        torch.testing.assert_close(two["state_dict"][name], value, rtol=1e-10, atol=1e-12)
    assert two["extra"]["trainer"]["world_size"] == 2
    # only rank 0 wrote files
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == ["checkpoint.pt", "metrics.json", "model.pt"]
