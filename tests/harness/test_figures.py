"""Issue 16, figures: the properties a reviewer checks, read off the drawn matplotlib figures
(each plot function's figure is captured at save time)."""

import numpy as np
import pytest

import neurosolve._util.plotting as plotting
from neurosolve.errors import InvalidInputError
from neurosolve.harness.records import BenchmarkResults, RunRecord


@pytest.fixture
def captured(monkeypatch):
    """Figures handed to ``save_figure`` (still written, so the files can be checked too)."""
    figures = []
    real = plotting.save_figure

    def keep(fig, path, **kwargs):
        figures.append((fig, kwargs))
        return real(fig, path, **kwargs)

    import neurosolve.harness.operator_eval as operator_eval
    import neurosolve.harness.report as report
    import neurosolve.training.history as history

    for module in (operator_eval, report, history):
        monkeypatch.setattr(module, "save_figure", keep)
    return figures


def _axes_box(fig, ax):
    fig.canvas.draw()
    return ax.get_window_extent()


# ------------------------------------------------------------------------- plotting helpers


def test_save_figure_formats_and_dpi(tmp_path):
    fig, (ax,) = plotting.new_figure()
    ax.plot([0, 1], [0, 1])
    png = plotting.save_figure(fig, tmp_path / "a.png", dpi=60)
    big = plotting.save_figure(fig, tmp_path / "b.png", dpi=240)
    assert png.read_bytes()[:4] == b"\x89PNG" and big.stat().st_size > png.stat().st_size
    assert plotting.save_figure(fig, tmp_path / "c.png", fmt="pdf").read_bytes()[:4] == b"%PDF"
    assert plotting.save_figure(fig, tmp_path / "d", fmt="svg").suffix == ".svg"
    assert plotting.save_figure(fig, tmp_path / "e.dat").suffix == ".png"
    with pytest.raises(InvalidInputError, match="format"):
        plotting.save_figure(fig, tmp_path / "f.png", fmt="jpg")
    with pytest.raises(InvalidInputError, match="dpi"):
        plotting.save_figure(fig, tmp_path / "g.png", dpi=0)


def test_importing_plotting_leaves_matplotlib_state_alone():
    import subprocess
    import sys

    code = (
        "import sys, neurosolve._util.plotting as p; "
        "assert 'matplotlib' not in sys.modules; "
        "fig, _ = p.new_figure(); assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_limits_and_log_time_rule():
    a, b = np.array([0.0, 2.0]), np.array([-1.0, 1.0, np.nan])
    assert plotting.shared_limits(a, b) == (-1.0, 2.0)
    assert plotting.symmetric_limit(a - 5) == 5.0
    assert plotting.wants_log_time([0.0, 1e-4, 1e-1])  # 3 decades
    assert not plotting.wants_log_time([0.01, 0.5])  # under 2 decades


# ------------------------------------------------------------------------ evaluation panels


def test_evaluation_panels_share_one_scale_and_title_the_error(tmp_path, captured):
    from neurosolve.harness.operator_eval import plot_predictions

    rng = np.random.default_rng(0)
    truth = rng.standard_normal((2, 1, 8, 8))
    pred = 1.5 * truth + 0.5  # a wider range than the truth: a shared scale must cover both
    path = plot_predictions(truth, truth, pred, tmp_path / "p.png", samples=2)
    assert path.read_bytes()[:4] == b"\x89PNG"
    ((fig, kwargs),) = captured
    assert kwargs["dpi"] >= 150
    axes = fig.axes
    images = [ax for ax in axes if ax.images]
    assert len(images) == 8
    for row in range(2):
        _, ax_u, ax_p, ax_e = images[4 * row : 4 * row + 4]
        clim_u, clim_p = ax_u.images[0].get_clim(), ax_p.images[0].get_clim()
        assert clim_u == clim_p
        u, p = truth[row, 0], pred[row, 0]
        assert clim_u[0] <= min(u.min(), p.min()) and clim_u[1] >= max(u.max(), p.max())
        lo, hi = ax_e.images[0].get_clim()
        assert lo == -hi and hi == pytest.approx(np.abs(p - u).max())
        rel = np.linalg.norm(p - u) / np.linalg.norm(u)
        assert f"rel. L2 {rel:.2e}" in ax_p.get_title()


# -------------------------------------------------------------------------- learning curves


def test_learning_curve_ticks_labels_legend_and_no_duplicates(tmp_path, captured):
    from neurosolve.training.history import plot_history

    records = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 0.8 / e,
            "val_l2": 0.8 / e,  # the same metric as val_loss: one curve
            "val_h1": 1.2 / e,
            "val_seconds": 0.1,
        }
        for e in range(1, 4)
    ]
    assert plot_history(records, tmp_path / "c.png", "demo", fmt="svg").suffix == ".svg"
    ((fig, kwargs),) = captured
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [
        "training loss",
        "validation rel. H1 error",
        "validation rel. L2 error = loss",
    ]
    fig.canvas.draw()
    visible = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert visible and all(float(t).is_integer() for t in visible)
    legend = ax.get_legend()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # right of the axes
    assert all(not label.startswith("val_") for label in labels)


