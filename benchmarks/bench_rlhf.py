"""End-to-end deep-RLHF training speed on Atari: our A2C oracle vs Stable-Baselines3's A2C, and the
overhead of DRLHF and PBRL over the A2C oracle.

Usage:  .venv/bin/python benchmarks/bench_rlhf.py [--game BeamRider] [--updates 250] [--skip-sb3]
        (needs the benchmark extra for SB3: pip install -e '.[bench]')

All runs happen in this process, one after the other, with one torch thread, 16 envs and n_steps=5
(80 agent steps per A2C update), the same actor-critic (MATH.md §7.2: 4 conv layers + FC 512; SB3 gets
it as its features extractor, with SB3's own policy and value heads on top) and the same A2C settings
(RMSprop 7e-4, α 0.99, ε 1e-5, entropy 0.01, value 0.5, grad-norm clip 0.5).

* ours: ``rlhf.run`` with ALE's C++ ``AtariVectorEnv`` (ALE threads = cores), env shards as
  given (2 shards: policy inference on one shard overlaps the emulation of the other).
* SB3: ``A2C("CnnPolicy")`` on ``make_atari_env(<game>NoFrameskip-v4, n_envs=16)`` + ``VecFrameStack(4)``
  (SB3's standard Atari pipeline: python wrappers in a ``DummyVecEnv``), in PyTorch's default
  contiguous layout; a second SB3 row gets our channels-last trunk (``nets.atari.frames_to_float``).
* frames per second = agent steps × frame skip 4 / wall seconds of the training loop. For DRLHF and PBRL
  the loop includes the reward model (r_φ on every transition) and one reward-learning epoch per
  ``rm_every`` = 250 updates on a buffer of 576 + 16 pairs (one full pass, 32 pairs per minibatch);
  the warm-up (500 epochs on the 576 initial pairs in the paper's schedule) is reported separately as
  seconds per warm-up epoch. PBRL also runs the oracle π̂* (its own envs and one A2C step per update).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from pbrl_dist import rlhf
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import AtariRLHFConfig, build

NUM_ENVS, N_STEPS = 16, 5


def ours(
    game: str,
    mode: str,
    updates: int,
    env_shards: int,
    dtype: str = "float32",
    *,
    reuse: bool = False,
    warmup: bool = True,
    oracle_every: int = 1,
) -> dict[str, float]:
    """Train ``updates`` A2C updates in ``mode``; return loop frames/s (and warm-up s/epoch).

    ``reuse``: ``method.reuse_acting_graph`` (the A2C step differentiates the acting passes).
    """
    problem = build(AtariRLHFConfig(game=game, num_envs=NUM_ENVS, env_shards=env_shards))
    cfg = rlhf.RLHFConfig(
        mode=mode,
        warmup_epochs=0,
        log_every_steps=10**12,
        compute_dtype=dtype,
        reuse_acting_graph=reuse,
        oracle_every=oracle_every,
    )
    batch = N_STEPS * NUM_ENVS
    cfg.total_env_steps = cfg.init_steps(NUM_ENVS) + updates * batch
    sink = ListSink()
    t0 = time.perf_counter()
    rlhf.run(problem, cfg, seed=0, sink=sink)
    wall = time.perf_counter() - t0
    row = sink.rows[-1]
    agent_loop = updates * batch
    oracle = row.get("perf/oracle_env_frames", 0) // 4
    loop_s = (agent_loop + oracle) / row["perf/env_steps_per_s"]
    out = {"frames_per_s": agent_loop * 4 / loop_s, "loop_s": loop_s, "wall_s": wall}
    if mode != "a2c_oracle" and warmup:
        out["warmup_s_per_epoch"] = warmup_epoch_seconds(problem, cfg)
    return out


def warmup_epoch_seconds(problem: Any, cfg: rlhf.RLHFConfig, epochs: int = 2) -> float:
    """Return the seconds of one BT-only reward-model epoch on ``initial_pairs`` pairs."""
    from pbrl_dist.rlhf.rollouts import RolloutSpec, ShardGroup

    src = ShardGroup(RolloutSpec(problem, "agent", 0, cfg.n_steps, {}))
    try:
        L = rlhf.RLHFLearner(
            problem, cfg, seed=0, obs_shape=src.obs_shape, num_actions=src.num_actions
        )
        rlhf.loop._initial_pairs(L, src)  # warmup_epochs=0: only labels the pairs
    finally:
        src.close()
    t0 = time.perf_counter()
    for _ in range(epochs):
        L.rm.epoch(penalty=None)
    return (time.perf_counter() - t0) / epochs


def sb3(game: str, updates: int, channels_last: bool = False) -> dict[str, float]:
    """Train SB3's A2C for ``updates`` updates on SB3's Atari pipeline; return frames/s.

    ``channels_last=False`` is stock SB3 (PyTorch's default contiguous layout); ``True`` gives SB3
    our channels-last trunk and input, to show how much of our lead is that layout alone.
    """
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import VecFrameStack

    from pbrl_dist.nets.atari import AtariActorCritic

    gym.register_envs(ale_py)

    class Trunk(BaseFeaturesExtractor):  # our conv stack + FC 512, SB3 divides by 255 itself
        def __init__(self, observation_space: Any) -> None:
            super().__init__(observation_space, features_dim=512)
            # contiguous while SB3 re-initialises (orthogonal_ needs it); see below for channels-last
            net = AtariActorCritic(tuple(observation_space.shape), 2)
            net = net.to(memory_format=torch.contiguous_format)
            self.conv, self.fc = net.conv, net.fc

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.fc(self.conv(x))

    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=NUM_ENVS, seed=0), 4)
    model = A2C(
        "CnnPolicy",
        env,
        n_steps=N_STEPS,
        ent_coef=0.01,
        policy_kwargs={"features_extractor_class": Trunk},
        device="cpu",
        seed=0,
    )
    if channels_last:  # in place: the optimizer keeps the same parameters
        model.policy.features_extractor.to(memory_format=torch.channels_last)
    batch = N_STEPS * NUM_ENVS
    model.learn(10 * batch)  # warm-up
    t0 = time.perf_counter()
    model.learn(updates * batch, reset_num_timesteps=False)
    dt = time.perf_counter() - t0
    env.close()
    return {"frames_per_s": updates * batch * 4 / dt, "loop_s": dt}


def main() -> None:
    """Print the table of BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--game", default="BeamRider")
    ap.add_argument("--updates", type=int, default=250)
    ap.add_argument("--skip-sb3", action="store_true")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="only the rows of method.reuse_acting_graph: SB3, then each mode without and with it",
    )
    ap.add_argument(
        "--oracle",
        action="store_true",
        help="only PBRL's cost over DRLHF: drlhf, then pbrl with method.oracle_every 1 and 2",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    res: dict[str, dict[str, float]] = {}
    if args.reuse:
        reuse_table(args.game, args.updates)
        return
    if args.oracle:
        oracle_table(args.game, args.updates)
        return
    if not args.skip_sb3:
        res["sb3 A2C"] = sb3(args.game, args.updates)
        res["sb3 A2C, channels-last"] = sb3(args.game, args.updates, channels_last=True)
    res["a2c_oracle, 1 shard"] = ours(args.game, "a2c_oracle", args.updates, 1)
    res["a2c_oracle, 2 shards"] = ours(args.game, "a2c_oracle", args.updates, 2)
    res["drlhf, 2 shards"] = ours(args.game, "drlhf", args.updates, 2)
    res["pbrl, 2 shards"] = ours(args.game, "pbrl", args.updates, 2)
    for mode in ("a2c_oracle", "drlhf", "pbrl"):
        res[f"{mode}, 2 shards, bf16"] = ours(args.game, mode, args.updates, 2, "bfloat16")
    base = res["a2c_oracle, 2 shards"]["frames_per_s"]
    print(
        f"{args.game}, {NUM_ENVS} envs x {N_STEPS} steps, {args.updates} A2C updates, torch threads 1"
    )
    print(
        f"{'run':30s} {'frames/s':>9s} {'loop s':>7s} {'vs a2c_oracle':>14s} {'warm-up s/epoch':>16s}"
    )
    for name, r in res.items():
        wu = r.get("warmup_s_per_epoch")
        print(
            f"{name:30s} {r['frames_per_s']:9.0f} {r['loop_s']:7.1f} {r['frames_per_s'] / base:13.2f}x"
            f" {'' if wu is None else f'{wu:16.1f}'}"
        )
    if "sb3 A2C" in res:
        sb3_fps = res["sb3 A2C"]["frames_per_s"]
        print(f"a2c_oracle (2 shards) / SB3 A2C: {base / sb3_fps:.2f}x  (goal ≥ 2)")
        bf16 = res["a2c_oracle, 2 shards, bf16"]["frames_per_s"]
        print(f"a2c_oracle (2 shards, bf16) / SB3 A2C (float32): {bf16 / sb3_fps:.2f}x")


def _print_rounds(game: str, updates: int, rows: dict[str, list[float]]) -> dict[str, float]:
    """Print each run's best frames/s and its rounds; return the bests."""
    best = {k: max(v) for k, v in rows.items()}
    print(
        f"{game}, {NUM_ENVS} envs x {N_STEPS} steps, {updates} A2C updates, 1 torch thread, best of 2"
    )
    for name, v in rows.items():
        print(f"{name:28s} {best[name]:9.0f} frames/s   rounds: {', '.join(f'{x:.0f}' for x in v)}")
    return best


def reuse_table(game: str, updates: int) -> None:
    """SB3 A2C and our three modes with and without ``reuse_acting_graph``, taking turns (2 rounds)."""
    rows: dict[str, list[float]] = {}
    for _ in range(2):
        rows.setdefault("sb3 A2C", []).append(sb3(game, updates)["frames_per_s"])
        for mode in ("a2c_oracle", "drlhf", "pbrl"):
            for reuse in (False, True):
                name = f"{mode}{', reuse graph' if reuse else ''}"
                r = ours(game, mode, updates, 2, reuse=reuse, warmup=False)
                rows.setdefault(name, []).append(r["frames_per_s"])
    best = _print_rounds(game, updates, rows)
    sb3_fps = best["sb3 A2C"]
    for reuse in ("", ", reuse graph"):
        print(
            f"a2c_oracle{reuse} / SB3 A2C: {best['a2c_oracle' + reuse] / sb3_fps:.2f}x  (goal >= 1.8)"
        )
        print(
            f"pbrl{reuse}: {best['drlhf' + reuse] / best['pbrl' + reuse]:.2f}x the time per agent frame "
            f"of drlhf{reuse} (goal <= 1.5)"
        )


def oracle_table(game: str, updates: int) -> None:
    """DRLHF and PBRL with the oracle stepping every 1 and 2 agent updates, taking turns (2 rounds)."""
    runs = {
        "drlhf": {"mode": "drlhf"},
        "pbrl, oracle_every 1": {"mode": "pbrl"},
        "pbrl, oracle_every 2": {"mode": "pbrl", "oracle_every": 2},
    }
    rows: dict[str, list[float]] = {}
    for _ in range(2):
        for name, kw in runs.items():
            r = ours(
                game, kw["mode"], updates, 2, warmup=False, oracle_every=kw.get("oracle_every", 1)
            )
            rows.setdefault(name, []).append(r["frames_per_s"])
    best = _print_rounds(game, updates, rows)
    for k in (1, 2):
        print(
            f"pbrl, oracle_every {k}: {best['drlhf'] / best[f'pbrl, oracle_every {k}']:.2f}x the time "
            "per agent frame of drlhf (goal <= 1.5)"
        )


if __name__ == "__main__":
    main()
