"""Zero-shot resolution: operators trained on one grid, evaluated on data generated on others.

Darcy (piecewise-constant coefficients, the FNO family): MgNO and FNO2d trained at
``--darcy-train-resolution`` (issue 17's equal budget of ``darcy_operators.py``: 400 train /
50 validation samples, 15 epochs, Adam + OneCycle, L2 + H1 loss), evaluated on test sets that
the package's generator draws at every resolution in ``--darcy-resolutions``.
Navier-Stokes (nu = 1e-3, FNO forcing, snapshots one time unit apart): FNO3d and the
spatio-temporal FNO (its first version, the reference code's choices and the default,
``sfno-first``, ``sfno-reference`` and ``sfno-tuned``) trained at ``--ns-train-resolution``
on ``t_in -> t_out`` windows
(``sfno_refiner.py``'s trainer and models), evaluated on test trajectories simulated at
``--ns-sim-resolution`` and stored at every resolution in ``--ns-resolutions`` (the same
flows on every grid). Nothing is retrained or interpolated: the operator is applied to the
finer or coarser grid as it is. FNO2d is shown twice: with its zero padding in cells (as
trained) and with the padding kept as the same fraction of the domain on every grid
(``FNO2d(padding_grid=...)``, same weights), which its resolution invariance needs.

The test flows' solver step is ``--ns-test-sim-dt`` (default: the training data's); at
256^2 the training data's 1e-2 exceeds an advective CFL number of 0.5, so the 64^2 run
below simulates its test flows with 5e-3.

Trained models are kept in ``--run-dir`` and reused when the script is run again; Darcy
models from ``darcy_operators.py --run-dir DIR`` (``DIR/piecewise-<model>/model.pt``) are
used when ``--darcy-run-dir DIR`` names them. One table per model; JSON in
``benchmarks/results/zero_shot.json`` (``--out``).

Trained at 64^2 on one CPU core in about 30 minutes (Darcy at the equal budget but with 20
test samples per grid; Navier-Stokes 10 -> 10 snapshots, 60 trajectories, 8 epochs, test
flows simulated at 256^2), ``benchmarks/results/zero_shot_64.json``:

    python benchmarks/zero_shot.py --darcy-train-resolution 64 \
        --darcy-resolutions 32,64,128,256 --darcy-test 20 --darcy-train 400 \
        --darcy-epochs 15 --ns-train-resolution 64 --ns-resolutions 32,64,128,256 \
        --ns-sim-resolution 256 --ns-test-sim-dt 5e-3 --ns-train 60 --ns-test 5 \
        --ns-epochs 8 --ns-args "--t-out 10" --out benchmarks/results/zero_shot_64.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import darcy_operators as darcy
import numpy as np
import sfno_refiner as ns
import torch

from neurosolve.checkpoint import load_model
from neurosolve.data.navier_stokes import downsample_spectral
from neurosolve.data.store import H5Dataset
from neurosolve.harness.operator_eval import evaluate_operator
from neurosolve.operators import load_operator, train_operator
from neurosolve.operators.fno import count_parameters
from neurosolve.operators.refine import relative_error

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--darcy-train-resolution", type=int, default=64)
    p.add_argument("--darcy-resolutions", default="32,64,128,256")
    p.add_argument("--darcy-test", type=int, default=50, help="test samples per resolution")
    p.add_argument("--darcy-run-dir", type=Path, help="models of darcy_operators.py --run-dir")
    p.add_argument("--darcy-train", type=int, default=darcy.EQUAL_BUDGET["train"])
    p.add_argument("--darcy-epochs", type=int, default=darcy.EQUAL_BUDGET["epochs"])
    p.add_argument("--ns-train-resolution", type=int, default=32)
    p.add_argument("--ns-resolutions", default="32,64,128")
    p.add_argument("--ns-sim-resolution", type=int, default=128, help="grid of the test flows")
    p.add_argument(
        "--ns-test-sim-dt",
        type=float,
        help="solver time step of the test flows (default: the training data's; a finer grid "
        "needs a smaller one, advective CFL)",
    )
    p.add_argument("--ns-train", type=int, default=160, help="training trajectories")
    p.add_argument("--ns-test", type=int, default=20, help="test trajectories")
    p.add_argument("--ns-epochs", type=int, default=10)
    p.add_argument("--ns-args", default="", help="more sfno_refiner.py arguments (one string)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: darcy,ns")
    p.add_argument("--run-dir", type=Path, default=Path(tempfile.gettempdir()) / "zero-shot")
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "zero-shot")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "zero_shot.json")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def darcy_model(name: str, args) -> Path:
    """``model.pt`` of a Darcy operator trained at the training resolution (trained if absent)."""
    if args.darcy_run_dir is not None:
        given = args.darcy_run_dir / f"piecewise-{name}" / "model.pt"
        if given.is_file():
            return given
    out = args.run_dir / f"darcy{args.darcy_train_resolution}-{name}"
    if (out / "model.pt").is_file():
        return out / "model.pt"
    budget = dict(darcy.EQUAL_BUDGET, train=args.darcy_train, epochs=args.darcy_epochs)
    sets = {}
    for split, seed in (("train", 0), ("val", 1)):
        path = darcy._data(
            "piecewise",
            split,
            budget[split],
            seed,
            args.darcy_train_resolution,
            args.data_dir,
            args.quiet,
        )
        sets[split] = darcy._dataset(path)
    config = darcy.train_config(budget["epochs"], device=args.device, quiet=args.quiet, plot=False)
    train_operator(name, budget[name], sets["train"], config, out, val_dataset=sets["val"])
    return out / "model.pt"


def darcy_part(args) -> dict:
    rows = {}
    models = [("mgno", "mgno"), ("fno2d", "fno2d"), ("fno2d", "fno2d, padding scaled")]
    for name, label in models:
        path = darcy_model(name, args)
        op = load_operator(path, map_location=args.device)
        if label.endswith("padding scaled"):
            # the trained padding (cells at the training grid) kept as a fraction of the
            # domain on every grid: FNO2d(padding_grid=...) of the same weights
            op.operator.padding_grid = args.darcy_train_resolution
        rows[label] = {"checkpoint": str(path), "parameters": count_parameters(op), "grids": []}
        for n in _ints(args.darcy_resolutions):
            test = darcy._data("piecewise", "test", args.darcy_test, 2, n, args.data_dir, True)
            t0 = time.perf_counter()
            ev = evaluate_operator(op, H5Dataset(test), device=args.device)
            rows[label]["grids"].append(
                {
                    "resolution": n,
                    "rel_l2": ev["rel_l2"],
                    "rel_h1": ev["rel_h1"],
                    "seconds": time.perf_counter() - t0,
                    "samples": args.darcy_test,
                }
            )
            log(f"darcy {label} at {n}^2: rel L2 {ev['rel_l2']:.4f}", args.quiet)
    return rows


def ns_settings(args, resolution: int, sim_resolution: int) -> argparse.Namespace:
    argv = [
        "--resolution",
        str(resolution),
        "--sim-resolution",
        str(sim_resolution),
        "--sim-dt",
        "1e-2",
        "--record-every",
        "1.0",
        "--t-in",
        "10",
        "--t-out",
        "20",
        "--train",
        str(args.ns_train),
        "--test",
        str(args.ns_test),
        "--epochs",
        str(args.ns_epochs),
        "--modes",
        "8",
        "8",
        "5",
        "--fno-modes",
        "8",
        "8",
        "8",
        "--width",
        "20",
        "--fc-width",
        "80",
        "--time-padding",
        "5",
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        *shlex.split(args.ns_args),
    ]
    if args.quiet:
        argv.append("--quiet")
    return ns.parse_args(argv)


def ns_part(args) -> tuple[dict, dict]:
    n_train = args.ns_train_resolution
    base = ns_settings(args, n_train, 2 * n_train)
    base.data_cache = args.data_dir / f"ns-train{n_train}-{args.ns_train}-{args.ns_test}.npz"
    data = ns.load_data(base)
    device = torch.device(args.device)
    models = {}
    for label in ("fno3d", "sfno-first", "sfno-reference", "sfno-tuned"):
        kind, _, config = label.partition("-")
        folder = label
        if config and base.sfno_kwargs:
            # another SFNO configuration is another model: its own run folder
            key = json.dumps(base.sfno_kwargs, sort_keys=True).encode()
            folder = f"{label}-{hashlib.sha1(key).hexdigest()[:8]}"
        path = args.run_dir / f"ns{n_train}" / folder / "model.pt"
        if not path.is_file():
            base.sfno_config = config or base.sfno_config
            build = ns.build_sfno if config else ns.build_fno3d
            ns.train(kind, build(base, device), data, base, path.parents[1], folder)
        # the best epoch on validation, whether just trained or from an earlier run
        models[label], _ = load_model(path, kind=kind, map_location=device)
    tests = ns_tests(args)
    rows = {}
    for kind, model in models.items():
        model.eval()
        rows[kind] = {"parameters": count_parameters(model), "grids": []}
        for n, (x, y) in tests.items():
            pred, seconds = ns.predict(model, x, device)
            y64 = torch.as_tensor(y, dtype=torch.float64)
            rows[kind]["grids"].append(
                {
                    "resolution": n,
                    "rel_l2": float(relative_error(pred, y64).mean()),
                    "rel_h1": float(relative_error(pred, y64, s=1.0).mean()),
                    "seconds": seconds,
                    "samples": int(x.shape[0]),
                }
            )
            log(f"ns {kind} at {n}^2: rel L2 {rows[kind]['grids'][-1]['rel_l2']:.4f}", args.quiet)
    return rows, {k: v for k, v in ns._settings(base).items() if k != "sfno_config"}


def ns_tests(args) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Test windows on every grid: the same flows, simulated once and stored at each grid.

    Samples ``ns_train ..`` of the training data's seed are simulated at
    ``ns_sim_resolution`` and stored at the finest test grid; the coarser grids are the
    generator's own spectral down-sampling of those snapshots.
    """
    grids = sorted(_ints(args.ns_resolutions))
    sim = max(args.ns_sim_resolution, grids[-1])
    settings = ns_settings(args, grids[-1], sim)
    if args.ns_test_sim_dt is not None:
        settings.sim_dt = args.ns_test_sim_dt
    cache = args.data_dir / (
        f"ns-test{grids[-1]}-sim{sim}-dt{settings.sim_dt:g}-{args.ns_train}-{args.ns_test}.npz"
    )
    if cache.is_file():
        d = np.load(cache)
        x, y = d["x"], d["y"]
    else:
        x, y, _ = ns.make_data(settings, args.ns_train, args.ns_test)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x, y=y)
    out = {}
    for n in grids:
        xn = downsample_spectral(torch.as_tensor(x), n).numpy()
        yn = downsample_spectral(torch.as_tensor(y), n).numpy()
        out[n] = (xn, yn)
    return out


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.data_dir.mkdir(parents=True, exist_ok=True)
    payload = json.loads(args.out.read_text()) if args.out.is_file() else {}
    payload["threads"] = args.threads
    payload["torch"] = torch.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if "darcy" not in skip:
        t0 = time.perf_counter()
        payload["darcy"] = {
            "train_resolution": args.darcy_train_resolution,
            "budget": {k: v for k, v in darcy.EQUAL_BUDGET.items() if k != "resolution"}
            | {"train": args.darcy_train, "epochs": args.darcy_epochs},
            "test_samples": args.darcy_test,
            "models": darcy_part(args),
        }
        # generation, training (unless reused) and evaluation, wall clock
        payload["darcy"]["seconds"] = time.perf_counter() - t0
        # written before the Navier-Stokes part: a crash there keeps the Darcy tables
        args.out.write_text(json.dumps(payload, indent=1))
    if "ns" not in skip:
        t0 = time.perf_counter()
        rows, settings = ns_part(args)
        payload["navier_stokes"] = {
            "train_resolution": args.ns_train_resolution,
            "test_sim_resolution": max(args.ns_sim_resolution, *_ints(args.ns_resolutions)),
            "test_sim_dt": args.ns_test_sim_dt or settings["sim_dt"],
            "settings": settings,
            "models": rows,
            "seconds": time.perf_counter() - t0,
        }
    args.out.write_text(json.dumps(payload, indent=1))
    for problem in ("darcy", "navier_stokes"):
        if problem not in payload:
            continue
        part = payload[problem]
        for name, row in part["models"].items():
            print(
                f"\n{problem} {name} ({row['parameters']:,} parameters), trained at "
                f"{part['train_resolution']}^2\n"
            )
            print("| test grid | rel L2 | rel H1 | samples |")
            print("|---|---|---|---|")
            for g in row["grids"]:
                mark = " (training grid)" if g["resolution"] == part["train_resolution"] else ""
                print(
                    f"| {g['resolution']}^2{mark} | {g['rel_l2']:.4f} | {g['rel_h1']:.4f} | "
                    f"{g['samples']} |"
                )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
