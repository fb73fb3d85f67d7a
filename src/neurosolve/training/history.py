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

from neurosolve._util.io import atomic_write_text
from neurosolve._util.plotting import (
    DEFAULT_DPI,
    integer_ticks,
    legend_outside,
    new_figure,
    plain_log_labels,
    save_figure,
)

__all__ = ["epoch_line", "metric_label", "plot_history", "write_metrics"]


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


#: Readable names of the usual metric keys (others: :func:`metric_label`).
_LABELS = {
    "loss": "loss",
    "l2": "rel. L2 error",
    "h1": "rel. H1 error",
    "rel_l2": "rel. L2 error",
    "rel_h1": "rel. H1 error",
}


def metric_label(key: str) -> str:
    """A readable legend label for a history key (``val_l2`` -> ``validation rel. L2 error``).

    Examples
    --------
    >>> metric_label("train_loss"), metric_label("val_rel_h1"), metric_label("val_cycle_gain")
    ('training loss', 'validation rel. H1 error', 'validation cycle gain')
    """
    for prefix, word in (("train_", "training"), ("val_", "validation")):
        if key.startswith(prefix):
            name = key[len(prefix) :]
            return f"{word} {_LABELS.get(name, name.replace('_', ' '))}"
    return _LABELS.get(key, key.replace("_", " "))


def epoch_line(record: Mapping[str, Any], epochs: int | None = None) -> str:
    """One line summing up an epoch record: losses and validation metrics, then seconds.

    Examples
    --------
    >>> epoch_line({"epoch": 2, "train_loss": 0.25, "val_l2": 0.125, "train_seconds": 1.5,
    ...             "val_seconds": 0.5, "lr": 1e-3}, 10)
    'epoch 2/10: train_loss 2.500e-01, val_l2 1.250e-01 (2.0 s)'
    """
    head = f"epoch {record.get('epoch')}" + (f"/{epochs}" if epochs else "")
    values = [
        f"{k} {float(v):.3e}"
        for k, v in record.items()
        if k.startswith(("train_", "val_"))
        and not k.endswith("seconds")
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
    ]
    seconds = sum(
        float(v)
        for k, v in record.items()
        if k.endswith("_seconds") and isinstance(v, (int, float))
    )
    return f"{head}: {', '.join(values)} ({seconds:.1f} s)"


def _series(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[float]]]:
    # Plottable series (all values positive and finite), with identical ones merged into one
    # curve whose label names both ("validation loss = rel. L2 error").
    keys = ["train_loss"] + sorted(
        k for k in history[-1] if k.startswith("val_") and not k.endswith("_seconds")
    )
    out: list[tuple[str, list[float]]] = []
    for key in keys:
        values = [h.get(key) for h in history]
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)
            for v in values
        ):
            continue
        values = [float(v) for v in values]
        for i, (label, seen) in enumerate(out):
            if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(seen, values, strict=True)):
                extra = metric_label(key).removeprefix("validation ")
                out[i] = (f"{label} = {extra}", seen)
                break
        else:
            out.append((metric_label(key), values))
    return out


def plot_history(
    history: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    *,
    fmt: str | None = None,
    dpi: float = DEFAULT_DPI,
) -> Path:
    """Plot the training loss and every validation value per epoch.

    The value axis is logarithmic when the values span more than a decade, linear
    otherwise (a log axis over a narrow range has too few labelled ticks).

    Epoch ticks are whole numbers, labels are readable (:func:`metric_label`), the legend
    sits to the right of the axes, and series with the same values (``val_loss`` when the
    loss is the monitored metric) are drawn once with both names. Series with a
    non-positive or non-finite value are left out (a log axis cannot show them).

    Parameters
    ----------
    history : sequence of dict
        Per-epoch records with ``epoch``, ``train_loss`` and ``val_*`` keys.
    path : Path
        Output file; its suffix is replaced by ``fmt`` when given.
    title : str
    fmt : {"png", "pdf", "svg"}, optional
    dpi : float

    Examples
    --------
    >>> import tempfile
    >>> records = [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0, "val_seconds": 0.1},
    ...            {"epoch": 2, "train_loss": 0.5, "val_loss": 1.0, "val_seconds": 0.1}]
    >>> plot_history(records, Path(tempfile.mkdtemp()) / "curve.png", "demo").suffix
    '.png'
    """
    fig, (ax,) = new_figure(width=7.2, height=3.8)
    # Fixed margins: room on the right for the legend outside the axes.
    fig.subplots_adjust(left=0.12, right=0.64, bottom=0.14, top=0.9)
    epochs = [h["epoch"] for h in history]
    series = _series(history)
    for label, values in series:
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    every = [v for _, values in series for v in values]
    if every and max(every) > 10 * min(every):
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
    integer_ticks(ax.xaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / relative error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax)
    return save_figure(fig, path, fmt=fmt, dpi=dpi)
