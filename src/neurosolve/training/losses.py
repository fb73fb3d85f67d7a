"""Trainer losses built from a pointwise loss: :func:`supervised_loss`.

The trainer takes a loss ``loss_fn(model, batch) -> scalar``; most models are trained on
pairs ``(x, y)`` with a loss ``loss(prediction, target)`` in physical units, optionally
with normalized inputs and outputs. :func:`supervised_loss` makes the first from the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["LossFn", "supervised_loss"]

#: A trainer loss: ``loss_fn(model, batch) -> scalar tensor`` (the batch mean).
LossFn = Callable[[nn.Module, Any], torch.Tensor]


def supervised_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_normalizer: Any = None,
    y_normalizer: Any = None,
) -> LossFn:
    """A trainer loss ``(model, (x, y)) -> loss(decode(model(encode(x))), y)``.

    The loss is computed in physical units (after decoding), as in the FNO/MgNO papers.

    Parameters
    ----------
    loss : callable
        ``loss(prediction, target) -> scalar`` (for example
        :func:`neurosolve.operators.losses.relative_l2`).
    x_normalizer, y_normalizer : optional
        Objects with ``encode`` / ``decode`` (for example
        :class:`neurosolve.operators.normalizers.UnitGaussianNormalizer`), applied to
        inputs / outputs.

    Returns
    -------
    callable

    Examples
    --------
    >>> import torch
    >>> fn = supervised_loss(lambda p, t: ((p - t) ** 2).mean())
    >>> float(fn(torch.nn.Identity(), (torch.ones(2, 1, 4), torch.zeros(2, 1, 4))))
    1.0
    """

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if x_normalizer is not None:
            x = x_normalizer.encode(x)
        pred = model(x)
        if y_normalizer is not None:
            pred = y_normalizer.decode(pred)
        return loss(pred.float() if pred.dtype in (torch.float16, torch.bfloat16) else pred, y)

    return loss_fn
