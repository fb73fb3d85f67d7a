"""MgNO vs FNO on generated Darcy data, with the Krylov-style evaluation (issue 5).

For each coefficient family (piecewise-constant 12/3 as in FNO, and a rough log-normal
one) the script generates train / validation / test sets with ``neurosolve.data.generate``
(cached in ``--data-dir``), trains MgNO and FNO2d with the SAME budget (epochs, batch,
optimizer, schedule, learning rate, loss) through the shared trainer, and reports on the
test set: relative L2 and H1 error (at the epoch with the best validation loss), parameter
counts, seconds per training epoch (as a ratio to FNO's, measured in this process), and the
Krylov-style evaluation: the prediction's residual in the discrete Darcy system, its error
against the exact discrete solution, and the CG / AMG-PCG iterations saved when the
prediction is the initial guess (rtol 1e-8).

Default: small enough for a busy 2-core machine (32x32, 200/25/50 samples, 6 epochs,
reduced widths). ``--full`` is the issue's setting: 64x64, 1000/100/100 samples, the
paper's MgNO (24 channels, 4 layers, 6 levels; ~0.57M parameters) against FNO (modes 12,
width 20; ~0.93M), 100 epochs; pass ``--device cuda`` on a GPU.

``--equal-budget`` is issue 17's comparison with the peer library: 400/50/100 samples,
15 epochs, the paper-sized MgNO and FNO, and neuraloperator's FNO (``neuralop.models.FNO``,
modes 12, hidden width 32; its public API only) trained on the SAME HDF5 files through the
same trainer (same epochs, batch, Adam + OneCycle, learning rate, weight decay, L2 + H1 loss,
normalizers, best-validation checkpoint). The peer is an optional extra
(``pip install neurosolve[bench]``); without it the row is skipped with a note.

    python benchmarks/darcy_operators.py --equal-budget --kinds piecewise --resolution 32

``--recipe mgno-paper`` is issue 17's MgNO with the paper's training recipe (the authors'
code: Adam, lr 5e-4, weight decay 1e-4, OneCycle, batch 8, relative H1 loss with the
FFT-weighted norm) for a fixed number of epochs (:data:`MGNO_PAPER`; ``--resolution``,
``--train``, ``--test``, ``--epochs`` change it). The test set is the trainer's validation
set, so the learning curve holds the test errors of every epoch; no model is selected, the
last epoch's errors are the result (the paper reports the epoch with the best validation
error; the minimum over epochs here would be chosen on the test set itself, so it is only
listed as such). Writes ``benchmarks/results/darcy_mgno_paper_<resolution>.json`` and its
learning-curve PNG:

    python benchmarks/darcy_operators.py --recipe mgno-paper --kinds piecewise --resolution 64

Otherwise the script writes ``benchmarks/results/darcy_operators.json`` and
``darcy_operators.png`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurosolve.checkpoint import build_model, load_checkpoint
from neurosolve.data.generate import generate
from neurosolve.data.store import H5Dataset, read_arrays
from neurosolve.harness.operator_eval import evaluate_operator
from neurosolve.operators import (
    NormalizedOperator,
    UnitGaussianNormalizer,
    load_operator,
    relative_h1,
    relative_l2,
    train_operator,
)
from neurosolve.training import ModelSpec, TrainConfig, Trainer, supervised_loss

RESULTS = Path(__file__).resolve().parent / "results"

SMALL = {
    "resolution": 32,
    "train": 200,
    "val": 25,
    "test": 50,
    "epochs": 6,
    "mgno": {"channels": 20, "layers": 4, "levels": 4},
    "fno2d": {"modes": 8, "width": 16, "layers": 4, "padding": 4},
    "krylov": 10,
}
FULL = {
    "resolution": 64,
    "train": 1000,
    "val": 100,
    "test": 100,
    "epochs": 100,
    "mgno": {"channels": 24, "layers": 4, "levels": 6},
    "fno2d": {"modes": 12, "width": 20, "layers": 4, "padding": 8},
    "krylov": 20,
}
#: Issue 17's equal-budget comparison with neuraloperator (resolution from --resolution).
EQUAL_BUDGET = {
    "resolution": 32,
    "train": 400,
    "val": 50,
    "test": 100,
    "epochs": 15,
    "mgno": FULL["mgno"],
    "fno2d": FULL["fno2d"],
    "neuralop_fno": {"n_modes": [12, 12], "hidden_channels": 32},
    "krylov": 5,
}
#: Issue 17: MgNO with the paper's recipe (``--recipe mgno-paper``), sized for one CPU core.
MGNO_PAPER = {
    "resolution": 64,
    "train": 400,
    "test": 100,
    "epochs": 40,
    "mgno": FULL["mgno"],
    "batch_size": 8,
    "lr": 5e-4,
    "weight_decay": 1e-4,
}
RECIPES = ("mgno-paper",)
PEER = "neuralop_fno"
PEER_MISSING = (
    "neuraloperator is not installed (pip install 'neurosolve[bench]'): "
    "the peer's FNO row is skipped"
)


def peer_fno_class():
    """``neuralop.models.FNO`` of the peer library, or None when it is not installed."""
    try:
        from neuralop.models import FNO
    except ImportError:
        return None
    return FNO


class PeerModel(torch.nn.Module):
    """Holds the peer's model; its state dict keeps tensors only.

    neuraloperator's ``state_dict`` adds a ``_metadata`` entry (its constructor arguments),
    which a weights-only checkpoint cannot hold; the arguments are in the ModelSpec anyway.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def state_dict(self, *args, **kwargs):
        full = super().state_dict(*args, **kwargs)
        for key in [k for k, v in full.items() if not isinstance(v, torch.Tensor)]:
            del full[key]
        return full


