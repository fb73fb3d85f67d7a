"""Dataset generation: resumable, shardable HDF5 output of a registered sample function.

The driver behind ``neurosolve generate``: it runs a sample function of the registry
(:mod:`neurosolve.data.generators`) chunk by chunk and writes the results with
:mod:`neurosolve.data.store`. Sample ``i`` of a dataset with seed ``s`` is computed from
``numpy.random.default_rng([s, i])`` and nothing else, so

- two runs with one seed write byte-identical files (see :mod:`neurosolve.data.store`);
- any sample or range of samples can be regenerated alone (:func:`generate_samples`);
- ``generate(..., shard=(i, n))`` writes shard ``i`` of ``n`` and
  :func:`neurosolve.data.store.merge` joins the shards into the file one process writes;
- an interrupted :func:`generate` leaves ``<out>.part`` with a ``completed`` count, and
  calling it again with the same arguments continues from there to the same final file.

Samples are computed ``chunk`` at a time (one call of the sample function), so batched
generators (the Navier-Stokes simulator) run many trajectories together. Batches always
start at global multiples of ``chunk``, in a single run, in every shard and after a resume,
so even a generator whose floating-point result depends on the batch composition gives
identical files; ``chunk`` is recorded in the file and must match to resume or merge.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurosolve._util.io import check_output, exclusive_lock, no_space
from neurosolve._util.limits import check_disk, check_memory
from neurosolve._util.progress import progress_bar
from neurosolve._util.validate import integer
from neurosolve._version import __version__
from neurosolve.data.generators import GeneratorSpec, get_generator
from neurosolve.errors import FileFormatError, InvalidInputError, NeurosolveError

__all__ = ["generate", "generate_samples", "parse_shard", "shard_range"]

logger = logging.getLogger(__name__)


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """Parse a shard spec ``"i/n"`` (0-based ``i``, like a process rank).

    Examples
    --------
    >>> parse_shard("1/4")
    (1, 4)
    >>> parse_shard(None) is None
    True
    """
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.split("/")
        try:
            i, n = (int(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            i = n = None
        if i is None:
            raise InvalidInputError(f"shard must look like i/n (e.g. 0/4), got {text!r}")
    else:
        try:
            i, n = (int(v) for v in text)
        except (TypeError, ValueError):
            raise InvalidInputError(f"shard must be a pair (i, n), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InvalidInputError(f"shard i/n needs n >= 1 and 0 <= i < n, got {i}/{n}")
    return i, n


def shard_range(samples: int, shard: tuple[int, int] | None, chunk: int) -> tuple[int, int]:
    """Global sample range ``(start, stop)`` of a shard.

    Shards are cut at chunk boundaries (so batches are the same as in a single run) and
    differ in size by at most one chunk.

    Examples
    --------
    >>> [shard_range(10, (i, 3), 2) for i in range(3)]
    [(0, 2), (2, 6), (6, 10)]
    """
    if shard is None:
        return 0, samples
    i, n = shard
    chunks = -(-samples // chunk)
    if n > chunks:
        raise InvalidInputError(
            f"{n} shards for {samples} samples in {chunks} chunks of {chunk}: shard {i} would "
            "be empty; use fewer shards or a smaller chunk"
        )
    return min(samples, i * chunks // n * chunk), min(samples, (i + 1) * chunks // n * chunk)


def _compute(
    spec: GeneratorSpec,
    params: dict[str, Any],
    seed: int,
    start: int,
    stop: int,
    dtype: str,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the sample function on samples ``start .. stop`` and validate its output."""
    rngs = [np.random.default_rng([seed, i]) for i in range(start, stop)]
    extra = {"device": device} if device is not None else {}
    try:
        out = spec(rngs, **spec.call_params(params), **extra)
    except NeurosolveError:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"generator {spec.name!r} rejected its parameters {params}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, tuple) or len(out) != 2:
        raise InvalidInputError(f"generator {spec.name!r} must return a pair (x, y)")
    arrays = []
    for name, a in zip("xy", out, strict=True):
        if hasattr(a, "detach"):  # a torch tensor, possibly on a GPU
            a = a.detach().cpu().numpy()
        a = np.asarray(a)
        if a.ndim < 2 or a.shape[0] != stop - start:
            raise InvalidInputError(
                f"generator {spec.name!r} returned {name} of shape {a.shape}; expected "
                f"({stop - start}, C, ...)"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            a = a.astype(dtype, copy=False)  # overflow to inf is caught just below
        if not np.isfinite(a).all():
            raise InvalidInputError(
                f"generator {spec.name!r} produced NaN/Inf in {name} for samples "
                f"{start}..{stop - 1} (or values beyond the {dtype} range; parameters "
                f"{params}); an unstable setting?"
            )
        arrays.append(np.ascontiguousarray(a))
    return arrays[0], arrays[1]


def _check_device(spec: GeneratorSpec, device: str | None) -> None:
    if device is not None and not spec.takes("device"):
        raise InvalidInputError(f"generator {spec.name!r} does not take a device")


def _check_common(samples: Any, seed: Any, chunk: Any, dtype: Any) -> None:
    integer(samples, "samples")
    # stored as an int64 attribute: a larger seed would fail after the .part was created
    integer(seed, "seed", minimum=0, maximum=2**63 - 1)
    integer(chunk, "chunk")
    from neurosolve.data.store import DTYPES

    if dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


#: Parameters that set a grid size, and a generous bound on the work arrays per cell
#: (coefficients, matrix, hierarchy, Krylov vectors; float64) while one sample is computed.
_GRID_PARAMS = ("resolution", "sim_resolution")
_BYTES_PER_CELL = 16 * 8


def _check_work_memory(spec: GeneratorSpec, params: Mapping[str, Any], chunk: int) -> None:
    """Refuse a grid whose samples could not be computed in memory, before computing."""
    sizes = [params[k] for k in _GRID_PARAMS if isinstance(params.get(k), int)]
    if not sizes:
        return
    dim = params.get("dim", 2)
    dim = dim if isinstance(dim, int) and 1 <= dim <= 3 else 2
    cells = float(max(sizes)) ** dim
    check_memory(
        chunk * cells * _BYTES_PER_CELL,
        f"generator {spec.name!r} at resolution {max(sizes)} ({dim}-D, {chunk} samples per chunk)",
    )


def _check_disk_space(path: Path, count: int, x: np.ndarray, y: np.ndarray) -> None:
    """Refuse a dataset the destination's free disk cannot hold, before creating it."""
    per_sample = (x[0].nbytes + y[0].nbytes + 8) if len(x) else 0
    check_disk(path, float(count) * per_sample, f"{count} samples of {per_sample} bytes")


def generate_samples(
    generator: str,
    indices: Sequence[int],
    *,
    seed: int,
    params: Mapping[str, Any] | None = None,
    chunk: int | None = None,
    dtype: str = "float32",
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute chosen samples of a dataset without writing a file.

    ``generate_samples(g, [i], seed=s, params=p)`` equals sample ``i`` of
    ``generate(g, ..., seed=s, params=p)`` (for generators whose result does not depend on
    the batch composition; all built-in ones are written that way).

    Parameters
    ----------
    generator : str
        Registered generator name.
    indices : sequence of int
        Global sample indices (any order, repeats allowed).
    seed : int
        Dataset seed.
    params : mapping, optional
        Generator parameters.
    chunk : int, optional
        Samples per call (default: the generator's).
    dtype : {"float32", "float64"}
        Output dtype.
    device : str, optional
        Device for generators that take one (Navier-Stokes), e.g. ``"cuda"``.

    Returns
    -------
    x, y : numpy.ndarray
        ``(len(indices), C, *spatial)``.

    Examples
    --------
    >>> x, y = generate_samples("poisson", [3], seed=0, params={"resolution": 8})
    >>> x.shape, y.shape
    ((1, 2, 8, 8), (1, 1, 8, 8))
    """
    spec = get_generator(generator)
    chunk = spec.chunk if chunk is None else chunk
    _check_common(1, seed, chunk, dtype)
    idx = [int(i) for i in indices]
    if not idx or min(idx) < 0:
        raise InvalidInputError(f"indices must be a non-empty list of non-negative ints: {idx}")
    resolved = spec.resolve(params)
    _check_device(spec, device)
    _check_work_memory(spec, resolved, chunk)
    # Consecutive ascending indices are computed together, at most `chunk` per call.
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][-1] + 1 and len(runs[-1]) < chunk:
            runs[-1].append(i)
        else:
            runs.append([i])
    xs, ys = [], []
    for run in runs:
        x, y = _compute(spec, resolved, seed, run[0], run[-1] + 1, dtype, device)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def generate(
    generator: str,
    path: str | os.PathLike,
    *,
    samples: int,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    shard: str | tuple[int, int] | None = None,
    chunk: int | None = None,
    progress: bool = True,
    dtype: str = "float32",
    overwrite: bool = False,
    device: str | None = None,
) -> Path:
    """Generate a dataset file (atomic, resumable, shardable).

    Parameters
    ----------
    generator : str
        Registered generator name (``"poisson"``, ``"darcy"``, ``"navier-stokes"``, ...).
    path : path
        Output file. It appears only when complete; meanwhile the data goes to
        ``<path>.part``.
    samples : int
        Size of the full dataset.
    seed : int, default 0
        Sample ``i`` draws from ``numpy.random.default_rng([seed, i])``.
    params : mapping, optional
        Generator parameters (see the sample function); stored in full, defaults included.
    shard : "i/n" or (i, n), optional
        Write only shard ``i`` (0-based) of ``n``: a contiguous run of samples, cut at chunk
        boundaries; join the shards with :func:`neurosolve.data.store.merge`.
    chunk : int, optional
        Samples per call of the sample function (default: the generator's). Recorded in the
        file; resuming and merging need the same value.
    progress : bool, default True
        Show a tqdm bar (only when stderr is a terminal).
    dtype : {"float32", "float64"}
        Storage dtype.
    overwrite : bool, default False
        Replace an existing ``path``. Without it an existing complete file from the same
        arguments is kept (nothing to do) and any other existing file is an error.
    device : str, optional
        Device for generators that take one (Navier-Stokes). Not recorded: results are
        bitwise reproducible on CPU; resuming or merging runs made on different devices
        mixes their (slightly different) floating-point results.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidInputError
        Bad sizes, seed, dtype, shard or parameters (nothing is written then), an existing
        output, or a ``.part`` file left by a run with different arguments.
    UnknownNameError
        Unknown generator name.
    FileFormatError
        A ``.part`` file that is not a neurosolve dataset.

    Notes
    -----
    If the run is interrupted (an exception, Ctrl-C, a killed process), ``<path>.part``
    keeps every finished chunk and a ``completed`` count. Calling :func:`generate` again
    with the same arguments continues from there and produces the same bytes as an
    uninterrupted run. A ``.part`` file that HDF5 cannot open any more (the process was
    killed in the middle of a metadata write) is discarded with a warning and the run
    starts over.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> a = generate("poisson", tmp / "a.h5", samples=3, seed=7, params={"resolution": 8},
    ...              progress=False)
    >>> b = generate("poisson", tmp / "b.h5", samples=3, seed=7, params={"resolution": 8},
    ...              progress=False)
    >>> a.read_bytes() == b.read_bytes()
    True
    """
    from neurosolve.data import store

    spec = get_generator(generator)
    chunk = spec.chunk if chunk is None else chunk
    _check_common(samples, seed, chunk, dtype)
    shard = parse_shard(shard)
    resolved = spec.resolve(params)
    _check_device(spec, device)
    start, stop = shard_range(samples, shard, chunk)
    _check_work_memory(spec, resolved, chunk)
    path = Path(path)
    # a folder, a device, a FIFO or a missing folder is refused; an existing file is
    # handled below (kept when complete, replaced only with overwrite)
    check_output(path, overwrite=True)
    if path.is_symlink():  # written through: the link's target is replaced, the link stays
        path = Path(os.path.realpath(path))
    header = store.DatasetHeader(
        generator=spec.name,
        params=store.canonical_json(resolved),
        seed=int(seed),
        samples=int(samples),
        first=start,
        count=stop - start,
        chunk=int(chunk),
        dtype=dtype,
        version=__version__,
    )
    if path.exists() and not overwrite:
        _check_existing(path, header)
        logger.info("%s is already complete; nothing to do", path)
        return path
    part = store.part_path(path)
    with exclusive_lock(path):
        completed = _resume_point(part, header, overwrite)
        job = _Job(spec, resolved, header, start, stop, dtype, device)
        try:
            _fill(job, part, completed, progress)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # the finished chunks stay in .part: rerun resumes
                raise no_space(part) from exc
            raise
        os.replace(part, path)
    logger.info("wrote %s: %d samples of %s", path, stop - start, spec.name)
    return path


@dataclass(frozen=True)
class _Job:
    """What :func:`_fill` computes: the generator, its parameters and the sample range."""

    spec: GeneratorSpec
    params: dict[str, Any]
    header: Any
    start: int
    stop: int
    dtype: str
    device: str | None


def _fill(job: _Job, part: Path, completed: int, progress: bool) -> None:
    """Compute samples ``completed ..`` of ``job`` into ``part`` (created when new)."""
    from neurosolve.data import store

    start, stop, chunk = job.start, job.stop, job.header.chunk

    def compute(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        return _compute(job.spec, job.params, job.header.seed, a, b, job.dtype, job.device)

    bar = progress_bar(
        total=stop - start,
        initial=completed,
        enabled=progress,
        lines=True,
        desc=job.spec.name,
        unit="sample",
        leave=False,
    )
    with bar:
        first = None
        if completed == 0:
            # Compute the first chunk before creating anything, so parameters the sample
            # function rejects (or a dataset the disk cannot hold) leave no file behind.
            first = compute(start, min(stop, start + chunk))
            _check_disk_space(part, stop - start, *first)
            part.unlink(missing_ok=True)
            store.create_file(part, job.header, first[0].shape[1:], first[1].shape[1:])
        with store.Writer(part) as writer:
            if first is not None:
                writer.write(0, *first)
                completed = len(first[0])
                bar.update(completed)
            for a, b in store.iter_blocks(start + completed, stop, chunk):
                x, y = compute(a, b)
                writer.write(a - start, x, y)
                bar.update(b - a)
            writer.close(sync=True)


def _check_existing(path: Path, header) -> None:
    from neurosolve.data import store

    try:
        existing, completed, _, _ = store.read_header(path)
    except FileFormatError as exc:
        raise InvalidInputError(
            f"{path} exists and is not a dataset from these arguments ({exc}); "
            "pass overwrite=True (--overwrite) to replace it"
        ) from None
    diff = existing.differences(header)
    if diff or completed != existing.count:
        raise InvalidInputError(
            f"{path} exists and differs ({'; '.join(diff) or 'incomplete'}); pass "
            "overwrite=True (--overwrite) to replace it"
        )


def _resume_point(part: Path, header, overwrite: bool) -> int:
    """Samples already done in ``part`` for this header (0 when starting afresh)."""
    from neurosolve.data import store

    if not part.exists():
        return 0
    try:
        existing, completed, _, _ = store.read_header(part)
    except store.FileInUseError:
        raise
    except FileFormatError as exc:
        if isinstance(exc, store.ForeignFileError) and not overwrite:
            raise FileFormatError(
                f"{part} is in the way and is not a partial neurosolve dataset; remove it"
            ) from None
        logger.warning("discarding unreadable partial file %s (%s); starting over", part, exc)
        part.unlink()
        return 0
    diff = existing.differences(header)
    if diff:
        if overwrite:
            logger.warning("discarding partial file %s from other arguments", part)
            part.unlink()
            return 0
        raise InvalidInputError(
            f"{part} holds an interrupted run with other arguments ({'; '.join(diff)}); "
            "rerun that command to finish it, or delete the file (or pass overwrite=True / "
            "--overwrite) to start this one"
        )
    if completed % header.chunk and completed != header.count:
        # Writes happen a whole chunk at a time; anything else means damage.
        logger.warning("partial file %s has an odd completed count; starting over", part)
        part.unlink()
        return 0
    logger.info("resuming %s at sample %d of %d", part, completed, header.count)
    return completed
