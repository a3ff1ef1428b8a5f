"""Rollout throughput with policy inference against the raw AtariVectorEnv with random actions.

Usage:  .venv/bin/python benchmarks/bench_rollouts.py [--game BeamRider] [--num-envs 16] [--collects 60]

Measured in this process, one after the other, with the same number of envs and ALE settings (frame skip
4, no sticky actions, ALE threads = cores): the raw env steps uniformly random actions; the rollout
sources sample every action from the actor-critic (MATH.md §7.2 Atari net, one torch thread each):

* ``local, 1 shard``: one ``RolloutShard`` (inference and emulation alternate);
* ``local, 2 shards``: ``ShardGroup`` pipelining 2 shards of N/2 envs (the policy runs on one shard
  while ALE emulates the other);
* ``local, 2 shards, bf16``: the same with ``compute_dtype=bfloat16`` (autocast inference);
* ``ray, 2 workers``: ``RayRollouts`` with 2 ``EnvWorker`` actors, 2 shards each (pipelined), collected
  in parallel (the worker group the learner uses with dist.backend=ray); includes weight broadcast
  and moving the fragments to the learner.

The raw env is measured first and again last; ratios use the mean of the two (the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from pbrl_dist.envs import measure_random_fps
from pbrl_dist.problems.rlhf import AtariRLHFConfig, build
from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

N_STEPS = 5


def policy_fps(source: Any, collects: int, num_envs: int) -> float:
    """Return frames/s of ``collects`` fragments (after one warm-up) with fixed weights."""
    from pbrl_dist.nets import make_actor_critic

    net = make_actor_critic("atari", source.obs_shape, source.num_actions)
    weights = net.state_dict()
    source.collect(weights, 0)
    t0 = time.perf_counter()
    for _ in range(collects):
        source.collect(weights, 0)
    dt = time.perf_counter() - t0
    return collects * N_STEPS * num_envs * 4 / dt


def main() -> None:
    """Print raw vs policy-driven frames per second and their ratios."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--game", default="BeamRider")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--collects", type=int, default=60, help="fragments of n_steps=5 each")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.num_envs

    def spec(shards: int, dtype: str = "float32") -> RolloutSpec:
        problem = build(AtariRLHFConfig(game=args.game, num_envs=n, env_shards=shards))
        return RolloutSpec(problem, "agent", 0, N_STEPS, {"compute_dtype": dtype})

    def raw_fps() -> float:
        raw = measure_random_fps(args.game, num_envs=n, num_steps=args.collects * N_STEPS, seed=0)
        return float(raw["frames_per_s"])

    res: dict[str, float] = {}
    res["raw AtariVectorEnv, random actions"] = raw_fps()
    for shards, dtype in ((1, "float32"), (2, "float32"), (2, "bfloat16")):
        src = ShardGroup(spec(shards, dtype))
        name = f"local, {shards} shard{'s' * (shards > 1)}" + (
            ", bf16" if dtype != "float32" else ""
        )
        res[name] = policy_fps(src, args.collects, n)
        src.close()
    if not args.skip_ray:
        import ray

        from pbrl_dist.executors.ray_rollouts import RayRollouts

        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        src = RayRollouts(spec(4), num_workers=2, cpus_per_worker=1)
        res["ray, 2 workers x 2 shards"] = policy_fps(src, args.collects, n)
        src.close()
        ray.shutdown()
    res["raw AtariVectorEnv, random actions (again)"] = raw_fps()
    base = (
        res["raw AtariVectorEnv, random actions"]
        + res["raw AtariVectorEnv, random actions (again)"]
    ) / 2
    print(
        f"{args.game}, {n} envs, frame skip 4, {args.collects * N_STEPS} steps per env, torch threads 1"
    )
    for name, fps in res.items():
        print(f"{name:44s} {fps:9.0f} frames/s  {fps / base:5.2f}x")
    print(f"ratios against the mean raw rate {base:.0f} frames/s; goal: policy-driven ≥ 0.7x raw")


if __name__ == "__main__":
    main()
