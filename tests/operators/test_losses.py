import math

import pytest
import torch

from neurosolve.errors import InvalidInputError
from neurosolve.operators.losses import h1_norm, relative_h1, relative_l2


def _mode(n, kx, ky):
    s = torch.arange(n, dtype=torch.float64) / n
    return (
        torch.sin(2 * math.pi * kx * s)[:, None] * torch.sin(2 * math.pi * ky * s)[None, :]
    ).reshape(1, 1, n, n)


def test_relative_l2_known_values():
    t = _mode(32, 1, 1)
    e = _mode(32, 2, 3)  # orthogonal, same norm
    assert float(relative_l2(t + 0.3 * e, t)) == pytest.approx(0.3, rel=1e-12)
    assert float(relative_l2(t, t)) == 0.0


def test_relative_l2_is_batch_average():
    t = torch.stack([_mode(16, 1, 1)[0], _mode(16, 1, 2)[0]])
    p = t.clone()
    p[0] *= 1.1
    p[1] *= 1.5
    assert float(relative_l2(p, t)) == pytest.approx(0.3, rel=1e-12)
    torch.testing.assert_close(
        relative_l2(p, t, reduction="none"), torch.tensor([0.1, 0.5], dtype=torch.float64)
    )


def test_relative_h1_spectral_exact_on_fourier_modes():
    n = 32
    t, e = _mode(n, 1, 1), _mode(n, 2, 3)
    # |grad|^2 weights: 1 + 4 pi^2 (kx^2 + ky^2)
    w_t = 1 + 4 * math.pi**2 * 2
    w_e = 1 + 4 * math.pi**2 * 13
    expected = 0.3 * math.sqrt(w_e / w_t)
    got = float(relative_h1(t + 0.3 * e, t, method="spectral"))
    assert got == pytest.approx(expected, rel=1e-10)


def test_relative_h1_fd_converges_to_spectral_value():
    expected = 0.3 * math.sqrt((1 + 4 * math.pi**2 * 13) / (1 + 4 * math.pi**2 * 2))
    errors = []
    for n in (32, 64, 128):
        t, e = _mode(n, 1, 1), _mode(n, 2, 3)
        errors.append(abs(float(relative_h1(t + 0.3 * e, t, method="fd")) - expected))
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.02 * expected


def test_h1_norm_of_linear_function_fd_is_exact():
    n = 20
    s = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    v = (3 * s[:, None] + 0 * s[None, :]).reshape(1, 1, n, n)
    expected = math.sqrt(float(v.pow(2).mean()) + 9.0)
    assert float(h1_norm(v, method="fd")) == pytest.approx(expected, rel=1e-12)


def test_scale_invariance_and_lengths():
    t = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    p = t + 0.1 * torch.randn(2, 1, 16, 16, dtype=torch.float64)
    for method in ("fd", "spectral"):
        torch.testing.assert_close(
            relative_h1(5 * p, 5 * t, method=method), relative_h1(p, t, method=method)
        )
    assert float(relative_h1(p, t, lengths=(2.0, 2.0))) != float(relative_h1(p, t))


def test_losses_backpropagate():
    p = torch.randn(2, 1, 8, 8, requires_grad=True)
    t = torch.randn(2, 1, 8, 8)
    (relative_l2(p, t) + relative_h1(p, t) + relative_h1(p, t, method="spectral")).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: relative_l2(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5)),
        lambda: relative_l2(torch.zeros(4, 4), torch.zeros(4, 4)),
        lambda: relative_h1(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), method="cheb"),
        lambda: relative_l2(torch.zeros(1, 1, 4), torch.ones(1, 1, 4), reduction="max"),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(InvalidInputError):
        call()
