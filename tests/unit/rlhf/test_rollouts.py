"""Rollout shards: pipelining several shards in one process gives exactly the shards' own fragments."""

from __future__ import annotations

import pytest
import torch

from pbrl_dist.problems.rlhf import AtariRLHFConfig, ToyRLHFConfig, build
from pbrl_dist.rlhf.rollouts import RolloutShard, RolloutSpec, ShardGroup, shard_sizes


def _spec(problem_cfg: object) -> RolloutSpec:
    problem = build(problem_cfg)
    kw = {"hidden": (16,)} if problem.net_kind == "mlp" else {}
    return RolloutSpec(problem, "agent", 3, 5, kw)


@pytest.mark.parametrize(
    "problem_cfg",
    [
        AtariRLHFConfig(game="BeamRider", num_envs=4, env_shards=2, env_threads=1),
        ToyRLHFConfig(num_envs=6, env_shards=3),
    ],
    ids=["atari", "toy"],
)
def test_pipelined_group_equals_shards_stepped_one_by_one(problem_cfg: object) -> None:
    spec = _spec(problem_cfg)
    group = ShardGroup(spec)
    alone = [RolloutShard(spec, i, n) for i, n in enumerate(shard_sizes(spec))]
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.1 for k, v in group.shards[0].policy.state_dict().items()}
    try:
        for version in range(3):  # several fragments: observations carry over between collects
            together = group.collect(state, version)
            for i, shard in enumerate(alone):
                own = shard.collect(state, version)
                lo, hi = i * own.actions_TN.shape[1], (i + 1) * own.actions_TN.shape[1]
                assert torch.equal(together.obs_TN[:, lo:hi], own.obs_TN)
                assert torch.equal(together.actions_TN[:, lo:hi], own.actions_TN)
                assert torch.equal(together.rewards_TN[:, lo:hi], own.rewards_TN)
                assert torch.equal(together.dones_TN[:, lo:hi], own.dones_TN)
                assert torch.equal(together.last_obs_N[lo:hi], own.last_obs_N)
        # The shards are distinct streams (otherwise the equality above would be vacuous).
        assert not torch.equal(together.actions_TN[:, 0], together.actions_TN[:, -1])
    finally:
        group.close()
        for s in alone:
            s.close()


def test_atari_send_twice_without_recv_is_an_error() -> None:
    spec = _spec(AtariRLHFConfig(game="BeamRider", num_envs=2, env_threads=1))
    shard = RolloutShard(spec, 0, 2)
    try:
        shard.env.send(torch.zeros(2, dtype=torch.int64).numpy())
        with pytest.raises(RuntimeError, match="not received"):
            shard.env.send(torch.zeros(2, dtype=torch.int64).numpy())
        shard.env.recv()
        with pytest.raises(RuntimeError, match="nothing was sent"):
            shard.env.recv()
    finally:
        shard.close()
