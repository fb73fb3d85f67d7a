"""HDF5 dataset storage and generation: determinism, resume, shards, bad input."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from neurosolve.data import store
from neurosolve.data.generate import generate, generate_samples, parse_shard, shard_range
from neurosolve.data.generators import GENERATORS, get_generator, register_generator
from neurosolve.errors import FileFormatError, InvalidInputError, UnknownNameError


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C in the middle of a run."""


# Samples the toy generator may still compute before it "crashes" (None: never).
BUDGET: dict[str, int | None] = {"left": None}
CALLS: list[int] = []


def toy_samples(rngs, *, resolution=4, scale=1.0, shift=0.0, progress=False):
    """x: noise (2, R, R); y: its cumulative sum along the last axis (1, R, R)."""
    if BUDGET["left"] is not None:
        BUDGET["left"] -= len(rngs)
        if BUDGET["left"] < 0:
            raise Interrupted
    if scale == 0:
        raise ValueError("scale must be non-zero")
    CALLS.append(len(rngs))
    x = np.stack([scale * r.standard_normal((2, resolution, resolution)) + shift for r in rngs])
    y = np.cumsum(x[:, :1], axis=-1)
    if shift == 1e300:
        y = np.full_like(y, 1e300)  # finite in float64, inf in float32
    return x, y


@pytest.fixture(autouse=True)
def toy():
    BUDGET["left"] = None
    CALLS.clear()
    spec = register_generator("toy", toy_samples, chunk=3, positive=("resolution",), replace=True)
    yield spec
    GENERATORS.pop("toy", None)
    BUDGET["left"] = None


def make(tmp_path, name="d.h5", **kw):
    args = dict(samples=10, seed=5, params={"resolution": 4}, progress=False)
    args.update(kw)
    return generate("toy", tmp_path / name, **args)


