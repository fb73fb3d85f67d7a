"""Data generation throughput: Darcy samples/s and Navier-Stokes simulated steps/s.

For each resolution (default 64 and 256) and batch size (default 1 and 32):

- Darcy: ``darcy_samples`` on a batch of per-sample generators (random coefficient + pyamg /
  direct solve to relative residual 1e-10; CPU, scipy), in samples per second;
- Navier-Stokes: ``NavierStokes2d.step`` on a batch of GRF initial vorticities (float64,
  FNO forcing, pseudo-spectral, on ``--device``), in time steps per second of the batch and
  trajectory-steps per second (batch x steps / s);
- the end-to-end cost of ``generate`` (HDF5 writing included) against the bare sample
  function, for Darcy at the smallest resolution.

Machines here are shared, so every timing is also given as a ratio against a baseline
measured in the same run (batch 1 at the same resolution; the bare sample function for the
end-to-end row), and each setting is measured ``--repeats`` times in interleaved rounds,
keeping the best. Writes ``benchmarks/results/generation_throughput.json`` and prints a
markdown table.

    python benchmarks/generation_throughput.py                 # a few minutes on 2 cores
    python benchmarks/generation_throughput.py --device cuda --resolutions 64 256 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurosolve import __version__
from neurosolve.data.darcy import darcy_samples
from neurosolve.data.generate import generate
from neurosolve.data.navier_stokes import NavierStokes2d
from neurosolve.data.random_fields import gaussian_random_field

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rngs(seed: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, i]) for i in range(count)]


def time_darcy(resolution: int, batch: int, min_seconds: float) -> dict:
    """Samples/s of darcy_samples on batches of `batch`, repeated for at least min_seconds."""
    darcy_samples(rngs(99, 1), resolution=resolution)  # warm-up (imports, caches)
    done, calls, start = 0, 0, time.perf_counter()
    while True:
        darcy_samples(rngs(calls, batch), resolution=resolution)
        done += batch
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    return {"samples": done, "seconds": elapsed, "samples_per_s": done / elapsed}


def time_navier_stokes(
    resolution: int, batch: int, steps: int, device: torch.device, dt: float
) -> dict:
    """Batch time steps per second of the pseudo-spectral solver."""
    solver = NavierStokes2d(resolution, nu=1e-3, dt=dt, forcing="fno", device=device)
    w0 = gaussian_random_field(
        (resolution, resolution), rng=rngs(0, batch), device=device, dtype=torch.float64
    )
    w_hat = solver.to_spectral(w0)
    w_hat = solver.step(w_hat, 2)  # warm-up (FFT plans, allocations)
    sync(device)
    start = time.perf_counter()
    w_hat = solver.step(w_hat, steps)
    sync(device)
    elapsed = time.perf_counter() - start
    if not bool(torch.isfinite(w_hat).all()):
        raise RuntimeError(f"Navier-Stokes blew up at {resolution}^2, dt={dt}")
    return {
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "trajectory_steps_per_s": batch * steps / elapsed,
    }


def time_end_to_end(resolution: int, samples: int, chunk: int, repeats: int) -> dict:
    """generate() to HDF5 versus the bare sample function on the same samples (best of)."""
    bare = full = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        darcy_samples(rngs(7, samples), resolution=resolution)
        bare = min(bare, time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate(
                "darcy",
                Path(tmp) / "d.h5",
                samples=samples,
                seed=7,
                params={"resolution": resolution},
                chunk=chunk,
                progress=False,
            )
            full = min(full, time.perf_counter() - start)
    return {
        "samples": samples,
        "bare_seconds": bare,
        "generate_seconds": full,
        "generate_over_bare": full / bare,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="device of the Navier-Stokes solver")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--ns-steps",
        type=int,
        default=None,
        help="time steps per Navier-Stokes measurement (default: 40 at 64^2, >= 8 above)",
    )
    parser.add_argument(
        "--darcy-seconds",
        type=float,
        default=1.0,
        help="minimum time per Darcy measurement (at least one batch is always run)",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds per setting; the best one counts"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: stable numbers on a shared machine)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "generation_throughput.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    rows = []
    for n in args.resolutions:
        # dt keeps the advective CFL number of the FNO setting (dt 1e-3 at 128^2) in range
        dt = 1e-3 * 128 / max(n, 128)
        steps = args.ns_steps or max(8, int(40 * (64 / n) ** 2))
        # Rounds interleave the batch sizes and the best round counts: other jobs on a
        # shared machine only ever slow a measurement down.
        best: dict[int, tuple[dict, dict]] = {}
        for _ in range(args.repeats):
            for b in args.batches:
                darcy = time_darcy(n, b, args.darcy_seconds)
                ns = time_navier_stokes(n, b, steps, device, dt)
                if b in best:
                    old_d, old_ns = best[b]
                    if old_d["samples_per_s"] > darcy["samples_per_s"]:
                        darcy = old_d
                    if old_ns["steps_per_s"] > ns["steps_per_s"]:
                        ns = old_ns
                best[b] = (darcy, ns)
        base_darcy = best[args.batches[0]][0]["samples_per_s"]
        base_ns = best[args.batches[0]][1]["trajectory_steps_per_s"]
        for b in args.batches:
            darcy, ns = best[b]
            rows.append(
                {
                    "resolution": n,
                    "batch": b,
                    "darcy": darcy,
                    "navier_stokes": dict(ns, dt=dt),
                    "baseline_batch": args.batches[0],
                    "darcy_speedup": darcy["samples_per_s"] / base_darcy,
                    "ns_speedup": ns["trajectory_steps_per_s"] / base_ns,
                }
            )
            print(
                f"{n}^2 batch {b}: darcy {darcy['samples_per_s']:.3g} samples/s, "
                f"navier-stokes {ns['steps_per_s']:.3g} steps/s "
                f"({ns['trajectory_steps_per_s']:.3g} trajectory-steps/s)",
                flush=True,
            )
    n0, b0 = args.resolutions[0], max(args.batches)
    end_to_end = dict(time_end_to_end(n0, b0, b0, args.repeats), resolution=n0, chunk=b0)

    result = {
        "benchmark": "generation_throughput",
        "neurosolve": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "rows": rows,
        "darcy_end_to_end": end_to_end,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    b1 = args.batches[0]
    print()
    print(
        f"| resolution | batch | Darcy samples/s | vs batch {b1} | NS steps/s "
        f"| NS trajectory-steps/s | vs batch {b1} |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        d, s = r["darcy"], r["navier_stokes"]
        print(
            f"| {r['resolution']}^2 | {r['batch']} | {d['samples_per_s']:.3g} "
            f"| {r['darcy_speedup']:.2f}x | {s['steps_per_s']:.3g} "
            f"| {s['trajectory_steps_per_s']:.3g} | {r['ns_speedup']:.2f}x |"
        )
    e = end_to_end
    print(
        f"\nDarcy {e['resolution']}^2, {e['samples']} samples: generate() to HDF5 takes "
        f"{e['generate_over_bare']:.2f}x the bare sample function's time."
    )
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
