"""Chaos: a hung actor is a dead actor (issue #20, point 8).

A rollout worker or oracle actor stopped with SIGSTOP keeps its socket open, so Ray never reports it
dead; before ``dist.actor_timeout_s`` the trial sat at one metrics row forever. Now the pool warns at
half the timeout, kills the stopped actor at the timeout, restores a replacement exactly as after a
death and re-issues the call: rows and results equal an undisturbed local run bitwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny import small_stackelberg

from pbrl_dist.algos import pbrl
from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.config.schema import DistConfig
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import ToyRLHFConfig, build
from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

pytestmark = [
    pytest.mark.ray,
    pytest.mark.chaos,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(600),
]

ray = pytest.importorskip("ray")

MC = MethodConfig(  # test_chaos's tabular Monte Carlo trial
    estimator="mc",
    oracle="pmd",
    oracle_steps=5,
    lam=20.0,
    lr_x=0.1,
    lr_y=0.1,
    num_iters=16,
    log_every=2,
    mc_batch=64,
    mc_chunk=16,
    mc_horizon=8,
)


def _resume(pids: list[int]) -> None:
    """SIGCONT what the test stopped (normally already killed by the pool)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_ray_chunk_runner_replaces_sigstopped_worker_and_oracle_rows_equal_local(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Tabular Monte Carlo PBRL on the ray backend (built by ``make_runner`` from a ``dist:`` block
    with ``actor_timeout_s=3``): rollout worker 1 is SIGSTOPped after the 2nd metrics row, oracle
    actor 0 after the 4th. Both are replaced; every row equals the local backend's."""
    from pbrl_dist.executors import make_runner

    problem = small_stackelberg(game=2)
    ref = ListSink()
    want = pbrl.run(problem, MC, seed=3, sink=ref)
    dist = DistConfig(
        backend="ray", num_rollout_workers=2, num_oracles=1, cpus_per_worker=0.1, actor_timeout_s=3
    )
    runner: Any = make_runner(problem, dist)
    assert runner.workers.timeout_s == 3 and runner.oracles.timeout_s == 3
    stopped: list[tuple[str, int, int]] = []

    class Stopper:
        """A sink that SIGSTOPs an actor's process after some rows (the trial goes on)."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def log(self, row: dict) -> None:
            self.rows.append(dict(row))
            at = {2: ("rollout", 1), 4: ("oracle", 0)}.get(len(self.rows))
            if at is not None:
                (info,) = [a for a in runner.actors() if (a.kind, a.index) == at]
                os.kill(info.pid, signal.SIGSTOP)
                stopped.append((*at, info.pid))

    try:
        sink = Stopper()
        capsys.readouterr()
        got = pbrl.run(problem, MC, seed=3, sink=sink, runner=runner)
        out = capsys.readouterr().out
        assert sink.rows == ref.rows
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
        assert len(stopped) == 2 and runner.restarts == 2, out
        for kind, index, pid in stopped:
            (warning,) = [
                line
                for line in out.splitlines()
                if f"{kind} actor {index} (pid {pid}," in line and "has not answered" in line
            ]
            assert "replacing it at 3 s (dist.actor_timeout_s)" in warning
            assert f"{kind} actor {index} (pid {pid}, node " in out.split(warning)[1]
        assert out.count("did not answer within 3 s (hung)") == 2
        alive = {a.pid for a in runner.actors()}
        assert len(alive) == 3 and not alive & {pid for *_, pid in stopped}
    finally:
        _resume([pid for *_, pid in stopped])
        runner.shutdown()


def test_ray_rollouts_replace_a_sigstopped_env_worker_exactly() -> None:
    """Deep-RLHF env shards: a worker SIGSTOPped between fragments is replaced with its shards
    restored from the driver's mirror; every fragment equals the local shards'."""
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    spec = RolloutSpec(
        build(ToyRLHFConfig(num_envs=8, env_shards=4)), "agent", 0, 5, {"hidden": (16,)}
    )
    src = RayRollouts(spec, num_workers=2, cpus_per_worker=0.1, timeout_s=3)
    local = ShardGroup(spec)
    policy = local.shards[0].policy.state_dict()
    stopped: list[int] = []
    try:
        for k in range(4):
            if k in (1, 2):
                pid = src.actors()[k % 2].pid
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            got, want = src.collect(policy, 0), local.collect(policy, 0)
            for name in ("obs_TN", "actions_TN", "rewards_TN", "dones_TN", "last_obs_N"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (k, name)
            assert got.episode_returns == want.episode_returns
            assert not src.restarted
        assert src.restarts == 2
        assert not {a.pid for a in src.actors()} & set(stopped)
    finally:
        _resume(stopped)
        src.close()
        local.close()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _title(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


@pytest.mark.slow  # over a minute: `make chaos` runs it; the runner-level tests above are in `make test`
def test_pbrl_run_with_a_sigstopped_rollout_worker_finishes_with_local_metrics(
    tiny_sweep: Path, tmp_path: Path
) -> None:
    """The CLI, as observed in issue #20: `pbrl run` on the ray backend, one of its rollout workers
    SIGSTOPped after the 2nd metrics row. The run warns, replaces it at ``dist.actor_timeout_s=3``,
    exits 0, and its ``metrics.jsonl`` is byte for byte the local backend's."""
    from pbrl_dist.cli import main

    common = [
        "method.estimator=mc",
        "method.oracle=pmd",
        "method.num_iters=200",
        "method.log_every=10",
        "dist.checkpoint_every=1000",
    ]
    assert main(["run", str(tiny_sweep), "--out", str(tmp_path / "local"), *common]) == 0
    env = {**os.environ, "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    env.pop("RAY_ADDRESS", None)
    metrics = tmp_path / "ray" / "pbrl_value__s0" / "metrics.jsonl"
    cmd = [sys.executable, "-m", "pbrl_dist.cli", "run", str(tiny_sweep)]
    ray_args = [
        "dist.backend=ray",
        "dist.num_rollout_workers=2",
        "dist.num_oracles=1",
        "dist.cpus_per_worker=0.25",
        "dist.cpus_per_trial=0.5",
        "dist.actor_timeout_s=3",
    ]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "ray"), *common, *ray_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    stopped: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text().count("\n") >= 2:
                workers = [
                    p for p in _descendants(proc.pid) if _title(p).startswith("ray::RolloutWorker")
                ]
                if workers:
                    os.kill(workers[-1], signal.SIGSTOP)
                    stopped.append(workers[-1])
                    break
            time.sleep(0.05)
        assert stopped, "no rollout worker found to stop while the run was going"
        out, _ = proc.communicate(timeout=300)
    finally:
        _resume(stopped)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    (warning,) = [line for line in out.splitlines() if "has not answered" in line]
    assert f"(pid {stopped[0]}, node " in warning and "replacing it at 3 s" in warning
    assert "did not answer within 3 s (hung)" in out
    a = (tmp_path / "local" / "pbrl_value__s0" / "metrics.jsonl").read_text()
    assert metrics.read_text() == a and a.count("\n") == 20
