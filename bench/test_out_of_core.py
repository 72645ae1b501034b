"""bench/out_of_core.py runs (its --quick mode: 20,000 rows, one epoch, in seconds) and
reports what it claims to: peak memory per process and two accuracies on the same rows.
A plain test, also run with --smoke; the figures themselves need the full run."""

from __future__ import annotations

import out_of_core


def test_out_of_core_quick_runs_and_cleans_up(tmp_path):
    report = out_of_core.main(["--quick", "--dir", str(tmp_path)])
    assert report["rows"] == 20_000 and report["data_bytes"] > 20_000 * 784 * 4
    stream, memory = report["results"]
    assert (stream["mode"], memory["mode"]) == ("stream", "memory")
    for result in (stream, memory):
        assert 0.5 < result["accuracy"] <= 1 and result["maxrss"] > 0
    assert list(tmp_path.iterdir()) == []  # the data files are deleted
