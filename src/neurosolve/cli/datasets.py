"""Dataset files for the commands: ``neurosolve datasets import|inspect`` and :func:`load_dataset`.

``datasets import`` writes a file in a public format (FNO's ``.mat`` Darcy and Navier-Stokes
files, PDEBench's HDF5 layouts; see :mod:`neurosolve.data.external`) into a dataset file of
the package, which ``train`` and ``evaluate`` then read unchanged; ``datasets inspect`` says
how such a file would be read, without reading its samples.

:func:`load_dataset` opens a dataset file for the ``train`` and ``evaluate`` commands: it is
read into memory as a :class:`torch.utils.data.TensorDataset` when it is small (faster than
HDF5 reads every epoch) and otherwise streamed from disk through
:class:`neurosolve.data.store.H5Dataset`. torch, h5py and scipy are imported inside the
functions.
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

from neurosolve._util.validate import integer
from neurosolve.cli.options import add_overwrite, add_quiet

__all__ = ["IN_MEMORY_BYTES", "add_commands", "load_dataset"]

#: Datasets up to this size are loaded into memory for training.
IN_MEMORY_BYTES = 2 * 1024**3


def load_dataset(path: str, max_samples: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The samples of a dataset file (the first ``max_samples`` of them) and its info.

    Parameters
    ----------
    path : str
        A dataset file written by ``neurosolve generate``.
    max_samples : int, optional
        Use only the first this many samples (``--max-samples``).

    Returns
    -------
    dataset : torch.utils.data.Dataset
        ``(x, y)`` pairs, float32.
    info : dict
        :func:`neurosolve.data.store.read_info` of the file.

    Raises
    ------
    InvalidInputError
        If ``max_samples`` is below 1.
    """
    import torch
    from torch.utils.data import Subset, TensorDataset

    from neurosolve.data.store import H5Dataset, read_arrays, read_info
    from neurosolve.data.store.reader import fingerprint

    info = read_info(path)
    count = info["count"]
    if max_samples is not None:
        count = min(count, integer(max_samples, "--max-samples"))
    itemsize = 8 if info["dtype"] == "float64" else 4
    size = count * itemsize * (_prod(info["x_shape"][1:]) + _prod(info["y_shape"][1:]))
    if size <= IN_MEMORY_BYTES:
        x, y = read_arrays(path, stop=count)
        data = TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y).float())
        # what the trainer records to refuse resuming on other data
        data.fingerprint = functools.partial(fingerprint, path, range(count))
        return data, info
    ds = H5Dataset(path)
    return (ds if count == len(ds) else Subset(ds, range(count))), info


def _prod(shape: Any) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


# ------------------------------------------------------------ neurosolve datasets ...


def add_commands(top: argparse._SubParsersAction) -> None:
    """Attach ``datasets import`` and ``datasets inspect`` to the ``neurosolve`` subcommands."""
    parser = top.add_parser(
        "datasets",
        help="import datasets in public formats (FNO .mat, PDEBench HDF5)",
        description="Read datasets users already hold into the package's dataset files. "
        "Run 'neurosolve datasets <command> --help' for the options.",
    )
    sub = parser.add_subparsers(dest="datasets_command", metavar="<command>")
    parser.set_defaults(func=lambda args: _missing(parser))
    p = sub.add_parser(
        "import",
        help="write an FNO .mat or PDEBench HDF5 file into a dataset file",
        description="Write FILE (FNO's Darcy or Navier-Stokes .mat, MATLAB v5 or v7.3; or a "
        "PDEBench HDF5 file) into a dataset file that 'neurosolve train' reads unchanged. "
        "HDF5 input is streamed block by block; the output appears only when complete.",
    )
    p.add_argument("file", metavar="FILE", help="the foreign file")
    p.add_argument("--out", required=True, metavar="X.h5", help="dataset file to write")
    _add_read_options(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=_import)
    q = sub.add_parser(
        "inspect",
        help="say how a foreign file would be imported (reads no samples)",
        description="Detect the format and layout of FILE and print the sample shapes that "
        "'neurosolve datasets import' would write, with the same options.",
    )
    q.add_argument("file", metavar="FILE", help="the foreign file")
    _add_read_options(q)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_inspect)


def _missing(parser: argparse.ArgumentParser) -> int:
    import sys

    parser.print_help(sys.stderr)
    print("\nerror: choose a command", file=sys.stderr)
    return 2


def _add_read_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to read")
    g.add_argument(
        "--format", choices=("fno-mat", "pdebench"), help="default: detected from the file"
    )
    g.add_argument(
        "--kind",
        choices=("darcy", "navier-stokes"),
        help="FNO .mat: default Darcy when 'coeff' is present",
    )
    g.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    g.add_argument(
        "--subsample", type=int, default=1, metavar="K", help="keep every K-th grid point"
    )
    g.add_argument("--t-in", type=int, default=10, help="time series: input frames")
    g.add_argument("--t-out", type=int, help="time series: target frames (default: the rest)")
    g.add_argument("--time-stride", type=int, default=1, help="keep every k-th frame")
    g.add_argument(
        "--fields",
        help="PDEBench CFD / incompressible NS: comma-separated datasets to read "
        "(default: every CFD field; velocity and force)",
    )
    g.add_argument(
        "--initial",
        action="store_true",
        help="FNO Navier-Stokes: the initial vorticity 'a' is the first input frame",
    )


def _read_options(args: argparse.Namespace) -> dict[str, Any]:
    fields = None
    if args.fields is not None:
        fields = [s.strip() for s in args.fields.split(",") if s.strip()]
    return {
        "format": args.format,
        "kind": args.kind,
        "limit": args.limit,
        "subsample": args.subsample,
        "t_in": args.t_in,
        "t_out": args.t_out,
        "time_stride": args.time_stride,
        "fields": fields,
        "initial": args.initial,
    }


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def _import(args: argparse.Namespace) -> int:
    from neurosolve.data.external import import_dataset
    from neurosolve.data.store import read_info

    path = import_dataset(
        args.file,
        args.out,
        dtype=args.dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **_read_options(args),
    )
    if not args.quiet:
        info = read_info(path)
        print(
            f"wrote {path}: {info['count']} samples of {info['generator']} "
            f"{info['params']['layout']} data, x {_shape(info['x_shape'])}, "
            f"y {_shape(info['y_shape'])}, {info['dtype']}"
        )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from neurosolve.data.external import describe

    info = describe(args.file, **_read_options(args))
    if args.json:
        print(json.dumps(info, indent=2, default=list))
        return 0
    container = {"v5": "MATLAB v5", "v7.3": "MATLAB v7.3 (HDF5)"}.get(info["container"], "HDF5")
    print(f"{info['path']}: {info['format']} {info['layout']} data, {container}")
    print(f"  samples    {info['count']} (of {info['params']['samples_in_file']} in the file)")
    print(f"  x          {_shape(info['x_shape'])}")
    print(f"  y          {_shape(info['y_shape'])}")
    print(f"  parameters {json.dumps(info['params'], sort_keys=True)}")
    return 0
