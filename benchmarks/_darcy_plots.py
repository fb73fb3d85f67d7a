"""Pictures of benchmarks/darcy_operators.py: learning curves (PNG via matplotlib)."""

from __future__ import annotations

from pathlib import Path


def plot_histories(results: list[dict], path: Path, models: tuple[str, ...]) -> None:
    """Training loss and validation L2 / H1 per epoch, one panel per coefficient family."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds = sorted({r["data"] for r in results})
    fig = Figure(figsize=(6 * len(kinds), 4.2))
    FigureCanvasAgg(fig)
    for i, kind in enumerate(kinds):
        ax = fig.add_subplot(1, len(kinds), i + 1)
        for model, color in zip(models, ("C0", "C3", "C2"), strict=False):
            found = [r for r in results if r["data"] == kind and r["model"] == model]
            if not found:
                continue
            hist = found[0]["history"]
            ep = [h["epoch"] for h in hist]
            ax.plot(
                ep,
                [h["train_loss"] for h in hist],
                "--",
                color=color,
                label=f"{model} train loss (L2+H1)",
            )
            ax.plot(
                ep, [h["val_h1"] for h in hist], "-o", ms=3, color=color, label=f"{model} val H1"
            )
            ax.plot(ep, [h["val_l2"] for h in hist], ":", color=color, label=f"{model} val L2")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("relative error")
        ax.set_title(f"Darcy {kind}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_curves(rows: list[dict], setting: dict, path: Path) -> None:
    """Learning curves of ``--recipe mgno-paper``: training loss and test errors per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(rows), 4.2))
    FigureCanvasAgg(fig)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(1, len(rows), i + 1)
        curve = row["curve"]
        ep = [c["epoch"] for c in curve]
        ax.plot(ep, [c["train_loss"] for c in curve], "--", color="C0", label="train rel H1 (FFT)")
        lines = (
            ("test_rel_h1_spectral", "-", "C0", "test rel H1 (FFT)"),
            ("test_rel_h1", ":", "C2", "test rel H1 (finite differences)"),
            ("test_rel_l2", "-o", "C3", "test rel L2"),
        )
        for key, style, color, label in lines:
            ax.plot(ep, [c[key] for c in curve], style, ms=3, color=color, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("relative error")
        n = setting["resolution"]
        ax.set_title(
            f"MgNO, paper recipe: Darcy {row['data']} {n}x{n}, "
            f"{setting['train']} train / {setting['test']} test",
            fontsize=10,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
