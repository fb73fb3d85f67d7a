"""DistributedDataParallel for the trainer: joining a process group, collectives, teardown.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`init_distributed` creates the process group
(NCCL on CUDA, gloo on CPU) and the trainer owns it; inside a group the caller already
initialized it only joins. :func:`wrap` puts the model in DDP, :func:`barrier` and
:func:`all_sum` are the two collectives the trainer needs, and :func:`release` tears down
a group the trainer created. The order of teardown matters: the DDP wrapper (its reducer
holds the process group) must be dropped BEFORE ``destroy_process_group``, or a gloo group
garbage-collected after its peer exited can hang in the join of its threads (seen once in
2-process CI runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from neurosolve.errors import InvalidInputError

__all__ = ["ProcessGroup", "all_sum", "barrier", "init_distributed", "release", "wrap"]


@dataclass
class ProcessGroup:
    """Where this process stands: its rank, the number of ranks, and its local rank.

    ``owned`` is True when :func:`init_distributed` created the group (and :func:`release`
    must destroy it).

    Examples
    --------
    >>> init_distributed("cpu")
    ProcessGroup(rank=0, world_size=1, local_rank=None, owned=False)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int | None = None
    owned: bool = False


def init_distributed(device: str) -> ProcessGroup:
    """Join the initialized process group, create one under torchrun, or run alone.

    Parameters
    ----------
    device : str
        The configured device (``"cpu"``, ``"cuda"``, ``"auto"``, ...): it picks the backend.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), local)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    if not dist.is_available():
        raise InvalidInputError("WORLD_SIZE > 1 but torch.distributed is not available")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)  # before NCCL picks a device
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, owned=True)


def wrap(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several ranks, else ``model``."""
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(device: torch.device, world_size: int) -> None:
    """Wait for every rank (nothing to do alone)."""
    if world_size > 1:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[device.index or 0])
        else:
            dist.barrier()


def all_sum(values: list[float], device: torch.device, world_size: int) -> list[float]:
    """Element-wise sums of ``values`` over the ranks (``values`` itself alone).

    Examples
    --------
    >>> all_sum([1.0, 2.0], torch.device("cpu"), 1)
    [1.0, 2.0]
    """
    if world_size == 1:
        return values
    import torch.distributed as dist

    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=comm)
    dist.all_reduce(t)
    return t.tolist()


def release(group: ProcessGroup) -> None:
    """Destroy the process group if :func:`init_distributed` created it.

    Drop every reference to the DDP wrapper first (see the module docstring).
    """
    if group.owned:
        import torch.distributed as dist

        dist.destroy_process_group()
        group.owned = False
