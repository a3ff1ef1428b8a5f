"""Tests for the vectorized moving-target gridworld."""

from __future__ import annotations

import numpy as np
import pytest

from pbrl_dist.envs.toy import ToyTargetVecEnv, make_toy_vec_env

N, T = 32, 100


def _run(env: ToyTargetVecEnv, policy: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = env.reset()
    obs_l, rew_l = [obs], []
    for _ in range(steps):
        a = (
            rng.integers(0, env.num_actions, env.num_envs)
            if policy == "random"
            else env.greedy_actions(obs)
        )
        obs, r, _, _, _ = env.step(a)
        obs_l.append(obs)
        rew_l.append(r)
    return np.stack(obs_l), np.stack(rew_l)


def test_shapes_and_episode_end() -> None:
    env = make_toy_vec_env(num_envs=N, seed=0, episode_length=T)
    obs = env.reset()
    assert obs.shape == (N, 7)
    assert obs.dtype == np.float32
    assert env.obs_shape == (7,)
    assert env.num_actions == 5
    for t in range(1, T + 1):
        obs, r, te, tr, info = env.step(np.zeros(N, dtype=np.int64))
        assert obs.shape == (N, 7)
        assert obs.dtype == np.float32
        assert r.shape == (N,)
        assert r.dtype == np.float32
        assert te.dtype == tr.dtype == np.bool_
        assert not tr.any()
        assert te.all() == (t == T)
        assert te.any() == (t == T)
        assert np.all((r >= -1) & (r <= 1))
        assert np.all(np.abs(obs) <= 1 + 1e-6)
    assert "final_obs" in info
    assert info["final_obs"].shape == (N, 7)
    assert obs[0, -1] == 0.0  # autoreset: the returned obs starts a new episode (t/T = 0)
    with pytest.raises(ValueError, match="actions"):
        env.step(np.full(N, 5))


def test_deterministic_given_seed() -> None:
    a = _run(make_toy_vec_env(num_envs=N, seed=11), "random", 150, seed=0)
    b = _run(make_toy_vec_env(num_envs=N, seed=11), "random", 150, seed=0)
    c = _run(make_toy_vec_env(num_envs=N, seed=12), "random", 150, seed=0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_returns_tracked_and_reward_of_matches_step() -> None:
    env = make_toy_vec_env(num_envs=N, seed=1)
    rng = np.random.default_rng(0)
    obs = env.reset()
    total = np.zeros(N)
    for _ in range(T):
        a = rng.integers(0, env.num_actions, N)
        expected_r = env.reward_of(obs, a)
        obs, r, _, _, _ = env.step(a)
        np.testing.assert_array_equal(r, expected_r)
        total += r
    np.testing.assert_allclose(env.pop_finished_episode_returns(), total, rtol=1e-6)
    assert env.pop_finished_episode_returns() == []


def test_random_vs_greedy_gap() -> None:
    """Greedy is near the optimum T; random is far below it (≈ 26 vs ≈ 98 on the default grid)."""
    env = make_toy_vec_env(num_envs=64, seed=2)
    _run(env, "random", 2 * T, seed=0)
    random_ret = np.mean(env.pop_finished_episode_returns())
    _run(env, "greedy", 2 * T, seed=0)
    greedy_ret = np.mean(env.pop_finished_episode_returns())
    assert greedy_ret >= 0.93 * env.optimal_return()
    assert random_ret <= 0.4 * greedy_ret


def test_segments_of_25_steps_are_distinguishable() -> None:
    """Under a random policy the true returns of 25-step segments spread far beyond ties."""
    env = make_toy_vec_env(num_envs=64, seed=3)
    _, r_TN = _run(env, "random", T, seed=1)
    seg = r_TN.reshape(4, 25, 64).sum(1).ravel()
    assert seg.std() > 3.0
    assert len(np.unique(np.round(seg, 4))) > 0.5 * seg.size


def test_state_dict_resume_is_exact() -> None:
    env = make_toy_vec_env(num_envs=8, seed=4)
    env.reset()
    for _ in range(30):
        env.step(np.ones(8, dtype=np.int64))
    state = env.state_dict()
    ref = [env.step(np.full(8, 3))[0] for _ in range(90)]
    env2 = make_toy_vec_env(num_envs=8, seed=999)
    env2.load_state_dict(state)
    got = [env2.step(np.full(8, 3))[0] for _ in range(90)]
    np.testing.assert_array_equal(np.stack(ref), np.stack(got))
    assert env.pop_finished_episode_returns() == env2.pop_finished_episode_returns()
