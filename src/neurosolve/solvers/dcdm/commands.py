"""``neurosolve train dcdm``: generate Ritz-vector data and train a DCDM network.

Kept light: torch and the training code are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from neurosolve.cli import add_optimization_arguments


def _pairs(text: str) -> int | list[int]:
    parts = [int(p) for p in text.split(",") if p.strip()]
    return parts[0] if len(parts) == 1 else parts


def add_commands(groups) -> None:
    """Register ``neurosolve train dcdm``."""
    p = groups.train.add_parser(
        "dcdm",
        help="train the DCDM network (deep conjugate-direction solver)",
        description=(
            "Generate right-hand sides from Ritz vectors of Poisson matrices (one random "
            "obstacle geometry per sample, or one fixed geometry with --geometry-seed), "
            "weighted toward the low end of the spectrum, and train the DCDM network on "
            "the scale-invariant loss ||b - alpha A f(b)||^2. Data, checkpoints, "
            "metrics.json and learning_curve.png go to RUN_DIR (default OUT.run); rerun "
            "the same command to resume after an interruption."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="where to write the trained model (.pt)")
    p.add_argument("--run-dir", default=None, help="folder for data, checkpoints and curves")
    data = p.add_argument_group("data")
    data.add_argument("--dim", type=int, default=3, choices=(2, 3))
    data.add_argument("--resolution", type=int, default=16, help="cells per axis")
    data.add_argument("--samples", type=int, default=2000, help="training right-hand sides")
    data.add_argument("--val-samples", type=int, default=200)
    data.add_argument("--geometry", default="mixed", choices=("none", "boxes", "spheres", "mixed"))
    data.add_argument(
        "--geometry-seed",
        type=int,
        default=None,
        help="use ONE geometry for all samples (the reference's single training matrix)",
    )
    data.add_argument("--lanczos-steps", type=int, default=64, help="Lanczos steps per matrix")
    data.add_argument(
        "--low", type=float, default=0.5, help="fraction of Ritz vectors with the low-end weight"
    )
    data.add_argument("--low-weight", type=float, default=9.0)
    net = p.add_argument_group("network")
    net.add_argument("--width", type=int, default=16)
    net.add_argument("--pairs", type=_pairs, default=1, help="residual pairs per level (n or a,b)")
    net.add_argument("--levels", type=int, default=1, help="pooling levels")
    net.add_argument(
        "--no-flags", action="store_true", help="residual-only input (as the reference)"
    )
    add_optimization_arguments(p, epochs=10, lr=1e-3, batch_size=8)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from neurosolve.solvers.dcdm.training import train_dcdm

    result = train_dcdm(
        args.out,
        dim=args.dim,
        resolution=args.resolution,
        samples=args.samples,
        val_samples=args.val_samples,
        geometry=args.geometry,
        geometry_seed=args.geometry_seed,
        lanczos_steps=args.lanczos_steps,
        low=args.low,
        low_weight=args.low_weight,
        width=args.width,
        pairs=args.pairs,
        levels=args.levels,
        flags_input=not args.no_flags,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print(f"model written to {result['model']} (run folder {result['run_dir']})")
    return 0
