"""Validation splits for training: :func:`holdout_split` holds out a seeded random subset.

The trainer uses it when no validation set is given, so that a run (and its resumption)
always validates on the same samples.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

from neurosolve.errors import InvalidInputError

__all__ = ["holdout_split"]


def holdout_split(
    dataset: Dataset, fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """Split off a random validation subset (fixed by ``seed``).

    Parameters
    ----------
    dataset : Dataset
    fraction : float
        Share of samples held out, in ``[0, 1)``; 0 returns ``(dataset, None)``.
    seed : int, optional

    Returns
    -------
    train, val : Dataset
        ``torch.utils.data.Subset`` objects (indices in increasing order).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> train, val = holdout_split(TensorDataset(torch.arange(10)), 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return dataset, None
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise InvalidInputError(
            f"validation fraction {fraction} leaves no training samples out of {n}"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).tolist()
    return Subset(dataset, sorted(perm[n_val:])), Subset(dataset, sorted(perm[:n_val]))
