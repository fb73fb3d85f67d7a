"""Tables and plots of benchmark results.

- :func:`markdown_table`: one row per (problem, method): iterations, setup / solve /
  total seconds, the harness's true residual, the converged verdict, peak memory.
- :func:`sequence_table`: one row per (sequence, method): total setup, solve and time.
- :func:`plot_residuals`: relative residual against iteration or against wall time
  (since the start of the setup, so a setup cost shows as an offset), one panel per
  problem, one curve per method, log scale.
- :func:`write_report`: ``results.json``, ``results.md`` and the PNGs into one folder.

Plots are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas
directly; nothing here touches ``pyplot`` or the global backend.
"""

from __future__ import annotations

import math
from pathlib import Path

from neurosolve._util.io import atomic_write_text
from neurosolve._util.plotting import DEFAULT_DPI, new_figure, save_figure, wants_log_time
from neurosolve.errors import InvalidInputError
from neurosolve.harness.records import BenchmarkResults, RunRecord, save_results

__all__ = ["markdown_table", "sequence_table", "plot_residuals", "plot_sequences", "write_report"]


def _fmt_seconds(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def _fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _fmt_cond(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _verdict(rec: RunRecord) -> str:
    if rec.error:
        return "error"
    if rec.converged:
        return "yes"
    if rec.claimed_converged:
        return "NO (false claim)"
    return f"no ({rec.status})"


def _repeats(runs) -> int:
    """The most timed repeats behind any of ``runs`` (1 for files without repeats)."""
    return max((r.repeats for r in runs), default=1)


def markdown_table(results: BenchmarkResults) -> str:
    """Markdown table of every (problem, method) run.

    With repeated timings (``bench --repeat N``) the seconds are medians; two more
    columns give the fastest solve and setup + solve, and a line above the table says so.

    Examples
    --------
    >>> from neurosolve.harness.records import RunRecord
    >>> res = BenchmarkResults("demo", 1e-6, runs=[RunRecord("p", "cg", n=4, iterations=2,
    ...     converged=True, claimed_converged=True, true_residual=1e-7)])
    >>> print(markdown_table(res).splitlines()[2])
    | p | 4 | cg | 2 | 0.0e+00 | 0.0e+00 | 0.0e+00 | 1.0e-07 | yes | - | - |
    """
    repeats = _repeats(results.runs)
    extra = " solve s min | total s min |" if repeats > 1 else ""
    header = (
        "| problem | n | method | iterations | setup s | solve s | total s | "
        f"true rel. residual | converged | peak MiB | cond. est. |{extra}\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|" + "---:|" * (2 if extra else 0)
    )
    rows = [header]
    for r in results.runs:
        mins = ""
        if extra:
            solve_min = r.solve_seconds if r.solve_seconds_min is None else r.solve_seconds_min
            mins = f" {_fmt_seconds(solve_min)} | {_fmt_seconds(r.total_seconds_min)} |"
        rows.append(
            f"| {r.problem} | {r.n} | {r.method} | {r.iterations} | "
            f"{_fmt_seconds(r.setup_seconds)} | {_fmt_seconds(r.solve_seconds)} | "
            f"{_fmt_seconds(r.total_seconds)} | {r.true_residual:.1e} | {_verdict(r)} | "
            f"{_fmt_bytes(r.peak_memory_bytes)} | {_fmt_cond(r.condition_estimate)} |{mins}"
        )
    if repeats > 1:
        rows.insert(0, f"Times: median of {repeats} repeats (min: the fastest).\n")
    notes = [
        f"- {r.problem} / {r.method}: {r.error or '; '.join(r.flags)}"
        for r in results.runs
        if r.error or r.flags
    ]
    text = "\n".join(rows)
    if notes:
        text += "\n\nNotes:\n" + "\n".join(notes)
    return text


def sequence_table(results: BenchmarkResults) -> str:
    """Markdown table of the sequence runs (empty string when there are none).

    Examples
    --------
    >>> sequence_table(BenchmarkResults("demo", 1e-6))
    ''
    """
    if not results.sequences:
        return ""
    repeated = _repeats([f for s in results.sequences for f in s.frames]) > 1
    rows = [
        "| sequence | method | frames | iterations (min-max) | setup s | solve s | total s | "
        "all converged |" + (" total s min |" if repeated else ""),
        "|---|---|---:|---:|---:|---:|---:|---|" + ("---:|" if repeated else ""),
    ]
    for s in results.sequences:
        its = s.iterations
        span = f"{min(its)}-{max(its)}" if its else "-"
        rows.append(
            f"| {s.sequence} | {s.method} | {len(s.frames)} | {span} | "
            f"{_fmt_seconds(s.setup_seconds)} | {_fmt_seconds(s.solve_seconds)} | "
            f"{_fmt_seconds(s.total_seconds)} | {'yes' if s.converged else 'no'} |"
            + (f" {_fmt_seconds(s.total_seconds_min)} |" if repeated else "")
        )
    return "\n".join(rows)


def _figure(panels: int, width: float = 4.6, height: float = 3.4, legend: float = 0.0):
    # ``legend``: inches kept free on the right for one shared legend outside the panels.
    cols = min(3, panels)
    rows = math.ceil(panels / cols)
    fig, axes = new_figure(rows, cols, width=width, height=height)
    for ax in axes[panels:]:
        fig.delaxes(ax)
    fig_w, fig_h = width * cols + legend, height * rows + 0.4
    fig.set_size_inches(fig_w, fig_h)
    # Fixed margins in inches: a layout engine costs seconds per figure on log axes.
    fig.subplots_adjust(
        left=0.85 / fig_w,
        right=1 - (0.15 + legend) / fig_w,
        bottom=0.6 / fig_h,
        top=1 - 0.75 / fig_h,
        wspace=0.9 / width,
        hspace=1.0 / height,
    )
    return fig, axes[:panels]


def _save(fig, path: Path, fmt: str | None = None, dpi: float = DEFAULT_DPI) -> Path:
    return save_figure(fig, path, fmt=fmt, dpi=dpi)


def _shared_legend(fig, axes, results: BenchmarkResults) -> None:
    # One legend for all panels, right of the last column: a colour per method, a dashed
    # line for a run that did not converge, the dotted tolerance line.
    from matplotlib.lines import Line2D

    methods = list(dict.fromkeys(r.method for r in results.runs))
    handles = [Line2D([], [], color=f"C{i % 10}", lw=1.4, label=m) for i, m in enumerate(methods)]
    if any(not r.converged and not r.error and r.residuals for r in results.runs):
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.4, label="not converged"))
    handles.append(Line2D([], [], color="0.5", ls=":", lw=0.8, label=f"rtol {results.rtol:g}"))
    top_right = axes[min(len(axes), 3) - 1]
    top_right.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.03, 1.0),
        borderaxespad=0.0,
        fontsize=8,
        frameon=False,
    )


