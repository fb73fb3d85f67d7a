import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_iterations.py"
spec = importlib.util.spec_from_file_location("compare_iterations", SCRIPT)
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def _write(path, runs):
    path.write_text(json.dumps({"harness": {"runs": runs}, "rtol": 1e-6}))
    return path


def test_same_counts_pass_and_a_changed_count_is_named(tmp_path, capsys):
    runs = [
        {"problem": "p1", "method": "cg", "iterations": 10, "status": "converged"},
        {"problem": "p1", "method": "mgpc-pcg", "iterations": 5, "status": "converged"},
    ]
    a = _write(tmp_path / "a.json", runs)
    assert compare.main([str(a), str(a)]) == 0
    assert "4 entries compared, 0 differ" in capsys.readouterr().out
    changed = [dict(runs[0]), dict(runs[1], iterations=6)]
    b = _write(tmp_path / "b.json", changed)
    assert compare.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "/harness/runs/p1:mgpc-pcg/iterations: 5 -> 6" in out and "p1:cg" not in out