def _l2_plus_h1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return relative_l2(pred, target) + relative_h1(pred, target)


def _spectral_h1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # the FFT-weighted H1 of the MgNO/FNO reference codes; Darcy's solution vanishes on
    # the boundary, so its periodic extension has no jump
    return relative_h1(pred, target, method="spectral")


def _fit_normalized(
    model: torch.nn.Module,
    spec: ModelSpec,
    loss,
    train,
    val,
    config: TrainConfig,
    out: Path,
    extra_metrics: dict | None = None,
) -> tuple[UnitGaussianNormalizer, UnitGaussianNormalizer, dict]:
    """``model`` through the shared trainer on normalized data, loss in physical units.

    Validation reports relative L2 and H1 (finite differences) and ``extra_metrics``.
    Returns the fitted normalizers and the trainer's history.
    """
    xn = UnitGaussianNormalizer.fit(train, index=0)
    yn = UnitGaussianNormalizer.fit(train, index=1)
    metrics = {"l2": relative_l2, "h1": relative_h1} | dict(extra_metrics or {})
    trainer = Trainer(
        model,
        supervised_loss(loss, xn, yn),
        config,
        out,
        metrics={name: supervised_loss(fn, xn, yn) for name, fn in metrics.items()},
        model_spec=spec,
        normalizers={"x": xn, "y": yn},
    )
    return xn, yn, trainer.fit(train, val, resume=False)


def train_peer(kwargs: dict, train, val, config: TrainConfig, out: Path):
    """neuraloperator's FNO through OUR trainer: same loss, normalizers, schedule, checkpoint.

    Returns the best-validation model wrapped with its normalizers, and the history.
    """
    fno = peer_fno_class()
    torch.manual_seed(config.seed)
    model = PeerModel(fno(in_channels=1, out_channels=1, **kwargs))
    spec = ModelSpec(PEER, dict(kwargs))
    xn, yn, history = _fit_normalized(model, spec, _l2_plus_h1, train, val, config, out)
    history["model"] = {"kind": PEER, "kwargs": dict(kwargs)}
    best = load_checkpoint(out / "model.pt", kind=PEER, map_location=config.device)
    model.load_state_dict(best["state_dict"])
    return NormalizedOperator(model, xn, yn).to(config.device).eval(), history


def _dataset(path: Path):
    x, y = read_arrays(path)
    return torch.utils.data.TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y).float())


def _data(
    kind: str, split: str, samples: int, seed: int, resolution: int, data_dir: Path, quiet: bool
) -> Path:
    path = data_dir / f"darcy-{kind}-{resolution}-{split}-{samples}-s{seed}.h5"
    return generate(
        "darcy",
        path,
        samples=samples,
        seed=seed,
        params={"resolution": resolution, "kind": kind},
        progress=not quiet,
    )


