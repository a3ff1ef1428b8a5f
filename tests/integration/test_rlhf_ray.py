"""Deep RLHF on Ray rollout-worker actors: same numbers as local, every mode through the CLI, faults."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pbrl_dist import rlhf
from pbrl_dist.cli import main
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import AtariRLHFConfig, ToyRLHFConfig, build
from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(600)]

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
FIG2 = ROOT / "sweeps" / "fig2_atari_rlhf.yaml"

TOY = ToyRLHFConfig(num_envs=8, env_shards=4)
PBRL = rlhf.RLHFConfig(
    mode="pbrl",
    total_env_steps=4000,
    lr=5e-3,
    clip_true_reward=False,
    ac_hidden=[32],
    rm_hidden=[32],
    rm_dropout=0.0,
    rm_every=5,
    initial_pairs=16,
    initial_rollout_steps=30,
    warmup_epochs=2,
    pairs_per_epoch=4,
    buffer_size=64,
    segment_length=10,
    pair_window_steps=20,
    log_every_steps=1000,
)


def _run(runner: Any = None, cfg: rlhf.RLHFConfig = PBRL) -> tuple[list[dict[str, Any]], Any]:
    sink = ListSink()
    res = rlhf.run(build(TOY), cfg, seed=2, sink=sink, runner=runner)
    rows = [{k: v for k, v in r.items() if not k.startswith("perf/env_steps")} for r in sink.rows]
    return rows, res


def _runner(num_workers: int, num_oracles: int) -> Any:
    from pbrl_dist.executors.ray_rollouts import RayRolloutRunner

    return RayRolloutRunner(num_workers=num_workers, num_oracles=num_oracles, cpus_per_worker=0.1)


@pytest.mark.parametrize(("workers", "oracles"), [(1, 0), (2, 1), (4, 2)])
def test_pbrl_on_rollout_workers_equals_local(workers: int, oracles: int) -> None:
    local_rows, local = _run()
    runner = _runner(workers, oracles)
    try:
        ray_rows, remote = _run(runner)
    finally:
        runner.shutdown()
    assert len(local_rows) >= 4 and ray_rows == local_rows
    assert local_rows[-1]["rl/episodes"] > 0 and "penalty/value" in local_rows[-1]
    assert (local.final_state["episode_returns"] == remote.final_state["episode_returns"]).all()


def test_normalised_observations_resolved_oracle_and_eval_set_on_workers_equal_local() -> None:
    # the obs statistics travel in the weights; the re-solving oracle steps on the oracle actors
    cfg = dataclasses.replace(
        PBRL, normalize_obs=True, oracle_resolve_steps=2, rm_eval_pairs=8, teacher_skip=0.1
    )
    local_rows, _ = _run(cfg=cfg)
    runner = _runner(2, 1)
    try:
        ray_rows, _ = _run(runner, cfg=cfg)
    finally:
        runner.shutdown()
    assert ray_rows == local_rows and "rm/eval_accuracy" in local_rows[-1]
    assert local_rows != _run(cfg=dataclasses.replace(cfg, normalize_obs=False))[0]


def test_weights_are_fetched_once_per_version_and_workers_own_consecutive_shards() -> None:
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    problem = build(TOY)
    spec = RolloutSpec(problem, "agent", 0, 5, {"hidden": (16,)})
    src = RayRollouts(spec, num_workers=2, cpus_per_worker=0.1)
    local = ShardGroup(spec)
    try:
        assert src.blocks == [[0, 1], [2, 3]]
        state = local.shards[0].policy.state_dict()
        for version in (0, 0, 1, 1, 1):
            a, b = src.collect(state, version), local.collect(state, version)
            assert torch.equal(a.actions_TN, b.actions_TN) and torch.equal(a.obs_TN, b.obs_TN)
        assert [i["fetched"] for i in src.pool.info()] == [2, 2]
    finally:
        src.close()
        local.close()


def test_workers_must_own_whole_shards() -> None:
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    spec = RolloutSpec(build(TOY), "agent", 0, 5, {"hidden": (16,)})
    with pytest.raises(ValueError, match=r"dist.num_rollout_workers: 3 workers"):
        RayRollouts(spec, num_workers=3)


def _assert_same_fragment(a: Any, b: Any) -> None:
    for name in ("obs_TN", "actions_TN", "rewards_TN", "dones_TN", "last_obs_N"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.episode_returns == b.episode_returns


def _kill_and_compare(spec: RolloutSpec, *, collects: int, kill_after: int) -> Any:
    """Collect from 2 workers, kill worker 1 after ``kill_after`` fragments, compare with local."""
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    src = RayRollouts(spec, num_workers=2, cpus_per_worker=0.1)
    local = ShardGroup(spec)
    state = local.shards[0].policy.state_dict()
    try:
        for k in range(collects):
            if k == kill_after:
                ray.kill(src.pool.handles[1], no_restart=True)
            got = src.collect(state, 0)
            _assert_same_fragment(got, local.collect(state, 0))
            assert not src.restarted
        assert src.restarts == 1
        return src.state_dict(), local.state_dict()
    finally:
        src.close()
        local.close()


def test_a_killed_env_worker_is_replaced_exactly() -> None:
    """A dead worker's shards come back from the driver's copy of their state: fragments unchanged."""
    spec = RolloutSpec(build(TOY), "agent", 0, 5, {"hidden": (16,)})
    _kill_and_compare(spec, collects=4, kill_after=2)


@pytest.mark.atari
def test_a_killed_atari_worker_replays_its_shards_exactly() -> None:
    """Atari: the replacement rebuilds each shard from its seed and replays every action."""
    problem = build(AtariRLHFConfig(game="BeamRider", num_envs=4, env_shards=2, env_threads=1))
    spec = RolloutSpec(problem, "agent", 0, 5, {})
    ours, ref = _kill_and_compare(spec, collects=5, kill_after=3)
    for a, b in zip(ours["shards"], ref["shards"], strict=True):
        assert np.array_equal(a["env"]["actions"], b["env"]["actions"])
        assert np.array_equal(a["obs"], b["obs"])
        assert a["num_collects"] == b["num_collects"] == 5


@pytest.mark.atari
def test_a_killed_worker_without_exact_restore_is_reseeded() -> None:
    """``problem.resume=reseed``: the replacement re-seeds its shards and flags the seam."""
    from pbrl_dist.executors.ray_rollouts import RayRollouts

    cfg = AtariRLHFConfig(
        game="BeamRider", num_envs=4, env_shards=2, env_threads=1, resume="reseed"
    )
    spec = RolloutSpec(build(cfg), "agent", 0, 5, {})
    src = RayRollouts(spec, num_workers=2, cpus_per_worker=0.1)
    local = ShardGroup(spec)
    state = local.shards[0].policy.state_dict()
    local.close()
    try:
        first = src.collect(state, 0)
        ray.kill(src.pool.handles[1], no_restart=True)
        second = src.collect(state, 0)
        assert src.restarted and src.restarts == 1
        assert second.actions_TN.shape == first.actions_TN.shape
        third = src.collect(state, 0)
        assert not src.restarted and third.actions_TN.shape == first.actions_TN.shape
    finally:
        src.close()


@pytest.mark.atari
def test_every_mode_runs_a_smoke_atari_sweep_on_ray_like_local(tmp_path: Path) -> None:
    """``pbrl run --smoke`` on BeamRider, three modes, local vs ray (2 workers, PBRL oracle on 1 actor)."""
    common = [
        "--smoke",
        "sweep.grid.problem.game=[BeamRider]",
        "problem.env_shards=2",
        "logging.progress_every_s=1000",
    ]
    assert main(["run", str(FIG2), "--out", str(tmp_path / "local"), *common]) == 0
    ray_args = ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=1"]
    ray_args.append("dist.cpus_per_worker=0.5")
    assert main(["run", str(FIG2), "--out", str(tmp_path / "ray"), *common, *ray_args]) == 0
    for mode in ("a2c_oracle", "drlhf", "pbrl"):
        trial = f"{mode}__game=BeamRider__s0"
        rows = {}
        for backend in ("local", "ray"):
            lines = (tmp_path / backend / trial / "metrics.jsonl").read_text().splitlines()
            rows[backend] = [
                {k: v for k, v in json.loads(x).items() if not k.startswith("perf/env_steps")}
                for x in lines
            ]
        assert rows["local"] and rows["ray"] == rows["local"], mode
        assert rows["ray"][-1]["env_frames"] > 0
