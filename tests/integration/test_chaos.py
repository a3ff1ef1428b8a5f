"""Chaos: repeated actor kills at every moment a runner talks to its actors; numbers never change.

Tabular (Monte Carlo chunks + oracle actors) and deep RLHF (env-shard workers): kills while
collecting, while a replacement restores, at a checkpoint (``state_dict``) and while a checkpoint is
loaded. Each run is compared bitwise with an undisturbed local one. Marked ``chaos`` (``make chaos``
runs every chaos test, the slow ones too); these are small enough for the default suite.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _tiny import small_stackelberg

from pbrl_dist.algos import pbrl
from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import ToyRLHFConfig, build
from pbrl_dist.problems.stackelberg import StackelbergProblem, make_game
from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

pytestmark = [
    pytest.mark.ray,
    pytest.mark.chaos,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(600),
]

ray = pytest.importorskip("ray")

MC = MethodConfig(
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


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


def _kill(actor: Any) -> None:
    """Kill an actor and return once it is dead: ``ray.kill`` only asks, and a call already on its way
    can still be answered, so without the wait what a test counts would depend on timing."""
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the actor still answers 30 s after ray.kill")


def test_tabular_random_kills_of_rollout_and_oracle_actors_change_nothing() -> None:
    from pbrl_dist.executors.ray_chunks import RayChunkRunner

    problem = small_stackelberg(game=2)
    ref = ListSink()
    want = pbrl.run(problem, MC, seed=3, sink=ref)
    runner = RayChunkRunner(problem, num_workers=2, num_oracles=2, cpus_per_worker=0.1)
    rng = random.Random(7)
    kills: list[tuple[int, str, int]] = []

    class Chaos:
        """A sink that kills a random worker or oracle actor after most rows."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def log(self, row: dict) -> None:
            self.rows.append(dict(row))
            if rng.random() < 0.7:
                pool = runner.workers if rng.random() < 0.5 else runner.oracles
                slot = rng.randrange(len(pool))
                ray.kill(pool.handles[slot], no_restart=True)
                kills.append((row["iter"], pool.kind, slot))

    try:
        sink = Chaos()
        got = pbrl.run(problem, MC, seed=3, sink=sink, runner=runner)
        assert sink.rows == ref.rows
        # Replacement is lazy (an idle oracle slot is replaced when next asked); asking everyone now
        # replaces what is still dead, and every slot answers from a live actor.
        alive = runner.actors()
        assert len(kills) >= 4 and 3 <= runner.restarts <= len(kills)
        assert len({a.pid for a in alive}) == 4
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    finally:
        runner.shutdown()


