"""Tests for ``envs/gym.py`` (any gymnasium env with discrete actions) and the ``gym_rlhf`` problem:
conversions, seeding, episode returns, the unsupported-env messages, MinAtar, exact resume, the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from pbrl_dist.envs.gym import GymVecEnv, UnsupportedEnv, describe_env
from pbrl_dist.metrics import ListSink
from pbrl_dist.nets import make_actor_critic, make_reward_model
from pbrl_dist.nets.grid import grid_conv_spec
from pbrl_dist.problems.rlhf import GymRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, run
from pbrl_dist.testing import MemoryCheckpointer

ROOT = Path(__file__).resolve().parents[3]
PBRL = [sys.executable, "-m", "pbrl_dist.cli"]


class _DictObsEnv(gym.Env):
    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (2,))})
    action_space = gym.spaces.Discrete(2)


class _ContinuousEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 1, (2,))
    action_space = gym.spaces.Box(-1, 1, (1,))


gym.register("PbrlTestDictObs-v0", entry_point=_DictObsEnv)
gym.register("PbrlTestContinuous-v0", entry_point=_ContinuousEnv)


def _random_stream(env: GymVecEnv, steps: int, seed: int) -> tuple[list[np.ndarray], list[float]]:
    rng = np.random.default_rng(seed)
    obs, rets = [env.reset()], []
    for _ in range(steps):
        o, *_ = env.step(rng.integers(0, env.num_actions, env.num_envs))
        obs.append(o)
        rets += env.pop_finished_episode_returns()
    return obs, rets


def test_vector_env_is_a_float_vector_env_seeded_by_the_shard_seed() -> None:
    info = describe_env("CartPole-v1")
    assert (info.obs_shape, info.obs_dtype, info.num_actions, info.net_kind) == (
        (4,),
        "float32",
        2,
        "mlp",
    )
    a, b, c = (GymVecEnv("CartPole-v1", num_envs=3, seed=s) for s in (5, 5, 6))
    oa, ra = _random_stream(a, 200, 0)
    ob, rb = _random_stream(b, 200, 0)
    oc, _ = _random_stream(c, 200, 0)
    assert oa[0].dtype == np.float32 and oa[0].shape == (3, 4)
    assert all(np.array_equal(x, y) for x, y in zip(oa, ob, strict=True)) and ra == rb
    assert not np.array_equal(oa[0], oc[0])
    # CartPole pays +1 per step: a finished game's return is its length, and every step is counted.
    assert ra and all(r == int(r) and r >= 1 for r in ra)


def test_same_step_autoreset_and_episode_returns_add_up() -> None:
    env = GymVecEnv("CartPole-v1", num_envs=2, seed=0)
    env.reset()
    rng = np.random.default_rng(1)
    running, finished = np.zeros(2), []
    for _ in range(300):
        _, r, term, trunc, info = env.step(rng.integers(0, 2, 2))
        running += r
        done = term | trunc
        finished += [float(v) for v in running[done]]
        running[done] = 0
        if done.any():  # SAME_STEP: the real last observation is in the info, the obs is a reset
            assert "final_obs" in info
    assert env.pop_finished_episode_returns() == finished and len(finished) > 5


def test_discrete_observations_are_one_hot() -> None:
    env = GymVecEnv("FrozenLake-v1", num_envs=2, seed=0)
    obs = env.reset()
    assert obs.shape == (2, 16) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs.sum(1), [1.0, 1.0])
    assert describe_env("FrozenLake-v1").net_kind == "mlp"


def test_minatar_grids_are_uint8_cells_and_get_conv_nets() -> None:
    pytest.importorskip("minatar")
    info = describe_env("MinAtar/Breakout-v1")
    assert info == type(info)((10, 10, 4), "uint8", 3, "grid")
    env = GymVecEnv("MinAtar/Breakout-v1", num_envs=2, seed=0)
    obs = env.reset()
    assert obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 255} and obs.max() == 255
    ac = make_actor_critic("grid", info.obs_shape, info.num_actions)
    rm = make_reward_model("grid", info.obs_shape, info.num_actions, dropout_p=0.0)
    logits, v = ac(torch.from_numpy(np.stack([obs, obs])))  # (T=2, N=2, 10, 10, 4)
    assert logits.shape == (2, 2, 3) and v.shape == (2, 2)
    assert rm(torch.from_numpy(obs)).shape == (2, 3)
    # bool cells stored as 0/255 and scaled by 1/255: the nets see exactly the 0/1 grid
    as_float = torch.from_numpy(obs).float() / 255.0
    torch.testing.assert_close(ac(as_float)[0], ac(torch.from_numpy(obs))[0], rtol=0, atol=0)


def test_conv_trunk_is_sized_from_the_shape() -> None:
    assert grid_conv_spec(10, 10) == [(3, 1, 16)]  # Young & Tian's MinAtar network
    assert grid_conv_spec(210, 160) == [(4, 2, 32)] * 3 + [(3, 1, 16)]  # to 24×18, then 3×3
    net = make_actor_critic("grid", (210, 160, 3), 6)
    logits, _ = net(torch.zeros(2, 210, 160, 3, dtype=torch.uint8))
    assert logits.shape == (2, 6)


@pytest.mark.parametrize(
    ("env_id", "needle"),
    [
        ("Pendulum-v1", "continuous action space"),
        ("PbrlTestContinuous-v0", "continuous action space"),
        ("PbrlTestDictObs-v0", "Dict observation space"),
        ("CartPol-v1", "CartPole"),  # gymnasium's did-you-mean
        ("NoSuchEnv-v0", "doesn't exist"),
    ],
)
def test_unsupported_envs_say_why(env_id: str, needle: str) -> None:
    with pytest.raises(UnsupportedEnv, match=needle):
        describe_env(env_id)
    checks = {k: (ok, msg) for k, ok, msg in GymRLHFConfig(env_id=env_id).checks()}
    ok, msg = checks["problem.env_id"]
    assert not ok and needle in msg and env_id in msg


def test_cli_refuses_an_unsupported_env_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = subprocess.run(
        [
            *PBRL,
            *("run", str(ROOT / "sweeps" / "gym_cartpole.yaml"), "--smoke", "--out", str(out)),
            "problem.env_id=Pendulum-v1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "problem.env_id" in p.stderr and "continuous action space" in p.stderr
    assert not out.exists()


TINY = RLHFConfig(
    total_env_steps=1200,
    initial_pairs=16,
    initial_rollout_steps=40,
    warmup_epochs=2,
    pairs_per_epoch=4,
    rm_every=4,
    rm_batch_size=8,
    buffer_size=48,
    segment_length=5,
    pair_window_steps=20,
    upper_coef_decay_every=20,
    log_every_steps=200,
    continuing=True,
)


@pytest.mark.parametrize(
    ("env_id", "mode"),
    [("CartPole-v1", "pbrl"), ("MinAtar/Breakout-v1", "pbrl"), ("MinAtar/Breakout-v1", "drlhf")],
)
def test_resume_replays_the_envs_and_equals_uninterrupted(env_id: str, mode: str) -> None:
    """gymnasium envs have no state to save: a shard replays its actions from its seed, exactly."""
    if env_id.startswith("MinAtar"):
        pytest.importorskip("minatar")
    prob = build(GymRLHFConfig(env_id=env_id, num_envs=4, env_shards=2))
    cfg = dataclasses.replace(TINY, mode=mode)
    ref_ck, ref_sink = MemoryCheckpointer(every=1000), ListSink()
    ref = run(prob, cfg, seed=1, sink=ref_sink, ckpt=ref_ck)
    ck = MemoryCheckpointer(every=20, crash_after=20)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(prob, cfg, seed=1, sink=ListSink(), ckpt=ck)
    sink = ListSink()
    res = run(prob, cfg, seed=1, sink=sink, ckpt=ck)

    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "perf/env_steps_per_s"} for r in rows]

    assert sink.rows and sink.rows[0]["iter"] > 20
    assert strip(sink.rows) == [r for r in strip(ref_sink.rows) if r["iter"] > 20]
    np.testing.assert_array_equal(
        res.final_state["episode_returns"], ref.final_state["episode_returns"]
    )
    for name, t in ref_ck.saved["learner"]["agent"].items():
        assert torch.equal(ck.saved["learner"]["agent"][name], t), name