def _plots():
    """benchmarks/_darcy_plots.py, loaded by path (the benchmarks are not a package)."""
    path = Path(__file__).resolve().with_name("_darcy_plots.py")
    spec = importlib.util.spec_from_file_location("_darcy_plots", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peer_version() -> str | None:
    try:
        from importlib.metadata import version

        return f"neuraloperator {version('neuraloperator')}"
    except Exception:  # noqa: BLE001 -- any failure means: not installed
        return None


def _acceptance(results: list[dict]) -> list[str]:
    """Issue 17's targets: our FNO <= 1.0x the peer's error, MgNO <= 0.5x."""
    lines = []
    for r in results:
        if "rel_l2_vs_peer" not in r or r["model"] == PEER:
            continue
        target = {"fno2d": 1.0, "mgno": 0.5}.get(r["model"])
        if target is None:
            continue
        ok = "met" if r["rel_l2_vs_peer"] <= target else "NOT met"
        lines.append(
            f"{r['data']}: {r['model']} rel L2 = {r['rel_l2_vs_peer']:.3f} x peer "
            f"(target <= {target}): {ok}"
        )
    return lines


def train_config(epochs: int, *, batch_size=8, lr=1e-3, device="cpu", quiet=False, plot=True):
    """The budget every Darcy operator here gets: Adam + OneCycle, weight decay 1e-4."""
    return TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=1e-4,
        optimizer="adam",
        schedule="onecycle",
        seed=0,
        device=device,
        progress=not quiet,
        plot=plot,
    )


def _train_and_test(model, kind, setting, train, val, test, out: Path, args) -> dict:
    config = train_config(
        setting["epochs"],
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        quiet=args.quiet,
        plot=not args.no_plots,
    )
    if model == PEER:
        op, history = train_peer(setting[model], train, val, config, out)
    else:
        _, history = train_operator(
            model, setting[model], train, config, out, val_dataset=val, loss="l2+h1"
        )
        op = load_operator(out / "model.pt", map_location=args.device)
    ev = evaluate_operator(
        op,
        test,
        device=args.device,
        krylov_samples=setting["krylov"],
        png=None if args.no_plots else args.out.with_name(f"{args.out.stem}_{kind}_{model}.png"),
        png_samples=2,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    epoch_seconds = [h["train_seconds"] for h in history["epochs"]]
    return {
        "data": kind,
        "model": model,
        "kwargs": history["model"]["kwargs"],
        "parameters": history["parameters"],
        "best_epoch": history["best_epoch"],
        "seconds_per_epoch": float(np.median(epoch_seconds)),
        "seconds_per_epoch_min": float(np.min(epoch_seconds)),
        "test_rel_l2": ev["rel_l2"],
        "test_rel_h1": ev["rel_h1"],
        "test_rel_h1_spectral": ev["rel_h1_spectral"],
        "inference_seconds_per_sample": ev["inference_seconds_per_sample"],
        "krylov": ev.get("krylov"),
        "history": history["epochs"],
    }


def step_times(models: list[str], setting: dict, args, repeats: int = 5) -> dict:
    """Seconds per training step (batch ``args.batch_size`` at the setting's grid), min and
    median over ``repeats`` rounds in which every model takes one step in turn, so that all
    of them see the same machine load; freshly built models (weights do not change the cost).
    """
    n = setting["resolution"]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, n, n, generator=gen) + 0.5
    y = torch.rand(args.batch_size, 1, n, n, generator=gen)
    nets = {}
    for m in models:
        if m == PEER:
            nets[m] = PeerModel(peer_fno_class()(in_channels=1, out_channels=1, **setting[m]))
        else:
            nets[m] = build_model(m, **setting[m])
    opts = {m: torch.optim.Adam(net.parameters(), lr=1e-4) for m, net in nets.items()}
    times: dict[str, list[float]] = {m: [] for m in nets}
    for round_ in range(repeats + 1):
        for m, net in nets.items():
            t0 = time.perf_counter()
            loss = _l2_plus_h1(net(x), y)
            opts[m].zero_grad()
            loss.backward()
            opts[m].step()
            if round_:  # the first round warms up
                times[m].append(time.perf_counter() - t0)
    ref = PEER if PEER in times else next(iter(times))
    med = {m: float(np.median(t)) for m, t in times.items()}
    return {
        m: {
            "min": float(np.min(t)),
            "median": med[m],
            "median_vs_peer" if ref == PEER else "median_vs_first": med[m] / med[ref],
        }
        for m, t in times.items()
    } | {"batch": args.batch_size, "repeats": repeats, "threads": torch.get_num_threads()}


