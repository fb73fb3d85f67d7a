"""Model checkpoints that rebuild their model, and refuse files that are not ours.

A checkpoint is a ``torch.save`` dictionary holding only tensors and plain Python
containers (so it loads with ``weights_only=True``, which never runs code from the file)::

    {"format": "neurosolve-checkpoint", "format_version": 1, "package_version": "0.1.0",
     "kind": "mgno", "kwargs": {...constructor arguments...}, "state_dict": {...},
     "normalizers": {...} or None, "extra": {...} or None}

``kind`` names a model class in :data:`MODELS`; :func:`build_model` rebuilds it from
``kwargs``, so a checkpoint is all that is needed to use a trained model.

Writes are atomic: the file is written under a temporary name in the same folder and
renamed, so an interrupted save never leaves a truncated checkpoint under its final name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurosolve._util.io import atomic_write
from neurosolve._util.limits import check_memory
from neurosolve._version import __version__
from neurosolve.devices import resolve_device
from neurosolve.errors import (
    FileFormatError,
    InvalidInputError,
    NeurosolveError,
    UnknownNameError,
)

__all__ = [
    "BaseModel",
    "FORMAT",
    "FORMAT_VERSION",
    "MODELS",
    "build_model",
    "load_checkpoint",
    "load_model",
    "load_shipped",
    "save_checkpoint",
    "shipped_path",
]

logger = logging.getLogger(__name__)

#: Marker stored in every checkpoint.
FORMAT = "neurosolve-checkpoint"
#: Version of the layout above; bumped when it changes incompatibly.
FORMAT_VERSION = 1

#: Model kinds that a checkpoint can rebuild: name -> "module:attribute".
#: Owners of new models add one line each here.
MODELS: dict[str, str] = {
    "mgno": "neurosolve.operators.mgno:MgNO",
    "fno2d": "neurosolve.operators.fno:FNO2d",
    "fno3d": "neurosolve.operators.fno:FNO3d",
    "sfno": "neurosolve.operators.sfno:SFNO",
    "dcdm": "neurosolve.solvers.dcdm.network:DCDMNet",
    "mgpc": "neurosolve.solvers.mgpc.network:MGPCNet",
}


#: Trained models shipped inside the package: kind -> file name under ``neurosolve/models``.
SHIPPED: dict[str, str] = {"dcdm": "dcdm3d.pt", "mgpc": "mgpc3d.pt"}


class BaseModel(nn.Module):
    """A model that records the arguments it was built with, so a checkpoint can rebuild it.

    Every subclass's ``__init__`` is wrapped once, at class creation: the arguments of the
    outermost constructor call (defaults filled in) are kept, and :meth:`config` returns
    them. They must be plain Python values (numbers, strings, tuples, lists, dicts), which
    is what ``weights_only`` checkpoints can hold. Arguments named in a subclass's
    ``unrecorded`` tuple (a ``device``, say, which would not rebuild on another machine)
    are left out.

    Examples
    --------
    >>> class Tiny(BaseModel):
    ...     def __init__(self, width: int = 4, depth: int = 1):
    ...         super().__init__()
    ...         self.lin = nn.Linear(width, width)
    >>> Tiny(8).config()
    {'width': 8, 'depth': 1}
    """

    #: Constructor arguments that :meth:`config` leaves out.
    unrecorded: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kw: Any) -> None:
            if "_init_kwargs" not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(signature.parameters)))  # self
                for name, p in signature.parameters.items():
                    if p.kind is p.VAR_KEYWORD and name in arguments:
                        arguments.update(arguments.pop(name))
                for name in type(self).unrecorded:
                    arguments.pop(name, None)
                object.__setattr__(self, "_init_kwargs", arguments)
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def config(self) -> dict[str, Any]:
        """The constructor arguments of this model (a copy)."""
        return dict(self.__dict__.get("_init_kwargs", {}))


def shipped_path(kind: str) -> Path:
    """Path of the trained model of ``kind`` shipped with the package.

    Examples
    --------
    >>> shipped_path("mgpc").name
    'mgpc3d.pt'
    """
    if kind not in SHIPPED:
        raise UnknownNameError(
            f"no shipped model of kind {kind!r}; shipped kinds: {', '.join(sorted(SHIPPED))}"
        )
    return Path(str(resources.files("neurosolve") / "models" / SHIPPED[kind]))


def load_shipped(
    kind: str,
    path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Load a model of ``kind`` (default: the shipped one), cached per file and device.

    Loaded networks are cached per (file, modification time, device), so solvers built for
    a sequence of matrices (one per time step) read the weights once; the returned module
    is shared, in eval mode, and must not be modified.

    Parameters
    ----------
    kind : str
        A key of :data:`MODELS`.
    path : path-like, optional
        A checkpoint of that kind (default: :func:`shipped_path`).
    device : str or torch.device, optional
        Where to put the network.

    Raises
    ------
    FileFormatError
        Missing file, not a neurosolve checkpoint, or another model kind.

    Examples
    --------
    >>> load_shipped("mgpc") is load_shipped("mgpc")
    True
    """
    path = shipped_path(kind) if path is None else Path(path)
    if not path.is_file():
        raise FileFormatError(f"{kind} model {path} does not exist")
    device = str(resolve_device(device))
    return _load_cached(kind, str(path.resolve()), path.stat().st_mtime_ns, device)


