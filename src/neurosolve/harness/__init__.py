"""The evaluation harness: problem suites, the benchmark runner, result records, reports.

- :mod:`~neurosolve.harness.suites`: seeded problem and sequence specifications and the
  built-in suites; :mod:`~neurosolve.harness.suite_files` reads a suite from JSON or TOML.
- :mod:`~neurosolve.harness.runner`: runs methods on problems and measures them
  (:mod:`~neurosolve.harness.memory`: the peak-memory probe).
- :mod:`~neurosolve.harness.records`: the result dataclasses and their JSON form.
- :mod:`~neurosolve.harness.report`: markdown tables and residual plots.

Every method is measured the same way: setup and solve wall time, iterations, matvecs,
peak memory, and the TRUE final relative residual recomputed by the harness in float64
(a method that claims convergence it did not reach is recorded as not converged).

Examples
--------
>>> from neurosolve.harness import ProblemSpec, Suite, run_suite, markdown_table
>>> res = run_suite(Suite("tiny", problems=[ProblemSpec(shape=(8, 8))]), ["scipy-cg"],
...                 rtol=1e-8, progress=False)
>>> res.runs[0].converged
True
"""

from neurosolve.harness.records import (
    BenchmarkResults,
    MachineInfo,
    RunRecord,
    SequenceRecord,
    load_results,
    machine_info,
    save_results,
)
from neurosolve.harness.report import (
    markdown_table,
    plot_residuals,
    plot_sequences,
    sequence_table,
    write_report,
)
from neurosolve.harness.runner import (
    check_methods,
    run_problem,
    run_sequence,
    run_suite,
)
from neurosolve.harness.suite_files import load_suite
from neurosolve.harness.suites import (
    SUITES,
    ProblemSpec,
    SequenceSpec,
    Suite,
    get_suite,
    suite_names,
)

__all__ = [
    "BenchmarkResults",
    "MachineInfo",
    "RunRecord",
    "SequenceRecord",
    "load_results",
    "machine_info",
    "save_results",
    "markdown_table",
    "plot_residuals",
    "plot_sequences",
    "sequence_table",
    "write_report",
    "check_methods",
    "run_problem",
    "run_sequence",
    "run_suite",
    "SUITES",
    "ProblemSpec",
    "SequenceSpec",
    "Suite",
    "get_suite",
    "load_suite",
    "suite_names",
]
