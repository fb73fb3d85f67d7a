"""Evaluate trained neural operators: test errors, pictures, and the Krylov-style evaluation.

It sits in the harness, above the solvers, because the Krylov-style evaluation runs them.

The Krylov-style evaluation measures a Darcy operator ``a -> u`` the way the harness
measures solvers. For each test coefficient ``a`` it builds the discrete Darcy system
``A u = b`` (:func:`neurosolve.data.darcy.darcy_system`) and reports

- the relative residual ``||b - A u_pred|| / ||b||`` of the prediction,
- its relative error against the exact discrete solution ``u*`` (a direct / AMG solve to
  ``rtol=1e-10``, the tolerance of the generated data, which float64 reaches even at
  contrast 1e4; not the float32 copy stored in the dataset),
- for each classical method (default ``cg`` and ``amg-sa-pcg``): iterations and seconds to
  reach ``rtol`` (default 1e-8) from ``x0 = 0`` and from ``x0 = u_pred`` (the iterations the
  prediction saves), and
- "when is the operator cheaper": the iterations and seconds (setup included) the
  classical method needs, from zero, to reach the prediction's own residual (read from its
  true residual history) and the prediction's own error against ``u*`` (from the iterates),
  against the operator's inference time. A ratio ``> 1`` means the operator reaches that
  accuracy faster. Network predictions carry high-frequency errors that the discrete
  operator amplifies, so their residual is often larger than ``||b||`` even when their error
  is small: both comparisons are reported.

Timings are from the same process; quote them as ratios.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from neurosolve._util.plotting import (
    DEFAULT_DPI,
    new_figure,
    save_figure,
    shared_limits,
    symmetric_limit,
)
from neurosolve._util.progress import progress_bar
from neurosolve._util.validate import integer
from neurosolve.devices import resolve_device
from neurosolve.errors import InvalidInputError
from neurosolve.operators.losses import relative_h1, relative_l2

__all__ = [
    "darcy_krylov_evaluation",
    "evaluate_operator",
    "inference_seconds",
    "plot_predictions",
    "summarize_krylov",
]

logger = logging.getLogger(__name__)


def inference_seconds(
    model: nn.Module, x: torch.Tensor, *, repeats: int = 3, device: Any = "cpu"
) -> float:
    """Best-of-``repeats`` wall time of one forward pass on ``x`` (after a warm-up).

    Examples
    --------
    >>> import torch
    >>> inference_seconds(torch.nn.Identity(), torch.ones(1, 1, 4, 4)) >= 0
    True
    """
    device = resolve_device(device)
    x = x.to(device)
    best = math.inf
    with torch.no_grad():
        model(x)
        for _ in range(max(1, repeats)):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - t0)
    return best


def _first_below(residuals: Sequence[float], level: float) -> int | None:
    for k, r in enumerate(residuals):
        if r <= level:
            return k
    return None


def _error_history(
    system: Any, b: np.ndarray, method: str, rtol: float, maxiter: int, exact: np.ndarray
) -> list[float]:
    """Relative errors of the iterates of a solve from zero (entry 0 is x0 = 0)."""
    from neurosolve.solvers import solve

    norm = float(np.linalg.norm(exact))
    errors = [1.0]

    def track(xk: Any) -> None:
        xk = xk.detach().cpu().numpy() if isinstance(xk, torch.Tensor) else np.asarray(xk)
        errors.append(float(np.linalg.norm(xk.ravel() - exact)) / norm)

    solve(system, b, method=method, rtol=rtol, maxiter=maxiter, callback=track)
    return errors


def darcy_krylov_evaluation(
    a: np.ndarray,
    u_pred: np.ndarray,
    *,
    f: float | np.ndarray = 1.0,
    methods: Sequence[str] = ("cg", "amg-sa-pcg"),
    rtol: float = 1e-8,
    maxiter: int = 100_000,
    inference_time: float | None = None,
) -> dict[str, Any]:
    """Krylov-style evaluation of one predicted Darcy solution (see module notes).

    Parameters
    ----------
    a : numpy.ndarray
        Coefficient field (grid shape).
    u_pred : numpy.ndarray
        Predicted solution (grid shape).
    f : float or numpy.ndarray, optional
        Forcing (as used to generate the data).
    methods : sequence of str, optional
        :func:`neurosolve.solve` methods.
    rtol : float, optional
        Tolerance of the classical solves (true relative residual).
    maxiter : int, optional
        Iteration limit of the classical solves.
    inference_time : float, optional
        Seconds the operator took for this sample (for the cost comparison).

    Returns
    -------
    dict
        ``residual``, ``error`` and ``methods: {name: {...}}`` with ``iterations_cold``,
        ``iterations_warm``, ``iterations_saved``, ``seconds_cold``, ``seconds_warm``
        (solve only), ``setup_seconds``, ``converged_cold``, ``converged_warm``,
        ``iterations_to_match``, ``seconds_to_match`` (to the prediction's residual),
        ``iterations_to_match_error``, ``seconds_to_match_error`` (to its error) and, given
        ``inference_time``, ``speedup_at_prediction_accuracy`` and
        ``speedup_at_prediction_error`` (classical seconds incl. setup / inference seconds).

    Examples
    --------
    >>> import numpy as np
    >>> from neurosolve.data.darcy import solve_darcy
    >>> a = np.ones((16, 16))
    >>> u = solve_darcy(a)
    >>> rec = darcy_krylov_evaluation(a, u * 1.01, methods=("cg",))
    >>> round(rec["error"], 4), rec["methods"]["cg"]["iterations_saved"] > 0
    (0.01, True)
    """
    from neurosolve.data.darcy import darcy_system, solve_darcy
    from neurosolve.solvers import solve

    a = np.asarray(a, dtype=np.float64)
    u_pred = np.asarray(u_pred, dtype=np.float64)
    if a.shape != u_pred.shape:
        raise InvalidInputError(f"coefficient {a.shape} and prediction {u_pred.shape} differ")
    if not np.isfinite(u_pred).all():
        raise InvalidInputError("the prediction contains NaN or Inf")
    system = darcy_system(a, f)
    b = system.b
    x_pred = u_pred.ravel()
    bnorm = float(np.linalg.norm(b))
    residual = float(np.linalg.norm(b - system.A @ x_pred)) / bnorm
    exact = solve_darcy(a, f, rtol=1e-10).ravel()
    error = float(np.linalg.norm(x_pred - exact) / np.linalg.norm(exact))
    record: dict[str, Any] = {"residual": residual, "error": error, "methods": {}}
    for method in methods:
        cold = solve(system, b, method=method, rtol=rtol, maxiter=maxiter)
        warm = solve(system, b, method=method, rtol=rtol, maxiter=maxiter, x0=x_pred)
        # a second cold solve records the error of every iterate (timed solves run without
        # the callback); errors[0] is x0 = 0
        errors = _error_history(system, b, method, rtol, maxiter, exact)
        match = _first_below(cold.residuals, residual)
        match_error = _first_below(errors, error)
        per_iter = cold.solve_seconds / max(cold.iterations, 1)
        entry = {
            "iterations_cold": int(cold.iterations),
            "iterations_warm": int(warm.iterations),
            "iterations_saved": int(cold.iterations) - int(warm.iterations),
            "seconds_cold": float(cold.solve_seconds),
            "seconds_warm": float(warm.solve_seconds),
            "setup_seconds": float(cold.setup_seconds),
            "converged_cold": bool(cold.converged),
            "converged_warm": bool(warm.converged),
            "iterations_to_match": match,
            "seconds_to_match": None if match is None else per_iter * match,
            "iterations_to_match_error": match_error,
            "seconds_to_match_error": None if match_error is None else per_iter * match_error,
        }
        if inference_time is not None:
            setup = float(cold.setup_seconds)
            if match is not None:
                entry["speedup_at_prediction_accuracy"] = (per_iter * match + setup) / max(
                    inference_time, 1e-12
                )
            if match_error is not None:
                entry["speedup_at_prediction_error"] = (per_iter * match_error + setup) / max(
                    inference_time, 1e-12
                )
        record["methods"][method] = entry
    return record


def summarize_krylov(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means (and medians of residual/error) over per-sample Krylov evaluations.

    Examples
    --------
    >>> recs = [{"residual": 1.0, "error": 0.1, "methods": {"cg": {"iterations_cold": 10,
    ...          "iterations_warm": 6, "iterations_saved": 4, "seconds_cold": 1.0,
    ...          "seconds_warm": 0.5, "setup_seconds": 0.0, "iterations_to_match": 2,
    ...          "seconds_to_match": 0.2}}}]
    >>> summarize_krylov(recs)["methods"]["cg"]["iterations_saved"]
    4.0
    """
    if not records:
        raise InvalidInputError("no Krylov evaluation records to summarize")
    out: dict[str, Any] = {
        "samples": len(records),
        "residual_mean": float(np.mean([r["residual"] for r in records])),
        "residual_median": float(np.median([r["residual"] for r in records])),
        "error_mean": float(np.mean([r["error"] for r in records])),
        "error_median": float(np.median([r["error"] for r in records])),
        "methods": {},
    }
    for method in records[0]["methods"]:
        entries = [r["methods"][method] for r in records]
        summary = {}
        for key in entries[0]:
            values = [e.get(key) for e in entries]
            numeric = [float(v) for v in values if isinstance(v, (int, float))]
            if numeric and not isinstance(values[0], bool):
                summary[key] = float(np.mean(numeric))
        summary["converged_cold_all"] = all(e.get("converged_cold", True) for e in entries)
        summary["converged_warm_all"] = all(e.get("converged_warm", True) for e in entries)
        out["methods"][method] = summary
    return out


def _relative_l2(pred: np.ndarray, truth: np.ndarray) -> float:
    norm = float(np.linalg.norm(truth))
    diff = float(np.linalg.norm(pred - truth))
    return diff / norm if norm else diff


def plot_predictions(
    x: torch.Tensor | np.ndarray,
    truth: torch.Tensor | np.ndarray,
    pred: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    samples: int = 3,
    titles: Sequence[str] = ("input a", "truth u", "prediction", "error"),
    fmt: str | None = None,
    dpi: float = DEFAULT_DPI,
) -> Path:
    """Figure with one row per sample: input, truth, prediction and error (first channels).

    Truth and prediction of a row share one colour scale (and one colour bar), so they
    compare by eye; the error ``prediction - truth`` has its own symmetric scale. Each
    row's prediction title gives that sample's relative L2 error.

    Parameters
    ----------
    x, truth, pred : array-like
        ``(batch, channels, nx, ny)``.
    path : path-like
        Output file (its suffix is replaced by ``fmt`` when given).
    samples : int, optional
        Rows.
    titles : sequence of str, optional
        Column titles.
    fmt : {"png", "pdf", "svg"}, optional
    dpi : float, optional

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> z = np.zeros((2, 1, 8, 8))
    >>> plot_predictions(z, z, z + 1, Path(tempfile.mkdtemp()) / "p.png").suffix
    '.png'
    """
    arrays = [
        np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t) for t in (x, truth, pred)
    ]
    if any(arr.ndim != 4 for arr in arrays):
        raise InvalidInputError("plot_predictions expects (batch, channels, nx, ny) arrays")
    rows = max(1, min(int(samples), arrays[0].shape[0]))
    fig, axes = new_figure(rows, 4, width=3.1, height=2.7, layout="constrained")
    for i in range(rows):
        a, u, p = (arr[i, 0].astype(np.float64) for arr in arrays)
        ax_a, ax_u, ax_p, ax_e = axes[4 * i : 4 * i + 4]
        im = ax_a.imshow(a, cmap="viridis", origin="lower")
        fig.colorbar(im, ax=ax_a, shrink=0.85)
        lo, hi = shared_limits(u, p)
        for ax, field in ((ax_u, u), (ax_p, p)):
            im = ax.imshow(field, cmap="viridis", vmin=lo, vmax=hi, origin="lower")
        fig.colorbar(im, ax=[ax_u, ax_p], shrink=0.85)
        lim = symmetric_limit(p - u)
        im = ax_e.imshow(p - u, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        fig.colorbar(im, ax=ax_e, shrink=0.85)
        ax_a.set_ylabel(f"sample {i}")
        ax_a.set_title(titles[0], fontsize=10)
        ax_u.set_title(titles[1], fontsize=10)
        ax_p.set_title(f"{titles[2]} (rel. L2 {_relative_l2(p, u):.2e})", fontsize=10)
        ax_e.set_title(f"{titles[3]} (max {float(np.abs(p - u).max()):.2e})", fontsize=10)
        for ax in (ax_a, ax_u, ax_p, ax_e):
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, path, fmt=fmt, dpi=dpi)


