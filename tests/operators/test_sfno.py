"""SFNO and FNO3d: shapes, gradients, resolution/time flexibility, 3D spectral conv identity."""

import itertools

import numpy as np
import pytest
import torch

from neurosolve.checkpoint import build_model
from neurosolve.errors import InvalidInputError
from neurosolve.operators.fno import FNO3d, count_parameters
from neurosolve.operators.sfno import SFNO
from neurosolve.operators.spectral import SpectralConv


def _dense_circular_conv3d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """y[b, o, j] = sum_i sum_m kernel[i, o, m] x[b, i, j - m] (indices mod the grid)."""
    batch, cin = x.shape[:2]
    cout = kernel.shape[1]
    shape = x.shape[2:]
    y = np.zeros((batch, cout, *shape))
    for m in itertools.product(*(range(n) for n in shape)):
        shifted = np.roll(x, shift=m, axis=(2, 3, 4))  # shifted[..., j] = x[..., j - m]
        y += np.einsum("bi...,io->bo...", shifted, kernel[(slice(None), slice(None), *m)])
    return y


@pytest.mark.parametrize("shape", [(6, 5, 4), (4, 6, 7)], ids=["even-last", "odd-last"])
def test_spectral_conv_all_modes_3d_equals_dense_circular_convolution(shape):
    torch.manual_seed(3)
    conv = SpectralConv(2, 3, modes=None, shape=shape, dtype=torch.float64)
    x = torch.randn(2, 2, *shape, dtype=torch.float64)
    y = conv(x).detach().numpy()
    # The layer multiplies the forward-normalised coefficients of frequency k by W(k):
    # y = kernel (*) x with kernel = irfftn(W on the grid) (backward normalisation). W is
    # stored with frequency k at index k (k >= 0) or 2m + k (k < 0) on the full axes.
    weight = conv.complex_weight().detach()
    index = [
        [int(k) if k >= 0 else 2 * m + int(k) for k in np.fft.fftfreq(n, 1.0 / n)]
        for m, n in zip(conv.modes[:2], shape[:2], strict=True)
    ]
    on_grid = weight[:, :, index[0]][:, :, :, index[1]][..., : shape[2] // 2 + 1]
    kernel = torch.fft.irfftn(on_grid, s=shape, dim=(-3, -2, -1)).numpy()
    expected = _dense_circular_conv3d(x.numpy(), kernel)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


def _tiny_sfno(**kw):
    defaults = dict(modes=(3, 3, 2), width=6, layers=3, t_out=5, fc_width=8)
    defaults.update(kw)
    return SFNO(**defaults)


def _tiny_fno3d(**kw):
    defaults = dict(modes=(3, 3, 2), width=6, layers=2, t_in=3, t_out=5, padding=2, fc_width=8)
    defaults.update(kw)
    return FNO3d(**defaults)


@pytest.mark.parametrize("make", [_tiny_sfno, _tiny_fno3d], ids=["sfno", "fno3d"])
def test_shapes_and_every_parameter_gets_a_gradient(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(2, 3, 12, 10)
    y = model(x)
    assert y.shape == (2, 5, 12, 10)
    assert torch.isfinite(y).all()
    y.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make", [_tiny_sfno, _tiny_fno3d], ids=["sfno", "fno3d"])
def test_any_t_out_and_any_resolution(make):
    model = make()
    assert model(torch.randn(1, 3, 16, 16), t_out=9).shape == (1, 9, 16, 16)
    assert model(torch.randn(1, 3, 24, 20), t_out=2).shape == (1, 2, 24, 20)


def test_sfno_continues_from_last_input_frame():
    # with a zero output convolution the prediction is the last input frame at every step
    model = _tiny_sfno()
    with torch.no_grad():
        model.out_conv.weight.zero_()
    x = torch.randn(2, 3, 12, 12)
    y = model(x, t_out=4)
    torch.testing.assert_close(y, x[:, -1:].expand(2, 4, 12, 12))


def test_sfno_accepts_any_t_in_and_batches_are_independent():
    model = _tiny_sfno()
    x = torch.randn(3, 4, 12, 12)
    full = model(x)
    single = model(x[1:2])
    torch.testing.assert_close(full[1:2], single, rtol=1e-5, atol=1e-6)
    assert model(torch.randn(1, 7, 12, 12)).shape == (1, 5, 12, 12)


def test_float64_and_config_roundtrip_through_registry():
    torch.manual_seed(1)
    for model in (_tiny_sfno(dtype=torch.float64), _tiny_fno3d(dtype=torch.float64)):
        kind = "sfno" if isinstance(model, SFNO) else "fno3d"
        clone = build_model(kind, **model.config()).to(torch.float64)
        clone.load_state_dict(model.state_dict())
        x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
        torch.testing.assert_close(clone(x), model(x))
        assert count_parameters(clone) == count_parameters(model) > 0


def test_parameter_count_does_not_depend_on_grid():
    # the count of the paper's SFNO configuration is fixed by modes/width, not by resolution
    a = count_parameters(SFNO(modes=(12, 12, 5), width=20, layers=4, t_out=40))
    b = count_parameters(SFNO(modes=(12, 12, 5), width=20, layers=4, t_out=10))
    assert a == b


@pytest.mark.parametrize(
    "bad",
    [torch.randn(3, 12, 12), torch.randn(1, 1, 3, 12, 12)],
    ids=["3d", "5d"],
)
def test_bad_input_shape_raises(bad):
    with pytest.raises(InvalidInputError, match="batch, t_in, nx, ny"):
        _tiny_sfno()(bad)


def test_fno3d_rejects_wrong_t_in_and_bad_arguments():
    with pytest.raises(InvalidInputError, match="t_in=3"):
        _tiny_fno3d()(torch.randn(1, 4, 12, 12))
    with pytest.raises(InvalidInputError, match="modes"):
        SFNO(modes=(4, 4))
    with pytest.raises(InvalidInputError, match="width"):
        SFNO(width=0)
    with pytest.raises(InvalidInputError, match="t_out"):
        _tiny_sfno()(torch.randn(1, 3, 12, 12), t_out=0)


def test_sfno_time_padding_keeps_shapes_and_continuation():
    model = _tiny_sfno(time_padding=3)
    assert model.output_time_grids(5) == (9, 9)
    x = torch.randn(2, 3, 12, 12)
    assert model(x, t_out=7).shape == (2, 7, 12, 12)
    with torch.no_grad():
        model.out_conv.weight.zero_()
    torch.testing.assert_close(model(x, t_out=4), x[:, -1:].expand(2, 4, 12, 12))
    with pytest.raises(InvalidInputError, match="time_padding"):
        _tiny_sfno(time_padding=-1)


REFERENCE_OPTIONS = dict(
    time_features=4,
    input_norm=True,
    first_skip=False,
    final_activation=True,
    projection="linear",
    latent_steps=4,
    latent_padding=2,
)


@pytest.mark.parametrize(
    "options",
    [{k: v} for k, v in REFERENCE_OPTIONS.items()] + [REFERENCE_OPTIONS],
    ids=[*REFERENCE_OPTIONS, "all"],
)
def test_sfno_options_shapes_gradients_and_registry_roundtrip(options):
    torch.manual_seed(0)
    model = _tiny_sfno(**options)
    x = torch.randn(2, 3, 12, 10)
    y = model(x)
    assert y.shape == (2, 5, 12, 10)
    y.pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    clone = build_model("sfno", **model.config())
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(x), y)
    with torch.no_grad():
        model.out_conv.weight.zero_()
    torch.testing.assert_close(model(x, t_out=3), x[:, -1:].expand(2, 3, 12, 10))


def test_sfno_option_structure():
    width = 6
    base = count_parameters(_tiny_sfno())
    # no pointwise path on the first layer: one width x width 1x1 conv (with bias) fewer
    assert base - count_parameters(_tiny_sfno(first_skip=False)) == width * width + width
    # a linear projection replaces the width -> fc_width -> 1 perceptron
    assert count_parameters(_tiny_sfno(projection="linear")) == base - (width * 8 + 8 + 8 + 1) + (
        width + 1
    )
    # each extra time feature adds one input channel to the lifting (width weights)
    assert count_parameters(_tiny_sfno(time_features=3)) == base + 3 * width
    # latent padding changes no parameter and keeps the latent window's length
    padded = _tiny_sfno(latent_padding=3, latent_steps=4)
    assert count_parameters(padded) == count_parameters(_tiny_sfno(latent_steps=4))
    assert padded.latent_features(torch.randn(1, 3, 8, 8)).shape == (1, 1, 8, 8, 4)


def test_sfno_latent_padding_changes_the_function():
    torch.manual_seed(2)
    plain = _tiny_sfno()
    padded = _tiny_sfno(latent_padding=3)
    padded.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 12, 12)
    assert not torch.allclose(plain(x), padded(x))


