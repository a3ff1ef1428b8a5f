"""``pbrl report``: trial status, final statistics over complete trials only, search axes as rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pbrl_dist.config.loader import ConfigError
from pbrl_dist.report.command import _report_axes, config_labels, report_folder, sweep_axes
from pbrl_dist.report.tables import (
    bootstrap_ci,
    final_summary,
    iqm,
    left_out_message,
    load_results,
)


def _interrupted_sweep(fake: Any, rows_of: Any) -> None:
    """Two finished trials at 400 iterations, two Ctrl-C'd ones (360, 220), one stopped by ASHA."""
    spec = fake.specs()[0]
    fake.record({"seeds": [0, 1, 2, 3, 4]})
    cfg = spec.container
    fake.trial("pbrl_value__s0", {**cfg, "seed": 0}, rows_of(1.0, 400))
    fake.trial("pbrl_value__s1", {**cfg, "seed": 1}, rows_of(3.0, 400), status="legacy")
    fake.trial("pbrl_value__s2", {**cfg, "seed": 2}, rows_of(-50.0, 360), status="incomplete")
    fake.trial("pbrl_value__s3", {**cfg, "seed": 3}, rows_of(-70.0, 220), status="incomplete")
    fake.trial("pbrl_value__s4", {**cfg, "seed": 4}, rows_of(-90.0, 40), status="stopped")


def test_load_results_gives_every_trial_a_status(fake: Any, rows_of: Any) -> None:
    _interrupted_sweep(fake, rows_of)
    curves, trials = load_results(fake.out)
    status = dict(zip(trials["trial"], trials["status"], strict=True))
    assert status == {
        "pbrl_value__s0": "complete",
        "pbrl_value__s1": "complete",  # result.json without "status": an older folder
        "pbrl_value__s2": "incomplete",
        "pbrl_value__s3": "incomplete",
        "pbrl_value__s4": "stopped",
    }
    assert trials["complete"].tolist() == [True, True, False, False, False]
    assert set(curves["status"]) == {"complete", "incomplete", "stopped"}
    # The last row of a half-run trial is what it has, not a final result.
    assert trials.set_index("trial").loc["pbrl_value__s3", "iter"] == 220


def test_final_summary_uses_complete_trials_only(fake: Any, rows_of: Any) -> None:
    _interrupted_sweep(fake, rows_of)
    _, trials = load_results(fake.out)
    s = final_summary(trials).set_index("metric").loc["upper/leader_return"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(2.0)
    assert s["min"] == 1.0 and s["max"] == 3.0
    assert left_out_message(trials) == (
        "left out 3 of 5 trials: 2 incomplete, 1 stopped by the scheduler"
    )


def test_report_folder_says_what_it_left_out(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _interrupted_sweep(fake, rows_of)
    report_folder(fake.out)
    text = capsys.readouterr().out
    lines = [x for x in text.splitlines() if x.startswith("left out")]
    assert lines == ["left out 3 of 5 trials: 2 incomplete, 1 stopped by the scheduler"]
    summary = pd.read_csv(fake.out / "report" / "summary.csv")
    row = summary[summary["metric"] == "upper/leader_return"].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(2.0)
    assert (fake.out / "figures" / "fig1_stackelberg.png").exists()


def test_no_complete_trial_is_one_error_and_writes_nothing(fake: Any, rows_of: Any) -> None:
    cfg = fake.specs()[0].container
    fake.record({"seeds": [0, 1]})
    fake.trial("pbrl_value__s0", {**cfg, "seed": 0}, rows_of(1.0, 360), status="incomplete")
    fake.trial("pbrl_value__s1", {**cfg, "seed": 1}, rows_of(1.0, 40), status="stopped")
    with pytest.raises(ConfigError) as e:
        report_folder(fake.out)
    msg = str(e.value)
    assert "\n" not in msg and "none of the 2 trials is complete" in msg
    assert "1 incomplete, 1 stopped by the scheduler" in msg
    assert not (fake.out / "report").exists() and not (fake.out / "figures").exists()


def test_report_cli_exits_2_when_no_trial_is_complete(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.cli import main

    cfg = fake.specs()[0].container
    fake.record({"seeds": [0]})
    fake.trial("pbrl_value__s0", {**cfg, "seed": 0}, rows_of(1.0, 360), status="incomplete")
    assert main(["report", str(fake.out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pbrl: error:")


def test_search_axes_are_report_rows(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ASHA search over lr_x: every sampled value is its own row (not one row n=6)."""
    cfg = fake.specs()[0].container
    search = {"method.lr_x": {"loguniform": [0.01, 0.5]}}
    fake.record({"seeds": [0], "search": search, "num_samples": 3})
    for i, lr in enumerate([0.0123456, 0.0456789, 0.3141592]):
        c = {**cfg, "method": {**cfg["method"], "lr_x": lr}}
        fake.trial(f"pbrl_value__s0__lr_x={lr:.4g}__t{i}", c, rows_of(float(i), 40))
    _, trials = load_results(fake.out)
    assert _report_axes(sweep_axes(fake.out), trials) == ("method.lr_x",)
    report_folder(fake.out)
    summary = pd.read_csv(fake.out / "report" / "summary.csv")
    lead = summary[summary["metric"] == "upper/leader_return"]
    assert len(lead) == 3 and lead["n"].tolist() == [1, 1, 1]
    assert sorted(lead["mean"]) == [0.0, 1.0, 2.0]
    text = capsys.readouterr().out
    assert "0.04568" in text  # the table shows the sampled value, shortened
    labels = set(config_labels(trials, ("method.name", "method.lr_x")))
    assert labels == {
        "pbrl_value lr_x=0.01235",
        "pbrl_value lr_x=0.04568",
        "pbrl_value lr_x=0.3142",
    }


def test_grid_axes_stay_rows_and_games_seeds_are_averaged(fake: Any, rows_of: Any) -> None:
    cfg = fake.specs()[0].container
    fake.record({"seeds": [0, 1], "grid": {"method.lam": [5, 20], "problem.game": [0, 1]}})
    for lam in (5, 20):
        for game in (0, 1):
            for s in (0, 1):
                c = {
                    **cfg,
                    "seed": s,
                    "problem": {**cfg["problem"], "game": game},
                    "method": {**cfg["method"], "lam": float(lam)},
                }
                fake.trial(f"pbrl_value__lam={lam}__game={game}__s{s}", c, rows_of(lam + game, 40))
    _, trials = load_results(fake.out)
    assert _report_axes(sweep_axes(fake.out), trials) == ("method.lam",)


def test_iqm_and_bootstrap_ci_on_known_values() -> None:
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.array([7.0])) == 7.0
    assert bootstrap_ci(np.full(10, 3.25)) == (3.25, 3.25)
    assert bootstrap_ci(np.array([2.0])) == (2.0, 2.0)
    lo, hi = bootstrap_ci(np.arange(100, dtype=float))
    assert lo < 49.5 < hi and hi - lo < 25
    assert bootstrap_ci(np.arange(10.0)) == bootstrap_ci(np.arange(10.0))  # fixed seed