def _ratios(per_model: dict, gen_seconds: float) -> None:
    ref = per_model.get("fno2d") or next(iter(per_model.values()))
    peer = per_model.get(PEER)
    for model in per_model.values():
        model["epoch_time_vs_fno"] = model["seconds_per_epoch"] / ref["seconds_per_epoch"]
        model["generation_seconds"] = gen_seconds
        if peer is not None:
            model["rel_l2_vs_peer"] = model["test_rel_l2"] / peer["test_rel_l2"]
            model["epoch_time_vs_peer"] = model["seconds_per_epoch"] / peer["seconds_per_epoch"]


def _write(results: list[dict], setting: dict, notes: list[str], args) -> dict:
    if not args.no_plots:
        _plots().plot_histories(results, args.out.with_suffix(".png"), ("mgno", "fno2d", PEER))
    payload = {
        "setting": dict(setting)
        | {
            "batch_size": args.batch_size,
            "lr": args.lr,
            "optimizer": "adam",
            "schedule": "onecycle",
            "loss": "relative L2 + relative H1 (finite differences)",
            "weight_decay": 1e-4,
            "device": args.device,
            "full": args.full,
            "equal_budget": args.equal_budget,
        },
        "torch_threads": torch.get_num_threads(),
        "peer": _peer_version(),
        "notes": notes,
        "acceptance": _acceptance(results),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float))
    return payload


def train_mgno_paper(kwargs: dict, train, test, config: TrainConfig, out: Path) -> dict:
    """MgNO trained on the relative H1 error (FFT-weighted), the test set as validation.

    Returns the trainer's history: every epoch's training loss and test errors.
    """
    torch.manual_seed(config.seed)
    model = build_model("mgno", **kwargs)
    spec = ModelSpec("mgno", model.config())
    extra = {"h1_spectral": _spectral_h1}
    _, _, history = _fit_normalized(model, spec, _spectral_h1, train, test, config, out, extra)
    history["model"] = {"kind": "mgno", "kwargs": spec.kwargs}
    return history


FINAL_KEYS = ("epoch", "train_loss", "test_rel_l2", "test_rel_h1", "test_rel_h1_spectral")


def _curve(history: dict) -> list[dict]:
    return [
        {
            "epoch": h["epoch"],
            "lr": h["lr"],
            "train_loss": h["train_loss"],
            "test_rel_l2": h["val_l2"],
            "test_rel_h1": h["val_h1"],
            "test_rel_h1_spectral": h["val_h1_spectral"],
            "train_seconds": h["train_seconds"],
            "test_seconds": h["val_seconds"],
        }
        for h in history["epochs"]
    ]