@torch.no_grad()
def evaluate_operator(
    op: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    krylov_samples: int = 0,
    krylov_methods: Sequence[str] = ("cg", "amg-sa-pcg"),
    krylov_rtol: float = 1e-8,
    f: float = 1.0,
    png: str | os.PathLike | None = None,
    png_samples: int = 3,
    progress: bool = False,
    fig_format: str | None = None,
    dpi: float = DEFAULT_DPI,
) -> dict[str, Any]:
    """Test errors of an operator on a dataset, optionally with the Krylov-style evaluation.

    Parameters
    ----------
    op : torch.nn.Module
        Maps inputs to outputs in physical units (e.g. from
        :func:`neurosolve.operators.supervised.load_operator`).
    dataset : Dataset
        Items ``(x, y)``.
    batch_size : int, optional
    device : str or torch.device, optional
    krylov_samples : int, optional
        Run :func:`darcy_krylov_evaluation` on the first this many samples (Darcy data:
        ``x[0]`` is the coefficient ``a``, ``y[0]`` the solution).
    krylov_methods : sequence of str, optional
    krylov_rtol : float, optional
    f : float, optional
        Darcy forcing of the dataset.
    png : path-like, optional
        Write :func:`plot_predictions` of the first samples there.
    png_samples : int, optional
    progress : bool, optional
        tqdm bar over the Krylov evaluation.
    fig_format : {"png", "pdf", "svg"}, optional
        Format of the picture (default: the suffix of ``png``).
    dpi : float, optional
        Resolution of the picture.

    Returns
    -------
    dict
        ``samples``, ``rel_l2``, ``rel_h1`` (finite differences), ``rel_h1_spectral``,
        ``inference_seconds_per_sample`` (batch-1 forward) and, if asked, ``krylov``
        (:func:`summarize_krylov`) and ``krylov_records``.
    """
    batch_size = integer(batch_size, "batch_size")
    device = resolve_device(device)
    op = op.to(device).eval()
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise InvalidInputError("the test dataset is empty")
    sums = {"rel_l2": 0.0, "rel_h1": 0.0, "rel_h1_spectral": 0.0}
    first: tuple[torch.Tensor, ...] | None = None
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        pred = op(x).to(y.dtype)
        sums["rel_l2"] += float(relative_l2(pred, y, reduction="sum"))
        sums["rel_h1"] += float(relative_h1(pred, y, reduction="sum"))
        sums["rel_h1_spectral"] += float(relative_h1(pred, y, reduction="sum", method="spectral"))
        if first is None:
            first = (x.cpu(), y.cpu(), pred.cpu())
    result: dict[str, Any] = {k: v / n for k, v in sums.items()}
    result["samples"] = n
    x0, _ = dataset[0]
    t_inf = inference_seconds(op, x0.unsqueeze(0), device=device)
    result["inference_seconds_per_sample"] = t_inf
    if png is not None and first is not None:
        result["png"] = str(
            plot_predictions(*first, png, samples=png_samples, fmt=fig_format, dpi=dpi)
        )
    if krylov_samples > 0:
        records = []
        count = min(int(krylov_samples), n)
        for i in progress_bar(range(count), enabled=progress, desc="krylov evaluation"):
            x, _ = dataset[i]
            pred = op(x.unsqueeze(0).to(device))[0, 0].double().cpu().numpy()
            a = x[0].double().cpu().numpy()
            records.append(
                darcy_krylov_evaluation(
                    a, pred, f=f, methods=krylov_methods, rtol=krylov_rtol, inference_time=t_inf
                )
            )
        result["krylov"] = summarize_krylov(records)
        result["krylov_records"] = records
    return result
