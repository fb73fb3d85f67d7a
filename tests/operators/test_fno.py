import pytest
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.operators.fno import FNO2d, grid_channels


@pytest.mark.parametrize("shape", [(16, 16), (15, 15), (12, 17), (9, 20)])
@pytest.mark.parametrize("padding", [0, 5])
def test_output_shapes(shape, padding):
    model = FNO2d(1, 2, modes=(4, 3), width=6, layers=2, padding=padding)
    assert model(torch.randn(2, 1, *shape)).shape == (2, 2, *shape)


def test_every_parameter_gets_a_gradient():
    model = FNO2d(2, 1, modes=3, width=4, layers=2, projection=8)
    model(torch.randn(2, 2, 10, 12)).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_periodic_fno_without_grid_is_translation_equivariant():
    torch.set_default_dtype(torch.float64)
    model = FNO2d(1, 1, modes=4, width=4, layers=2, padding=0, grid=False)
    x = torch.randn(1, 1, 12, 12)
    torch.testing.assert_close(
        model(torch.roll(x, (3, 5), dims=(2, 3))), torch.roll(model(x), (3, 5), dims=(2, 3))
    )


def test_grid_channels_range():
    g = grid_channels(2, (5, 7))
    assert g.shape == (2, 2, 5, 7)
    assert g[:, 0].min() == 0 and g[:, 0].max() == 1 and torch.all(g[:, 1, :, -1] == 1)


def test_config_roundtrip():
    model = FNO2d(1, 1, modes=(5, 4), width=6, layers=3)
    again = FNO2d(**model.config())
    assert again.num_parameters() == model.num_parameters()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(modes=(1, 2, 3)),
        dict(padding=-1),
        dict(activation="elu"),
        dict(layers=0),
        dict(padding_grid=0),
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(InvalidInputError):
        FNO2d(1, 1, **kwargs)


def test_padding_grid_scales_the_padding_with_the_grid():
    torch.manual_seed(0)
    cells = FNO2d(1, 1, modes=3, width=4, layers=2, padding=4)
    scaled = FNO2d(1, 1, modes=3, width=4, layers=2, padding=4, padding_grid=12)
    scaled.load_state_dict(cells.state_dict())
    assert [scaled.padding_cells(n) for n in (6, 12, 24, 25)] == [2, 4, 8, 8]
    assert [cells.padding_cells(n) for n in (6, 24)] == [4, 4]
    x12, x24 = torch.randn(1, 1, 12, 12), torch.randn(1, 1, 24, 18)
    # the same function on the reference grid, another one elsewhere
    torch.testing.assert_close(scaled(x12), cells(x12))
    assert not torch.allclose(scaled(x24), cells(x24))
    # on a 24 x 18 grid the padding is 8 and 6 cells: as a 4-cell model with a 32 x 24 canvas
    plain = FNO2d(1, 1, modes=3, width=4, layers=2, padding=0)
    plain.load_state_dict(cells.state_dict())
    v = plain.lift(torch.cat([x24, grid_channels(1, (24, 18))], dim=1))
    v = torch.nn.functional.pad(v, (0, 6, 0, 8))
    for i, (spec, point) in enumerate(zip(plain.spectral, plain.pointwise, strict=True)):
        v = spec(v) + point(v)
        if i == 0:
            v = plain.act(v)
    torch.testing.assert_close(scaled(x24), plain.project(v[..., :24, :18]))
    again = FNO2d(**scaled.config())
    assert again.padding_grid == 12