def _curve(r: RunRecord, x: str) -> tuple[list[float], list[float]] | None:
    if r.error or not r.residuals:
        return None
    ys = [max(v, 1e-300) if math.isfinite(v) else math.nan for v in r.residuals]
    xs = list(range(len(ys))) if x == "iteration" else list(r.residual_times)
    return (xs, ys) if len(xs) == len(ys) else None


def plot_residuals(
    results: BenchmarkResults,
    path: str | Path,
    *,
    x: str = "iteration",
    log_time: bool | None = None,
    fmt: str | None = None,
    dpi: float = DEFAULT_DPI,
) -> Path:
    r"""Relative residual against iteration or wall time, a panel per problem.

    Every panel uses the same colour per method; one legend outside the panels names them
    all (dashed: did not converge). On the time axis the points at ``t = 0`` cannot be
    shown on a log scale and are left out there.

    Parameters
    ----------
    results : BenchmarkResults
        Runs to draw (runs with an error or no history are skipped).
    path : str or Path
        Output file (its suffix is replaced by ``fmt`` when given).
    x : {"iteration", "time"}
        Horizontal axis: iteration number, or wall seconds since the setup started.
    log_time : bool, optional
        Log scale on the time axis; default: when the positive times span more than two
        decades (:func:`neurosolve._util.plotting.wants_log_time`).
    fmt : {"png", "pdf", "svg"}, optional
    dpi : float, optional

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.harness.records import RunRecord
    >>> res = BenchmarkResults("demo", 1e-6, runs=[RunRecord("p", "cg",
    ...     residuals=[1.0, 1e-3, 1e-7], residual_times=[0.0, 0.1, 0.2])])
    >>> out = plot_residuals(res, pathlib.Path(tempfile.mkdtemp()) / "r.png", x="time")
    >>> out.read_bytes()[:4] == b"\x89PNG"
    True
    """
    from matplotlib.ticker import NullLocator

    if x not in ("iteration", "time"):
        raise InvalidInputError(f"x must be 'iteration' or 'time', got {x!r}")
    problems = list(dict.fromkeys(r.problem for r in results.runs))
    if not problems:
        raise InvalidInputError("no runs to plot")
    fig, axes = _figure(len(problems), legend=1.7)
    methods = list(dict.fromkeys(r.method for r in results.runs))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    curves = {id(r): _curve(r, x) for r in results.runs}
    use_log = False
    if x == "time":
        times = [t for c in curves.values() if c for t in c[0]]
        use_log = wants_log_time(times) if log_time is None else bool(log_time)
    for ax, problem in zip(axes, problems, strict=True):
        for r in results.runs:
            curve = curves[id(r)]
            if r.problem != problem or curve is None:
                continue
            xs, ys = curve
            if use_log:
                kept = [k for k, t in enumerate(xs) if t > 0]
                xs, ys = [xs[k] for k in kept], [ys[k] for k in kept]
            ax.semilogy(xs, ys, "-" if r.converged else "--", color=colors[r.method], lw=1.4)
        ax.axhline(results.rtol, color="0.5", lw=0.8, ls=":")
        # Minor log ticks cost most of the drawing time and add little to a decade plot.
        ax.yaxis.set_minor_locator(NullLocator())
        if x == "time":
            ax.set_xscale("log" if use_log else "linear")
            if use_log:
                ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(problem, fontsize=10)
        ax.set_xlabel("iteration" if x == "iteration" else "wall time since setup start (s)")
        ax.set_ylabel("||b - Ax|| / ||b||")
        ax.grid(True, which="major", alpha=0.3)
    _shared_legend(fig, axes, results)
    fig.suptitle(f"{results.suite}: true relative residual vs {x}")
    return _save(fig, Path(path), fmt, dpi)


