import pytest
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.operators.mgno import MgConv, MgNO


@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 17), (9, 20), (1, 5), (33, 8)])
def test_output_shapes_odd_even_nonsquare(shape):
    model = MgNO(1, 2, channels=4, layers=2, levels=4)
    assert model(torch.randn(2, 1, *shape)).shape == (2, 2, *shape)


@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 10, 5)])
def test_3d_output_shapes(shape):
    model = MgNO(2, 1, channels=3, layers=1, levels=3, dim=3)
    assert model(torch.randn(1, 2, *shape)).shape == (1, 1, *shape)


@pytest.mark.parametrize("padding", ["zeros", "circular", "reflect"])
def test_linear_mgno_is_linear(padding):
    torch.set_default_dtype(torch.float64)
    model = MgNO(
        2,
        1,
        channels=4,
        layers=2,
        levels=3,
        activation="identity",
        bias=False,
        padding=padding,
        post_smooth=1,
    )
    x, y = torch.randn(2, 2, 2, 13, 10).unbind(0)
    a, b = 0.7, -1.9
    torch.testing.assert_close(model(a * x + b * y), a * model(x) + b * model(y))


def test_nonlinear_mgno_is_not_linear():
    model = MgNO(1, 1, channels=4, layers=2, levels=3, bias=False)
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(model(2 * x), 2 * model(x), atol=1e-4)


@pytest.mark.parametrize("shift", [(4, 0), (0, 8), (4, 12)])
def test_circular_padding_is_translation_equivariant(shift):
    torch.set_default_dtype(torch.float64)
    model = MgNO(1, 1, channels=4, layers=2, levels=3, padding="circular", post_smooth=1)
    x = torch.randn(2, 1, 16, 24)
    shifted = model(torch.roll(x, shift, dims=(2, 3)))
    torch.testing.assert_close(shifted, torch.roll(model(x), shift, dims=(2, 3)))


def test_zero_padding_is_not_translation_equivariant():
    torch.set_default_dtype(torch.float64)
    model = MgNO(1, 1, channels=4, layers=2, levels=3, padding="zeros")
    x = torch.randn(1, 1, 16, 16)
    shifted = model(torch.roll(x, (4, 4), dims=(2, 3)))
    assert not torch.allclose(shifted, torch.roll(model(x), (4, 4), dims=(2, 3)), atol=1e-6)


def test_every_parameter_gets_a_gradient():
    model = MgNO(1, 1, channels=4, layers=2, levels=3, post_smooth=1)
    model(torch.randn(2, 1, 12, 10)).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_paper_darcy_config_parameter_count_near_paper():
    # paper: 0.57M parameters for its Darcy configuration (24 channels, 6 levels)
    n = MgNO(1, 1, channels=24, layers=4, levels=6).num_parameters()
    assert 0.5e6 < n < 0.7e6


def test_levels_deeper_than_grid_still_work():
    model = MgNO(1, 1, channels=2, layers=1, levels=6)
    assert model(torch.randn(1, 1, 4, 3)).shape == (1, 1, 4, 3)


def test_smoothing_steps_configuration():
    cycle = MgConv(1, 2, levels=3, pre_smooth=[2, 1, 0], post_smooth=1, coarse_smooth=3)
    assert cycle.pre == [2, 1, 3] and cycle.post == [1, 1, 0]
    assert len(cycle.S_pre[0]) == 2 and len(cycle.S_post[2]) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding="mirror"),
        dict(levels=0),
        dict(dim=4),
        dict(activation="swish"),
        dict(pre_smooth=[1, 1]),
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(InvalidInputError):
        MgNO(1, 1, channels=2, **{"levels": 3, **kwargs})


def test_wrong_input_channels_raises():
    with pytest.raises(InvalidInputError, match="expects"):
        MgNO(2, 1, channels=2, levels=2)(torch.randn(1, 1, 8, 8))