# ------------------------------------------------------------------ residual vs time / iter


def _results(fast=1e-4, slow=2.0):
    runs = []
    for problem in ("p1", "p2"):
        for method, t in (("cg", fast), ("dcdm", slow)):
            res = list(np.logspace(0, -7, 8))
            times = [0.0] + [t * (k + 1) / 7 for k in range(7)]
            runs.append(
                RunRecord(
                    problem,
                    method,
                    residuals=res,
                    residual_times=times,
                    converged=not (problem == "p2" and method == "dcdm"),
                )
            )
    return BenchmarkResults("demo", 1e-6, runs=runs)


def test_residual_time_axis_is_log_when_times_span_decades(tmp_path, captured):
    from neurosolve.harness.report import plot_residuals

    plot_residuals(_results(), tmp_path / "t.png", x="time")
    plot_residuals(_results(fast=0.5), tmp_path / "lin.png", x="time")
    plot_residuals(_results(), tmp_path / "forced.png", x="time", log_time=False)
    (log_fig, _), (lin_fig, _), (forced_fig, _) = captured
    assert {ax.get_xscale() for ax in log_fig.axes} == {"log"}
    assert {ax.get_xscale() for ax in lin_fig.axes} == {"linear"}
    assert {ax.get_xscale() for ax in forced_fig.axes} == {"linear"}
    # on the log axis no point of a residual curve sits at t <= 0 (the dotted tolerance
    # line is drawn in axes coordinates)
    for ax in log_fig.axes:
        curves = [line for line in ax.get_lines() if line.get_linestyle() != ":"]
        assert len(curves) == 2
        for line in curves:
            assert (np.asarray(line.get_xdata(), dtype=float) > 0).all()


def test_residual_plot_has_one_shared_legend_outside_the_panels(tmp_path, captured):
    from neurosolve.harness.report import plot_residuals

    plot_residuals(_results(), tmp_path / "i.png", x="iteration")
    ((fig, _),) = captured
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    texts = [t.get_text() for t in legends[0].get_texts()]
    assert texts[:2] == ["cg", "dcdm"] and "not converged" in texts and "rtol 1e-06" in texts
    fig.canvas.draw()
    right_edge = max(ax.get_window_extent().x1 for ax in fig.axes)
    assert legends[0].get_window_extent().x0 >= right_edge - 1


def test_write_report_formats(tmp_path):
    from neurosolve.harness.report import write_report

    paths = write_report(_results(), tmp_path / "r", fmt="svg", dpi=80)
    assert paths["residuals_time"].suffix == ".svg"
    assert paths["residuals_iteration"].read_text().lstrip().startswith("<?xml")
