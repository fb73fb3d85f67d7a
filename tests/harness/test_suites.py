import json

import numpy as np
import pytest

from neurosolve.data import poisson, save_system
from neurosolve.data.geometry import contrast_coefficient, moving_obstacle_flags
from neurosolve.data.grids import FLUID, SOLID
from neurosolve.errors import FileFormatError, InvalidInputError, UnknownNameError
from neurosolve.harness.suite_files import load_suite
from neurosolve.harness.suites import (
    ProblemSpec,
    SequenceSpec,
    Suite,
    get_suite,
    suite_names,
)


@pytest.mark.parametrize("name", suite_names())
def test_builtin_suite_ids_are_unique_and_readable(name):
    suite = get_suite(name)
    ids = [p.id for p in suite.problems] + [s.id for s in suite.sequences]
    assert ids and len(ids) == len(set(ids))
    assert all(i.startswith(("poisson2d-", "poisson3d-", "sequence")) for i in ids)


def test_required_builtin_suites_exist():
    assert {"smoke", "poisson2d", "poisson3d", "obstacles3d", "variable-coefficient"} <= set(
        suite_names()
    )
    ids = [p.id for p in get_suite("obstacles3d").problems]
    assert "poisson3d-32-obstacles" in ids
    with pytest.raises(UnknownNameError, match="smoke"):
        get_suite("nope")


def test_smoke_suite_covers_2d_3d_obstacles_and_coefficients():
    problems = get_suite("smoke").problems
    assert {len(p.shape) for p in problems} == {2, 3}
    assert any(p.obstacles != "none" and len(p.shape) == 3 for p in problems)
    assert {p.contrast for p in problems if p.contrast} == {1e2, 1e4}


def test_build_is_deterministic_and_seeded():
    spec = ProblemSpec(shape=(12, 12, 12), obstacles="boxes", contrast=1e2)
    s1, s2 = spec.build(), spec.build()
    assert s1.name == spec.id == "poisson3d-12-obstacles-contrast1e2"
    assert (s1.A != s2.A).nnz == 0
    np.testing.assert_array_equal(s1.b, s2.b)
    other = ProblemSpec(shape=(12, 12, 12), obstacles="boxes", contrast=1e2, seed=5).build()
    assert other.b.shape != s1.b.shape or not np.array_equal(other.b, s1.b)
    # the obstacles really remove unknowns
    assert s1.n < 12**3


def test_contrast_problem_has_both_coefficient_values():
    system = ProblemSpec(shape=(16, 16), contrast=1e4).build()
    diag = system.A.diagonal()
    assert diag.max() / diag.min() > 1e3


def test_bad_specs_raise():
    with pytest.raises(InvalidInputError, match="obstacles"):
        ProblemSpec(obstacles="blobs")
    with pytest.raises(InvalidInputError, match="contrast"):
        ProblemSpec(contrast=-1.0)
    with pytest.raises(InvalidInputError, match="path"):
        ProblemSpec(kind="file")
    with pytest.raises(InvalidInputError, match="shape"):
        ProblemSpec(shape=(4,))
    with pytest.raises(InvalidInputError, match="duplicate"):
        Suite("dup", problems=[ProblemSpec(shape=(8, 8)), ProblemSpec(shape=(8, 8))])


def test_contrast_coefficient_and_moving_obstacles():
    a = contrast_coefficient((32, 32), 100.0, np.random.default_rng(0))
    assert set(np.unique(a)) == {1.0, 100.0}
    assert 0.3 < (a == 100.0).mean() < 0.7
    frames = moving_obstacle_flags((16, 16, 16), 4, np.random.default_rng(0), count=2)
    assert len(frames) == 4
    assert all(set(np.unique(f)) <= {FLUID, SOLID} for f in frames)
    assert all((f == SOLID).any() for f in frames)
    assert (frames[0] != frames[3]).any()


def test_sequence_spec_builds_changing_systems():
    seq = SequenceSpec(shape=(10, 10), frames=3, count=1, radius=0.2)
    systems = seq.build()
    assert [s.name for s in systems] == [f"{seq.id}-f{k}" for k in range(3)]
    assert all(s.b.shape == (s.n,) for s in systems)
    assert systems[0].n != systems[2].n or (systems[0].A != systems[2].A).nnz > 0


def test_file_problem_with_rhs_and_grid(tmp_path):
    system = poisson((6, 5))
    path = save_system(tmp_path / "sys.mtx", system)
    b = np.arange(system.n, dtype=float)
    np.save(tmp_path / "b.npy", b)
    spec = ProblemSpec(kind="file", path=str(path), rhs_path=str(tmp_path / "b.npy"), grid=(6, 5))
    built = spec.build()
    assert spec.id == "sys"
    assert built.grid.shape == (6, 5)
    np.testing.assert_array_equal(built.b, b)
    assert abs(built.A - system.A).max() == 0
    # without rhs: seeded random
    r1 = ProblemSpec(kind="file", path=str(path)).build().b
    r2 = ProblemSpec(kind="file", path=str(path)).build().b
    np.testing.assert_array_equal(r1, r2)
    np.save(tmp_path / "short.npy", b[:3])
    with pytest.raises(InvalidInputError, match="entries"):
        ProblemSpec(kind="file", path=str(path), rhs_path=str(tmp_path / "short.npy")).build()


def test_load_suite_json_and_toml(tmp_path):
    system = poisson((4, 4))
    save_system(tmp_path / "m.mtx", system)
    data = {
        "name": "mine",
        "problems": [
            {"shape": [8, 8, 8], "obstacles": "spheres", "seed": 2},
            {"kind": "file", "path": "m.mtx"},
        ],
        "sequences": [{"shape": [8, 8], "frames": 2}],
    }
    (tmp_path / "s.json").write_text(json.dumps(data))
    suite = load_suite(tmp_path / "s.json")
    assert [p.id for p in suite.problems] == ["poisson3d-8-spheres-s2", "m"]
    assert suite.problems[1].build().n == 16  # relative path resolved next to the file
    assert suite.sequences[0].frames == 2
    (tmp_path / "s.toml").write_text('name = "t"\n[[problems]]\nshape = [8, 8]\ncontrast = 100.0\n')
    assert [p.id for p in load_suite(tmp_path / "s.toml").problems] == ["poisson2d-8-contrast1e2"]
    # round trip through to_dict
    (tmp_path / "back.json").write_text(json.dumps(suite.to_dict()))
    assert [p.id for p in load_suite(tmp_path / "back.json").problems] == [
        p.id for p in suite.problems
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"problems": [{"shape": [8, 8], "colour": 1}]}', "colour"),
        ('{"problems": [{"shape": [8, 8], "obstacles": "blobs"}]}', "obstacles"),
        ('{"problems": []}', "no problems"),
        ('{"problems": [', "not valid JSON"),
        ('{"problem": []}', "unknown field"),
        ("[1, 2]", "top level"),
    ],
)
def test_load_suite_rejects_bad_files(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=match):
        load_suite(path)


def test_load_suite_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="not found"):
        load_suite(tmp_path / "none.json")
