"""Tests for the ale-py AtariVectorEnv wrapper (need the ROMs that ship inside the ale-py wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from pbrl_dist.envs.atari import AtariVecEnv, ale_game_id, make_atari_vec_env

pytestmark = pytest.mark.atari

GAME = "BeamRider"


def _rollout(env: AtariVecEnv, actions_TN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs = [env.reset()]
    rews = []
    for a in actions_TN:
        o, r, _, _, _ = env.step(a)
        obs.append(o)
        rews.append(r)
    return np.stack(obs), np.stack(rews)


def test_game_ids() -> None:
    assert ale_game_id("BeamRider") == "beam_rider"
    assert ale_game_id("ALE/MsPacman-v5") == "ms_pacman"
    assert ale_game_id("seaquest") == "seaquest"
    with pytest.raises(ValueError, match="game"):
        ale_game_id("NotAGame")


def test_shapes_dtypes() -> None:
    with make_atari_vec_env(GAME, num_envs=3, seed=0, sticky_action_prob=0.25) as env:
        obs = env.reset()
        assert obs.shape == (3, 4, 84, 84)
        assert obs.dtype == np.uint8
        assert env.obs_shape == (4, 84, 84)
        assert env.num_actions == 9  # BeamRider's minimal action set
        o, r, te, tr, info = env.step(np.zeros(3, dtype=np.int64))
        assert o.shape == (3, 4, 84, 84)
        assert o.dtype == np.uint8
        assert r.shape == (3,)
        assert r.dtype == np.float32
        assert te.shape == tr.shape == info["game_over"].shape == (3,)
        assert te.dtype == tr.dtype == np.bool_
        with pytest.raises(ValueError, match="actions"):
            env.step(np.full(3, env.num_actions))


def test_deterministic_given_seed() -> None:
    """Same seed ⇒ identical reset observations and trajectories, sticky actions included."""
    rng = np.random.default_rng(0)
    a_TN = rng.integers(0, 9, size=(60, 2))
    runs = []
    for _ in range(2):
        with make_atari_vec_env(GAME, num_envs=2, seed=123, sticky_action_prob=0.25) as env:
            runs.append(_rollout(env, a_TN))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_episode_returns_equal_sum_of_true_rewards() -> None:
    """Truncate episodes after 1200 frames (300 steps) so several finish; compare returns."""
    N, T = 2, 700
    rng = np.random.default_rng(1)
    with make_atari_vec_env(
        GAME, num_envs=N, seed=7, sticky_action_prob=0.0, max_episode_frames=1200
    ) as env:
        env.reset()
        running = np.zeros(N)
        expected: list[float] = []
        for _ in range(T):
            _, r, te, tr, info = env.step(rng.integers(0, env.num_actions, N))
            running += r
            for n in np.flatnonzero(te | tr):
                expected.append(float(running[n]))
                running[n] = 0.0
            np.testing.assert_array_equal(info["game_over"], te | tr)
        got = env.pop_finished_episode_returns()
        assert env.pop_finished_episode_returns() == []
    assert len(got) >= N  # every env finished at least one (truncated) episode
    np.testing.assert_allclose(got, expected)
    assert sum(got) > 0  # BeamRider pays points within 300 random steps: the check is not vacuous


def test_episodic_life_reports_whole_game_returns() -> None:
    """episodic_life: life losses raise `terminated`; the reported return is the whole game's."""
    rng = np.random.default_rng(2)
    with make_atari_vec_env(
        GAME, num_envs=1, seed=3, sticky_action_prob=0.0, episodic_life=True
    ) as env:
        env.reset()
        total, num_term, lives_seen = 0.0, 0, []
        for _ in range(5000):
            _, r, te, _, info = env.step(rng.integers(0, env.num_actions, 1))
            total += float(r[0])
            num_term += int(te[0])
            lives_seen.append(int(info["lives"][0]))
            if info["game_over"][0]:
                break
        else:
            pytest.fail("no game ended within 5000 random steps")
        assert num_term >= 2  # at least one life loss before the game over
        assert min(lives_seen) < max(lives_seen)
        assert env.pop_finished_episode_returns() == [pytest.approx(total)]


def test_sticky_prob_passes_through() -> None:
    """p = 1 repeats the first action (NOOP) forever, so actions cannot matter; p = 0 they do."""
    rng = np.random.default_rng(3)
    a1 = rng.integers(0, 9, size=(80, 1))
    a2 = (a1 + 1 + rng.integers(0, 8, size=a1.shape)) % 9  # differs from a1 at every step
    for p, same in ((1.0, True), (0.0, False)):
        outs = []
        for a in (a1, a2):
            with make_atari_vec_env(GAME, num_envs=1, seed=5, sticky_action_prob=p) as env:
                assert env.sticky_action_prob == p
                outs.append(_rollout(env, a)[0])
        assert np.array_equal(outs[0], outs[1]) == same
    with pytest.raises(ValueError, match="sticky_action_prob"):
        make_atari_vec_env(GAME, num_envs=1, seed=0, sticky_action_prob=1.5)


def test_random_episode_returns_are_whole_games_and_deterministic() -> None:
    from pbrl_dist.envs import random_episode_returns

    a = random_episode_returns("Breakout", num_games=4, num_envs=4, seed=1, num_threads=1)
    b = random_episode_returns("Breakout", num_games=4, num_envs=4, seed=1, num_threads=1)
    assert len(a) >= 4 and a == b
    assert all(r >= 0 and float(r).is_integer() for r in a)  # Breakout scores: whole bricks