def test_time_encoding_features():
    from neurosolve.operators.sfno import _grid_encoding

    pe = _grid_encoding(4, 4, 5, device=torch.device("cpu"), dtype=torch.float64, time_features=3)
    assert pe.shape == (8, 4, 4, 5)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    for k in range(3):
        torch.testing.assert_close(pe[5 + k, 0, 0], torch.sin(torch.pi * (k + 1) * t))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"time_features": -1}, "time_features"),
        ({"latent_padding": -2}, "latent_padding"),
        ({"projection": "conv"}, "projection"),
    ],
)
def test_sfno_bad_options_raise(options, match):
    with pytest.raises(InvalidInputError, match=match):
        _tiny_sfno(**options)


def test_sfno_history_frames_are_time_constant_lifting_channels():
    model = _tiny_sfno(history_frames=2)
    seen = {}
    model.lift.register_forward_hook(lambda mod, inp, out: seen.update(v=inp[0]))
    x = torch.randn(2, 4, 12, 12)
    assert model(x).shape == (2, 5, 12, 12)
    lifted = seen["v"]  # (B, 1 + 5 + 2, nx, ny, t_in)
    expected = x[:, -2:].unsqueeze(-1).expand(-1, -1, -1, -1, 4)
    torch.testing.assert_close(lifted[:, -2:], expected)
    with pytest.raises(InvalidInputError, match="last 2 input snapshots"):
        model(torch.randn(1, 1, 12, 12))
    with pytest.raises(InvalidInputError, match="history_frames"):
        _tiny_sfno(history_frames=-1)


