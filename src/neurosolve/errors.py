"""Exceptions raised by neurosolve.

Every error a user can cause (bad matrices, bad files, bad parameters) is raised as a
subclass of :class:`NeurosolveError` with a message that names the problem. The command
line interface catches :class:`NeurosolveError`, prints the message and exits non-zero.
"""

from __future__ import annotations


class NeurosolveError(Exception):
    """Base class of every error neurosolve raises on purpose."""


class InvalidInputError(NeurosolveError, ValueError):
    """An argument is malformed: wrong shape, NaN/Inf, out of range, not SPD, ..."""


class FileFormatError(NeurosolveError, ValueError):
    """A file is missing, truncated, corrupted, or was not written by neurosolve."""


class UnknownNameError(NeurosolveError, KeyError):
    """A method, generator, model or suite name is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TrainingDivergedError(NeurosolveError, RuntimeError):
    """Training produced a NaN or Inf loss."""


class OutOfSpaceError(NeurosolveError, OSError):
    """The disk filled up while writing a file (``ENOSPC``); the message names the file."""
