"""numba's compile options for the package's loops, in one place, and its two decorators.

``cache=True``: compiled code is kept on disk next to the module, so a second process loads
it instead of compiling; ``nogil``: a loop releases the GIL; no bounds checks (the callers
check shapes); numpy's error model (a division by zero gives inf, not an exception).
Imported by the loop modules only, which are imported on first use of a native kernel.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numba

__all__ = ["entries", "jit", "parallel", "reduction"]

_JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}
#: A serial loop.
jit = numba.njit(**_JIT)
#: A loop whose ``prange`` runs on numba's threading layer.
parallel = numba.njit(parallel=True, **_JIT)
#: A serial loop whose float sums may be reassociated, so that they vectorise: for
#: statistics compared with a threshold, where the order of the additions does not matter.
reduction = numba.njit(fastmath={"reassoc", "nsz"}, **_JIT)


def entries(module: ModuleType, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The parallel and serial entry (``name``, ``name_serial``) of each name in ``module``."""
    return {key: getattr(module, key) for name in names for key in (name, f"{name}_serial")}
