"""One plotting style for every figure the package writes.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas, made by
:func:`new_figure`; nothing here imports ``pyplot``, selects a backend or changes
``rcParams``, so importing this module (or drawing with it) leaves matplotlib's global state
alone. The helpers give every figure the same conventions:

- :func:`shared_limits` / :func:`symmetric_limit`: one colour scale for fields that are
  compared (truth and prediction), a symmetric one for signed errors;
- :func:`integer_ticks`: epoch and frame axes labelled with whole numbers only;
- :func:`legend_outside`: the legend to the right of the axes, never over the curves;
- :func:`wants_log_time` / :func:`set_time_axis`: a log time axis when the times span more
  than two decades (a linear axis squashes fast methods onto zero);
- :func:`save_figure`: PNG, PDF or SVG at a given dpi (default :data:`DEFAULT_DPI`), written
  through :func:`neurosolve._util.io.atomic_write`.

matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from neurosolve._util.io import atomic_write
from neurosolve.errors import InvalidInputError

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "figure_path",
    "integer_ticks",
    "legend_outside",
    "new_figure",
    "plain_log_labels",
    "save_figure",
    "set_time_axis",
    "shared_limits",
    "symmetric_limit",
    "wants_log_time",
]

#: File formats :func:`save_figure` writes.
FORMATS = ("png", "pdf", "svg")

#: Resolution of raster figures unless a caller asks otherwise.
DEFAULT_DPI = 150


def new_figure(
    rows: int = 1,
    cols: int = 1,
    *,
    width: float = 4.6,
    height: float = 3.4,
    layout: str | None = None,
) -> tuple[Any, list[Any]]:
    """A figure of ``rows x cols`` panels (each ``width x height`` inches) on the Agg canvas.

    ``layout`` is matplotlib's layout engine (``"constrained"``); None means fixed margins,
    set by the caller with ``fig.subplots_adjust``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : list of matplotlib.axes.Axes
        Row-major.

    Examples
    --------
    >>> fig, axes = new_figure(1, 2)
    >>> len(axes), [round(float(v), 1) for v in fig.get_size_inches()]
    (2, [9.2, 3.4])
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout=layout)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    return fig, axes


def figure_path(path: str | os.PathLike, fmt: str | None = None) -> Path:
    """``path`` with the suffix of format ``fmt`` (``path`` unchanged when ``fmt`` is None).

    Examples
    --------
    >>> figure_path("run/curve.png", "pdf").as_posix()
    'run/curve.pdf'
    >>> figure_path("run/curve.png").as_posix()
    'run/curve.png'
    """
    path = Path(path)
    if fmt is None:
        return path
    return path.with_suffix("." + _check_format(fmt))


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise InvalidInputError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def save_figure(
    fig: Any, path: str | os.PathLike, *, fmt: str | None = None, dpi: float = DEFAULT_DPI
) -> Path:
    """Write ``fig`` atomically as PNG, PDF or SVG.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Destination; its suffix is replaced by ``fmt`` when ``fmt`` is given.
    fmt : {"png", "pdf", "svg"}, optional
        Default: the suffix of ``path`` (``png`` when it has none of these).
    dpi : float
        Resolution (raster formats, and images embedded in vector ones).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> p = save_figure(fig, Path(tempfile.mkdtemp()) / "line.png", fmt="svg")
    >>> p.suffix, p.read_text()[:5]
    ('.svg', '<?xml')
    """
    if dpi is None or not math.isfinite(float(dpi)) or float(dpi) <= 0:
        raise InvalidInputError(f"dpi must be a positive number, got {dpi!r}")
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower().lstrip(".")
        fmt = suffix if suffix in FORMATS else "png"
        if suffix not in FORMATS:
            path = path.with_suffix(".png")
    else:
        path = figure_path(path, fmt)
    fmt = _check_format(fmt)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, dpi=float(dpi), format=fmt), suffix="." + fmt
    )


def _finite_values(arrays: Iterable[Any]) -> Any:
    import numpy as np

    parts = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[np.isfinite(values)]


