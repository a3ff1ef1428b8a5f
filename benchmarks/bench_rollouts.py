"""Rollout throughput with policy inference against the raw AtariVectorEnv with random actions.

Usage:  .venv/bin/python benchmarks/bench_rollouts.py [--game BeamRider] [--num-envs 16] [--collects 40]

Both are measured in this process, one after the other, with the same number of envs and the same ALE
settings (frame skip 4, no sticky actions): the raw env steps uniformly random actions; the rollout shard
(`algos.rollouts.RolloutShard`, what the RLHF learner and a Ray rollout worker run) samples every action
from the actor-critic network (MATH.md §7.2 Atari net) on the CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from pbrl_dist.algos.rollouts import RolloutShard, RolloutSpec
from pbrl_dist.envs import measure_random_fps
from pbrl_dist.problems.rlhf import AtariRLHFConfig, build


def main() -> None:
    """Print raw vs policy-driven frames per second and their ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--game", default="BeamRider")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--collects", type=int, default=40, help="rollouts of n_steps=5 each")
    ap.add_argument("--torch-threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    n_steps = 5
    problem = build(AtariRLHFConfig(game=args.game, num_envs=args.num_envs))
    shard = RolloutShard(RolloutSpec(problem, "agent", 0, n_steps, {}), 0, args.num_envs)
    state = shard.policy.state_dict()
    shard.collect(state, 0)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.collects):
        shard.collect(state, 0)
    dt = time.perf_counter() - t0
    shard.close()
    steps = args.collects * n_steps * args.num_envs
    policy_fps = steps * 4 / dt
    raw = measure_random_fps(args.game, num_envs=args.num_envs, num_steps=args.collects * n_steps, seed=0)
    print(f"{args.game}, {args.num_envs} envs, frame skip 4, {steps} agent steps each, torch threads {args.torch_threads}")
    print(f"raw AtariVectorEnv, random actions : {raw['frames_per_s']:9.0f} frames/s")
    print(f"rollout shard, policy inference    : {policy_fps:9.0f} frames/s")
    print(f"ratio                              : {policy_fps / raw['frames_per_s']:9.2f}x  (goal ≥ 0.7)")


if __name__ == "__main__":
    main()
