"""Hostile and careless input that needs more than one command line (issue 14).

The one-command cases (a forged file, a bad option) are rows of ``tests/test_bad_input.py``.
The cases here need a setup around the command: a full disk (a write that raises
``ENOSPC``), a second writer holding the lock, an interrupted run resumed with other data or
other model arguments, a symlink as the output, a file without read permission, a CUDA
``map_location`` on a machine without CUDA, and the structure checks of the API.

The first docstring line of every test reads "case: behaviour"; ``scripts/bad_input_table.py``
prints those lines, with the outcome of each test, as the last table of
``docs/robustness.md``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from neurosolve._util.io import check_output, exclusive_lock
from neurosolve.cli import main
from neurosolve.data import poisson, save_system
from neurosolve.data.io import check_csr_structure, check_spd_matrix, load_system
from neurosolve.errors import FileFormatError, InvalidInputError, NeurosolveError

GENERATE = ["generate", "darcy", "--samples", "3", "--chunk", "1", "--resolution", "8", "-q"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str, text: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("neurosolve: error:"), err
    assert text in lines[0], err
    assert "Traceback" not in err


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def system_file(tmp_path) -> Path:
    return save_system(tmp_path / "A.mtx", poisson((4, 4)).A)


# ------------------------------------------------------------------------------ full disk


def test_solve_enospc(system_file, tmp_path, capsys, monkeypatch):
    """solve --out on a full disk: exit 2, 'no space left on device writing x.npy', no file."""
    monkeypatch.setattr(np, "save", no_space)
    code, _, err = run(["solve", system_file, "--out", tmp_path / "x.npy", "-q"], capsys)
    assert code == 2
    one_error(err, "no space left on device writing")
    assert "x.npy" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.mtx"]


def test_generate_enospc_keeps_a_resumable_part(tmp_path, capsys, monkeypatch):
    """generate on a full disk: exit 2 and one line; the .part resumes to identical bytes."""
    from neurosolve.data.store.writer import Writer

    out = tmp_path / "d.h5"
    real_write, calls = Writer.write, []

    def write(self, *args):
        calls.append(1)
        if len(calls) == 2:  # the second chunk finds the disk full
            no_space()
        return real_write(self, *args)

    monkeypatch.setattr(Writer, "write", write)
    code, _, err = run([*GENERATE, "--out", out], capsys)
    assert code == 2
    one_error(err, "no space left on device writing")
    assert "d.h5.part" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5.part"]  # no .lock left
    monkeypatch.setattr(Writer, "write", real_write)
    assert run([*GENERATE, "--out", out], capsys)[0] == 0
    assert run([*GENERATE, "--out", tmp_path / "fresh.h5"], capsys)[0] == 0
    assert out.read_bytes() == (tmp_path / "fresh.h5").read_bytes()


def test_merge_enospc_leaves_nothing(tmp_path, capsys, monkeypatch):
    """merge on a full disk: exit 2 and one line, no partial or temporary file left."""
    from neurosolve.data.store.writer import Writer

    shards = [tmp_path / f"s{i}.h5" for i in range(2)]
    for i, shard in enumerate(shards):
        assert run([*GENERATE, "--shard", f"{i}/2", "--out", shard], capsys)[0] == 0
    monkeypatch.setattr(Writer, "write", no_space)
    code, _, err = run(["merge", *shards, "--out", tmp_path / "all.h5", "-q"], capsys)
    assert code == 2
    one_error(err, "no space left on device writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.h5", "s1.h5"]


def test_train_enospc(tmp_path, capsys, monkeypatch, darcy_files):
    """train on a full disk (checkpoint write): exit 2 and 'no space left on device'."""
    import neurosolve.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "_save_to", no_space)
    code, _, err = run(train_argv(darcy_files[0], tmp_path / "run"), capsys)
    assert code == 2
    one_error(err, "no space left on device writing")


def test_atomic_write_enospc(tmp_path):
    """Any atomic write on a full disk: OutOfSpaceError naming the file, no temporary left."""
    from neurosolve._util.io import atomic_write, atomic_write_text
    from neurosolve.errors import OutOfSpaceError

    old = tmp_path / "report.md"
    old.write_text("previous")

    def full(tmp):
        Path(tmp).write_text("half")
        no_space()

    with pytest.raises(OutOfSpaceError, match="no space left on device writing .*report.md"):
        atomic_write(old, full)
    assert old.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert atomic_write_text(old, "new").read_text() == "new"


# ---------------------------------------------------------------------------- two writers


def test_generate_refuses_a_second_writer(tmp_path, capsys):
    """Two generate runs with one --out: the second refuses ('being written by another')."""
    out = tmp_path / "d.h5"
    with exclusive_lock(out):
        code, _, err = run([*GENERATE, "--out", out], capsys)
    assert code == 2
    one_error(err, "is being written by another process")
    assert not out.exists() and not Path(f"{out}.part").exists()
    assert run([*GENERATE, "--out", out], capsys)[0] == 0  # the lock is gone with its holder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


def test_lock_held_by_another_process(tmp_path, capsys):
    """A real second process holding the lock: generate and merge refuse with one line."""
    out = tmp_path / "d.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from neurosolve._util.io import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run([*GENERATE, "--out", out], capsys)
        assert code == 2
        one_error(err, "is being written by another process")
        shard = tmp_path / "s.h5"
        assert run([*GENERATE, "--out", shard], capsys)[0] == 0
        code, _, err = run(["merge", shard, "--out", out, "-q"], capsys)
        assert code == 2
        one_error(err, "is being written by another process")
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------- resume checks


@pytest.fixture(scope="module")
def darcy_files(tmp_path_factory) -> list[Path]:
    from neurosolve.data.generate import generate

    folder = tmp_path_factory.mktemp("darcy")
    return [
        generate("darcy", folder / f"d{seed}.h5", samples=8, seed=seed, params={"resolution": 8},
                 progress=False)
        for seed in (0, 1)
    ]  # fmt: skip


def train_argv(data: Path, run_dir: Path, *extra) -> list:
    return [
        "train", "mgno", "--data", data, "--out", run_dir, "--epochs", "1", "--quiet",
        "--channels", "2", "--layers", "1", "--levels", "2", "--batch-size", "4", *extra,
    ]  # fmt: skip


def test_resume_refuses_other_data_and_other_channels(darcy_files, tmp_path, capsys):
    """Resuming train with another --data or --channels: exit 2, naming what changed."""
    run_dir = tmp_path / "run"
    assert run(train_argv(darcy_files[0], run_dir), capsys)[0] == 0
    code, _, err = run(train_argv(darcy_files[1], run_dir), capsys)
    assert code == 2
    one_error(err, "holds a run with other training data")
    assert "seed: 0 -> 1" in err
    code, _, err = run(train_argv(darcy_files[0], run_dir, "--channels", "3"), capsys)
    assert code == 2
    one_error(err, "holds a run with other model arguments (channels: 2 -> 3)")
    # the same command still resumes (here: finds the run complete)
    assert run(train_argv(darcy_files[0], run_dir), capsys)[0] == 0


# ------------------------------------------------------------------------------- outputs


def test_symlink_output_is_written_through(system_file, tmp_path, capsys):
    """solve --out a symlink: refused without --overwrite; with it the target is replaced."""
    target = tmp_path / "x.npy"
    np.save(target, np.zeros(3))
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    code, _, err = run(["solve", system_file, "--out", link, "-q"], capsys)
    assert code == 2
    one_error(err, "exists; pass --overwrite")
    assert run(["solve", system_file, "--out", link, "-q", "--overwrite"], capsys)[0] == 0
    assert link.is_symlink() and np.load(target).shape == (16,)


def test_generate_onto_symlink_keeps_the_link(tmp_path, capsys):
    """generate --out a symlink to an old file, --overwrite: the link stays a link."""
    target = tmp_path / "real.h5"
    target.write_text("old")
    link = tmp_path / "d.h5"
    link.symlink_to(target)
    assert run([*GENERATE, "--out", link, "--overwrite"], capsys)[0] == 0
    assert link.is_symlink() and target.read_bytes()[:4] == b"\x89HDF"


def test_check_output_cases(tmp_path):
    """check_output: inputs, folders, FIFOs, dangling links, missing folders refused."""
    (tmp_path / "in.npy").write_text("x")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    cases = {
        tmp_path / "in.npy": "is also an input",
        tmp_path: "is a directory",
        fifo: "is a FIFO",
        dangling: "dangling symlink",
        tmp_path / "no" / "x.npy": "does not exist",
    }
    for path, text in cases.items():
        with pytest.raises(InvalidInputError, match=text):
            check_output(path, inputs=[tmp_path / "in.npy"], overwrite=True)
    assert check_output(tmp_path / "new.npy") == tmp_path / "new.npy"


# ------------------------------------------------------------------------- reading files


def test_unreadable_matrix_says_permission_denied(system_file, capsys, monkeypatch):
    """An unreadable matrix file: 'permission denied', not 'missing banner'."""
    import builtins

    import neurosolve.data.io as data_io

    def guarded(path, *args, **kwargs):
        if Path(path) == system_file:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(data_io, "open", guarded, raising=False)
    code, _, err = run(["solve", system_file], capsys)
    assert code == 2
    one_error(err, "permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_files_for_real(system_file, tmp_path, capsys):
    """chmod 000 on a matrix and a right-hand side: 'permission denied' for both."""
    rhs = tmp_path / "b.npy"
    np.save(rhs, np.ones(16))
    for path, argv in ((system_file, ["solve", system_file]),):
        path.chmod(0)
        code, _, err = run(argv, capsys)
        assert code == 2
        one_error(err, "permission denied")
    system_file.chmod(0o644)
    rhs.chmod(0)
    code, _, err = run(["solve", system_file, "--rhs", rhs], capsys)
    one_error(err, "permission denied")


def test_unreadable_rhs_says_permission_denied(system_file, tmp_path, capsys, monkeypatch):
    """An unreadable --rhs: 'permission denied', not 'not a .npy file'."""
    rhs = tmp_path / "b.npy"
    np.save(rhs, np.ones(16))
    real_load = np.load

    def guarded(path, *args, **kwargs):
        if Path(path) == rhs:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", guarded)
    code, _, err = run(["solve", system_file, "--rhs", rhs], capsys)
    assert code == 2
    one_error(err, "permission denied")


def test_forged_hdf5_is_refused_quickly(tmp_path):
    """An HDF5 file of a few KB declaring 10^9 samples: refused from its declared sizes."""
    import h5py

    from neurosolve.data.generate import generate
    from neurosolve.data.store import H5Dataset, read_info

    src = generate("darcy", tmp_path / "d.h5", samples=2, seed=0, params={"resolution": 8},
                   progress=False)  # fmt: skip
    forged = tmp_path / "forged.h5"
    with h5py.File(src) as a, h5py.File(forged, "w") as f:
        for name in a:
            shape = a[name].shape[1:]
            f.create_dataset(name, shape=(10**9, *shape), dtype=a[name].dtype, chunks=(1, *shape))
        for key, value in a.attrs.items():
            f.attrs[key] = value
        f.attrs["completed"] = f.attrs["samples"] = np.int64(10**9)
    assert forged.stat().st_size < 64_000
    for call in (read_info, H5Dataset):  # the size check, before any sample is read
        with pytest.raises(FileFormatError, match="declares 1000000000 written samples"):
            call(forged)


def test_cuda_map_location_without_cuda(tmp_path):
    """A CUDA map_location without a GPU: 'CUDA is not available', not 'corrupted'."""
    import torch

    from neurosolve.checkpoint import build_model, load_checkpoint, save_checkpoint

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    net = build_model("mgno", in_channels=1, out_channels=1, channels=2, levels=2, layers=1)
    path = save_checkpoint(tmp_path / "m.pt", kind="mgno", kwargs=net.config(),
                           state_dict=net.state_dict())  # fmt: skip
    with pytest.raises(InvalidInputError, match="CUDA is not available"):
        load_checkpoint(path, map_location="cuda")


def test_symmetric_lower_triangle_reads_correctly(tmp_path):
    """A proper 'symmetric' file (one triangle): read to the full matrix, no doubling."""
    A = poisson((3, 3)).A
    path = save_system(tmp_path / "s.mtx", A)
    assert "symmetric" in path.read_text().splitlines()[0]
    assert abs(load_system(path).A - A).max() == 0


# ---------------------------------------------------------------------- CSR structure API


def _csr(indices, indptr, shape=(3, 3)):
    A = sp.csr_matrix(shape)
    A.indices, A.indptr = np.asarray(indices, dtype=np.int32), np.asarray(indptr, np.int32)
    A.data = np.ones(len(indices))
    return A


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (_csr([0, 1, 5], [0, 1, 2, 3]), "column index 5 is outside 0..2"),
        (_csr([0, 1, -2], [0, 1, 2, 3]), "column index -2 is outside"),
        (_csr([0, 1, 2], [0, 2, 1, 3]), "indptr is not monotone"),
        (_csr([0, 1, 2], [1, 1, 2, 3]), "indptr must start at 0"),
        (_csr([0, 1, 2], [0, 1, 2]), "indptr has 3 entries"),
        (sp.coo_matrix((np.ones(1), (np.array([0]), np.array([7]))), shape=(8, 8)), None),
    ],
    ids=[
        "column-too-large",
        "column-negative",
        "indptr-decreasing",
        "indptr-start",
        "indptr-length",
        "coo-valid",
    ],  # fmt: skip
)
def test_check_csr_structure(matrix, message):
    """check_csr_structure: every broken CSR invariant named, before any arithmetic."""
    if message is None:
        assert check_csr_structure(matrix).nnz == 1
        return
    with pytest.raises(InvalidInputError, match=message):
        check_csr_structure(matrix)
    with pytest.raises(InvalidInputError, match=message):  # and through check_spd_matrix
        check_spd_matrix(matrix)


def test_check_csr_structure_canonical_and_non_destructive():
    """Unsorted CSR with duplicates: summed and sorted in a copy, the caller's arrays kept."""
    A = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0]), np.array([0, 3, 3])),
                      shape=(2, 2))  # fmt: skip
    before = A.indices.copy()
    M = check_csr_structure(A)
    assert M.has_canonical_format and M[0, 0] == 5.0 and M[0, 1] == 1.0
    assert np.array_equal(A.indices, before)
    csc = check_csr_structure(sp.csc_matrix(np.eye(3)))
    assert csc.format == "csr" and csc.nnz == 3
    with pytest.raises(InvalidInputError, match="must be real"):
        check_csr_structure(sp.csr_matrix(np.eye(2) * 1j))
    with pytest.raises(NeurosolveError, match="not a scipy sparse matrix"):
        check_csr_structure(np.eye(2))
