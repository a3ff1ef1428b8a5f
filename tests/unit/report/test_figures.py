"""Figure curves: the mean line averages complete trials only; stopped trials are drawn thin, apart."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pbrl_dist.report.figures import _panel, draw_figures, mean_curve
from pbrl_dist.report.tables import load_results


def _curves() -> pd.DataFrame:
    """ASHA-like: two survivors to iteration 100, one trial stopped at 40 (far worse), one crashed."""
    rows = []
    for trial, status, value, last in [
        ("a", "complete", 1.0, 100),
        ("b", "complete", 3.0, 100),
        ("c", "stopped", -100.0, 40),
        ("d", "incomplete", 500.0, 60),
    ]:
        for k in range(0, last + 1, 10):
            rows.append(
                {
                    "trial": trial,
                    "status": status,
                    "method.name": "pbrl",
                    "iter": k,
                    "upper/leader_return": value,
                }
            )
    return pd.DataFrame(rows)


def test_mean_curve_averages_complete_trials_only() -> None:
    stats = mean_curve(_curves(), "upper/leader_return")
    assert stats["iter"].tolist() == list(range(0, 101, 10))
    # The same population (a, b) at every iteration: before and after the stop at 40.
    assert (stats["mean"] == 2.0).all() and (stats["count"] == 2).all()
    assert np.allclose(stats["std"], np.sqrt(2.0))


def test_mean_curve_without_status_column_counts_every_row() -> None:
    stats = mean_curve(_curves().drop(columns="status"), "upper/leader_return")
    assert stats.set_index("iter").loc[100, "count"] == 2
    assert stats.set_index("iter").loc[0, "count"] == 4


def test_panel_draws_stopped_trials_thin_and_apart() -> None:
    fig, ax = plt.subplots()
    try:
        _panel(ax, _curves(), "upper/leader_return", log=False, title="t")
        mean_line, *rest = ax.get_lines()
        assert np.allclose(mean_line.get_ydata(), 2.0) and mean_line.get_label() == "pbrl (n=2)"
        assert len(rest) == 1  # the stopped trial; the incomplete one is not drawn
        (stopped,) = rest
        assert list(stopped.get_xdata())[-1] == 40 and np.allclose(stopped.get_ydata(), -100.0)
        assert stopped.get_linewidth() < mean_line.get_linewidth()
        assert stopped.get_color() == mean_line.get_color()
        assert "stopped" in str(stopped.get_label())
    finally:
        plt.close(fig)


def test_draw_figures_from_a_folder_with_a_stopped_trial(fake: Any, rows_of: Any) -> None:
    cfg = fake.specs()[0].container
    fake.record({"seeds": [0, 1]})
    fake.trial("pbrl_value__s0", {**cfg, "seed": 0}, rows_of(1.0, 100))
    fake.trial("pbrl_value__s1", {**cfg, "seed": 1}, rows_of(-9.0, 30), status="stopped")
    curves, _ = load_results(fake.out)
    stats = mean_curve(curves, "upper/leader_return")
    assert (stats["mean"] == 1.0).all() and (stats["count"] == 1).all()
    (path,) = draw_figures(curves, fake.out / "figures")
    assert path.name == "fig1_stackelberg.png" and path.exists()
