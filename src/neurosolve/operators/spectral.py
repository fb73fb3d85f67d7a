"""Spectral convolution: the layer family of the Fourier neural operators.

A :class:`SpectralConv` multiplies the low Fourier modes of its input, channel-mixing
them with learned complex weights, and transforms back. It works on any number of
spatial axes (the last ``len(modes)`` axes of the input), on any grid size, and can
resample its output to another grid (``out_shape``), which is how FNO-type models move
between resolutions and how the spatio-temporal FNO (SFNO) changes its time length.

Numerical choices
-----------------
- The forward transform is ``rfftn(norm="forward")`` and the inverse
  ``irfftn(norm="forward")``: Fourier coefficients are grid averages, so the same weights
  give the same function on every resolution, and resampling (``out_shape``) keeps the
  amplitude. (Differs from the original FNO code, whose ``norm="backward"`` makes outputs
  scale with the grid size when the resolution changes.)
- Mode ``k`` on an axis other than the last is kept when ``-modes[i] <= k < modes[i]``
  (the usual FNO corners); on the last (half-spectrum) axis when ``0 <= k < modes[-1]``.
  Modes the grid does not have are skipped, so a layer built for many modes still runs
  on a coarse grid. When resampling between different sizes the unpaired Nyquist mode of
  an even axis is dropped, so the resampled field stays real without aliasing.
- ``modes=None`` keeps every mode of a grid ``shape`` (no truncation): the layer is then
  exactly a circular convolution with a kernel of that grid size (tested). This is the
  untruncated layer of the Spectral-Refiner; :meth:`SpectralConv.untruncated` builds one
  from a trained truncated layer.
- Weights are stored as real tensors with a trailing axis of size 2 (real, imaginary), so
  every optimizer, DDP and checkpointing treat them as ordinary real parameters. The
  transforms run in float32 or float64 even under CUDA autocast (half-precision FFTs are
  restricted to power-of-two sizes and lose accuracy).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from neurosolve.errors import InvalidInputError

__all__ = ["SpectralConv"]


def _check_positive_ints(values: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a sequence of integers, got {values!r}") from exc
    if not out or any(v < 1 for v in out) or any(int(v) != v for v in values):
        raise InvalidInputError(
            f"{what} must be a non-empty sequence of integers >= 1, got {values!r}"
        )
    return out


class SpectralConv(nn.Module):
    """Fourier-space channel mixing over the last ``len(modes)`` axes.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output, ``(batch, in_channels, *spatial)``.
    modes : sequence of int or None
        Modes kept per spatial axis: ``+-modes[i]`` on every axis but the last, the first
        ``modes[-1]`` on the last (half-spectrum) axis. ``None`` keeps every mode of the
        grid ``shape`` (no truncation).
    shape : sequence of int, optional
        The grid for ``modes=None`` (required then, ignored otherwise).
    dtype : torch.dtype, optional
        Real dtype of the weights (default: torch's default dtype). Inputs are cast to it.
    device : torch.device or str, optional
        Device of the weights.
    init_scale : float, optional
        Weights start uniform in ``[-s, s]`` (real and imaginary parts) with
        ``s = init_scale / (in_channels * out_channels)``; default 1.

    Examples
    --------
    >>> import torch
    >>> conv = SpectralConv(3, 5, modes=(4, 4))
    >>> conv(torch.randn(2, 3, 17, 12)).shape
    torch.Size([2, 5, 17, 12])
    >>> conv(torch.randn(2, 3, 16, 16), out_shape=(32, 24)).shape
    torch.Size([2, 5, 32, 24])
    >>> full = SpectralConv(1, 1, modes=None, shape=(8, 8))
    >>> full.modes
    (5, 5)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int] | None,
        *,
        shape: Sequence[int] | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise InvalidInputError(
                f"channels must be >= 1, got in_channels={in_channels}, out_channels={out_channels}"
            )
        if modes is None:
            if shape is None:
                raise InvalidInputError(
                    "SpectralConv(modes=None) keeps every mode of a grid: pass shape=(n1, ..., nd)"
                )
            shape = _check_positive_ints(shape, "shape")
            # n // 2 + 1 on every axis covers all n frequencies (see _plan).
            modes = tuple(n // 2 + 1 for n in shape)
            self.full_shape: tuple[int, ...] | None = shape
        else:
            self.full_shape = None
        self.modes = _check_positive_ints(modes, "modes")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise InvalidInputError(f"SpectralConv weights must be a real float dtype, got {dtype}")
        sizes = tuple(2 * m for m in self.modes[:-1]) + (self.modes[-1],)
        scale = float(init_scale) / (self.in_channels * self.out_channels)
        weight = torch.empty(
            self.in_channels, self.out_channels, *sizes, 2, dtype=dtype, device=device
        )
        nn.init.uniform_(weight, -scale, scale)
        self.weight = nn.Parameter(weight)

    @property
    def ndim(self) -> int:
        """Number of transformed (spatial) axes."""
        return len(self.modes)

    def extra_repr(self) -> str:
        """Channels and modes, shown by ``repr``."""
        full = f", shape={self.full_shape} (all modes)" if self.full_shape else ""
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}{full}"

    def complex_weight(self) -> torch.Tensor:
        """The weights as a complex tensor ``(in, out, 2 m_1, ..., 2 m_{d-1}, m_d)``.

        Along an axis other than the last, position ``k`` holds frequency ``k`` for
        ``k < m`` and frequency ``k - 2m`` otherwise (FFT order).
        """
        w = self.weight
        if w.dtype in (torch.float16, torch.bfloat16):
            w = w.float()
        return torch.view_as_complex(w)

    def _plan(
        self, in_shape: Sequence[int], out_shape: Sequence[int]
    ) -> list[list[tuple[slice, slice, slice]]]:
        """Per axis, the (input, output, weight) slices of the kept frequency blocks."""
        plan = []
        for axis, (m, n_in, n_out) in enumerate(zip(self.modes, in_shape, out_shape, strict=True)):
            if axis == self.ndim - 1:
                count = min(m, n_in // 2 + 1, n_out // 2 + 1)
                if n_in != n_out and count == n_in // 2 + 1 and n_in % 2 == 0:
                    count -= 1  # unpaired Nyquist of the input
                plan.append([(slice(0, count), slice(0, count), slice(0, count))])
                continue
            pos = min(m, (n_in - 1) // 2 + 1, (n_out - 1) // 2 + 1)
            neg_avail = n_in // 2 if n_in == n_out else min((n_in - 1) // 2, (n_out - 1) // 2)
            neg = min(m, neg_avail)
            blocks = [(slice(0, pos), slice(0, pos), slice(0, pos))]
            if neg > 0:
                blocks.append(
                    (slice(n_in - neg, n_in), slice(n_out - neg, n_out), slice(2 * m - neg, 2 * m))
                )
            plan.append(blocks)
        return plan

    def forward(self, x: torch.Tensor, out_shape: Sequence[int] | None = None) -> torch.Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_channels, *spatial)`` with ``len(spatial) == len(modes)``.
        out_shape : sequence of int, optional
            Spatial shape of the output (default: the input's); the kept modes are placed
            on that grid, i.e. the result is resampled spectrally.

        Returns
        -------
        torch.Tensor
            ``(batch, out_channels, *out_shape)``.
        """
        d = self.ndim
        if x.ndim != d + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"SpectralConv expects (batch, {self.in_channels}, <{d} spatial axes>), "
                f"got shape {tuple(x.shape)}"
            )
        in_shape = tuple(x.shape[2:])
        out_shape = in_shape if out_shape is None else _check_positive_ints(out_shape, "out_shape")
        if len(out_shape) != d:
            raise InvalidInputError(f"out_shape must have {d} entries, got {out_shape}")
        weight = self.complex_weight()
        real_dtype = torch.float64 if weight.dtype == torch.complex128 else torch.float32
        axes = tuple(range(-d, 0))
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_hat = torch.fft.rfftn(x.to(real_dtype), dim=axes, norm="forward")
            spec_shape = (*out_shape[:-1], out_shape[-1] // 2 + 1)
            out_hat = x_hat.new_zeros(x.shape[0], self.out_channels, *spec_shape)
            for blocks in itertools.product(*self._plan(in_shape, out_shape)):
                if any(b[0].stop - b[0].start <= 0 for b in blocks):
                    continue
                src = (slice(None), slice(None), *(b[0] for b in blocks))
                dst = (slice(None), slice(None), *(b[1] for b in blocks))
                wsl = (slice(None), slice(None), *(b[2] for b in blocks))
                out_hat[dst] = torch.einsum("bi...,io...->bo...", x_hat[src], weight[wsl])
            y = torch.fft.irfftn(out_hat, s=out_shape, dim=axes, norm="forward")
        return y

    @torch.no_grad()
    def untruncated(self, shape: Sequence[int], *, fill_scale: float = 0.0) -> SpectralConv:
        """A new layer keeping every mode of grid ``shape``, initialized from this one.

        The trained low modes are copied to the same frequencies; the new high modes start
        uniform in ``[-s, s]`` with ``s = fill_scale / (in * out)`` (0: exactly the old
        layer's output on that grid). This is how the Spectral-Refiner lifts the frequency
        truncation of a trained layer.

        Parameters
        ----------
        shape : sequence of int
            The grid of the untruncated layer.
        fill_scale : float, optional
            Scale of the new high-mode weights.

        Returns
        -------
        SpectralConv
            With ``modes`` covering ``shape``, same channels, dtype and device.

        Examples
        --------
        >>> import torch
        >>> small = SpectralConv(2, 2, modes=(3, 3))
        >>> big = small.untruncated((16, 16))
        >>> x = torch.randn(1, 2, 16, 16)
        >>> bool(torch.allclose(small(x), big(x), atol=1e-6))
        True
        """
        shape = _check_positive_ints(shape, "shape")
        if len(shape) != self.ndim:
            raise InvalidInputError(f"shape must have {self.ndim} entries, got {shape}")
        new = SpectralConv(
            self.in_channels,
            self.out_channels,
            None,
            shape=shape,
            dtype=self.weight.dtype,
            device=self.weight.device,
            init_scale=fill_scale,
        )
        if fill_scale == 0.0:
            new.weight.zero_()
        for blocks in itertools.product(*self._copy_plan(new.modes)):
            src = (slice(None), slice(None), *(b[0] for b in blocks))
            dst = (slice(None), slice(None), *(b[1] for b in blocks))
            new.weight[dst] = self.weight[src]
        return new

    def _copy_plan(self, new_modes: Sequence[int]) -> list[list[tuple[slice, slice]]]:
        plan = []
        for axis, (m, big) in enumerate(zip(self.modes, new_modes, strict=True)):
            c = min(m, big)
            if axis == self.ndim - 1:
                plan.append([(slice(0, c), slice(0, c))])
            else:
                plan.append(
                    [
                        (slice(0, c), slice(0, c)),
                        (slice(2 * m - c, 2 * m), slice(2 * big - c, 2 * big)),
                    ]
                )
        return plan
