"""Reading FNO .mat and PDEBench HDF5 files into the package's datasets (neurosolve.data.external).

Small files are written here in each public layout (scipy.io.savemat for MATLAB v5; h5py
with MATLAB's reversed axes and 512-byte header for v7.3; PDEBench's datasets and groups with
h5py), read back and compared exactly with the arrays written; an imported file trains
through the normal trainer; every error names its cause.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from neurosolve.cli import main
from neurosolve.data import external
from neurosolve.data.external import (
    LayoutError,
    NonFiniteDataError,
    describe,
    detect_format,
    import_dataset,
    iter_blocks_of,
    read_fno_mat,
    read_pdebench,
)
from neurosolve.data.store import read_arrays, read_info
from neurosolve.errors import FileFormatError, InvalidInputError

# ------------------------------------------------------------------ file writers


def write_v5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    scipy.io.savemat(path, arrays)
    return path


def write_v73(path: Path, arrays: dict[str, np.ndarray], *, reverse: bool = True) -> Path:
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block holding MATLAB's header.

    MATLAB is column-major, so HDF5 sees every array with its axes reversed (``reverse``
    False writes them unreversed, as a broken writer would).
    """
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in arrays.items():
            value = np.asarray(value)
            f.create_dataset(name, data=value.T if reverse else value)
            f[name].attrs["MATLAB_class"] = np.bytes_("double")
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Dec  2 00:00:00 2026 HDF5"
    header = text.ljust(116, b" ") + bytes(8) + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))
    return path


WRITERS = {"v5": write_v5, "v7.3": write_v73}


