"""Infrastructure shared by every layer: atomic writes, progress display, validators.

Nothing here knows about PDEs, solvers or models; every other package may import it, and it
imports only :mod:`neurosolve.errors`.
"""
