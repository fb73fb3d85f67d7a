"""Progress display for long work: a tqdm bar on a terminal, plain lines or nothing elsewhere.

A bar is shown only when the caller asks for one *and* standard error is a terminal, so that
logs, pipes and CI runs stay clean. Every generator, trainer and benchmark loop in the
package goes through :func:`progress_bar`.

Off a terminal a long run would then be silent until it ends. Loops whose steps are few
and long (a chunk of generated samples, a benchmark problem, a training epoch) ask for
``lines=True``: there, off a terminal, each step prints one line to standard error
(:func:`log_line`) instead of redrawing a bar, at most one every :data:`LINE_INTERVAL`
seconds, so quick runs stay silent and a fast loop does not flood a log.
:func:`progress_lines` says whether such lines are wanted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = [
    "LINE_INTERVAL",
    "LineProgress",
    "log_line",
    "progress_bar",
    "progress_lines",
    "show_progress",
]

#: Least seconds between two lines of a :class:`LineProgress` (and before its first one).
LINE_INTERVAL = 2.0


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


def progress_lines(requested: bool = True) -> bool:
    """Whether to print progress as plain lines: asked for, and standard error is NOT a terminal.

    Examples
    --------
    >>> progress_lines(False)
    False
    """
    return bool(requested) and not show_progress(True)


def log_line(text: str, *, file: TextIO | None = None) -> None:
    """Print one progress line (``neurosolve: TEXT``) to standard error and flush it.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> log_line("epoch 1/3: train_loss 0.5", file=buf)
    >>> buf.getvalue().splitlines()
    ['neurosolve: epoch 1/3: train_loss 0.5']
    """
    stream = file if file is not None else sys.stderr
    try:
        print(f"neurosolve: {text}", file=stream, flush=True)
    except (OSError, ValueError):  # closed or broken stderr: progress is not worth a failure
        pass


class LineProgress:
    """The part of tqdm's interface the package uses, printing one line per ``update``.

    It stands in for a bar off a terminal (:func:`progress_bar` with ``lines=True``): an
    ``update(n)`` prints ``desc: done/total unit [postfix] (elapsed s)`` through
    :func:`log_line` when ``min_interval`` seconds have passed since the start or the last
    line; ``close`` prints the final count if earlier lines were printed and it was not.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> bar = LineProgress(total=4, desc="demo", unit="sample", file=buf, min_interval=0)
    >>> bar.update(2); bar.set_postfix_str("chunk 1"); bar.update(2); bar.close()
    >>> [line.split(" (")[0] for line in buf.getvalue().splitlines()]
    ['neurosolve: demo: 2/4 sample', 'neurosolve: demo: 4/4 sample [chunk 1]']
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        initial: float = 0,
        desc: str | None = None,
        unit: str = "it",
        file: TextIO | None = None,
        min_interval: float = LINE_INTERVAL,
        **_: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.n = initial
        self.desc = desc or "progress"
        self.unit = unit
        self.postfix = ""
        self._file = file
        self._start = time.perf_counter()
        self._min_interval = float(min_interval)
        self._last = self._start
        self._printed: float | None = None  # the count of the last printed line

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Advance by ``n``; print a line unless the previous one is too recent."""
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self._min_interval:
            self._last = now
            self._line()

    def _line(self) -> None:
        self._printed = self.n
        done = f"{self.n:g}" + (f"/{self.total:g}" if self.total else "")
        post = f" [{self.postfix}]" if self.postfix else ""
        elapsed = time.perf_counter() - self._start
        log_line(f"{self.desc}: {done} {self.unit}{post} ({elapsed:.1f} s)", file=self._file)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Text shown after the count in the next line."""
        self.postfix = str(s)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """Like :meth:`set_postfix_str`, from ``key=value`` pairs."""
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the label of the next lines."""
        self.desc = desc or self.desc

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Print the final count when earlier lines were printed and it was not."""
        if self._printed is not None and self._printed != self.n:
            self._line()


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    enabled: bool = True,
    lines: bool = False,
    **kwargs: Any,
) -> tqdm | LineProgress:
    """A tqdm bar over ``iterable``, drawn only when :func:`show_progress` allows it.

    Without ``iterable`` it is a manual bar (give ``total=``); ``kwargs`` go to tqdm
    (``desc``, ``total``, ``unit``). With ``lines=True`` a bar that is enabled but cannot be
    drawn (standard error is not a terminal) becomes a :class:`LineProgress`, printing one
    line per update: use it for loops of few, long steps.

    Examples
    --------
    >>> sum(progress_bar(range(4), enabled=False, desc="demo"))
    6
    """
    if lines and progress_lines(enabled):
        return LineProgress(iterable, **kwargs)
    return tqdm(iterable, disable=not show_progress(enabled), **kwargs)