def test_sfno_anchor_removes_time_constant_increment():
    # an output convolution that only keeps the time-mean mode adds the same field at every
    # step; anchored, that field is zero at the last input time, hence everywhere
    torch.manual_seed(4)
    plain, anchored = _tiny_sfno(), _tiny_sfno(anchor=True)
    anchored.load_state_dict(plain.state_dict())
    for model in (plain, anchored):
        with torch.no_grad():
            model.out_conv.weight[..., 1:, :] = 0.0
    x = torch.randn(2, 3, 12, 12)
    persistence = x[:, -1:].expand(2, 4, 12, 12)
    assert not torch.allclose(plain(x, t_out=4), persistence, atol=1e-4)
    torch.testing.assert_close(anchored(x, t_out=4), persistence, rtol=1e-5, atol=1e-5)


def test_sfno_supersampled_output_holds_the_plain_snapshots():
    # the output operator is one space-time function: k times as many points in time, of
    # which every k-th is a snapshot of the plain output
    model = _tiny_sfno(time_padding=3).double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    assert model.output_time_grids(5, supersample=3) == (9, 27)
    with torch.no_grad():
        latent = model.latent_features(x)
        plain = model.output_operator(x, latent, 5)
        for k in (2, 4):
            fine = model.output_operator(x, latent, 5, supersample=k)
            assert fine.shape == (2, 5 * k, 12, 12)
            torch.testing.assert_close(fine[:, k - 1 :: k], plain, rtol=0, atol=1e-12)
            # the points in between are new values, not copies
            assert (fine[:, 0] - plain[:, 0]).abs().max() > 1e-6
    with pytest.raises(InvalidInputError, match="supersample"):
        model.output_time_grids(5, supersample=0)