def write_h5(path: Path, datasets: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path


@pytest.fixture
def data(rng):
    """Random fields with distinct axis lengths, so any axis mix-up changes shapes."""
    return {
        "coeff": rng.random((5, 9, 9)),
        "sol": rng.standard_normal((5, 9, 9)),
        "a": rng.standard_normal((4, 8, 8)),
        "u": rng.standard_normal((4, 8, 8, 7)),
    }


# ------------------------------------------------------------------ FNO .mat


def test_detect_format(tmp_path, data):
    v5 = write_v5(tmp_path / "d5.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    v73 = write_v73(tmp_path / "d73.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    plain = write_h5(tmp_path / "p.h5", {"tensor": np.zeros((2, 3, 4))})
    assert detect_format(v5) == ("fno-mat", "v5")
    assert detect_format(v73) == ("fno-mat", "v7.3")
    assert detect_format(plain) == ("hdf5", "hdf5")
    assert describe(plain, t_in=1)["format"] == "pdebench"


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("k", [1, 3])
def test_fno_darcy_reads_exactly(tmp_path, data, version, k):
    path = WRITERS[version](tmp_path / "darcy.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    x, y = read_fno_mat(path, subsample=k, dtype="float64")
    np.testing.assert_array_equal(x[:, 0], data["coeff"][:, ::k, ::k])
    np.testing.assert_array_equal(y[:, 0], data["sol"][:, ::k, ::k])
    assert x.shape == (5, 1, len(range(0, 9, k)), len(range(0, 9, k)))


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_fno_navier_stokes_windows(tmp_path, data, version):
    u, a = data["u"], data["a"]
    path = WRITERS[version](tmp_path / "ns.mat", {"a": a, "u": u, "t": np.arange(1.0, 8.0)})
    x, y = read_fno_mat(path, t_in=3, t_out=4, dtype="float64")
    np.testing.assert_array_equal(x, np.moveaxis(u[..., :3], -1, 1))
    np.testing.assert_array_equal(y, np.moveaxis(u[..., 3:7], -1, 1))
    x, y = read_fno_mat(path, t_in=2, t_out=2, initial=True, time_stride=2, dtype="float64")
    trajectory = np.concatenate([a[..., None], u], axis=-1)[..., ::2]  # t = 0, 2, 4, 6
    np.testing.assert_array_equal(x, np.moveaxis(trajectory[..., :2], -1, 1))
    np.testing.assert_array_equal(y, np.moveaxis(trajectory[..., 2:4], -1, 1))
    x, y = read_fno_mat(path, t_in=5, subsample=2, limit=3)  # t_out: the rest
    assert x.shape == (3, 5, 4, 4) and y.shape == (3, 2, 4, 4) and x.dtype == np.float32


def test_v73_without_matlab_header_is_read_as_matreader_does(tmp_path, data):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["coeff"], f["sol"] = data["coeff"].T, data["sol"].T
    x, _ = read_fno_mat(path, dtype="float64")
    np.testing.assert_array_equal(x[:, 0], data["coeff"])


def test_v73_streams_in_blocks(tmp_path, data, monkeypatch):
    path = write_v73(tmp_path / "ns.mat", {"u": data["u"]})
    monkeypatch.setattr(external, "BLOCK_BYTES", 8 * (3 + 4) * 64)  # one sample per block
    blocks = list(iter_blocks_of(path, t_in=3, dtype="float64"))
    assert [start for start, _, _ in blocks] == [0, 1, 2, 3]
    x = np.concatenate([b[1] for b in blocks])
    np.testing.assert_array_equal(x, np.moveaxis(data["u"][..., :3], -1, 1))


def test_v5_memory_check_before_loading(tmp_path, data, monkeypatch):
    path = write_v5(tmp_path / "ns.mat", {"u": data["u"]})
    assert describe(path, t_in=3)["count"] == 4  # the listing alone loads nothing
    monkeypatch.setenv("NEUROSOLVE_MAX_BYTES", "1000")
    with pytest.raises(InvalidInputError, match="'u' of ns.mat .a MATLAB v5 file is read whole"):
        next(iter_blocks_of(path, t_in=3, limit=1))
    v73 = write_v73(tmp_path / "ns73.mat", {"u": data["u"]})
    monkeypatch.setattr(external, "BLOCK_BYTES", 1)  # streamed: a block per sample
    assert [s for s, _, _ in iter_blocks_of(v73, t_in=3)] == [0, 1, 2, 3]


# ------------------------------------------------------------------ PDEBench


def test_pdebench_darcy(tmp_path, rng):
    nu, tensor = rng.random((3, 8, 8)), rng.random((3, 1, 8, 8))
    grid = np.linspace(0, 1, 8)
    path = write_h5(
        tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5",
        {"nu": nu, "tensor": tensor, "x-coordinate": grid, "y-coordinate": grid},
    )
    x, y = read_pdebench(path, subsample=2, dtype="float64")
    np.testing.assert_array_equal(x[:, 0], nu[:, ::2, ::2])
    np.testing.assert_array_equal(y, tensor[:, :, ::2, ::2])
    assert describe(path)["layout"] == "darcy"


def test_pdebench_incompressible_navier_stokes(tmp_path, rng):
    velocity = rng.standard_normal((2, 6, 8, 8, 2))
    force, particles = rng.standard_normal((2, 8, 8, 2)), rng.random((2, 6, 8, 8, 1))
    path = write_h5(
        tmp_path / "ns_incom.h5",
        {"velocity": velocity, "force": force, "particles": particles, "t": np.ones((2, 6))},
    )
    x, y = read_pdebench(path, t_in=2, t_out=3, dtype="float64")
    assert x.shape == (2, 2 * 2 + 2, 8, 8) and y.shape == (2, 3 * 2, 8, 8)
    for t in range(2):
        for c in range(2):  # time-major channels: t * C + c
            np.testing.assert_array_equal(x[:, 2 * t + c], velocity[:, t, ..., c])
    np.testing.assert_array_equal(x[:, 4:], np.moveaxis(force, -1, 1))
    np.testing.assert_array_equal(y[:, 2 * 1 + 1], velocity[:, 3, ..., 1])
    x, _ = read_pdebench(path, t_in=2, fields=["velocity", "particles"], dtype="float64")
    np.testing.assert_array_equal(x[:, 2], particles[:, 0, ..., 0])
    assert x.shape[1] == 2 * 3


def test_pdebench_compressible_fields(tmp_path, rng):
    names = ("density", "pressure", "Vx", "Vy")
    fields = {n: rng.standard_normal((2, 5, 8, 8)) for n in names}
    grid = np.linspace(0, 1, 8)
    path = write_h5(
        tmp_path / "2D_CFD.hdf5", {**fields, "x-coordinate": grid, "y-coordinate": grid}
    )
    x, y = read_pdebench(path, t_in=1, t_out=2, time_stride=2, dtype="float64")
    for c, name in enumerate(names):
        np.testing.assert_array_equal(x[:, c], fields[name][:, 0])
        np.testing.assert_array_equal(y[:, 4 + c], fields[name][:, 4])  # frames 0, 2, 4
    x, _ = read_pdebench(path, t_in=1, fields=["Vy"], dtype="float64")
    np.testing.assert_array_equal(x[:, 0], fields["Vy"][:, 0])


@pytest.mark.parametrize("components", [1, 2])
def test_pdebench_per_sample_groups(tmp_path, rng, components):
    samples = [rng.standard_normal((6, 8, 8, components)) for _ in range(3)]
    path = tmp_path / "2D_rdb_NA_NA.h5"
    with h5py.File(path, "w") as f:
        for i, sample in enumerate(samples):
            f[f"{i:04d}/data"] = sample
            f[f"{i:04d}/grid/x"] = f[f"{i:04d}/grid/y"] = np.linspace(-2.5, 2.5, 8)
            f[f"{i:04d}/grid/t"] = np.linspace(0, 1, 6)
    x, y = read_pdebench(path, t_in=2, dtype="float64")
    stacked = np.stack(samples)
    assert x.shape == (3, 2 * components, 8, 8) and y.shape == (3, 4 * components, 8, 8)
    np.testing.assert_array_equal(x[:, components - 1], stacked[:, 0, ..., components - 1])
    np.testing.assert_array_equal(y[:, -1], stacked[:, 5, ..., -1])


def test_pdebench_1d(tmp_path, rng):
    tensor = rng.standard_normal((3, 9, 16))
    path = write_h5(
        tmp_path / "1D_Advection_Sols_beta0.1.hdf5",
        {"tensor": tensor, "x-coordinate": np.linspace(0, 1, 16), "t-coordinate": np.arange(10)},
    )
    x, y = read_pdebench(path, t_in=3, t_out=6, subsample=2, dtype="float64")
    np.testing.assert_array_equal(x, tensor[:, :3, ::2])
    np.testing.assert_array_equal(y, tensor[:, 3:9, ::2])


def test_pdebench_2d_scalar_series_is_not_darcy(tmp_path, rng):
    tensor = rng.standard_normal((2, 5, 8, 8))
    path = write_h5(tmp_path / "2D_scalar.h5", {"tensor": tensor})
    x, y = read_pdebench(path, t_in=2, dtype="float64")
    np.testing.assert_array_equal(x, tensor[:, :2])
    np.testing.assert_array_equal(y, tensor[:, 2:])
    darcy_without_nu = write_h5(tmp_path / "d.h5", {"tensor": tensor[:, :1]})
    with pytest.raises(LayoutError, match=r"Darcy file: key 'nu' missing \(keys found: 'tensor'"):
        describe(darcy_without_nu)


# ------------------------------------------------------------------ import and train


def test_import_writes_the_same_arrays(tmp_path, data):
    src = write_v73(tmp_path / "ns.mat", {"a": data["a"], "u": data["u"]})
    out = import_dataset(src, tmp_path / "ns.h5", t_in=3, limit=3, progress=False)
    x, y = read_arrays(out)
    xr, yr = read_fno_mat(src, t_in=3, limit=3)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(y, yr)
    info = read_info(out)
    assert info["generator"] == "fno-mat" and info["count"] == 3
    assert info["params"]["layout"] == "navier-stokes"
    assert info["params"]["matlab"] == "v7.3" and info["params"]["samples_in_file"] == 4
    assert (info["params"]["t_in"], info["params"]["t_out"]) == (3, 4)
    again = import_dataset(src, tmp_path / "again.h5", t_in=3, limit=3, progress=False)
    assert again.read_bytes() == out.read_bytes()  # deterministic, like generated files


def test_import_reports_progress_per_block(tmp_path, data, monkeypatch):
    import io

    from neurosolve._util.progress import LineProgress

    buf = io.StringIO()

    def lines(*, enabled, lines, **kwargs):
        assert enabled and lines  # a bar on a terminal, lines elsewhere
        return LineProgress(file=buf, min_interval=0, **kwargs)

    monkeypatch.setattr(external, "progress_bar", lines)
    monkeypatch.setattr(external, "BLOCK_BYTES", 8 * 2 * 81 * 2)  # two samples per block
    src = write_v73(tmp_path / "darcy.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    import_dataset(src, tmp_path / "d.h5")
    shown = [line.split(" (")[0] for line in buf.getvalue().splitlines()]
    assert shown == [f"neurosolve: import: {n}/5 sample" for n in (2, 4, 5)]
    assert read_info(tmp_path / "d.h5")["chunk"] == 2


def test_cli_import_and_inspect(tmp_path, data, capsys):
    src = write_v5(tmp_path / "darcy.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    out = tmp_path / "darcy.h5"
    assert main(["datasets", "inspect", str(src), "--subsample", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["x_shape"] == [5, 1, 5, 5] and shown["container"] == "v5"
    assert main(["datasets", "inspect", str(src)]) == 0
    text = capsys.readouterr().out
    assert "fno-mat darcy data, MATLAB v5" in text and "x          (5, 1, 9, 9)" in text
    argv = ["datasets", "import", str(src), "--out", str(out), "--subsample", "2"]
    assert main([*argv, "--limit", "4"]) == 0
    assert "wrote" in capsys.readouterr().out and read_info(out)["x_shape"] == (4, 1, 5, 5)
    assert main(argv) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "-q"]) == 0 and read_info(out)["count"] == 5


def test_imported_file_trains_through_the_normal_trainer(tmp_path, rng):
    coeff = rng.random((8, 16, 16))
    src = write_v73(tmp_path / "darcy.mat", {"coeff": coeff, "sol": coeff**2})
    data_file = import_dataset(src, tmp_path / "darcy.h5", progress=False)
    run = tmp_path / "run"
    argv = ["train", "fno", "--data", str(data_file), "--out", str(run), "--epochs", "1"]
    argv += ["--batch-size", "4", "--modes", "4", "--width", "8", "--layers", "1", "-q"]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and np.isfinite(metrics["epochs"][0]["val_l2"])


def test_imported_time_series_trains_the_space_time_model(tmp_path, data):
    src = write_v5(tmp_path / "ns.mat", {"a": data["a"], "u": data["u"]})
    data_file = import_dataset(src, tmp_path / "ns.h5", t_in=3, progress=False)
    run = tmp_path / "run"
    argv = ["train", "fno3d", "--data", str(data_file), "--out", str(run), "--epochs", "1"]
    argv += ["--batch-size", "2", "--modes", "2", "2", "2", "--width", "4", "--layers", "1"]
    assert main([*argv, "-q"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 1


# ------------------------------------------------------------------ errors


def test_missing_keys_list_the_keys_found(tmp_path, data):
    only = write_v5(tmp_path / "c.mat", {"coeff": data["coeff"], "extra": np.ones(3)})
    with pytest.raises(LayoutError, match=r"'sol' missing \(keys found: 'coeff', 'extra'\)"):
        read_fno_mat(only)
    other = write_v73(tmp_path / "o.mat", {"w": data["u"]})
    with pytest.raises(LayoutError, match=r"neither 'coeff'\+'sol'.*found: 'w'"):
        describe(other)
    with pytest.raises(LayoutError, match=r"'u' missing \(keys found: 'w'\)"):
        describe(other, kind="navier-stokes")
    foreign = write_h5(tmp_path / "f.h5", {"pressure_field": np.ones((2, 3))})
    with pytest.raises(LayoutError, match=r"not a PDEBench file.*found: 'pressure_field'"):
        read_pdebench(foreign)
    cfd = write_h5(tmp_path / "cfd.h5", {"density": np.ones((2, 3, 4))})
    with pytest.raises(LayoutError, match=r"'Vx' missing \(keys found: 'density'\)"):
        read_pdebench(cfd, t_in=1, fields=["density", "Vx"])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"coeff": np.ones((2, 8, 6)), "sol": np.ones((2, 8, 6))}, "8 x 6 is not square"),
        ({"coeff": np.ones((2, 8, 8)), "sol": np.ones((2, 8, 7))}, r"'sol' has shape"),
        ({"coeff": np.ones((2, 64)), "sol": np.ones((2, 64))}, r"expected \(N, s, s\)"),
        ({"u": np.ones((2, 8, 8))}, r"expected \(N, s, s, T\)"),
        ({"a": np.ones((2, 8, 4)), "u": np.ones((2, 8, 8, 12))}, "the initial state of 'u'"),
        ({"u": np.ones((2, 8, 8, 12)), "t": np.ones(5)}, "12 times, one per frame"),
    ],
    ids=["non-square", "sol-shape", "flat", "u-3d", "a-shape", "t-length"],
)
def test_wrong_shapes(tmp_path, arrays, message):
    path = write_v5(tmp_path / "bad.mat", arrays)
    with pytest.raises(LayoutError, match=message):
        describe(path)


def test_v73_written_without_reversing_the_axes_is_caught(tmp_path, data):
    path = write_v73(
        tmp_path / "r.mat", {"coeff": data["coeff"], "sol": data["sol"]}, reverse=False
    )
    with pytest.raises(LayoutError, match="after reversing the HDF5 axes"):
        describe(path)


def test_pdebench_wrong_shapes(tmp_path):
    darcy = write_h5(tmp_path / "d.h5", {"nu": np.ones((2, 8, 8)), "tensor": np.ones((2, 2, 8, 8))})
    with pytest.raises(LayoutError, match=r"'tensor' has shape \(2, 2, 8, 8\), expected \(2, 1"):
        describe(darcy)
    coords = write_h5(
        tmp_path / "c.h5", {"tensor": np.ones((2, 4, 16)), "x-coordinate": np.ones(15)}
    )
    with pytest.raises(LayoutError, match="'x-coordinate' has 15 points but the data have 16"):
        describe(coords, t_in=1)
    cfd = write_h5(tmp_path / "f.h5", {"density": np.ones((2, 3, 4)), "Vx": np.ones((2, 3, 5))})
    with pytest.raises(LayoutError, match="'Vx' has shape"):
        describe(cfd, t_in=1)


def test_non_finite_samples_are_named_and_nothing_is_written(tmp_path, data):
    coeff = data["coeff"].copy()
    coeff[2, 4, 4] = np.nan
    path = write_v5(tmp_path / "nan.mat", {"coeff": coeff, "sol": data["sol"]})
    out = tmp_path / "out.h5"
    with pytest.raises(NonFiniteDataError, match=r"sample 2 holds NaN or Inf in x \(from 'coeff'"):
        import_dataset(path, out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
    assert read_fno_mat(path, limit=2)[0].shape == (2, 1, 9, 9)  # the samples before it
    sol = data["sol"].copy()
    sol[1, 0, 0] = 1e300
    big = write_v5(tmp_path / "big.mat", {"coeff": data["coeff"], "sol": sol})
    with pytest.raises(NonFiniteDataError, match="sample 1 holds values beyond float32's range"):
        read_fno_mat(big)
    assert read_fno_mat(big, dtype="float64")[1][1, 0, 0, 0] == 1e300


def test_files_of_neither_format(tmp_path, data):
    text = tmp_path / "notes.mat"
    text.write_text("coeff, sol\n1, 2\n")
    with pytest.raises(LayoutError, match=r"neither a MATLAB \.mat file \(v5 or v7\.3\) nor"):
        describe(text)
    v4 = tmp_path / "v4.mat"
    scipy.io.savemat(v4, {"coeff": np.ones((3, 3))}, format="4")
    with pytest.raises(LayoutError, match="neither a MATLAB"):
        describe(v4)
    v5 = write_v5(tmp_path / "d.mat", {"coeff": data["coeff"], "sol": data["sol"]})
    with pytest.raises(LayoutError, match="a MATLAB v5 file, not PDEBench"):
        describe(v5, format="pdebench")
    with pytest.raises(FileFormatError, match="no such file"):
        describe(tmp_path / "missing.mat")


@pytest.mark.parametrize("kind", ["v5", "v5-compressed", "v7.3", "pdebench"])
def test_truncated_files(tmp_path, data, kind):
    arrays = {"coeff": data["coeff"], "sol": data["sol"]}
    path = tmp_path / "cut.mat"
    if kind == "v5-compressed":
        scipy.io.savemat(path, arrays, do_compression=True)
    elif kind == "pdebench":
        write_h5(path, {"nu": data["coeff"], "tensor": data["sol"][:, None]})
    else:
        WRITERS[kind](path, arrays)
    whole = path.read_bytes()
    for cut in (len(whole) // 3, len(whole) - 3):
        path.write_bytes(whole[:cut])
        with pytest.raises(FileFormatError, match="truncated"):
            read_fno_mat(path) if kind != "pdebench" else read_pdebench(path)


def test_bad_options(tmp_path, data):
    ns = write_v5(tmp_path / "ns.mat", {"u": data["u"]})
    with pytest.raises(InvalidInputError, match="7 frames .* do not hold t_in=5 .* t_out=4"):
        describe(ns, t_in=5, t_out=4)
    with pytest.raises(InvalidInputError, match=r"4 kept with time_stride 2\) leave no target"):
        describe(ns, t_in=4, time_stride=2)
    with pytest.raises(InvalidInputError, match="fields apply to PDEBench files only"):
        describe(ns, fields=["u"])
    with pytest.raises(InvalidInputError, match="format must be one of"):
        describe(ns, format="netcdf")
    with pytest.raises(InvalidInputError, match="subsample must be"):
        describe(ns, subsample=0)
    cfd = write_h5(tmp_path / "cfd.h5", {"density": np.ones((2, 3, 4))})
    with pytest.raises(InvalidInputError, match="fields for a PDEBench cfd file are"):
        describe(cfd, t_in=1, fields=["velocity"])
    with pytest.raises(InvalidInputError, match="kind and initial apply to FNO"):
        describe(cfd, t_in=1, kind="darcy")


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = write_h5(tmp_path / "x.h5", {"junk": np.ones(3)})
    assert main(["datasets", "import", str(path), "--out", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurosolve: error:") and "keys found: 'junk'" in err
    assert len(err.splitlines()) == 1