@functools.lru_cache(maxsize=8)
def _load_cached(kind: str, path: str, mtime_ns: int, device: str) -> nn.Module:
    model, _ = load_model(path, kind=kind, map_location=device)
    return model


def _resolve(kind: str) -> type[nn.Module]:
    if kind not in MODELS:
        raise UnknownNameError(
            f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(MODELS))}"
        )
    module_name, _, attr = MODELS[kind].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build_model(kind: str, **kwargs: Any) -> nn.Module:
    """Build a model of a registered kind from its constructor arguments.

    Parameters
    ----------
    kind : str
        A key of :data:`MODELS`.
    **kwargs
        Constructor arguments.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    UnknownNameError
        If ``kind`` is not registered.
    InvalidInputError
        If the arguments do not fit the constructor.

    Examples
    --------
    >>> model = build_model("mgno", in_channels=1, out_channels=1, channels=4, levels=2,
    ...                     layers=1)
    >>> type(model).__name__
    'MgNO'
    """
    cls = _resolve(kind)
    _check_model_size(cls, kind, kwargs)
    try:
        return cls(**kwargs)
    except NeurosolveError:
        raise
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"cannot build model {kind!r} from {kwargs}: {exc}") from exc


#: Bytes per parameter of the built model: the weights plus optimizer state and gradient.
_BYTES_PER_PARAMETER = 16


def _check_model_size(cls: type[nn.Module], kind: str, kwargs: dict[str, Any]) -> None:
    """Build on the ``meta`` device (no memory) and refuse a model too large to hold.

    A checkpoint's arguments are data from a file: 200,000 channels would otherwise ask
    for terabytes before failing.
    """
    bad = {k: v for k, v in kwargs.items() if not _plain(v)}
    if bad:
        raise InvalidInputError(
            f"cannot build model {kind!r}: arguments {sorted(bad)} are not numbers, strings, "
            "booleans, torch dtypes or lists of them"
        )
    try:
        with torch.device("meta"):
            model = cls(**kwargs)
    except NeurosolveError:
        raise
    except Exception:  # noqa: BLE001 -- the real build below raises (and words) the error
        # a constructor that computes with real tensors or arrays cannot run on 'meta'
        logger.debug("model %r cannot be built on the meta device; size unchecked", kind)
        return
    count = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    check_memory(float(count) * _BYTES_PER_PARAMETER, f"model {kind!r} with {count:,} parameters")


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _atomic_save(obj: Any, path: Path) -> None:
    # A process killed mid-write leaves its temporary file behind; clear those first.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    atomic_write(path, lambda tmp: _save_to(obj, tmp))


