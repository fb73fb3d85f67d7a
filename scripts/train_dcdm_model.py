"""Reproduce the DCDM model shipped with neurosolve (``src/neurosolve/models/dcdm3d.pt``).

``CONFIG`` is the recipe of the boundary-aware model: a small 3D U-Net (16 channels,
residual pairs) whose input holds the residual, a fluid mask and a solid mask with one
ghost layer of the domain boundary's cell type (solid walls read as solid, Dirichlet faces
as air), trained on a mix of pressure scenes (Dirichlet boxes, Dirichlet boxes with an AIR
top, closed boxes with solid walls and an open top, tanks with a free surface; obstacles of
random kind, count and size), one geometry and one Lanczos/Ritz basis per right-hand side
(64 Lanczos vectors, low end weighted by 9). ``PREVIOUS`` is the recipe of the first
shipped model (Dirichlet boxes only, signed cell-type channel, zero padding). See
``docs/dcdm.md`` for what each measures; on two busy CPU cores::

    python scripts/train_dcdm_model.py                 # writes the shipped model
    python scripts/train_dcdm_model.py --out my.pt     # elsewhere
    python scripts/train_dcdm_model.py --device cuda   # on a GPU
    python scripts/train_dcdm_model.py --previous      # the first shipped recipe

Rerunning the same command resumes an interrupted run (data and training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from neurosolve.solvers.dcdm.training import train_dcdm

ROOT = Path(__file__).resolve().parents[1]

#: The recipe of the boundary-aware model.
CONFIG = dict(
    dim=3,
    resolution=16,
    samples=3000,
    val_samples=200,
    geometry="varied",
    geometry_seed=None,
    scenes="dirichlet,dirichlet-top,open-top,free-surface",
    contrast_fraction=0.0,
    contrast=10.0,
    lanczos_steps=64,
    low=0.5,
    low_weight=9.0,
    width=16,
    pairs=1,
    levels=2,
    flags_input=True,
    network=dict(in_channels=3, ghost=1),
    epochs=6,
    batch_size=8,
    lr=1e-3,
    schedule="cosine",
    seed=0,
)

#: The recipe of the first shipped model (Dirichlet boxes only).
PREVIOUS = dict(
    dim=3,
    resolution=16,
    samples=1200,
    val_samples=120,
    geometry="mixed",
    geometry_seed=None,
    lanczos_steps=64,
    low=0.5,
    low_weight=9.0,
    width=16,
    pairs=1,
    levels=2,
    flags_input=True,
    epochs=4,
    batch_size=8,
    lr=1e-3,
    schedule="cosine",
    seed=0,
)


def main(argv: list[str] | None = None) -> int:
    """Train the shipped model (or one like it) and print its learning history."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "src" / "neurosolve" / "models" / "dcdm3d.pt"))
    parser.add_argument("--run-dir", default=None, help="data/checkpoints (default OUT.run)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--previous", action="store_true", help="the first shipped recipe")
    args = parser.parse_args(argv)
    config = PREVIOUS if args.previous else CONFIG
    run_dir = args.run_dir
    if run_dir is None and Path(args.out).resolve().is_relative_to(ROOT / "src"):
        run_dir = str(Path("/tmp") / "neurosolve-dcdm3d.run")  # keep data out of the package
    result = train_dcdm(
        args.out,
        run_dir=run_dir,
        device=args.device,
        progress=not args.quiet and sys.stderr.isatty(),
        **config,
    )
    epochs = result["history"].get("epochs", []) if isinstance(result["history"], dict) else []
    summary = {"config": config, "epochs": epochs}
    print(json.dumps(summary, indent=1, default=str))
    print(f"model written to {result['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
