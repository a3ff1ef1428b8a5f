"""``launch/specs.py``: sizes and resources (``check_bounds``) and the ASHA metric are checked before any
work: ``dist.cpus_per_trial`` beyond this machine's CPUs, a trial's memory floor beyond the memory here, and
a scheduler metric the problem never logs are one line naming the field, with nothing written and no Ray.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from _cli import refused
from _tiny import tiny_sweep_file

ROOT = Path(__file__).resolve().parents[3]


def test_specs_cpus_per_trial_beyond_this_machine_is_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "out"
    err = refused(capsys, ["run", str(sweep), "--out", str(out), "dist.cpus_per_trial=1000"])
    assert "dist.cpus_per_trial" in err
    assert not out.exists()


def test_specs_rlhf_num_envs_beyond_memory_is_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["run", str(ROOT / "sweeps" / "rlhf_toy.yaml"), "--smoke", "--out", str(out)]
    err = refused(capsys, [*argv, "problem.num_envs=1000000000"])
    assert "problem.num_envs" in err or "memory" in err
    assert not out.exists()


def test_specs_asha_metric_the_problem_never_logs_fails_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_ray(*args: Any, **kwargs: Any) -> bool:
        raise AssertionError("Ray was started before the sweep file was checked")

    monkeypatch.setattr("pbrl_dist.launch.tune_sweep.ensure_ray", no_ray)
    monkeypatch.setattr("pbrl_dist.launch.ray_session.ensure_ray", no_ray)
    out = tmp_path / "out"
    argv = ["sweep", str(ROOT / "sweeps" / "fig1_search.yaml"), "--smoke", "--out", str(out)]
    t0 = time.monotonic()
    err = refused(capsys, [*argv, "sweep.scheduler.metric=rl/episode_return"])
    took = time.monotonic() - t0
    assert "sweep.scheduler.metric" in err and "rl/episode_return" in err
    assert took < 10, f"took {took:.1f}s"
    assert not out.exists()