def no_files(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = make(tmp_path, "a.h5").read_bytes()
    b = make(tmp_path, "b.h5").read_bytes()
    c = make(tmp_path, "c.h5", seed=6).read_bytes()
    assert a == b
    assert a != c
    assert len(a) == len(c)  # same layout, other data


def test_int_and_float_spellings_are_one_parameter(tmp_path):
    a = make(tmp_path, "a.h5", params={"scale": 2})
    b = make(tmp_path, "b.h5", params={"scale": 2.0, "resolution": 4})
    assert a.read_bytes() == b.read_bytes()
    assert store.read_info(a)["params"]["scale"] == 2.0


def test_chunk_size_changes_no_sample(tmp_path):
    x3, y3 = store.read_arrays(make(tmp_path, "a.h5", chunk=3))
    x4, y4 = store.read_arrays(make(tmp_path, "b.h5", chunk=4))
    np.testing.assert_array_equal(x3, x4)
    np.testing.assert_array_equal(y3, y4)
    assert CALLS == [3, 3, 3, 1, 4, 4, 2]  # batches start at global multiples of chunk


@pytest.mark.parametrize("i", [0, 4, 9])
def test_sample_alone_equals_sample_of_full_run(tmp_path, i):
    x, y = store.read_arrays(make(tmp_path))
    xi, yi = generate_samples("toy", [i], seed=5, params={"resolution": 4})
    np.testing.assert_array_equal(xi[0], x[i])
    np.testing.assert_array_equal(yi[0], y[i])
    # and it is the documented per-sample stream
    expected = np.random.default_rng([5, i]).standard_normal((2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(x[i], expected)


def test_generate_samples_any_order(tmp_path):
    x, _ = store.read_arrays(make(tmp_path))
    xs, _ = generate_samples("toy", [7, 2, 3, 4, 9], seed=5, params={"resolution": 4})
    np.testing.assert_array_equal(xs, x[[7, 2, 3, 4, 9]])


def test_file_layout_and_info(tmp_path):
    path = make(tmp_path, dtype="float64")
    info = store.read_info(path, stats=True)
    assert info["generator"] == "toy"
    assert info["params"] == {"resolution": 4, "scale": 1.0, "shift": 0.0}  # defaults recorded
    assert (info["seed"], info["samples"], info["first"], info["count"]) == (5, 10, 0, 10)
    assert info["complete"] and info["completed"] == 10 and info["chunk"] == 3
    assert info["x_shape"] == (10, 2, 4, 4) and info["y_shape"] == (10, 1, 4, 4)
    assert info["dtype"] == "float64"
    x, y = store.read_arrays(path)
    assert info["x_stats"]["min"] == x.min() and info["y_stats"]["max"] == y.max()
    assert info["x_stats"]["mean"] == pytest.approx(x.mean(), rel=1e-12)
    with h5py.File(path) as f:
        assert f.attrs["format"] == store.FORMAT
        assert f["x"].chunks == (1, 2, 4, 4)
        assert f["crc32"].shape == (10, 2)


# -- atomic writes and resume -------------------------------------------------------------------


@pytest.mark.parametrize("budget", [3, 4, 7, 9])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, budget):
    reference = make(tmp_path, "ref.h5").read_bytes()
    BUDGET["left"] = budget
    with pytest.raises(Interrupted):
        make(tmp_path)
    assert not (tmp_path / "d.h5").exists()
    part = store.part_path(tmp_path / "d.h5")
    _, completed, _, _ = store.read_header(part)
    assert completed == budget // 3 * 3  # whole chunks only
    BUDGET["left"] = None
    CALLS.clear()
    path = make(tmp_path)
    assert sum(CALLS) == 10 - completed  # continued, did not start over
    assert path.read_bytes() == reference
    assert not part.exists()


def test_interrupted_first_chunk_leaves_no_file(tmp_path):
    BUDGET["left"] = 2
    with pytest.raises(Interrupted):
        make(tmp_path)
    assert no_files(tmp_path) == []


def test_resume_with_other_arguments_is_refused(tmp_path):
    BUDGET["left"] = 5
    with pytest.raises(Interrupted):
        make(tmp_path)
    BUDGET["left"] = None
    part = store.part_path(tmp_path / "d.h5")
    before = part.read_bytes()
    for kw in ({"seed": 6}, {"params": {"resolution": 4, "scale": 2.0}}, {"chunk": 2}):
        with pytest.raises(InvalidInputError, match="interrupted run with other arguments"):
            make(tmp_path, **kw)
    assert part.read_bytes() == before
    assert not (tmp_path / "d.h5").exists()
    # --overwrite starts the new run and discards the old partial file
    path = make(tmp_path, seed=6, overwrite=True)
    assert store.read_info(path)["seed"] == 6 and not part.exists()


def test_unreadable_partial_file_is_restarted(tmp_path):
    reference = make(tmp_path, "ref.h5").read_bytes()
    part = store.part_path(tmp_path / "d.h5")
    part.write_bytes(reference[:300])  # what a kill during a metadata write can leave
    assert make(tmp_path).read_bytes() == reference


def test_foreign_partial_file_is_not_deleted(tmp_path):
    part = store.part_path(tmp_path / "d.h5")
    with h5py.File(part, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(FileFormatError, match="in the way"):
        make(tmp_path)
    assert part.exists()


def test_existing_output(tmp_path):
    path = make(tmp_path)
    before = path.read_bytes()
    CALLS.clear()
    assert make(tmp_path) == path  # same arguments, complete: nothing to do
    assert CALLS == [] and path.read_bytes() == before
    with pytest.raises(InvalidInputError, match="exists and differs"):
        make(tmp_path, seed=1)
    assert path.read_bytes() == before
    make(tmp_path, seed=1, overwrite=True)
    assert store.read_info(path)["seed"] == 1


# -- shards -----------------------------------------------------------------------------------


def test_shard_ranges_cover_everything_at_chunk_boundaries():
    for samples in (1, 7, 10, 31):
        for chunk in (1, 3, 8):
            chunks = -(-samples // chunk)
            for n in range(1, min(chunks, 5) + 1):
                ranges = [shard_range(samples, (i, n), chunk) for i in range(n)]
                assert ranges[0][0] == 0 and ranges[-1][1] == samples
                for (a, b), (c, _) in zip(ranges, ranges[1:], strict=False):
                    assert b == c and a < b and a % chunk == 0
    with pytest.raises(InvalidInputError, match="would be empty"):
        shard_range(4, (0, 3), 2)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_shards_merge_to_the_single_run_file(tmp_path, n):
    single = make(tmp_path, "single.h5").read_bytes()
    shards = [make(tmp_path, f"s{i}.h5", shard=f"{i}/{n}") for i in range(n)]
    infos = [store.read_info(p) for p in shards]
    assert sum(i["count"] for i in infos) == 10
    merged = store.merge(shards[::-1], tmp_path / "merged.h5", progress=False)
    assert merged.read_bytes() == single


def test_merge_rejects_bad_shard_sets(tmp_path):
    s = [make(tmp_path, f"s{i}.h5", shard=(i, 3)) for i in range(3)]
    other = make(tmp_path, "o1.h5", shard=(1, 3), seed=9)
    out = tmp_path / "out.h5"
    cases = {
        "a shard is missing": [s[0], s[1]],
        "leaves a gap": [s[0], s[2]],
        "overlaps": [s[0], s[1], s[1], s[2]],
        "not shards of one dataset": [s[0], other, s[2]],
    }
    for message, paths in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            store.merge(paths, out, progress=False)
        assert not out.exists() and not store.part_path(out).exists()
    with pytest.raises(InvalidInputError, match="at least one"):
        store.merge([], out)
    with pytest.raises(FileFormatError, match="no such file"):
        store.merge([s[0], tmp_path / "nope.h5"], out)
    store.merge(s, out, progress=False)
    with pytest.raises(InvalidInputError, match="exists"):
        store.merge(s, out, progress=False)


def test_merge_rejects_incomplete_shard(tmp_path):
    BUDGET["left"] = 3
    with pytest.raises(Interrupted):
        make(tmp_path, "s1.h5", shard=(1, 2))
    BUDGET["left"] = None
    s0 = make(tmp_path, "s0.h5", shard=(0, 2))
    part = store.part_path(tmp_path / "s1.h5")
    with pytest.raises(FileFormatError, match="incomplete"):
        store.merge([s0, part], tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("text", ["1", "a/b", "2/2", "-1/3", "0/0", "1/2/3"])
def test_bad_shard_spec(text):
    with pytest.raises(InvalidInputError, match="shard"):
        parse_shard(text)


# -- bad input: a clear error and no file ------------------------------------------------------

BAD_INPUTS = {
    "negative-samples": (dict(samples=-3), InvalidInputError, "samples must be >= 1"),
    "zero-samples": (dict(samples=0), InvalidInputError, "samples must be >= 1"),
    "float-samples": (dict(samples=2.5), InvalidInputError, "samples must be an integer"),
    "negative-seed": (dict(seed=-1), InvalidInputError, "seed must be >= 0"),
    "negative-resolution": (
        dict(params={"resolution": -4}),
        InvalidInputError,
        "'resolution' of generator 'toy' must be positive",
    ),
    "nan-parameter": (dict(params={"scale": float("nan")}), InvalidInputError, "finite"),
    "inf-parameter": (dict(params={"shift": float("inf")}), InvalidInputError, "finite"),
    "unknown-parameter": (dict(params={"sclae": 1.0}), InvalidInputError, "unknown parameter"),
    "object-parameter": (dict(params={"scale": object()}), InvalidInputError, "must be a"),
    "runtime-parameter": (dict(params={"progress": True}), InvalidInputError, "data"),
    "rejected-by-generator": (dict(params={"scale": 0}), InvalidInputError, "rejected"),
    "non-finite-output": (dict(params={"shift": 1e300}), InvalidInputError, "NaN/Inf"),
    "bad-dtype": (dict(dtype="int8"), InvalidInputError, "dtype"),
    "bad-chunk": (dict(chunk=0), InvalidInputError, "chunk"),
    "bad-shard": (dict(shard="3/2"), InvalidInputError, "shard"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_clear_error_and_no_file(tmp_path, case):
    kw, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        make(tmp_path, **kw)
    assert no_files(tmp_path) == []


def test_unknown_generator(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown generator 'nope'; choose one of"):
        generate("nope", tmp_path / "d.h5", samples=2, progress=False)
    with pytest.raises(UnknownNameError):
        get_generator("nope")
    assert no_files(tmp_path) == []


def test_required_parameter_of_a_generator(tmp_path):
    def needs_size(rngs, *, size):
        return np.zeros((len(rngs), 1, size)), np.zeros((len(rngs), 1, size))

    register_generator("needs-size", needs_size, replace=True)
    try:
        with pytest.raises(InvalidInputError, match="needs parameter\\(s\\) 'size'"):
            generate("needs-size", tmp_path / "d.h5", samples=2, progress=False)
        path = generate(
            "needs-size", tmp_path / "d.h5", samples=2, params={"size": 3}, progress=False
        )
        assert store.read_info(path)["x_shape"] == (2, 1, 3)
    finally:
        GENERATORS.pop("needs-size")


def test_missing_output_directory(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        make(tmp_path, "missing/d.h5")


def test_registry_validation():
    with pytest.raises(InvalidInputError, match="already registered"):
        register_generator("toy", toy_samples)
    with pytest.raises(InvalidInputError, match="callable"):
        register_generator("bad", 42)
    spec = register_generator("lazy-missing", "neurosolve.nope:fn", replace=True)
    try:
        with pytest.raises(UnknownNameError, match="not available"):
            spec.load()
    finally:
        GENERATORS.pop("lazy-missing")


# -- reading: clear errors for missing, truncated, corrupted, foreign files ---------------------


def test_missing_file():
    with pytest.raises(FileFormatError, match="no such file"):
        store.read_info("/nonexistent/d.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "d.h5"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(FileFormatError, match="cannot be opened as HDF5"):
        store.read_info(path)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.02])
def test_truncated_file(tmp_path, keep):
    data = make(tmp_path).read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(FileFormatError, match="truncated"):
        store.H5Dataset(path)


def test_corrupted_sample_data(tmp_path):
    path = make(tmp_path)
    with h5py.File(path) as f:
        offset = f["y"].id.get_chunk_info(6).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 8 : offset + 16] = bytes(b ^ 0xFF for b in raw[offset + 8 : offset + 16])
    path.write_bytes(bytes(raw))
    ds = store.H5Dataset(path)  # the header is intact
    ds[5]
    with pytest.raises(FileFormatError, match="sample 6 of 'y' is corrupted"):
        ds[6]
    with pytest.raises(FileFormatError, match="corrupted"):
        store.read_info(path, stats=True)


def test_corrupted_metadata(tmp_path):
    path = make(tmp_path)
    raw = bytearray(path.read_bytes())
    with h5py.File(path) as f:
        first_chunk = min(f[n].id.get_chunk_info(0).byte_offset for n in "xy")
    # flip bytes in the object headers between the superblock and the data
    for k in range(100, first_chunk, 97):
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError):
        store.read_info(path, stats=True)


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((2, 1, 3))
        f["y"] = np.zeros((2, 1, 3))
    with pytest.raises(FileFormatError, match="not a neurosolve dataset"):
        store.read_info(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = store.FORMAT
        f.attrs["format_version"] = 99
    with pytest.raises(FileFormatError, match="format version 99"):
        store.read_info(path)


@pytest.mark.parametrize(
    "attr, value, message",
    [
        ("params", "{not json", "malformed attributes"),
        ("samples", np.int64(3), "inconsistent attributes"),
        ("completed", np.int64(11), "inconsistent layout"),
    ],
)
def test_damaged_attributes(tmp_path, attr, value, message):
    path = make(tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs[attr] = value
    with pytest.raises(FileFormatError, match=message):
        store.read_info(path)


def test_incomplete_file_is_not_a_dataset(tmp_path):
    BUDGET["left"] = 6
    with pytest.raises(Interrupted):
        make(tmp_path)
    part = store.part_path(tmp_path / "d.h5")
    assert store.read_info(part)["completed"] == 6
    with pytest.raises(FileFormatError, match="incomplete dataset"):
        store.H5Dataset(part)
    with pytest.raises(FileFormatError, match="incomplete dataset"):
        store.read_arrays(part)


# -- torch dataset ------------------------------------------------------------------------------


def test_h5dataset_items_match_arrays(tmp_path):
    path = make(tmp_path)
    x, y = store.read_arrays(path)
    ds = store.H5Dataset(path, dtype=torch.float64, indices=[3, 1, 8])
    assert len(ds) == 3 and ds.x_shape == (2, 4, 4) and ds.y_shape == (1, 4, 4)
    assert isinstance(ds, torch.utils.data.Dataset)
    xi, yi = ds[1]
    assert xi.dtype == torch.float64
    np.testing.assert_array_equal(xi.numpy(), x[1])
    np.testing.assert_array_equal(ds[-1][1].numpy(), y[8])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(InvalidInputError, match="outside"):
        store.H5Dataset(path, indices=[10])
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[0][0].numpy(), x[3])
    ds.close()
    np.testing.assert_array_equal(ds[0][0].numpy(), x[3])  # reopens


def test_h5dataset_with_dataloader_workers(tmp_path):
    path = make(tmp_path)
    ds = store.H5Dataset(path)
    ds[0]  # open a handle in this process before the workers fork
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    xb = torch.cat([b[0] for b in loader])
    x, _ = store.read_arrays(path)
    np.testing.assert_array_equal(xb.numpy(), x)
