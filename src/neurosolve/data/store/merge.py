"""Merging shard files into the full dataset, byte-identical to a single-process run.

Shards written by ``generate(..., shard=(i, n))`` are checked to belong to one dataset
and to cover every sample exactly once, then copied block by block into a file created with
the full header; the result is written atomically
(:func:`neurosolve._util.io.atomic_write`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from neurosolve._util.io import atomic_write, check_output, exclusive_lock
from neurosolve._util.progress import progress_bar
from neurosolve.data.store.format import _BLOCK, DatasetHeader, _open, read_header
from neurosolve.data.store.reader import _read_block, _require_complete
from neurosolve.data.store.writer import Writer, create_file
from neurosolve.errors import InvalidInputError

__all__ = ["iter_blocks", "merge"]

logger = logging.getLogger(__name__)


def iter_blocks(start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """Split ``start .. stop`` into consecutive ``(a, b)`` ranges of at most ``size``.

    Examples
    --------
    >>> list(iter_blocks(0, 5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    for a in range(start, stop, size):
        yield a, min(stop, a + size)


def merge(
    shard_paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Join shard files into the full dataset.

    The shards must come from one generator, parameters, seed, dataset size, chunk, dtype
    and neurosolve version, be complete, and together cover every sample exactly once (in
    any order on the command line). The result is byte-identical to the file a single
    process writes with the same arguments.

    Parameters
    ----------
    shard_paths : sequence of path
        Files written with ``generate(..., shard=(i, n))``.
    out : path
        The merged file (written atomically).
    overwrite : bool, default False
        Replace ``out`` if it exists.
    progress : bool, default True
        Show a progress bar (only on a terminal).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    FileFormatError
        A shard is missing, damaged, foreign or incomplete.
    InvalidInputError
        Shards that do not belong together, leave gaps or overlap; ``out`` exists.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from neurosolve.data.generate import generate
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> shards = [generate("poisson", tmp / f"s{i}.h5", samples=4, seed=1, chunk=2,
    ...                    params={"resolution": 8}, shard=(i, 2), progress=False)
    ...           for i in range(2)]
    >>> merged = merge(shards, tmp / "all.h5", progress=False)
    >>> full = generate("poisson", tmp / "one.h5", samples=4, seed=1, chunk=2,
    ...                 params={"resolution": 8}, progress=False)
    >>> merged.read_bytes() == full.read_bytes()
    True
    """
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise InvalidInputError("merge needs at least one shard file")
    out = Path(out)
    if any(p.resolve() == out.resolve() for p in paths):
        raise InvalidInputError(f"the output {out} is also one of the shards")
    check_output(out, overwrite=True)  # a folder, a device or a FIFO is never replaced
    if out.exists() and not overwrite:
        raise InvalidInputError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    with exclusive_lock(out):
        _merge_into(out, _check_shards(paths), progress)
    logger.info("merged %d shards into %s", len(paths), out)
    return out


def _merge_into(out: Path, shards: list, progress: bool) -> None:
    """Write the merged file of checked ``shards`` to ``out`` atomically."""
    ref, ref_x, ref_y, _ = shards[0]
    full = DatasetHeader(
        generator=ref.generator,
        params=ref.params,
        seed=ref.seed,
        samples=ref.samples,
        first=0,
        count=ref.samples,
        chunk=ref.chunk,
        dtype=ref.dtype,
        version=ref.version,
    )

    def write(tmp: str) -> None:
        create_file(Path(tmp), full, ref_x, ref_y)
        bar = progress_bar(
            total=ref.samples, enabled=progress, desc="merge", unit="sample", leave=False
        )
        with Writer(Path(tmp)) as writer, bar:
            for header, _, _, p in shards:
                with _open(p) as f:
                    for a, b in iter_blocks(0, header.count, _BLOCK):
                        writer.write(
                            header.first + a,
                            _read_block(f, "x", a, b, p),
                            _read_block(f, "y", a, b, p),
                        )
                        bar.update(b - a)

    atomic_write(out, write, suffix=".h5")


def _check_shards(paths: list[Path]) -> list[tuple[DatasetHeader, tuple, tuple, Path]]:
    """Headers and sample shapes of complete shards of one dataset, in sample order.

    Raises unless the shards agree on everything but their range and together cover the
    dataset's samples exactly once.
    """
    shards = []
    for p in paths:
        header, completed, x_shape, y_shape = read_header(p)
        _require_complete(p, header, completed)
        shards.append((header, x_shape[1:], y_shape[1:], p))
    shards.sort(key=lambda s: s[0].first)
    ref, ref_x, ref_y, ref_path = shards[0]
    for header, x_shape, y_shape, p in shards[1:]:
        diff = header.differences(ref, ignore=("first", "count"))
        if x_shape != ref_x or y_shape != ref_y:
            diff.append(f"sample shapes: {x_shape}, {y_shape} != {ref_x}, {ref_y}")
        if diff:
            raise InvalidInputError(
                f"{p} and {ref_path} are not shards of one dataset: " + "; ".join(diff)
            )
    expected = 0
    for header, _, _, p in shards:
        if header.first != expected:
            what = "overlaps the previous shard" if header.first < expected else "leaves a gap"
            raise InvalidInputError(
                f"{p} holds samples {header.first}..{header.first + header.count - 1}, which "
                f"{what} (expected the next shard to start at sample {expected})"
            )
        expected += header.count
    if expected != ref.samples:
        raise InvalidInputError(
            f"the shards hold samples 0..{expected - 1} but the dataset has {ref.samples}; "
            "a shard is missing"
        )
    return shards
