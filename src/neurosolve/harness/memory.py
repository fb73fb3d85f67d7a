"""Peak memory of a block of work, as the benchmark runner records it.

The runner measures setup + solve, as bytes above the level before the setup:

- on CUDA: ``torch.cuda.max_memory_allocated`` (device memory held by torch tensors),
  with the peak statistics reset before the setup;
- on CPU: the larger of the ``tracemalloc`` peak (every numpy/scipy/pyamg array and
  Python object; measured in the warm-up pass only, because tracing slows Python code)
  and the growth of the process's resident-set high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs`` on Linux), which also sees torch's CPU allocations that
  ``tracemalloc`` does not. ``memory_method`` in the record says which were available.
"""

from __future__ import annotations

import tracemalloc

__all__ = ["MemoryProbe"]


class MemoryProbe:
    """Peak memory of a ``with`` block, in bytes above the level at its start.

    After the block, ``peak`` holds the bytes (None when nothing could be measured) and
    ``method`` names what measured them (see the module docstring).

    Parameters
    ----------
    device : str or None
        The torch device of the measured work; ``cuda...`` measures device memory.
    trace : bool
        On CPU, also trace Python allocations with ``tracemalloc`` (slow).

    Examples
    --------
    >>> import numpy as np
    >>> with MemoryProbe(None, trace=True) as probe:
    ...     x = np.ones(1_000_000)
    >>> probe.peak >= 8_000_000, "tracemalloc" in probe.method
    (True, True)
    """

    def __init__(self, device: str | None, trace: bool) -> None:
        self.cuda = bool(device) and str(device).startswith("cuda")
        self._device_name = str(device) if device else "cpu"
        self.trace = trace and not self.cuda
        self.peak: int | None = None
        self.method = ""

    def __enter__(self) -> MemoryProbe:
        if self.cuda:
            import torch

            torch.cuda.synchronize(device=self._device())
            torch.cuda.reset_peak_memory_stats(self._device())
            self._cuda_base = torch.cuda.memory_allocated(self._device())
            return self
        self._rss_ok = _reset_rss_peak()
        self._rss_base = _rss_bytes("VmRSS") if self._rss_ok else None
        if self.trace:
            self._was_tracing = tracemalloc.is_tracing()
            if not self._was_tracing:
                tracemalloc.start()
            tracemalloc.reset_peak()
            self._trace_base = tracemalloc.get_traced_memory()[0]
        return self

    def _device(self):
        import torch

        return torch.device(self._device_name)

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(device=self._device())
            self.peak = int(torch.cuda.max_memory_allocated(self._device()) - self._cuda_base)
            self.method = "cuda-max-allocated"
            return
        peaks, names = [], []
        if self.trace:
            peaks.append(tracemalloc.get_traced_memory()[1] - self._trace_base)
            names.append("tracemalloc")
            if not self._was_tracing:
                tracemalloc.stop()
        if self._rss_ok and self._rss_base is not None:
            hwm = _rss_bytes("VmHWM")
            if hwm is not None:
                peaks.append(hwm - self._rss_base)
                names.append("rss-hwm")
        if peaks:
            self.peak = int(max(0, max(peaks)))
            self.method = "max(" + ", ".join(names) + ")" if len(names) > 1 else names[0]


def _reset_rss_peak() -> bool:
    # Writing "5" to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_bytes(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