def mgno_paper(args, kinds: list[str]) -> int:
    """``--recipe mgno-paper``: learning curves of MgNO trained with the paper's recipe."""
    setting = dict(MGNO_PAPER)
    for key in ("resolution", "train", "test", "epochs"):
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    setting["batch_size"], setting["lr"] = args.batch_size, args.lr
    config = train_config(
        setting["epochs"],
        batch_size=setting["batch_size"],
        lr=setting["lr"],
        device=args.device,
        quiet=args.quiet,
        plot=False,
    )
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="darcy-mgno-paper-"))
    n = setting["resolution"]
    payload = {
        "recipe": "mgno-paper",
        "setting": setting
        | {
            "optimizer": config.optimizer,
            "schedule": config.schedule,
            "pct_start": config.pct_start,
            "weight_decay": config.weight_decay,
            "loss": "relative H1, FFT-weighted (the authors' code)",
            "device": args.device,
        },
        "torch_threads": torch.get_num_threads(),
        "notes": [
            "the test set is the trainer's validation set (test errors every epoch); no model "
            "selection: 'final' is the last epoch, 'min_over_epochs_on_test' is chosen on the "
            "test set itself (optimistic)"
        ],
        "results": [],
    }
    for kind in kinds:
        t0 = time.perf_counter()
        paths = {
            split: _data(kind, split, setting[split], seed, n, args.data_dir, args.quiet)
            for split, seed in (("train", 0), ("test", 2))
        }
        gen_seconds = time.perf_counter() - t0
        train, test = _dataset(paths["train"]), _dataset(paths["test"])
        history = train_mgno_paper(setting["mgno"], train, test, config, run_dir / kind)
        curve = _curve(history)
        best = min(curve, key=lambda c: c["test_rel_l2"])
        payload["results"].append(
            {
                "data": kind,
                "model": "mgno",
                "kwargs": history["model"]["kwargs"],
                "parameters": history["parameters"],
                "final": {k: curve[-1][k] for k in FINAL_KEYS},
                "min_over_epochs_on_test": {
                    "test_rel_l2": best["test_rel_l2"],
                    "epoch": best["epoch"],
                },
                "seconds_per_epoch": float(np.median([c["train_seconds"] for c in curve])),
                "test_seconds_per_epoch": float(np.median([c["test_seconds"] for c in curve])),
                "generation_seconds": gen_seconds,
                "curve": curve,
            }
        )
        # written after every family: a long run leaves its finished rows behind
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=float))
        if not args.no_plots:
            _plots().plot_curves(payload["results"], setting, args.out.with_suffix(".png"))

    print(
        f"\nMgNO, paper recipe: Darcy {n}x{n}, {setting['train']} train / {setting['test']} test, "
        f"{setting['epochs']} epochs, batch {setting['batch_size']}, Adam lr {setting['lr']:g} + "
        f"OneCycle, weight decay {config.weight_decay:g}, loss relative H1 (FFT-weighted), "
        f"device {args.device}, {torch.get_num_threads()} thread(s)"
    )
    for row in payload["results"]:
        print(
            f"\n{row['data']}: {row['parameters']:,} parameters, "
            f"{row['seconds_per_epoch']:.1f} s/epoch (median)\n"
        )
        print(
            "| epoch | train loss (rel H1, FFT) | test rel L2 | test rel H1 | test rel H1 (FFT) |"
        )
        print("|---|---|---|---|---|")
        for c in row["curve"]:
            print(
                f"| {c['epoch']} | {c['train_loss']:.4f} | {c['test_rel_l2']:.4f} | "
                f"{c['test_rel_h1']:.4f} | {c['test_rel_h1_spectral']:.4f} |"
            )
        m = row["min_over_epochs_on_test"]
        print(
            f"\nlast epoch: test rel L2 {row['final']['test_rel_l2']:.4f}; lowest over epochs "
            f"(chosen on the test set): {m['test_rel_l2']:.4f} at epoch {m['epoch']}"
        )
    print(f"\nwrote {args.out}" + ("" if args.no_plots else f" and {args.out.with_suffix('.png')}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the issue's setting (64x64, 1000/100/100)")
    p.add_argument(
        "--equal-budget",
        action="store_true",
        help="issue 17: ours vs neuraloperator's FNO, 400/50/100 samples, 15 epochs",
    )
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        help="mgno-paper: MgNO with the paper's training recipe, learning curves (see above)",
    )
    p.add_argument("--models", help="comma list of mgno,fno2d,neuralop_fno (default: all)")
    p.add_argument(
        "--mgno", type=json.loads, help="JSON of MgNO keyword arguments (validation sweeps)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-plots", action="store_true", help="write no pictures (tests)")
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="only the interleaved step timing, merged into an existing --out JSON",
    )
    p.add_argument("--kinds", default="piecewise,rough", help="coefficient families")
    p.add_argument("--resolution", type=int)
    p.add_argument("--train", type=int)
    p.add_argument("--val", type=int)
    p.add_argument("--test", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, help="default 1e-3 (5e-4 with --recipe mgno-paper)")
    p.add_argument("--krylov", type=int, help="test samples in the Krylov-style evaluation")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "neurosolve-darcy-operators"
    )
    p.add_argument("--run-dir", type=Path, help="training run folders (default: temporary)")
    p.add_argument(
        "--out",
        type=Path,
        help="default benchmarks/results/darcy_operators.json "
        "(darcy_mgno_paper_<resolution>.json with --recipe mgno-paper)",
    )
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    torch.set_num_threads(args.threads)
    if args.recipe == "mgno-paper":
        if args.lr is None:
            args.lr = MGNO_PAPER["lr"]
        if args.out is None:
            n = args.resolution or MGNO_PAPER["resolution"]
            args.out = RESULTS / f"darcy_mgno_paper_{n}.json"
        args.data_dir.mkdir(parents=True, exist_ok=True)
        return mgno_paper(args, kinds)
    if args.lr is None:
        args.lr = 1e-3
    if args.out is None:
        args.out = RESULTS / "darcy_operators.json"

    setting = dict(EQUAL_BUDGET if args.equal_budget else FULL if args.full else SMALL)
    for key in ("resolution", "train", "val", "test", "epochs", "krylov"):
        if getattr(args, key) is not None:
            setting[key] = getattr(args, key)
    if args.mgno is not None:
        setting["mgno"] = dict(args.mgno)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="darcy-operators-"))
    models = ([PEER] if PEER in setting else []) + ["mgno", "fno2d"]
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    notes = []
    if PEER in models and peer_fno_class() is None:
        models.remove(PEER)
        notes.append(PEER_MISSING)
        print(f"note: {PEER_MISSING}", file=sys.stderr)
    setting.setdefault(PEER, EQUAL_BUDGET[PEER])

    if args.timing_only:
        payload = json.loads(args.out.read_text()) if args.out.is_file() else {}
        payload["step_seconds"] = step_times(models, setting, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2, default=float))
        print(json.dumps(payload["step_seconds"], indent=1))
        return 0
    results = []
    for kind in kinds:
        t0 = time.perf_counter()
        paths = {
            split: _data(
                kind, split, setting[split], seed, setting["resolution"], args.data_dir, args.quiet
            )
            for split, seed in (("train", 0), ("val", 1), ("test", 2))
        }
        gen_seconds = time.perf_counter() - t0
        train, val = _dataset(paths["train"]), _dataset(paths["val"])
        test = H5Dataset(paths["test"])
        per_model = {}
        for model in models:
            per_model[model] = _train_and_test(
                model, kind, setting, train, val, test, run_dir / f"{kind}-{model}", args
            )
            _ratios(per_model, gen_seconds)
            # written after every model: a long run leaves its finished rows behind
            payload = _write(results + list(per_model.values()), setting, notes, args)
        results.extend(per_model.values())
    payload = _write(results, setting, notes, args)
    payload["step_seconds"] = step_times(models, setting, args)
    args.out.write_text(json.dumps(payload, indent=2, default=float))

    s = setting
    print(
        f"\nDarcy {s['resolution']}x{s['resolution']}, {s['train']}/{s['val']}/{s['test']} "
        f"samples, {s['epochs']} epochs, batch {args.batch_size}, Adam + OneCycle lr "
        f"{args.lr:g}, loss relative L2 + H1, device {args.device}\n"
    )
    print(
        "| data | model | params | test rel L2 | test rel H1 | L2 / peer's | "
        "s/epoch (median) | s/epoch vs FNO | s/epoch vs peer | best epoch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['data']} | {r['model']} | {r['parameters']:,} | {r['test_rel_l2']:.4f} | "
            f"{r['test_rel_h1']:.4f} | {r.get('rel_l2_vs_peer', float('nan')):.3f} | "
            f"{r['seconds_per_epoch']:.2f} | {r['epoch_time_vs_fno']:.2f} | "
            f"{r.get('epoch_time_vs_peer', float('nan')):.2f} | {r['best_epoch']} |"
        )
    steps = payload["step_seconds"]
    print(
        f"\nSeconds per training step (batch {steps['batch']}, {steps['threads']} thread(s), "
        f"models interleaved, {steps['repeats']} rounds):"
    )
    for m in models:
        ratio = steps[m].get("median_vs_peer", steps[m].get("median_vs_first"))
        print(f"- {m}: min {steps[m]['min']:.3f}, median {steps[m]['median']:.3f} ({ratio:.2f}x)")
    for note in notes:
        print(f"\nnote: {note}")
    for line in payload["acceptance"]:
        print(f"acceptance: {line}")
    print("\nKrylov-style evaluation (prediction as x0, rtol 1e-8; means over test samples)\n")
    print(
        "| data | model | residual of prediction (median) | error vs exact (median) | "
        "CG iters 0 -> pred | AMG-PCG iters 0 -> pred | CG iters to prediction's error | "
        "CG time to prediction's error / inference | "
        "AMG-PCG time (incl. setup) to prediction's error / inference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        k = r["krylov"]
        if not k:
            continue
        cg, amg = k["methods"].get("cg", {}), k["methods"].get("amg-sa-pcg", {})
        print(
            f"| {r['data']} | {r['model']} | {k['residual_median']:.3g} | "
            f"{k['error_median']:.3g} | {cg.get('iterations_cold', 0):.1f} -> "
            f"{cg.get('iterations_warm', 0):.1f} | {amg.get('iterations_cold', 0):.1f} -> "
            f"{amg.get('iterations_warm', 0):.1f} | "
            f"{cg.get('iterations_to_match_error', float('nan')):.1f} | "
            f"{cg.get('speedup_at_prediction_error', float('nan')):.3g} | "
            f"{amg.get('speedup_at_prediction_error', float('nan')):.3g} |"
        )
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
