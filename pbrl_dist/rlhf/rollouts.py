"""Re-export of ``executors/shards.py`` (env shards and rollout sources), where the code lives now.

Kept so that older imports (``from pbrl_dist.rlhf.rollouts import ShardGroup``) and checkpoints that
pickled a ``pbrl_dist.rlhf.rollouts.Rollout`` still load. New code imports ``pbrl_dist.executors.shards``.
"""

from pbrl_dist.executors.shards import (
    LocalRollouts,
    Rollout,
    RolloutFactory,
    RolloutShard,
    RolloutSource,
    RolloutSpec,
    ShardGroup,
    cat_envs,
    cat_time,
    collect_pipelined,
    shard_sizes,
)

__all__ = [
    "LocalRollouts",
    "Rollout",
    "RolloutFactory",
    "RolloutShard",
    "RolloutSource",
    "RolloutSpec",
    "ShardGroup",
    "cat_envs",
    "cat_time",
    "collect_pipelined",
    "shard_sizes",
]
