"""``launch/specs.py``: the ASHA metrics a sweep accepts and suggests are exactly what its trials log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbrl_dist.cli import main
from pbrl_dist.config.loader import load_sweep
from pbrl_dist.launch.specs import trial_metrics

ROOT = Path(__file__).resolve().parents[3]

METHODS = """\
name: metrics
problem: {name: stackelberg, num_states: 4, num_leader_actions: 3, num_follower_actions: 3,
          sparsity: 0.5, gamma: 0.8, tau: 0.2}
method: {algo: pbrl, estimator: exact, oracle: exact, lam: 20.0, lr_x: 0.1, lr_y: 0.1,
         num_iters: 4, log_every: 2}
methods:
  pbrl_value: {penalty: value}
  pbrl_bellman: {penalty: bellman}
  indep_pg: {algo: indep_pg}
logging: {wandb: disabled, progress_every_s: 1000}
sweep: {seeds: [0]}
"""


def test_specs_trial_metrics_are_exactly_the_keys_each_trial_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tmp_path / "metrics.yaml"
    sweep.write_text(METHODS)
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == 0
    for t in load_sweep(sweep).trials:
        rows = [
            json.loads(line) for line in (out / t.name / "metrics.jsonl").read_text().splitlines()
        ]
        keys = {k for row in rows for k in row} - {"iter"}
        assert set(trial_metrics(t)) == keys, t.name


def test_specs_asha_metric_never_logged_is_refused_and_never_suggested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_ray(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("Ray was started before the sweep file was checked")

    monkeypatch.setattr("pbrl_dist.launch.tune_sweep.ensure_ray", no_ray)
    out = tmp_path / "out"
    argv = ["sweep", str(ROOT / "sweeps" / "fig1_search.yaml"), "--smoke", "--out", str(out)]
    for metric in ("lower/oracle_err", "perf/iter_per_s"):
        capsys.readouterr()
        assert main([*argv, f"sweep.scheduler.metric={metric}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and metric in err, err
        suggested = err.split("choose one of ")[1].split(", ")
        assert "lower/oracle_err" not in suggested and "perf/iter_per_s" not in suggested
        assert set(suggested) == set(trial_metrics(load_sweep(argv[1], smoke=True).trials[0]))
    assert not out.exists()
