"""What a training run carries from epoch to epoch, and what makes a resumed run bit-identical.

:class:`RunState` is the bookkeeping of a run (last finished epoch, per-epoch records, best
epoch so far). :func:`rng_state` and :func:`set_rng_state` capture and restore every random
number generator a loss function may draw from (torch, CUDA, numpy's legacy global state,
Python's ``random``), so that a run resumed from its checkpoint draws exactly what the
uninterrupted run would have drawn. :func:`check_resumable` refuses to resume a run made
with other settings, and :func:`check_same_run` one made with other model arguments or on
other data (compared through :func:`dataset_fingerprint`), naming what changed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.training.config import RESUME_FREE

__all__ = [
    "RunState",
    "check_resumable",
    "check_same_run",
    "dataset_fingerprint",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]


@dataclass
class RunState:
    """Progress of a run: the last finished epoch, the per-epoch records and the best epoch.

    Examples
    --------
    >>> state = RunState()
    >>> state.epoch, state.best
    (0, {'epoch': None, 'value': None})
    """

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "value": None})

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> RunState:
        """The state stored under ``extra["trainer"]`` of a training checkpoint."""
        return cls(int(saved["epoch"]), list(saved["history"]), dict(saved["best"]))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's legacy global state and Python's ``random`` (a fresh run).

    Examples
    --------
    >>> seed_everything(3); a = random.random(); seed_everything(3)
    >>> a == random.random()
    True
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state, as tensors and plain values (storable in a ``weights_only`` file).

    Examples
    --------
    >>> state = rng_state(torch.device("cpu"))
    >>> x = torch.rand(2); set_rng_state(state, torch.device("cpu"))
    >>> bool(torch.equal(x, torch.rand(2)))
    True
    """
    # the legacy global state, saved because user loss functions may draw from it
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            np_state["keys"].cpu().numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached"]),
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def check_resumable(mine: Mapping[str, Any], theirs: Mapping[str, Any], out_dir: Path) -> None:
    """Refuse to resume, in ``out_dir``, a run whose settings ``theirs`` differ from ``mine``.

    Fields of :data:`~neurosolve.training.config.RESUME_FREE` may differ.

    Examples
    --------
    >>> check_resumable({"lr": 0.1, "device": "cpu"}, {"lr": 0.1, "device": "cuda"}, Path("run"))
    >>> check_resumable({"lr": 0.1}, {"lr": 0.2}, Path("run"))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: run holds a run with other settings (lr: 0.2 -> 0.1); ...
    """
    diff = [
        f"{k}: {theirs.get(k)!r} -> {mine[k]!r}"
        for k in mine
        if k not in RESUME_FREE and theirs.get(k) != mine[k]
    ]
    if diff:
        raise InvalidInputError(
            f"{out_dir} holds a run with other settings ({'; '.join(diff)}); "
            "use another output folder or delete checkpoint.pt to start over"
        )


def dataset_fingerprint(dataset: Any) -> dict[str, Any] | None:
    """What identifies a dataset's samples, or ``None`` when it cannot say.

    A dataset with a ``fingerprint()`` method (:class:`neurosolve.data.store.H5Dataset`)
    answers for itself; wrappers that keep the wrapped dataset in ``.dataset``
    (``torch.utils.data.Subset``) are looked through. The number of samples is added.

    Examples
    --------
    >>> class Data(list):
    ...     def fingerprint(self):
    ...         return {"seed": 3}
    >>> dataset_fingerprint(Data([1, 2]))
    {'seed': 3, 'length': 2}
    >>> dataset_fingerprint([1, 2]) is None
    True
    """
    base = dataset
    for _ in range(16):  # wrappers of wrappers, never a cycle
        method = getattr(base, "fingerprint", None)
        if callable(method):
            found = dict(method())
            found["length"] = len(dataset)
            return found
        base = getattr(base, "dataset", None)
        if base is None:
            return None
    return None


def _differences(mine: Mapping[str, Any] | None, theirs: Mapping[str, Any] | None) -> list[str]:
    if not mine or not theirs:  # unknown on one side (an older checkpoint): nothing to say
        return []
    # compared as JSON: a tuple stored in a checkpoint may come back as a list
    mine, theirs = (json.loads(json.dumps(d, sort_keys=True, default=repr)) for d in (mine, theirs))
    return [
        f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}"
        for k in sorted(set(mine) | set(theirs))
        if theirs.get(k) != mine.get(k)
    ]


def check_same_run(mine: Mapping[str, Any], theirs: Mapping[str, Any], out_dir: Path) -> None:
    """Refuse to resume when the model arguments or the data differ; name what changed.

    ``mine`` and ``theirs`` map ``"model"`` to the model's constructor arguments and
    ``"train"`` / ``"val"`` to :func:`dataset_fingerprint` results (``None`` when unknown).

    Examples
    --------
    >>> check_same_run({"model": {"channels": 8}}, {"model": {"channels": 8}}, Path("run"))
    >>> check_same_run({"model": {"channels": 16}}, {"model": {"channels": 8}}, Path("run"))
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: run holds a run with other model arguments ...
    """
    labels = {"model": "model arguments", "train": "training data", "val": "validation data"}
    for key, label in labels.items():
        diff = _differences(mine.get(key), theirs.get(key))
        if diff:
            raise InvalidInputError(
                f"{out_dir} holds a run with other {label} ({'; '.join(diff)}); use another "
                "output folder, or --restart to start over"
            )