def test_rlhf_worker_kills_at_collect_restore_checkpoint_and_load_are_exact() -> None:
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    spec = RolloutSpec(
        build(ToyRLHFConfig(num_envs=8, env_shards=4)), "agent", 0, 5, {"hidden": (16,)}
    )
    src = RayRollouts(spec, num_workers=2, cpus_per_worker=0.1)
    local = ShardGroup(spec)
    policy = local.shards[0].policy.state_dict()
    restore = src.pool.restore
    assert restore is not None
    events: list[str] = []
    try:
        for k in range(8):
            w = k % 2
            moment = ("collect", "restore", "checkpoint", "load")[k // 2]
            if moment == "collect":  # dies between fragments
                _kill(src.pool.handles[w])
            elif moment == "restore":  # dies, and its replacement dies while restoring
                armed = [True]

                def dying_restore(slot: int, actor: Any, armed: list[bool] = armed) -> Any:
                    if armed[0]:
                        armed[0] = False
                        _kill(actor)
                    return restore(slot, actor)

                src.pool.restore = dying_restore
                _kill(src.pool.handles[w])
            elif moment == "checkpoint":  # dies right before the learner checkpoints
                _kill(src.pool.handles[w])
                assert _same(src.state_dict(), local.state_dict()), k
            else:  # dies right before a checkpoint is loaded into the workers
                _kill(src.pool.handles[w])
                src.load_state_dict(local.state_dict())
            got, want = src.collect(policy, 0), local.collect(policy, 0)
            src.pool.restore = restore
            for name in ("obs_TN", "actions_TN", "rewards_TN", "dones_TN", "last_obs_N"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (k, moment, name)
            assert got.episode_returns == want.episode_returns
            assert not src.restarted
            events.append(moment)
        assert _same(src.state_dict(), local.state_dict())
        assert src.restarts >= 10  # every kill, plus the replacements killed while restoring
    finally:
        src.close()
        local.close()


def test_a_dead_actor_before_the_first_call_is_replaced() -> None:
    """Death at start: an actor that dies before it ever answered is replaced like any other."""
    from pbrl_dist.executors.ray_chunks import RayChunkRunner

    problem = StackelbergProblem(
        make_game(
            num_states=4,
            num_leader_actions=3,
            num_follower_actions=3,
            sparsity=0.5,
            gamma=0.8,
            tau=0.2,
            game=0,
        )
    )
    cfg = dataclasses.replace(MC, num_iters=4)
    want = pbrl.run(problem, cfg, seed=1, sink=ListSink())
    runner = RayChunkRunner(problem, num_workers=2, num_oracles=1, cpus_per_worker=0.1)
    try:
        for pool in (runner.workers, runner.oracles):
            ray.kill(pool.handles[0], no_restart=True)
        got = pbrl.run(problem, cfg, seed=1, sink=ListSink(), runner=runner)
        assert runner.restarts == 2
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    finally:
        runner.shutdown()


def test_an_oom_kill_is_a_retried_trial_failure_not_a_driver_crash(tmp_path: Path) -> None:
    """Ray's memory monitor set to kill at 2% node memory: every trial process is OOM-killed.

    The sweep must count it as a trial failure, retry it ``max_failures`` times, name the memory
    figures, and exit 1 (a crashed driver would exit otherwise, with a traceback and no summary).
    """
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "name: tiny\nproblem: {name: stackelberg, num_states: 4, num_leader_actions: 3,"
        " num_follower_actions: 3, sparsity: 0.5, gamma: 0.8, tau: 0.2}\n"
        "method: {name: pbrl_value, algo: pbrl, lam: 20.0, num_iters: 400, log_every: 10}\n"
        "logging: {wandb: disabled}\nsweep: {seeds: [0], max_failures: 1}\n"
    )
    env = {
        **os.environ,
        "RAY_memory_usage_threshold": "0.02",
        "RAY_memory_monitor_refresh_ms": "50",
        "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbrl_dist.cli",
            "sweep",
            str(sweep),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failed (attempt 2)" in proc.stdout  # retried under max_failures
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("trial pbrl_value__s0 failed:")]
    assert "out of memory" in line and "GB used" in line
    assert "sweep tiny: 0/1 trials finished (1 errored)" in proc.stdout


def test_ray_left_behind_by_a_killed_driver_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    """SIGKILL the `pbrl sweep` driver alone: Ray's agents outlive it. The next pbrl start, even on
    another results folder, stops them (sessions pbrl started are listed per user)."""
    import signal
    import time

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "name: tiny\nproblem: {name: stackelberg, num_states: 4, num_leader_actions: 3,"
        " num_follower_actions: 3, sparsity: 0.5, gamma: 0.8, tau: 0.2}\n"
        "method: {name: pbrl_value, algo: pbrl, lam: 20.0, num_iters: 3000, log_every: 10}\n"
        "dist: {checkpoint_every: 100}\nlogging: {wandb: disabled}\nsweep: {seeds: [0]}\n"
    )
    out, other = tmp_path / "out", tmp_path / "other"
    env = {
        **os.environ,
        "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
        "PBRL_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "pbrl_dist.cli", "sweep", str(sweep)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not list(out.glob("_tune/*/*/checkpoint_*")):
            time.sleep(0.2)
        session = (out / ".ray_session").read_text().strip()
        assert (tmp_path / "state" / "ray_sessions" / Path(session).name).exists()
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver only, not its process group
        proc.wait()
    from pbrl_dist.launch.recovery import _pids_using

    time.sleep(5)
    left = _pids_using(session)
    fresh = subprocess.run(
        [*cmd, "--out", str(other)], capture_output=True, text=True, env=env, timeout=400
    )
    assert fresh.returncode == 0, fresh.stdout[-3000:] + fresh.stderr[-3000:]
    if left:  # what Ray leaves depends on timing; whatever it left is gone now
        assert "Ray processes left behind by a killed pbrl driver" in fresh.stdout
    assert _pids_using(session) == []
    assert not Path(session).exists()
    assert list((tmp_path / "state" / "ray_sessions").iterdir()) == []  # both sessions forgotten
