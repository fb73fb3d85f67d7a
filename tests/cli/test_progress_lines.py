"""Off a terminal, long loops print one line per step instead of staying silent."""

import io

from neurosolve._util import progress
from neurosolve._util.progress import LineProgress, log_line, progress_bar, progress_lines


def test_lines_only_off_a_terminal_and_when_asked(monkeypatch):
    monkeypatch.setattr(progress, "show_progress", lambda requested=True: bool(requested))
    assert not progress_lines(True)  # a terminal: the tqdm bar
    assert not isinstance(progress_bar(range(2), lines=True), LineProgress)
    monkeypatch.setattr(progress, "show_progress", lambda requested=True: False)
    assert progress_lines(True) and not progress_lines(False)
    assert isinstance(progress_bar(range(2), lines=True), LineProgress)
    assert not isinstance(progress_bar(range(2), lines=True, enabled=False), LineProgress)
    assert not isinstance(progress_bar(range(2)), LineProgress)  # not asked: silent bar


def test_line_progress_prints_one_line_per_step():
    buf = io.StringIO()
    bar = LineProgress(total=6, desc="generate", unit="sample", file=buf, min_interval=0)
    with bar:
        for chunk in range(3):
            bar.set_postfix_str(f"chunk {chunk}")
            bar.update(2)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("neurosolve: generate: 2/6 sample [chunk 0] (")
    assert lines[2].startswith("neurosolve: generate: 6/6 sample [chunk 2] (")
    # iterating counts one step per item
    buf = io.StringIO()
    assert list(LineProgress(range(3), desc="it", file=buf, min_interval=0)) == [0, 1, 2]
    assert buf.getvalue().splitlines()[-1].startswith("neurosolve: it: 3/3 it")


def test_line_progress_is_rate_limited_and_finishes_its_count():
    buf = io.StringIO()
    bar = LineProgress(total=100, desc="fast", file=buf, min_interval=3600)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert buf.getvalue() == ""  # a quick loop stays silent
    bar = LineProgress(total=3, desc="slow", file=buf, min_interval=0)
    bar.update(1)
    bar._min_interval = 3600  # later steps come too soon for a line of their own
    bar.update(2)
    bar.close()  # ... but the final count is printed
    lines = buf.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "neurosolve: slow: 1/3 it",
        "neurosolve: slow: 3/3 it",
    ]


def test_log_line_survives_a_closed_stream():
    stream = io.StringIO()
    stream.close()
    log_line("epoch 1", file=stream)  # no exception
