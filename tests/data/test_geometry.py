import numpy as np
import pytest

from neurosolve.data import poisson
from neurosolve.data.geometry import moving_obstacle_flags
from neurosolve.data.grids import AIR, FLUID, SOLID
from neurosolve.errors import InvalidInputError


def _frames(boundary_air):
    rng = np.random.default_rng(5)
    return moving_obstacle_flags(
        (12, 12, 12), 3, rng, count=2, radius=0.2, boundary_air=boundary_air
    )


def test_air_top_layer_keeps_the_trajectories_and_marks_only_the_top():
    plain, open_top = _frames(None), _frames("top")
    for f, g in zip(plain, open_top, strict=True):
        assert (g[-1] == AIR).all()
        assert not (g[:-1] == AIR).any()
        np.testing.assert_array_equal(f[:-1], g[:-1])  # same spheres below the top layer
        assert set(np.unique(f)) <= {FLUID, SOLID}
    assert (open_top[0] != open_top[2]).any()
    np.testing.assert_array_equal(_frames("none")[1], plain[1])


def test_closed_box_with_open_top_is_spd_without_pinning():
    flags = _frames("top")[0]
    system = poisson(flags.shape, flags=flags, boundary="neumann")
    assert system.n == int((flags == FLUID).sum())
    assert system.pinned.size == 0  # every fluid component reaches the AIR layer
    assert np.linalg.eigvalsh(system.A.toarray()).min() > 0
    closed = poisson(flags.shape, flags=_frames(None)[0], boundary="neumann")
    assert closed.pinned.size >= 1  # without the open top the box is pure Neumann


def test_unknown_air_option_is_refused():
    with pytest.raises(InvalidInputError, match="boundary_air"):
        moving_obstacle_flags((8, 8), 2, np.random.default_rng(0), boundary_air="free-surface")
