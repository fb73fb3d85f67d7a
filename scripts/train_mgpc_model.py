"""Reproduce the MGPC model shipped with neurosolve (src/neurosolve/models/mgpc3d.pt).

Trains the geometry network of the learned multigrid preconditioner on random 3D obstacle
geometries (16^3) and 2D variable-coefficient problems (32^2) with the shared trainer, then
copies the best-on-validation checkpoint into the package. About 6 minutes on 2 CPU cores.

    python scripts/train_mgpc_model.py                     # writes the shipped model
    python scripts/train_mgpc_model.py --out /tmp/mgpc.pt  # somewhere else
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurosolve.checkpoint import shipped_path
from neurosolve.solvers.mgpc import train_mgpc


def main(argv=None) -> int:
    """Train and write the model; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=shipped_path("mgpc"))
    p.add_argument("--run-dir", type=Path, default=Path("runs/mgpc3d"))
    p.add_argument("--groups", type=int, default=128)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    result = train_mgpc(
        args.out,
        groups=args.groups,
        val_groups=8,
        group_size=4,
        vectors=4,
        resolutions=(16,),
        dims=(3, 2),
        width=8,
        layers=2,
        smoothing_steps=3,
        cycle="W",
        epochs=args.epochs,
        lr=3e-3,
        schedule="cosine",
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    for epoch in result["history"]["epochs"]:
        print(
            f"epoch {epoch['epoch']}: train loss {epoch['train_loss']:.5f}, "
            f"val loss {epoch.get('val_loss', float('nan')):.5f}"
        )
    size = result["model"].stat().st_size
    print(f"model written to {result['model']} ({size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
