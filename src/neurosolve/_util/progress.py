"""Progress display for long work: a tqdm bar on a terminal, nothing elsewhere.

A bar is shown only when the caller asks for one *and* standard error is a terminal, so that
logs, pipes and CI runs stay clean. Every generator, trainer and benchmark loop in the
package goes through :func:`progress_bar`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "show_progress"]


def show_progress(requested: bool = True) -> bool:
    """Whether a progress bar should be drawn: asked for, and standard error is a terminal.

    Examples
    --------
    >>> show_progress(False)
    False
    """
    if not requested:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any
) -> tqdm:
    """A tqdm bar over ``iterable``, drawn only when :func:`show_progress` allows it.

    Without ``iterable`` it is a manual bar (give ``total=``); ``kwargs`` go to tqdm
    (``desc``, ``total``, ``unit``).

    Examples
    --------
    >>> sum(progress_bar(range(4), enabled=False, desc="demo"))
    6
    """
    return tqdm(iterable, disable=not show_progress(enabled), **kwargs)
