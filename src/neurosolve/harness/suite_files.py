"""Suite files: a benchmark suite read from a small JSON or TOML file.

A suite file's entries map one to one onto the fields of
:class:`~neurosolve.harness.suites.ProblemSpec` and
:class:`~neurosolve.harness.suites.SequenceSpec`, so anything the built-in suites describe
can be written down and run with ``neurosolve bench --problems FILE``::

    {"name": "mine",
     "problems": [{"shape": [32, 32, 32], "obstacles": "boxes", "seed": 1},
                  {"kind": "file", "path": "system.mtx", "rhs_path": "b.npy"}],
     "sequences": [{"shape": [32, 32, 32], "frames": 10}]}

Every mistake in a file (unknown fields, bad values, unparsable text) is reported as a
:class:`~neurosolve.errors.FileFormatError` naming the file and the entry.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from neurosolve.errors import FileFormatError, InvalidInputError
from neurosolve.harness.suites import ProblemSpec, SequenceSpec, Suite

__all__ = ["load_suite"]


def _from_mapping(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise FileFormatError(f"{where}: expected a table/object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FileFormatError(
            f"{where}: unknown field(s) {unknown}; allowed: {', '.join(sorted(known))}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except InvalidInputError as exc:
        raise FileFormatError(f"{where}: {exc}") from exc
    except TypeError as exc:
        raise FileFormatError(f"{where}: {exc}") from exc


def load_suite(path: str | Path) -> Suite:
    """Read a suite from a JSON (``.json``) or TOML (``.toml``) file.

    Relative ``path``, ``rhs_path`` and ``flags_path`` entries of file problems are
    resolved against the suite file's folder.

    Parameters
    ----------
    path : str or pathlib.Path
        The suite file.

    Returns
    -------
    Suite

    Raises
    ------
    FileFormatError
        If the file is missing, unparsable, or holds unknown fields or bad values.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "s.json").write_text(json.dumps(
    ...     {"name": "mine", "problems": [{"shape": [8, 8], "seed": 2}]}))
    >>> [p.id for p in load_suite(folder / "s.json").problems]
    ['poisson2d-8-s2']
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileFormatError(f"suite file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"cannot read suite file {path}: {exc}") from exc
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10: the same parser as the tomli package
            try:
                import tomli as tomllib
            except ImportError:
                raise FileFormatError(
                    "TOML suite files need Python >= 3.11 or the tomli package "
                    "(pip install tomli); or use JSON"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FileFormatError(f"suite file {path} is not valid TOML: {exc}") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"suite file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FileFormatError(f"suite file {path}: top level must be an object/table")
    unknown = sorted(set(data) - {"name", "description", "problems", "sequences"})
    if unknown:
        raise FileFormatError(
            f"suite file {path}: unknown field(s) {unknown}; "
            "allowed: name, description, problems, sequences"
        )
    problems = []
    for i, entry in enumerate(data.get("problems", [])):
        if isinstance(entry, dict):
            entry = dict(entry)
            for key in ("path", "rhs_path", "flags_path"):
                if isinstance(entry.get(key), str) and not Path(entry[key]).is_absolute():
                    entry[key] = str(path.parent / entry[key])
        problems.append(_from_mapping(ProblemSpec, entry, f"{path}: problems[{i}]"))
    sequences = [
        _from_mapping(SequenceSpec, entry, f"{path}: sequences[{i}]")
        for i, entry in enumerate(data.get("sequences", []))
    ]
    if not problems and not sequences:
        raise FileFormatError(f"suite file {path} lists no problems and no sequences")
    try:
        return Suite(
            name=str(data.get("name", path.stem)),
            problems=problems,
            sequences=sequences,
            description=str(data.get("description", "")),
        )
    except InvalidInputError as exc:
        raise FileFormatError(f"suite file {path}: {exc}") from exc