def shared_limits(*arrays: Any) -> tuple[float, float]:
    """One ``(vmin, vmax)`` covering every finite value of ``arrays`` (a shared colour scale).

    Examples
    --------
    >>> import numpy as np
    >>> shared_limits(np.array([0.0, 1.0]), np.array([-2.0, 0.5]))
    (-2.0, 1.0)
    >>> shared_limits(np.ones(3))
    (0.5, 1.5)
    """
    values = _finite_values(arrays)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        pad = 0.5 * abs(lo) or 0.5
        return lo - pad, hi + pad
    return lo, hi


def symmetric_limit(*arrays: Any) -> float:
    """The largest finite ``|value|`` of ``arrays`` (1 when all are zero): ``vmin=-lim``.

    Examples
    --------
    >>> import numpy as np
    >>> symmetric_limit(np.array([-3.0, 1.0])), symmetric_limit(np.zeros(2))
    (3.0, 1.0)
    """
    values = _finite_values(arrays)
    lim = float(abs(values).max()) if values.size else 0.0
    return lim or 1.0


def integer_ticks(axis: Any) -> None:
    """Label an axis (``ax.xaxis``) with whole numbers only (epochs, frames).

    Examples
    --------
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.plot([1, 2], [1.0, 0.5])
    >>> integer_ticks(ax.xaxis)
    >>> all(float(t).is_integer() for t in ax.get_xticks())
    True
    """
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def plain_log_labels(axis: Any) -> None:
    """Label a log axis with short plain numbers (``0.2``, ``1e-05``).

    matplotlib's default writes ``2 x 10^-1`` at every minor tick of a narrow range, which
    is wide and hard to read; two significant digits say the same. Minor ticks are labelled
    all of them while the axis spans at most one decade, those at 2 and 5 up to 2.5
    decades, none beyond (there the major labels suffice).

    Examples
    --------
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.semilogy([1, 2], [0.2, 0.3])
    >>> plain_log_labels(ax.yaxis)
    >>> ax.yaxis.get_major_formatter()(0.1, 0)
    '0.1'
    """
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _: Any) -> str:
        return f"{value:.2g}"

    def minor(value: float, _: Any) -> str:
        lo, hi = sorted(float(v) for v in axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 and value > 0 else math.inf
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        if decades <= 1.0 or (decades <= 2.5 and mantissa in (2.0, 5.0)):
            return f"{value:.2g}"
        return ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(minor))


def legend_outside(ax: Any, *, fontsize: float = 8, **kwargs: Any) -> Any:
    """A legend to the right of ``ax``, outside the plotting area (None when nothing is labelled).

    Leave room for it with ``fig.subplots_adjust(right=...)`` or ``bbox_inches``-free fixed
    margins; :func:`save_figure` does not crop.

    Examples
    --------
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.plot([0, 1], label="a")
    >>> legend_outside(ax).get_bbox_to_anchor() is not None
    True
    """
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    options = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
    options.update(kwargs)
    return ax.legend(handles, labels, fontsize=fontsize, frameon=False, **options)


def wants_log_time(times: Iterable[float], decades: float = 2.0) -> bool:
    """Whether positive ``times`` span more than ``decades`` powers of ten.

    Examples
    --------
    >>> wants_log_time([1e-4, 0.5]), wants_log_time([0.1, 2.0]), wants_log_time([0.0])
    (True, False, False)
    """
    positive = [float(t) for t in times if math.isfinite(float(t)) and float(t) > 0]
    if len(positive) < 2:
        return False
    return math.log10(max(positive) / min(positive)) > decades


def set_time_axis(ax: Any, times: Sequence[float], *, log: bool | None = None) -> bool:
    """Make the x axis of ``ax`` a time axis; log scale when ``log`` (None: :func:`wants_log_time`).

    Returns
    -------
    bool
        Whether the axis is logarithmic.

    Examples
    --------
    >>> fig, (ax,) = new_figure()
    >>> set_time_axis(ax, [1e-5, 1e-1]), ax.get_xscale()
    (True, 'log')
    """
    use_log = wants_log_time(times) if log is None else bool(log)
    ax.set_xscale("log" if use_log else "linear")
    return use_log
