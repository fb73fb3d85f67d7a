"""Process-wide on/off settings: set in code, else read from an environment variable.

The kernels' backends (:mod:`neurosolve.solvers.compiled`, :mod:`neurosolve.solvers.native`)
each have one: ``NEUROSOLVE_COMPILE`` / ``set_compile`` and ``NEUROSOLVE_NATIVE`` /
``set_native``. A value set in code wins over the environment until it is handed back
(``None``); the environment is read at every check, never at import.
"""

from __future__ import annotations

import os

__all__ = ["EnvSwitch"]

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


class EnvSwitch:
    """An on/off setting of the process: :meth:`set` in code, else ``variable``, else default.

    Parameters
    ----------
    variable : str
        The environment variable (``1/true/yes/on`` and ``0/false/no/off``, any case; any
        other value means the default).
    default : bool
        The setting when neither code nor the environment says otherwise.

    Examples
    --------
    >>> switch = EnvSwitch("NEUROSOLVE_EXAMPLE_SWITCH", default=True)
    >>> switch.enabled()
    True
    >>> switch.set(False), switch.enabled()
    (None, False)
    >>> switch.set(None), switch.enabled()
    (False, True)
    """

    def __init__(self, variable: str, *, default: bool) -> None:
        self.variable = variable
        self.default = bool(default)
        self.override: bool | None = None

    def enabled(self) -> bool:
        """The setting now."""
        if self.override is not None:
            return self.override
        value = os.environ.get(self.variable, "").strip().lower()
        if value in _ON:
            return True
        if value in _OFF:
            return False
        return self.default

    def set(self, enabled: bool | None) -> bool | None:
        """Set it in code (``None``: hand back to the environment); returns the previous one."""
        previous, self.override = self.override, None if enabled is None else bool(enabled)
        return previous

    def __repr__(self) -> str:
        return f"EnvSwitch({self.variable!r}, enabled={self.enabled()})"
