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
