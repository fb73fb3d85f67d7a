"""One place that turns a user's device name into a :class:`torch.device`."""

from __future__ import annotations

from typing import Any

from neurosolve.errors import InvalidInputError

__all__ = ["resolve_device"]


def resolve_device(device: Any = None) -> Any:
    """Validate a device name and return the :class:`torch.device`.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` means the CPU, ``"auto"`` the first CUDA device when there is one.

    Returns
    -------
    torch.device

    Raises
    ------
    InvalidInputError
        For a name torch does not know, or a CUDA device on a machine without CUDA.

    Examples
    --------
    >>> resolve_device(None)
    device(type='cpu')
    >>> resolve_device("tpu9")
    Traceback (most recent call last):
    ...
    neurosolve.errors.InvalidInputError: unknown device 'tpu9'; use ...'auto'
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidInputError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"device {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type not in ("cpu", "mps", "xpu", "meta"):
        raise InvalidInputError(f"unsupported device {device!r}; use 'cpu' or 'cuda'")
    return dev
