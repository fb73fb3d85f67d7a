"""SFNO + Spectral-Refiner vs FNO3d vs the pseudo-spectral solver on 2D Navier-Stokes.

Trains FNO3d and SFNO (same trainer, same data) on windows t_in -> t_out of vorticity
trajectories, refines the SFNO per test batch with the residual estimator only (no ground
truth), and runs the pseudo-spectral solver itself on the same test windows: from the last
input frame at the stored resolution (coarse) and at a reference resolution. Reports, per
method: true relative L2 and H1 errors of whole trajectories, the estimator
||R||_{L2(0,T;H^-1)}, parameters, train time, inference time (as a ratio to the
reference solver, measured in this process), and the correlation between the estimator and
the true error over test samples.

Default: a small setting for a busy 2-core machine (minutes). ``--full`` is the FNO setting
(nu = 1e-3, 64^2 stored from a 256^2 simulation, 10 -> 40 snapshots one time unit apart,
1000 training trajectories); ``--hard`` switches to nu = 1e-4. Use ``--device cuda`` on a GPU.

    python benchmarks/sfno_refiner.py                       # small default
    python benchmarks/sfno_refiner.py --full --device cuda  # FNO setting

``--ablation`` trains FNO3d once and the SFNO with one architectural change at a time
(positional encoding, input norm, the first layer's pointwise path, the last activation,
the projection, the latent time length, the output operator's time padding, the FFN width,
and the reference code's combination), same data, trainer and budget, and reports the test
errors only (no refinement, no solver): ``benchmarks/results/sfno_refiner_ablation.json``.
The SFNO of a normal run has the reference code's choices (``--sfno-config reference``,
:data:`neurosolve.operators.sfno.REFERENCE_OPTIONS`; ``first`` is the first version's);
``--sfno-kwargs '{"latent_padding": 4}'`` changes it further.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from neurosolve.data.navier_stokes import (
    NavierStokes2d,
    navier_stokes_samples,
    resample_spectral,
)
from neurosolve.operators.fno import FNO3d, count_parameters
from neurosolve.operators.losses import relative_l2
from neurosolve.operators.refine import relative_error, residual_estimator, spectral_refine
from neurosolve.operators.sfno import REFERENCE_OPTIONS, SFNO, TUNED_OPTIONS
from neurosolve.training import ModelSpec, TrainConfig, Trainer, supervised_loss

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--full", action="store_true", help="FNO setting (GPU-sized)")
    p.add_argument("--hard", action="store_true", help="nu = 1e-4 instead of 1e-3")
    p.add_argument("--resolution", type=int, default=None, help="stored grid (default 32)")
    p.add_argument("--sim-resolution", type=int, default=None, help="data simulation grid")
    p.add_argument("--coarse-resolution", type=int, default=None, help="coarse solver grid")
    p.add_argument("--ref-resolution", type=int, default=None, help="reference solver grid")
    p.add_argument("--nu", type=float, default=None)
    p.add_argument("--sim-dt", type=float, default=None, help="solver time step")
    p.add_argument("--record-every", type=float, default=None, help="time between snapshots")
    p.add_argument("--t-in", type=int, default=None)
    p.add_argument("--t-out", type=int, default=None)
    p.add_argument("--train", type=int, default=None, help="training trajectories")
    p.add_argument("--test", type=int, default=None, help="test trajectories")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--modes", type=int, nargs=3, default=None, help="SFNO modes x y t")
    p.add_argument("--width", type=int, default=None, help="SFNO / FNO3d width")
    p.add_argument("--fc-width", type=int, default=None, help="hidden width of FFN/projection")
    p.add_argument("--time-padding", type=int, default=None, help="SFNO output time padding")
    p.add_argument("--fno-modes", type=int, nargs=3, default=None, help="FNO3d modes x y t")
    p.add_argument("--latent-steps", type=int, default=None, help="SFNO latent time length")
    p.add_argument("--sfno-kwargs", type=json.loads, default={}, help="extra SFNO arguments")
    p.add_argument(
        "--sfno-config",
        choices=("first", "reference", "tuned"),
        default=None,
        help="SFNO choices: the first version's, the reference code's (REFERENCE_OPTIONS), or "
        "those plus issue 17's changes (TUNED_OPTIONS, history_frames=t_in); default: tuned, "
        "but first for --ablation (its variants are changes from it)",
    )
    p.add_argument("--ablation", action="store_true", help="SFNO ablation (see above)")
    p.add_argument("--variants", default=None, help="comma list of ablation variants")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--estimator-floor",
        action="store_true",
        help="the estimator of the ground truth vs snapshot spacing and time order",
    )
    p.add_argument("--refine-steps", type=int, default=None)
    p.add_argument("--refine-lr", type=float, default=None)
    p.add_argument("--refine-batch", type=int, default=1, help="samples per refined batch")
    p.add_argument(
        "--refine-supersample",
        type=_factors,
        default=[1],
        help="comma list of time supersampling factors of the refinement (row "
        "'sfno+refine' for 1, 'sfno+refine-xK' for K; claims on the first one)",
    )
    p.add_argument("--time-order", type=int, default=4)
    p.add_argument("--solver-samples", type=int, default=4, help="test windows for solver timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-cache", type=Path, default=None, help="reuse generated data (.npz)")
    p.add_argument("--out", type=Path, default=RESULTS / "sfno_refiner.json")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    small = dict(
        resolution=32,
        sim_resolution=32,
        coarse_resolution=16,
        ref_resolution=64,
        nu=1e-3,
        sim_dt=1e-2,
        record_every=0.25,
        t_in=8,
        t_out=8,
        train=96,
        test=12,
        epochs=20,
        batch_size=8,
        modes=(8, 8, 3),
        width=12,
        fc_width=24,
        time_padding=4,
        fno_modes=(8, 8, 3),
        refine_lr=0.3,
        refine_steps=100,
    )
    full = dict(
        resolution=64,
        sim_resolution=256,
        coarse_resolution=64,
        ref_resolution=256,
        nu=1e-3,
        sim_dt=1e-4,
        record_every=1.0,
        t_in=10,
        t_out=40,
        train=1000,
        test=100,
        epochs=10,
        batch_size=10,
        modes=(12, 12, 5),
        width=20,
        fc_width=80,
        time_padding=10,
        fno_modes=(8, 8, 8),
        refine_lr=0.3,
        refine_steps=100,
    )
    if args.sfno_config is None:
        args.sfno_config = "first" if args.ablation else "tuned"
    defaults = full if args.full else small
    if args.hard:
        defaults["nu"] = 1e-4
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


#: One change at a time from the SFNO of a normal run (see the module docstring).
VARIANTS = {
    "base": {},
    "time_features=8": {"time_features": 8},
    "input_norm": {"input_norm": True},
    "no_first_skip": {"first_skip": False},
    "final_activation": {"final_activation": True},
    "linear_projection": {"projection": "linear"},
    "latent_steps=10": {"latent_steps": 10},
    "time_padding=0": {"time_padding": 0},
    "latent_padding=4": {"latent_padding": 4},
    "all_time_modes": {"modes_t": "all"},
    "fc_width=128": {"fc_width": 128},
    "width=24": {"width": 24},
    "width=28": {"width": 28},
    "reference": dict(REFERENCE_OPTIONS),
    "history_frames=all": {"history_frames": "all"},
    "first_skip": {"first_skip": True},
    "anchor": {"anchor": True},
    "history+first_skip": {"history_frames": "all", "first_skip": True},
    "tuned": {**TUNED_OPTIONS, "history_frames": "all"},
}


def _factors(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"factors must be positive integers, got {text!r}")
    return values


def refine_label(factor: int) -> str:
    return "sfno+refine" if factor == 1 else f"sfno+refine-x{factor}"


def _refine_summary(row: dict, before: np.ndarray) -> dict[str, float]:
    """Error after refinement against ``before`` (the network's, per sample)."""
    after = np.asarray(row["rel_l2"])
    return {
        "rel_l2_after": float(after.mean()),
        "error_ratio_after_over_before": float(after.mean() / before.mean()),
        "fraction_of_samples_improved": float((after < before).mean()),
        "estimator_after": float(np.mean(row["estimator"])),
    }


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def make_data(args, first: int, count: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Trajectory windows of samples first..first+count (sample i: default_rng([seed, i]))."""
    rngs = [np.random.default_rng([args.seed, first + i]) for i in range(count)]
    t0 = time.perf_counter()
    xs, ys = [], []
    chunk = 16
    for s in range(0, count, chunk):
        x, y = navier_stokes_samples(
            rngs[s : s + chunk],
            resolution=args.resolution,
            sim_resolution=args.sim_resolution,
            nu=args.nu,
            dt=args.sim_dt,
            record_every=args.record_every,
            t_in=args.t_in,
            t_out=args.t_out,
            forcing="fno",
            device=args.device,
        )
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys), time.perf_counter() - t0


def load_data(args):
    cache = args.data_cache
    if cache is not None and cache.suffix != ".npz":  # np.savez adds the suffix
        cache = cache.with_name(cache.name + ".npz")
    if cache is not None and cache.is_file():
        d = np.load(cache)
        return {k: d[k] for k in d.files} | {"generated_seconds": float(d["generated_seconds"])}
    xtr, ytr, s1 = make_data(args, 0, args.train)
    xte, yte, s2 = make_data(args, args.train, args.test)
    data = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, generated_seconds=s1 + s2)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    return data


def train(kind, model, data, args, run_dir, folder=None):
    train_set = TensorDataset(
        torch.as_tensor(data["x_train"], dtype=torch.float32),
        torch.as_tensor(data["y_train"], dtype=torch.float32),
    )
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=1e-4,
        schedule="onecycle",
        seed=args.seed,
        device=args.device,
        val_fraction=0.1,
        progress=not args.quiet,
        plot=False,
    )
    loss = supervised_loss(relative_l2)
    trainer = Trainer(
        model,
        loss,
        config,
        run_dir / (folder or kind),
        model_spec=ModelSpec(kind, model.config()),
    )
    t0 = time.perf_counter()
    history = trainer.fit(train_set, resume=False)
    seconds = time.perf_counter() - t0
    return trainer.model.eval(), seconds, history


def predict(model, x, device, batch=8):
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            xb = torch.as_tensor(x[s : s + batch], dtype=torch.float32, device=device)
            out.append(model(xb).double().cpu())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return torch.cat(out), time.perf_counter() - t0


def metrics(pred, x_last, y, args) -> dict[str, list[float]]:
    est = residual_estimator(
        torch.cat([x_last, pred], dim=1),
        args.record_every,
        nu=args.nu,
        forcing="fno",
        time_order=args.time_order,
    )
    err = pred - y
    abs_err = torch.sqrt((err**2).mean(dim=(2, 3)).sum(dim=1) * args.record_every)
    return {
        "rel_l2": relative_error(pred, y).tolist(),
        "rel_h1": relative_error(pred, y, s=1.0).tolist(),
        "estimator": est.tolist(),
        "abs_l2": abs_err.tolist(),  # ||e||_{L2(0,T;L2)}, rectangle rule
    }


def solver_runs(data, args, device):
    """The pseudo-spectral solver from the last input frame, coarse and reference grids."""
    k = min(args.solver_samples, data["x_test"].shape[0])
    x_last = torch.as_tensor(data["x_test"][:k, -1], dtype=torch.float64, device=device)
    t_final = args.t_out * args.record_every
    out = {}
    for name, n in (("coarse", args.coarse_resolution), ("reference", args.ref_resolution)):
        # time step scaled with the grid (advective CFL), never above the data's step
        dt = min(args.sim_dt * args.sim_resolution / n, args.record_every)
        solver = NavierStokes2d(n, nu=args.nu, dt=dt, forcing="fno", device=device)
        w0 = resample_spectral(x_last, n)
        t0 = time.perf_counter()
        traj = solver.simulate(w0, t_final, args.record_every)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        pred = resample_spectral(traj, args.resolution).cpu()
        out[name] = {"pred": pred, "seconds": seconds, "samples": k, "grid": n, "dt": dt}
    return out


def build_fno3d(args, device) -> FNO3d:
    torch.manual_seed(args.seed)
    return FNO3d(
        modes=args.fno_modes,
        width=args.width,
        layers=4,
        t_in=args.t_in,
        t_out=args.t_out,
        fc_width=args.fc_width,
        device=device,
    )


def build_sfno(args, device, **changes) -> SFNO:
    kwargs = dict(
        modes=args.modes,
        width=args.width,
        layers=4,
        t_out=args.t_out,
        latent_steps=args.latent_steps,
        fc_width=args.fc_width,
        time_padding=args.time_padding,
    )
    if args.sfno_config == "reference":
        kwargs.update(REFERENCE_OPTIONS)
    elif args.sfno_config == "tuned":
        kwargs.update(TUNED_OPTIONS, history_frames="all")
    kwargs.update(args.sfno_kwargs)
    kwargs.update(changes)
    if kwargs.get("history_frames") == "all":
        kwargs["history_frames"] = args.t_in
    if kwargs.pop("modes_t", None) == "all":
        # every real-FFT mode of the input window and of the latent time axis
        m_t = max(args.t_in, kwargs["latent_steps"] or args.t_out) // 2 + 1
        kwargs["modes"] = (*kwargs["modes"][:2], m_t)
    torch.manual_seed(args.seed)
    return SFNO(**kwargs, device=device)


def ablation(args, data, device) -> int:
    """FNO3d and one-change-at-a-time SFNO variants at the same budget: test errors."""
    names = list(VARIANTS) if args.variants is None else args.variants.split(",")
    x_test = data["x_test"]
    y_test = torch.as_tensor(data["y_test"], dtype=torch.float64)
    run_dir = Path(tempfile.mkdtemp(prefix="sfno_ablation_"))
    out = args.out
    if out.name == "sfno_refiner.json":
        out = RESULTS / "sfno_refiner_ablation.json"
    here = _settings(args)
    rows = json.loads(out.read_text())["rows"] if out.is_file() else []
    done = {r["variant"] for r in rows if r["settings"] == here}
    for name in ["fno3d", *names]:
        label = _label(name, args.sfno_kwargs)
        if label in done:
            continue
        model = (
            build_fno3d(args, device)
            if name == "fno3d"
            else build_sfno(args, device, **VARIANTS[name])
        )
        log(f"ablation: {name} ({count_parameters(model)} parameters)", args.quiet)
        kind = "fno3d" if name == "fno3d" else "sfno"
        folder = name.replace("=", "-")
        model, train_s, history = train(kind, model, data, args, run_dir, folder)
        pred, infer_s = predict(model, x_test, device)
        rel = relative_error(pred, y_test)
        rows.append(
            {
                "variant": label,
                "changes": {} if name == "fno3d" else args.sfno_kwargs | VARIANTS[name],
                "parameters": count_parameters(model),
                "rel_l2": float(rel.mean()),
                "rel_l2_std": float(rel.std()),
                "rel_h1": float(relative_error(pred, y_test, s=1.0).mean()),
                "final_train_loss": history["epochs"][-1]["train_loss"],
                "train_seconds": train_s,
                "settings": here,
            }
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=1))
    rows = [r for r in rows if r["settings"] == here]
    fno = next(r for r in rows if r["variant"] == "fno3d")
    print(f"\nSFNO ablation, {_describe(args)}\n")
    print("| variant | params | test rel L2 | vs FNO3d | test rel H1 | train s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['parameters']:,} | {r['rel_l2']:.4f} | "
            f"{r['rel_l2'] / fno['rel_l2']:.2f} | {r['rel_h1']:.4f} | {r['train_seconds']:.0f} |"
        )
    print(f"\nwrote {out}")
    return 0


def estimator_floor(args, device, refine: int = 4) -> int:
    """The residual estimator of the TRUE trajectories (its discretisation floor).

    ``--test`` trajectories are recorded ``refine`` times more often than ``record_every``;
    the estimator of the target window (last input frame + targets) is evaluated on every
    ``refine // f``-th snapshot (spacing ``record_every / f``) with time derivatives of
    several orders. Closer snapshots and higher orders lower the floor, which is what an
    estimator that should track model errors needs.
    """
    rngs = [np.random.default_rng([args.seed, args.train + i]) for i in range(args.test)]
    x, y = navier_stokes_samples(
        rngs,
        resolution=args.resolution,
        sim_resolution=args.sim_resolution,
        nu=args.nu,
        dt=args.sim_dt,
        record_every=args.record_every / refine,
        t_in=args.t_in * refine,
        t_out=args.t_out * refine,
        forcing="fno",
        device=args.device,
    )
    truth = torch.as_tensor(np.concatenate([x[:, -1:], y], axis=1), dtype=torch.float64)
    rows = []
    for f in (1, 2, 4):
        step = refine // f
        for order in (2, 4, 6, 8):
            est = residual_estimator(
                truth[:, ::step], args.record_every / f, nu=args.nu, forcing="fno", time_order=order
            )
            rows.append(
                {
                    "spacing": args.record_every / f,
                    "time_order": order,
                    "estimator_mean": float(est.mean()),
                    "estimator_max": float(est.max()),
                }
            )
    out = args.out if args.out.name != "sfno_refiner.json" else RESULTS / "estimator_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": _settings(args), "rows": rows}, indent=1))
    print(f"\nEstimator of the ground truth, {_describe(args)}\n")
    print("| snapshot spacing | time order | estimator mean | max |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['spacing']:g} | {r['time_order']} | {r['estimator_mean']:.3e} | "
            f"{r['estimator_max']:.3e} |"
        )
    print(f"\nwrote {out}")
    return 0


def _label(name: str, sfno_kwargs: dict) -> str:
    """Row name: the variant, plus the --sfno-kwargs it was applied on top of."""
    if name == "fno3d" or not sfno_kwargs:
        return name
    return f"{name} on {json.dumps(sfno_kwargs, sort_keys=True)}"


def _settings(args) -> dict:
    keys = ("resolution", "sim_resolution", "nu", "sim_dt", "record_every", "t_in", "t_out")
    keys += ("train", "test", "epochs", "batch_size", "lr", "modes", "width", "fc_width")
    keys += ("time_padding", "fno_modes", "latent_steps", "seed", "threads", "sfno_config")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k in keys}


def _describe(args) -> str:
    return (
        f"Navier-Stokes nu={args.nu:g}, {args.resolution}^2 stored "
        f"({args.sim_resolution}^2 simulated), {args.t_in} -> {args.t_out} snapshots "
        f"dt={args.record_every:g}; {args.train} train / {args.test} test; {args.epochs} "
        f"epochs, batch {args.batch_size}, lr {args.lr:g}; {args.threads} thread(s)"
    )


def pearson(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return pearson(ra, rb)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log(f"settings: {vars(args)}", args.quiet)

    if args.estimator_floor:
        return estimator_floor(args, device)
    data = load_data(args)
    log(f"data: {data['generated_seconds']:.1f} s", args.quiet)
    x_test = data["x_test"]
    y_test = torch.as_tensor(data["y_test"], dtype=torch.float64)
    x_last = torch.as_tensor(x_test[:, -1:], dtype=torch.float64)

    if args.ablation:
        return ablation(args, data, device)
    results: dict[str, dict] = {}
    run_dir = Path(tempfile.mkdtemp(prefix="sfno_refiner_"))
    models = {"fno3d": build_fno3d(args, device), "sfno": build_sfno(args, device)}
    trained = {}
    for kind, model in models.items():
        log(f"training {kind} ({count_parameters(model)} parameters)", args.quiet)
        model, train_s, history = train(kind, model, data, args, run_dir)
        trained[kind] = model
        pred, infer_s = predict(model, x_test, device)
        results[kind] = {
            "parameters": count_parameters(model),
            "train_seconds": train_s,
            "inference_seconds_per_sample": infer_s / x_test.shape[0],
            "final_train_loss": history["epochs"][-1]["train_loss"],
            **metrics(pred, x_last, y_test, args),
        }

    # Spectral-Refiner: per test batch, estimator only (once per time supersampling factor)
    histories = {}
    for factor in args.refine_supersample:
        log(f"refining SFNO on the test set (time supersampling x{factor})", args.quiet)
        refined, history, refine_s, best_steps = [], [], 0.0, []
        for s in range(0, x_test.shape[0], args.refine_batch):
            xb = torch.as_tensor(x_test[s : s + args.refine_batch], dtype=torch.float32)
            out = spectral_refine(
                trained["sfno"],
                xb.to(device),
                dt=args.record_every,
                nu=args.nu,
                forcing="fno",
                steps=args.refine_steps,
                lr=args.refine_lr,
                time_order=args.time_order,
                supersample=factor,
            )
            refined.append(out.prediction.cpu())
            history.append(out.estimator.mean(axis=1))
            best_steps.append(out.best_step)
            refine_s += out.seconds
        histories[refine_label(factor)] = history
        results[refine_label(factor)] = {
            "parameters": results["sfno"]["parameters"],
            "train_seconds": results["sfno"]["train_seconds"],
            "inference_seconds_per_sample": results["sfno"]["inference_seconds_per_sample"]
            + refine_s / x_test.shape[0],
            "refine_seconds_per_sample": refine_s / x_test.shape[0],
            "refine_supersample": factor,
            "best_steps": best_steps,
            **metrics(torch.cat(refined), x_last, y_test, args),
        }
    primary = refine_label(args.refine_supersample[0])

    # persistence (the last input frame repeated): what "continuing from the last frame" is
    # worth without a model
    persistence = x_last.expand_as(y_test).contiguous()
    results["persistence"] = {
        "parameters": 0,
        "train_seconds": 0.0,
        "inference_seconds_per_sample": 0.0,
        **metrics(persistence, x_last, y_test, args),
    }

    # the solver itself
    log("running the pseudo-spectral solver", args.quiet)
    solver = solver_runs(data, args, device)
    k = solver["coarse"]["samples"]
    ref_per_sample = solver["reference"]["seconds"] / k
    for run in solver.values():
        label = f"solver-{run['grid']}"
        results[label] = {
            "parameters": 0,
            "train_seconds": 0.0,
            "inference_seconds_per_sample": run["seconds"] / k,
            "solver_dt": run["dt"],
            "samples": k,
            **metrics(run["pred"], x_last[:k], y_test[:k], args),
        }
    truth_est = residual_estimator(
        torch.cat([x_last, y_test], dim=1),
        args.record_every,
        nu=args.nu,
        forcing="fno",
        time_order=args.time_order,
    ).tolist()

    # summaries, claims
    table = []
    for name, r in results.items():
        row = {
            "method": name,
            "rel_l2": float(np.mean(r["rel_l2"])),
            "rel_l2_std": float(np.std(r["rel_l2"])),
            "rel_h1": float(np.mean(r["rel_h1"])),
            "estimator": float(np.mean(r["estimator"])),
            "parameters": r["parameters"],
            "train_seconds": r["train_seconds"],
            "inference_s_per_sample": r["inference_seconds_per_sample"],
            "inference_vs_reference_solver": r["inference_seconds_per_sample"] / ref_per_sample,
            "samples": len(r["rel_l2"]),
        }
        table.append(row)
    before = np.asarray(results["sfno"]["rel_l2"])
    after = np.asarray(results[primary]["rel_l2"])
    refine_names = [refine_label(f) for f in args.refine_supersample]
    pooled_est, pooled_abs, pooled_rel = [], [], []
    for name in ("fno3d", "sfno", primary):
        pooled_est += results[name]["estimator"]
        pooled_abs += results[name]["abs_l2"]
        pooled_rel += results[name]["rel_l2"]
    correlation = {
        name: {
            "pearson_est_vs_abs_l2": pearson(results[name]["estimator"], results[name]["abs_l2"]),
            "spearman_est_vs_abs_l2": spearman(results[name]["estimator"], results[name]["abs_l2"]),
            "pearson_est_vs_rel_l2": pearson(results[name]["estimator"], results[name]["rel_l2"]),
        }
        for name in ("fno3d", "sfno", *refine_names)
    }
    correlation["pooled"] = {
        "pearson_est_vs_abs_l2": pearson(pooled_est, pooled_abs),
        "spearman_est_vs_abs_l2": spearman(pooled_est, pooled_abs),
        "pearson_est_vs_rel_l2": pearson(pooled_est, pooled_rel),
    }
    claims = {
        "refinement_lowers_mean_rel_l2": bool(after.mean() < before.mean()),
        "rel_l2_before": float(before.mean()),
        "rel_l2_after": float(after.mean()),
        "error_ratio_before_over_after": float(before.mean() / after.mean()),
        "fraction_of_samples_improved": float((after < before).mean()),
        "estimator_before": float(np.mean(results["sfno"]["estimator"])),
        "refined_row": primary,
        "estimator_after": float(np.mean(results[primary]["estimator"])),
        "estimator_of_ground_truth": float(np.mean(truth_est)),
        "estimator_tracks_error_pooled_spearman": correlation["pooled"]["spearman_est_vs_abs_l2"],
        "by_supersample": {
            str(f): _refine_summary(results[refine_label(f)], before)
            for f in args.refine_supersample
        },
    }
    settings = {
        k: (list(v) if isinstance(v, tuple) else (str(v) if isinstance(v, Path) else v))
        for k, v in vars(args).items()
    }
    payload = {
        "settings": settings,
        "data_generation_seconds": data["generated_seconds"],
        "reference_solver_seconds_per_sample": ref_per_sample,
        "table": table,
        "claims": claims,
        "correlation": correlation,
        "estimator_ground_truth": truth_est,
        "refine_history_mean": np.mean(np.stack(histories[primary]), axis=0).tolist(),
        "refine_history_mean_by_row": {
            name: np.mean(np.stack(h), axis=0).tolist() for name, h in histories.items()
        },
        "per_sample": {
            name: {k: v for k, v in r.items() if isinstance(v, list)} for name, r in results.items()
        },
        "torch": torch.__version__,
        "device": str(device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    plot(payload, args.out.with_suffix(".png"))

    print(
        f"\nNavier-Stokes nu={args.nu:g}, {args.resolution}^2 stored "
        f"({args.sim_resolution}^2 simulated), {args.t_in} -> {args.t_out} snapshots "
        f"dt={args.record_every:g}; {args.train} train / {args.test} test; device {device}\n"
    )
    print(
        "| method | rel L2 | rel H1 | estimator | params | train s | infer s/sample | "
        "infer / ref solver |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['method']} | {r['rel_l2']:.4e} | {r['rel_h1']:.4e} | {r['estimator']:.3e} | "
            f"{r['parameters']} | {r['train_seconds']:.1f} | {r['inference_s_per_sample']:.3e} | "
            f"{r['inference_vs_reference_solver']:.3g} |"
        )
    floor = claims["estimator_of_ground_truth"]
    print(f"\nestimator of the ground truth (discretisation floor): {floor:.3e}")
    print(
        f"refinement: rel L2 {claims['rel_l2_before']:.4e} -> {claims['rel_l2_after']:.4e} "
        f"(x{claims['error_ratio_before_over_after']:.3f}), "
        f"{100 * claims['fraction_of_samples_improved']:.0f}% of samples improved"
    )
    for name, c in correlation.items():
        print(
            f"correlation estimator vs error [{name}]: pearson(abs) "
            f"{c['pearson_est_vs_abs_l2']:.3f}, spearman(abs) {c['spearman_est_vs_abs_l2']:.3f}, "
            f"pearson(rel) {c['pearson_est_vs_rel_l2']:.3f}"
        )
    print(f"\nwrote {args.out}")
    return 0


def plot(payload, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    refined = [name for name in payload["per_sample"] if name.startswith("sfno+refine")]
    for name in ("fno3d", "sfno", *refined):
        r = payload["per_sample"][name]
        axes[0].scatter(r["abs_l2"], r["estimator"], label=name, s=14)
    axes[0].set_xlabel("true error ||e||_{L2(0,T;L2)}")
    axes[0].set_ylabel("estimator ||R||_{L2(0,T;H^-1)}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].set_title("estimator vs true error (test samples)")
    for name, hist in payload["refine_history_mean_by_row"].items():
        axes[1].semilogy(range(len(hist)), hist, label=name)
    axes[1].legend()
    axes[1].set_xlabel("refinement step")
    axes[1].set_ylabel("mean estimator")
    axes[1].set_title("Spectral-Refiner (no ground truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
