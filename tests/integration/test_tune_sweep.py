"""``pbrl sweep`` on local Ray: the pbrl-run layout, same numbers, retries from checkpoints, search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(300)]

FILES = ("config.yaml", "metrics.jsonl", "final_state.npz", "result.json")


def _attempts(trial_dir: Path) -> list[dict]:
    lines = (trial_dir / "tune_attempts.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x]


def test_sweep_writes_the_pbrl_run_layout_with_the_same_numbers(
    tiny_sweep: Path, tmp_path: Path
) -> None:
    out, ref = tmp_path / "tune", tmp_path / "local"
    args = [str(tiny_sweep), "sweep.seeds=[0,1]"]
    assert main(["sweep", *args, "--out", str(out)]) == 0
    assert main(["run", *args, "--out", str(ref)]) == 0
    for name in ("pbrl_value__s0", "pbrl_value__s1"):
        assert all((out / name / f).exists() for f in FILES)
        assert (out / name / "metrics.jsonl").read_text() == (
            ref / name / "metrics.jsonl"
        ).read_text()
        got = json.loads((out / name / "result.json").read_text())["final"]
        want = json.loads((ref / name / "result.json").read_text())["final"]
        assert got == want
        assert [a.get("restored_from") for a in _attempts(out / name)] == [None]
    rec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert rec["runner"] == "tune" and rec["trials"] == ["pbrl_value__s0", "pbrl_value__s1"]
    assert (out / "report" / "summary.parquet").exists()
    assert (out / "figures" / "fig1_stackelberg.png").exists()
    assert (out / "_tune" / "tiny").is_dir()

    # Resuming a finished sweep runs nothing again.
    stamp = {n: (out / n / "result.json").stat().st_mtime_ns for n in rec["trials"]}
    assert main(["sweep", *args, "--out", str(out), "--resume"]) == 0
    assert {n: (out / n / "result.json").stat().st_mtime_ns for n in rec["trials"]} == stamp
    assert all(len(_attempts(out / n)) == 1 for n in rec["trials"])


def test_a_trial_that_fails_once_is_retried_from_its_checkpoint(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test hook FAIL_ONCE_ENV raises after the checkpoint at iteration 20; Tune restarts the
    trial there.

    The trial uses the ray executor (learner + one rollout-worker actor in its placement group).
    """
    from pbrl_dist.launch.tune_trainable import FAIL_ONCE_ENV

    monkeypatch.setenv(FAIL_ONCE_ENV, "20")  # read by the driver, handed to the trials
    out, ref = tmp_path / "tune", tmp_path / "local"
    common = ["method.estimator=mc", "method.num_iters=30"]
    assert (
        main(
            [
                "sweep",
                str(tiny_sweep),
                "--out",
                str(out),
                *common,
                "dist.backend=ray",
            ]
        )
        == 0
    )
    assert main(["run", str(tiny_sweep), "--out", str(ref), *common]) == 0
    t = out / "pbrl_value__s0"
    attempts = _attempts(t)
    assert [a["restored_from"] for a in attempts] == [None, 20]
    assert all(len(a["actors"]) == 1 for a in attempts)
    assert (t / ".fail_once_done").exists()
    assert (t / "metrics.jsonl").read_text() == (
        ref / "pbrl_value__s0" / "metrics.jsonl"
    ).read_text()
    assert (
        json.loads((t / "result.json").read_text())["final"]
        == json.loads((ref / "pbrl_value__s0" / "result.json").read_text())["final"]
    )


def test_random_search_with_asha(tiny_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    search = [
        "sweep.search={method.lr_x: {loguniform: [0.05, 0.2]}, method.lam: {choice: [5, 20]}}",
        "sweep.num_samples=3",
        "sweep.scheduler={name: asha, metric: upper/leader_return, mode: max, grace_period: 10, reduction_factor: 2}",
    ]
    assert main(["sweep", str(tiny_sweep), "--out", str(out), *search]) == 0
    dirs = sorted(p for p in out.iterdir() if p.name.startswith("pbrl_value__s0__"))
    assert len(dirs) == 3
    for d in dirs:
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert 0.05 <= cfg["method"]["lr_x"] <= 0.2 and cfg["method"]["lam"] in (5, 20)
        assert f"lr_x={cfg['method']['lr_x']:.4g}" in d.name
        rows = (d / "metrics.jsonl").read_text().splitlines()
        assert len(rows) >= 1  # ASHA may stop a trial at a rung (then it has no result.json)
    assert any((d / "result.json").exists() for d in dirs)
    # `pbrl run` runs grids only and says so.
    assert main(["run", str(tiny_sweep), "--out", str(tmp_path / "run"), *search]) == 2
    assert not (tmp_path / "run").exists()
