import json
import math

import pytest

from neurosolve.errors import FileFormatError, InvalidInputError
from neurosolve.harness.records import (
    BenchmarkResults,
    RunRecord,
    SequenceRecord,
    load_results,
    machine_info,
    save_results,
)
from neurosolve.harness.report import (
    markdown_table,
    plot_residuals,
    sequence_table,
    write_report,
)


def _results():
    good = RunRecord(
        "poisson2d-16",
        "amg-sa-pcg",
        n=256,
        nnz=1216,
        converged=True,
        claimed_converged=True,
        status="converged",
        iterations=3,
        matvecs=4,
        setup_seconds=0.01,
        solve_seconds=0.02,
        true_residual=3e-9,
        peak_memory_bytes=123456,
        memory_method="tracemalloc",
        residuals=[1.0, 1e-3, 1e-6, 3e-9],
        residual_times=[0.01, 0.015, 0.02, 0.03],
        condition_estimate=1.5,
    )
    liar = RunRecord(
        "poisson2d-16",
        "liar",
        n=256,
        claimed_converged=True,
        status="converged",
        iterations=1,
        true_residual=1.0,
        residuals=[1.0, 1e-12],
        residual_times=[0.0, 0.001],
        flags=["claimed convergence but ..."],
    )
    diverged = RunRecord(
        "poisson3d-8",
        "cg",
        n=512,
        status="diverged",
        iterations=2,
        residuals=[1.0, 1e10, math.inf],
        residual_times=[0.0, 0.1, 0.2],
        true_residual=math.inf,
    )
    broken = RunRecord("poisson3d-8", "inf", error="RuntimeError: x", status="error")
    seq = SequenceRecord(
        "sequence3d-8-2frames",
        "amg-sa-pcg",
        frames=[
            RunRecord(
                "s-f0",
                "amg-sa-pcg",
                converged=True,
                iterations=4,
                setup_seconds=0.5,
                solve_seconds=0.1,
                frame=0,
                residuals=[1.0, 1e-7],
            ),
            RunRecord(
                "s-f1",
                "amg-sa-pcg",
                converged=True,
                iterations=5,
                setup_seconds=0.4,
                solve_seconds=0.2,
                frame=1,
                residuals=[1.0, 1e-7],
            ),
        ],
    )
    return BenchmarkResults(
        suite="demo",
        rtol=1e-8,
        maxiter=100,
        methods=["amg-sa-pcg", "liar", "cg", "inf"],
        machine=machine_info(),
        runs=[good, liar, diverged, broken],
        sequences=[seq],
        created="2026-01-01T00:00:00+00:00",
        options={"warmup": True},
    )


def test_json_round_trip(tmp_path):
    res = _results()
    path = save_results(res, tmp_path / "sub" / "r.json")
    text = path.read_text()
    json.loads(text)  # strict JSON: no bare NaN/Infinity
    assert "Infinity" not in text and "NaN" not in text
    back = load_results(path)
    assert back.runs[:3] == res.runs[:3]
    assert back.runs[3].method == "inf"  # a string that looks non-finite stays a string
    assert math.isnan(back.runs[3].true_residual)
    assert back.sequences == res.sequences
    assert back.machine == res.machine
    assert back.sequences[0].total_seconds == pytest.approx(1.2)
    assert back.sequences[0].iterations == [4, 5]
    back.runs[3].true_residual = res.runs[3].true_residual = 0.0
    assert back == res


def test_machine_info_describes_this_machine():
    info = machine_info()
    assert info.cpu_count >= 1 and info.torch_threads >= 1
    assert info.numpy and info.scipy and info.pyamg and info.torch and info.neurosolve


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "cannot read"),
        ('{"suite": "x"}', "format marker"),
        ('{"format": "neurosolve-benchmark", "format_version": 99}', "version"),
    ],
)
def test_load_results_rejects_foreign_files(tmp_path, content, match):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(FileFormatError, match=match):
        load_results(path)
    with pytest.raises(FileFormatError, match="not found"):
        load_results(tmp_path / "missing.json")


def test_markdown_tables():
    res = _results()
    table = markdown_table(res)
    lines = table.splitlines()
    assert lines[0].startswith("| problem | n | method | iterations")
    assert "| poisson2d-16 | 256 | amg-sa-pcg | 3 |" in table
    assert "NO (false claim)" in table
    assert "no (diverged)" in table and "| error |" in table
    assert "poisson3d-8 / inf: RuntimeError: x" in table
    seq = sequence_table(res)
    assert "| sequence3d-8-2frames | amg-sa-pcg | 2 | 4-5 | 0.9 | 0.3 | 1.2 | yes |" in seq


def _is_png(path, min_bytes=5000):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes


def test_write_report_files(tmp_path):
    paths = write_report(_results(), tmp_path / "out")
    assert set(paths) == {"json", "markdown", "residuals_iteration", "residuals_time", "sequences"}
    for key in ("residuals_iteration", "residuals_time", "sequences"):
        assert _is_png(paths[key]), key
    assert "amg-sa-pcg" in paths["markdown"].read_text()
    assert load_results(paths["json"]).suite == "demo"
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_plot_residuals_rejects_bad_axis(tmp_path):
    with pytest.raises(InvalidInputError, match="iteration"):
        plot_residuals(_results(), tmp_path / "x.png", x="matvecs")
    with pytest.raises(InvalidInputError, match="no runs"):
        plot_residuals(BenchmarkResults("e", 1e-6), tmp_path / "x.png")


def test_written_files_are_world_readable(tmp_path):
    paths = write_report(_results(), tmp_path)
    for path in paths.values():
        assert path.stat().st_mode & 0o044 == 0o044, path