def plot_sequences(
    results: BenchmarkResults,
    path: str | Path,
    *,
    fmt: str | None = None,
    dpi: float = DEFAULT_DPI,
) -> Path:
    """Figure of cumulative time (setup + solve) against frame, a panel per sequence.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.harness.records import RunRecord, SequenceRecord
    >>> seq = SequenceRecord("s", "cg", frames=[RunRecord("s-f0", "cg", solve_seconds=0.1)])
    >>> res = BenchmarkResults("demo", 1e-6, sequences=[seq])
    >>> plot_sequences(res, pathlib.Path(tempfile.mkdtemp()) / "s.png").stat().st_size > 1000
    True
    """
    from matplotlib.ticker import MaxNLocator

    names = list(dict.fromkeys(s.sequence for s in results.sequences))
    if not names:
        raise InvalidInputError("no sequence runs to plot")
    fig, axes = _figure(len(names))
    for ax, name in zip(axes, names, strict=True):
        for i, s in enumerate(r for r in results.sequences if r.sequence == name):
            total, xs, ys = 0.0, [0], [0.0]
            for k, f in enumerate(s.frames):
                total += f.total_seconds
                xs.append(k + 1)
                ys.append(total)
            style = "-o" if s.converged else "--x"
            ax.plot(xs, ys, style, color=f"C{i % 10}", label=s.method, ms=3)
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("frames solved")
        ax.set_ylabel("cumulative setup + solve (s)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results.suite}: changing systems, fresh setup every frame")
    return _save(fig, Path(path), fmt, dpi)


def write_report(
    results: BenchmarkResults,
    out_dir: str | Path,
    *,
    fmt: str = "png",
    dpi: float = DEFAULT_DPI,
    log_time: bool | None = None,
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and the plots (format ``fmt``) into ``out_dir``.

    ``log_time`` goes to :func:`plot_residuals` (None: log when times span > 2 decades).

    Returns
    -------
    dict
        ``{"json": ..., "markdown": ..., "residuals_iteration": ..., "residuals_time": ...,
        "sequences": ...}`` (plots only when there is something to draw).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": save_results(results, out / "results.json")}
    text = f"# {results.suite} (rtol {results.rtol:g})\n\n{markdown_table(results)}\n"
    seq = sequence_table(results)
    if seq:
        text += f"\n{seq}\n"
    paths["markdown"] = atomic_write_text(out / "results.md", text)
    if results.runs:
        paths["residuals_iteration"] = plot_residuals(
            results, out / "residuals_iteration.png", x="iteration", fmt=fmt, dpi=dpi
        )
        paths["residuals_time"] = plot_residuals(
            results, out / "residuals_time.png", x="time", log_time=log_time, fmt=fmt, dpi=dpi
        )
    if results.sequences:
        paths["sequences"] = plot_sequences(results, out / "sequences.png", fmt=fmt, dpi=dpi)
    return paths