def _save_to(obj: Any, tmp: str) -> None:
    with open(tmp, "wb") as fh:  # torch.save given an open file, as the fault tests expect
        torch.save(obj, fh)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    normalizers: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination file (parent folders are created).
    kind : str
        Model kind (a key of :data:`MODELS` for :func:`load_model` to rebuild it).
    kwargs : mapping
        Constructor arguments (plain Python values: numbers, strings, lists, dicts).
    state_dict : mapping
        ``model.state_dict()``; tensors are moved to the CPU.
    normalizers : mapping, optional
        Normalizer states (see :mod:`neurosolve.operators.normalizers`).
    extra : mapping, optional
        Anything else made of tensors and plain containers (optimizer state, epoch, ...).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> p = save_checkpoint(d / "m.pt", kind="toy", kwargs={"n": 2},
    ...                     state_dict={"w": torch.ones(2)})
    >>> load_checkpoint(p)["kwargs"]
    {'n': 2}
    """
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(f"checkpoint kind must be a non-empty string, got {kind!r}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "kind": kind,
        "kwargs": dict(kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "normalizers": None if normalizers is None else dict(normalizers),
        "extra": None if extra is None else dict(extra),
    }
    path = Path(path)
    _atomic_save(payload, path)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        The file.
    kind : str, optional
        Expected model kind; a checkpoint of another kind is refused.
    map_location : str or torch.device, optional
        Where tensors are loaded (``"cpu"`` by default, ``"cuda"`` works on a GPU
        machine whatever device the file was saved from).

    Returns
    -------
    dict
        The checkpoint dictionary.

    Raises
    ------
    FileFormatError
        Missing, truncated or corrupted file; a file that is not a neurosolve checkpoint;
        a newer checkpoint format; a checkpoint of another model kind.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> bad = Path(tempfile.mkdtemp()) / "notes.pt"
    >>> _ = bad.write_text("hello")
    >>> load_checkpoint(bad)
    Traceback (most recent call last):
    ...
    neurosolve.errors.FileFormatError: ...notes.pt is not a readable checkpoint...
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"checkpoint {path} does not exist")
    # the device first, outside the handler below: "CUDA is not available" is not a
    # damaged file
    if isinstance(map_location, (str, torch.device)):
        map_location = resolve_device(map_location)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch.load raises many types on garbage input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only" in first.lower() or "weights_only" in first:
            # torch's own text advises loading with weights_only=False, which would run
            # arbitrary code from the file: never pass that advice on.
            first = "it holds Python objects, not only tensors and plain containers"
        elif "zip" in first.lower() or "magic number" in first.lower():
            first = "not a PyTorch checkpoint file"
        raise FileFormatError(
            f"{path} is not a readable checkpoint (truncated, corrupted, or not written by "
            f"neurosolve): {first}"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FileFormatError(
            f"{path} is not a neurosolve checkpoint (no {FORMAT!r} marker); it was written by "
            "another program"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FileFormatError(
            f"{path} has checkpoint format version {version!r}; this neurosolve "
            f"({__version__}) reads versions <= {FORMAT_VERSION}: upgrade neurosolve"
        )
    missing = [k for k in ("kind", "kwargs", "state_dict") if k not in data]
    if missing:
        raise FileFormatError(f"{path} is a damaged checkpoint: missing {', '.join(missing)}")
    if kind is not None and data["kind"] != kind:
        raise FileFormatError(f"{path} holds a {data['kind']!r} model, not a {kind!r} model")
    if data.get("package_version") != __version__:
        logger.warning(
            "%s was written by neurosolve %s; this is %s",
            path,
            data.get("package_version"),
            __version__,
        )
    return data


def load_model(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    map_location: str | torch.device | None = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, in eval mode.

    Parameters
    ----------
    path : path-like
        A checkpoint written by :func:`save_checkpoint` (for example a training run's
        ``model.pt``).
    kind : str, optional
        Expected model kind.
    map_location : str or torch.device, optional
        Device for the weights and the model.

    Returns
    -------
    model : torch.nn.Module
        The model with its weights, on ``map_location``, in eval mode.
    checkpoint : dict
        The checkpoint dictionary (normalizers, extra).

    Raises
    ------
    FileFormatError
        As :func:`load_checkpoint`, or when the weights do not fit the model.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> net = build_model("mgno", in_channels=1, out_channels=1, channels=4, levels=2, layers=1)
    >>> p = save_checkpoint(Path(tempfile.mkdtemp()) / "m.pt", kind="mgno",
    ...                     kwargs=net.config(), state_dict=net.state_dict())
    >>> model, ckpt = load_model(p, kind="mgno")
    >>> ckpt["kind"], model.training
    ('mgno', False)
    """
    data = load_checkpoint(path, kind=kind, map_location=map_location)
    if not isinstance(data["kwargs"], dict) or not all(isinstance(k, str) for k in data["kwargs"]):
        raise FileFormatError(f"{path}: the stored model arguments are not a dict of names")
    try:
        model = build_model(data["kind"], **data["kwargs"])
    except (UnknownNameError, InvalidInputError) as exc:
        raise FileFormatError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise FileFormatError(
            f"{path}: the stored weights do not fit a {data['kind']!r} model built from its "
            f"stored arguments ({_state_mismatch(model.state_dict(), data['state_dict'])}); "
            "was it written by another neurosolve version? Retrain it with this one"
        ) from exc
    if map_location is not None:
        model = model.to(map_location)
    model.eval()
    return model, data


def _state_mismatch(expected: dict, stored: dict) -> str:
    """One line naming the missing, unexpected and mis-shaped tensors of a state dict."""
    parts = []
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    shapes = sorted(
        k
        for k in set(expected) & set(stored)
        if tuple(getattr(stored[k], "shape", ())) != tuple(expected[k].shape)
    )
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{label} {', '.join(keys[:3])}{more}")
    return "; ".join(parts) or "no matching tensors"
