"""Metric sinks (``pbrl_dist/metrics.py``)."""

from __future__ import annotations

import pytest

from pbrl_dist.metrics import ProgressSink


def test_progress_sink_counts_the_iterations_done_and_never_passes_the_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every loop logs ``iter`` = iterations done; the last row is the total (it printed 101/100)."""
    sink = ProgressSink("t", total=100, every_s=0.0)
    for k in (50, 100):
        sink.log({"iter": k, "upper/objective": 1.0})
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in lines] == ["50/100", "100/100"]


def test_progress_sink_names_where_the_trial_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from pbrl_dist.launch.trial import actors_label

    sink = ProgressSink("t", total=10, every_s=0.0, actors=actors_label("ray", (4, 1)))
    sink.log({"iter": 10})
    ProgressSink("u", total=10, every_s=0.0, actors=actors_label("local", (0, 0))).log({"iter": 5})
    assert capsys.readouterr().out.split("\n")[:2] == [
        "    t [ray 4w+1o]: 10/10 it (0s) ",
        "    u [local]: 5/10 it (0s) ",
    ]
