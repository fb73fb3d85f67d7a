"""The files a training run leaves for people: ``metrics.json`` and ``learning_curve.png``.

Both are rewritten after every epoch, atomically (:func:`neurosolve._util.io.atomic_write`),
so a reader, or a run interrupted mid-write, never sees half a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neurosolve._util.io import atomic_write, atomic_write_text

__all__ = ["plot_history", "write_metrics"]


def write_metrics(summary: Mapping[str, Any], path: Path) -> Path:
    """Write a run summary as indented JSON (values JSON cannot hold are written as text).

    Examples
    --------
    >>> import tempfile
    >>> p = write_metrics({"best_epoch": 2}, Path(tempfile.mkdtemp()) / "metrics.json")
    >>> json.loads(p.read_text())
    {'best_epoch': 2}
    """
    return atomic_write_text(path, json.dumps(summary, indent=2, default=str))


def plot_history(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Plot the training loss and every validation value per epoch (log scale) to a PNG.

    Series with a non-positive or non-finite value are left out (a log axis cannot show them).

    Examples
    --------
    >>> import tempfile
    >>> records = [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0, "val_seconds": 0.1},
    ...            {"epoch": 2, "train_loss": 0.5, "val_loss": 1.0, "val_seconds": 0.1}]
    >>> plot_history(records, Path(tempfile.mkdtemp()) / "curve.png", "demo").suffix
    '.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [h["epoch"] for h in history]
    keys = ["train_loss"] + sorted(
        k for k in history[-1] if k.startswith("val_") and not k.endswith("_seconds")
    )
    for key in keys:
        values = [h.get(key) for h in history]
        if all(isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / metric")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
