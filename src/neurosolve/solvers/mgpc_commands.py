"""``neurosolve train mgpc``: train the learned multigrid preconditioner (MGPC).

Kept light: torch and the training code are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from neurosolve.cli import add_optimization_arguments


def _ints(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def add_commands(groups) -> None:
    """Register ``neurosolve train mgpc``."""
    p = groups.train.add_parser(
        "mgpc",
        help="train the MGPC network (learned SPD multigrid preconditioner for PCG)",
        description=(
            "Train the geometry network of the MGPC preconditioner without labels: on random "
            "3D obstacle geometries and 2D variable-coefficient problems, minimize the A-norm "
            "error left by one optimally scaled preconditioned step on random and smooth "
            "vectors. Checkpoints, metrics.json and learning_curve.png go to RUN_DIR "
            "(default OUT.run); rerun the same command to resume after an interruption."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="where to write the trained model (.pt)")
    p.add_argument("--run-dir", default=None, help="folder for checkpoints and curves")
    data = p.add_argument_group("data")
    data.add_argument("--groups", type=int, default=64, help="training groups (one per step)")
    data.add_argument("--val-groups", type=int, default=8, help="validation groups")
    data.add_argument("--group-size", type=int, default=4, help="problems per group")
    data.add_argument("--vectors", type=int, default=4, help="test vectors per problem")
    data.add_argument(
        "--resolutions", type=_ints, default=[16], help="3D cells per axis (2D uses twice)"
    )
    data.add_argument("--dims", type=_ints, default=[3, 2], help="dimensions to train on")
    net = p.add_argument_group("network")
    net.add_argument("--width", type=int, default=8)
    net.add_argument("--layers", type=int, default=2)
    net.add_argument("--smoothing-steps", type=int, default=3, help="pre (= post) smoothing")
    net.add_argument(
        "--cycle", default="W", choices=("W", "V"), help="multigrid cycle the model is trained for"
    )
    add_optimization_arguments(p, epochs=8, lr=3e-3)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from neurosolve.solvers.mgpc import train_mgpc

    result = train_mgpc(
        args.out,
        groups=args.groups,
        val_groups=args.val_groups,
        group_size=args.group_size,
        vectors=args.vectors,
        resolutions=args.resolutions,
        dims=args.dims,
        width=args.width,
        layers=args.layers,
        smoothing_steps=args.smoothing_steps,
        cycle=args.cycle,
        epochs=args.epochs,
        lr=args.lr,
        schedule=args.schedule,
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    best = min((e.get("val_loss", float("inf")) for e in result["history"]["epochs"]), default=None)
    print(
        f"model written to {result['model']} (run folder {result['run_dir']}); best val loss {best}"
    )
    return 0
