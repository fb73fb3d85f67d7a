"""The ``neurosolve evaluate`` command: test errors of a trained neural operator.

It loads a run's ``model.pt`` and one or more datasets (``--data`` repeated: a resolution
sweep, one table row per file), prints the relative L2 and H1 errors and the
inference time, draws input / truth / prediction / error, and for Darcy data adds the
Krylov-style evaluation of :func:`neurosolve.harness.operator_eval.evaluate_operator`: the
prediction's residual in the discrete system, its error against the exact discrete
solution, and the CG / AMG-PCG iterations it saves as an initial guess. torch and the
models are imported inside the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neurosolve._util.io import check_output
from neurosolve._util.progress import show_progress
from neurosolve._util.validate import integer
from neurosolve.cli.options import add_device, add_figure_options, add_overwrite, add_quiet
from neurosolve.errors import InvalidInputError

__all__ = ["add_commands"]


def add_commands(top: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the ``neurosolve`` subcommands."""
    p = top.add_parser(
        "evaluate",
        help="test errors of a trained operator (and its Krylov-style evaluation)",
        description="Evaluate a trained operator (a run's model.pt) on a dataset: relative "
        "L2 and H1 errors, a picture of input/truth/prediction/error (--format, --dpi), and for "
        "Darcy data the "
        "Krylov-style evaluation: residual of the prediction in the discrete system, error "
        "against the exact discrete solution, and CG / AMG-PCG iterations saved when the "
        "prediction is the initial guess.",
    )
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE.h5",
        help="test dataset; repeat for several (a resolution sweep: one row per file)",
    )
    p.add_argument(
        "--png",
        metavar="FILE.png",
        help="picture, its suffix set by --format (default: next to MODEL.pt; with several "
        "--data, one per file named after it)",
    )
    p.add_argument("--json", metavar="FILE.json", help="write all numbers there")
    p.add_argument(
        "--krylov",
        type=int,
        default=10,
        metavar="N",
        help="Krylov-style evaluation on the first N samples (0: off)",
    )
    p.add_argument("--methods", default="cg,amg-sa-pcg", help="classical methods, comma list")
    p.add_argument("--rtol", type=float, default=1e-8, help="tolerance of the classical solves")
    p.add_argument("--batch-size", type=int, default=16)
    add_device(p)
    add_overwrite(p, "--png/--json file")
    add_quiet(p)
    add_figure_options(p.add_argument_group("figures"))
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from neurosolve.checkpoint import load_checkpoint
    from neurosolve.operators import load_operator

    args.krylov = integer(args.krylov, "--krylov", minimum=0)
    files = list(args.data)
    _check_outputs(args, files)
    ckpt = load_checkpoint(args.model)
    if not isinstance(ckpt["kwargs"], dict) or "in_channels" not in ckpt["kwargs"]:
        # a solver's network (an MGPC preconditioner) maps no dataset input to an output
        raise InvalidInputError(
            f"{args.model} holds a {ckpt['kind']!r} model, which is not a neural operator; "
            "evaluate takes a model from 'neurosolve train mgno/fno2d/sfno/fno3d'"
        )
    op = load_operator(args.model, map_location=args.device)
    results = []
    for k, data in enumerate(files):
        if k:
            print()
        results.append(_evaluate_file(args, op, ckpt, data, _png_path(args, data, len(files))))
    rows = [_row(data, result) for data, result in zip(files, results, strict=True)]
    if len(files) > 1:
        print()
        _print_rows(rows)
    if args.json:
        from neurosolve._util.io import atomic_write_text

        if len(files) == 1:  # the one-file layout, plus the table row
            report = dict(results[0], rows=rows)
        else:
            report = {"model": str(args.model), "rows": rows, "datasets": results}
        atomic_write_text(args.json, json.dumps(report, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


def _check_outputs(args: argparse.Namespace, files: list[str]) -> None:
    """Refuse --json/--png onto an input or an existing file (before any work)."""
    inputs = (args.model, *files)
    if args.json is not None:
        check_output(args.json, inputs=inputs, overwrite=args.overwrite, what="--json")
    for data in files:
        png = _png_path(args, data, len(files))
        # the default picture is this command's own, replaced on a rerun
        own = args.png is None
        check_output(png, inputs=inputs, overwrite=args.overwrite or own, what="--png")



def _png_path(args: argparse.Namespace, data: str, count: int) -> Path:
    model = Path(args.model)
    base = Path(args.png) if args.png else model.with_name(model.stem + "_evaluation.png")
    if count > 1:
        base = base.with_name(f"{base.stem}_{Path(data).stem}{base.suffix}")
    return base


def _evaluate_file(
    args: argparse.Namespace, op: Any, ckpt: dict, data: str, png: Path
) -> dict[str, Any]:
    from neurosolve.cli.datasets import load_dataset
    from neurosolve.harness.operator_eval import evaluate_operator

    krylov = args.krylov
    dataset, info = load_dataset(data)
    expected = ckpt["kwargs"].get("in_channels")
    if expected is not None and int(info["x_shape"][1]) != int(expected):
        raise InvalidInputError(
            f"{args.model} takes {expected} input channels; {data} has {info['x_shape'][1]}"
        )
    if krylov and info["generator"] != "darcy":
        print(
            f"note: Krylov-style evaluation needs Darcy data; {data} holds "
            f"{info['generator']!r} data, skipped",
            file=sys.stderr,
        )
        krylov = 0
    f = float(info["params"].get("f", 1.0)) if isinstance(info.get("params"), dict) else 1.0
    result = evaluate_operator(
        op,
        dataset,
        batch_size=args.batch_size,
        device=args.device,
        krylov_samples=krylov,
        krylov_methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        krylov_rtol=args.rtol,
        f=f,
        png=png,
        progress=show_progress(not args.quiet),
        fig_format=args.format,
        dpi=args.dpi,
    )
    result["data"] = str(data)
    result["resolution"] = "x".join(str(int(n)) for n in info["x_shape"][2:])
    _print_errors(args, op, ckpt, result)
    if "krylov" in result:
        _print_krylov(result["krylov"], args.rtol)
    print(f"\nwrote {result['png']}")
    return result


def _row(data: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": str(data),
        "resolution": result["resolution"],
        "samples": result["samples"],
        "rel_l2": result["rel_l2"],
        "rel_h1": result["rel_h1"],
        "inference_ms_per_sample": 1e3 * result["inference_seconds_per_sample"],
    }


def _print_rows(rows: list[dict[str, Any]]) -> None:
    print("| data | resolution | samples | relative L2 | relative H1 | ms per sample |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['data']} | {r['resolution']} | {r['samples']} | {r['rel_l2']:.4e} | "
            f"{r['rel_h1']:.4e} | {r['inference_ms_per_sample']:.2f} |"
        )


def _print_errors(args: argparse.Namespace, op: Any, ckpt: dict, result: dict) -> None:
    params = sum(p.numel() for p in op.parameters())
    epoch = (ckpt.get("extra") or {}).get("epoch")
    print(
        f"model: {ckpt['kind']} ({params:,} parameters) from {args.model}"
        + (f" (epoch {epoch})" if epoch else "")
    )
    print(f"data: {result['data']} ({result['resolution']})")
    print(
        f"test samples: {result['samples']}  relative L2: {result['rel_l2']:.4e}  "
        f"relative H1: {result['rel_h1']:.4e} (finite differences; spectral "
        f"{result['rel_h1_spectral']:.4e})"
    )
    print(
        f"inference: {1e3 * result['inference_seconds_per_sample']:.2f} ms per sample "
        f"(batch 1, {args.device})"
    )


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _print_krylov(k: dict[str, Any], rtol: float) -> None:
    print(
        f"\nKrylov-style evaluation on {k['samples']} samples (rtol {rtol:g}): "
        f"prediction residual ||b-Au||/||b|| median {k['residual_median']:.3e}, "
        f"error vs exact discrete solution median {k['error_median']:.3e}"
    )
    print(
        "| method | iters from 0 | iters from prediction | saved | solve s from 0 | "
        "solve s from prediction | iters to prediction's residual / error | "
        "classical/operator time at prediction's residual / error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, m in k["methods"].items():
        print(
            f"| {name} | {_fmt(m.get('iterations_cold'), '.1f')} | "
            f"{_fmt(m.get('iterations_warm'), '.1f')} | "
            f"{_fmt(m.get('iterations_saved'), '.1f')} | "
            f"{_fmt(m.get('seconds_cold'))} | {_fmt(m.get('seconds_warm'))} | "
            f"{_fmt(m.get('iterations_to_match'), '.1f')} / "
            f"{_fmt(m.get('iterations_to_match_error'), '.1f')} | "
            f"{_fmt(m.get('speedup_at_prediction_accuracy'))} / "
            f"{_fmt(m.get('speedup_at_prediction_error'))} |"
        )
