"""The gymnasium path learns: A2C on the true reward of two classic-control envs.

CartPole-v1 through ``sweeps/gym_cartpole.yaml``, and Acrobot-v1 with rl-zoo's A2C preset (observation and
reward normalisation, ``sweeps/zoo_a2c/acrobot.yaml``) at a tenth of its budget. Each runs the sweep file's
``a2c_oracle`` trials through the same path as ``pbrl run`` (local backend), fixed seeds, and compares with a
uniformly random policy measured here on the same env (CartPole ≈ 22 per game, Acrobot ≈ −500: it almost
never swings up in the 500-step limit). On CartPole only the oracle is asserted: every in-game segment has
the same true return, so the synthetic teacher can only answer "tie" and drlhf/pbrl have nothing to learn
(see the sweep file).

Runtime on one free core: ≈ 15 s (CartPole, 2 seeds × 40k steps), ≈ 35 s (Acrobot, 2 seeds × 50k steps).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pbrl_dist.config import load_sweep
from pbrl_dist.envs.gym import GymVecEnv
from pbrl_dist.launch.local import run_local
from pbrl_dist.report import load_results

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "sweeps" / "gym_cartpole.yaml"


def random_policy_return(
    env_id: str = "CartPole-v1", *, num_envs: int = 8, games: int = 100, seed: int = 123
) -> float:
    """Mean true return of uniformly random actions on ``env_id`` (whole games)."""
    env = GymVecEnv(env_id, num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    rets: list[float] = []
    while len(rets) < games:
        env.step(rng.integers(0, env.num_actions, num_envs))
        rets += env.pop_finished_episode_returns()
    return float(np.mean(rets))


@pytest.mark.learning
def test_a2c_learns_cartpole_through_the_gym_path(tmp_path: Path) -> None:
    sweep = load_sweep(SWEEP, overrides=["sweep.seeds=[0,1]"])
    sweep = dataclasses.replace(
        sweep, trials=[t for t in sweep.trials if t.cfg.method.mode == "a2c_oracle"]
    )
    run_local(sweep, tmp_path / "out")
    _, trials = load_results(tmp_path / "out")
    assert trials["complete"].all() and len(trials) == 2
    rand = random_policy_return()
    finals = trials["rl/episode_return"].to_numpy()
    print(f"\nrandom policy {rand:.1f}; A2C after 40k steps, seeds 0-1: {finals.round(1).tolist()}")
    assert 15.0 < rand < 30.0, rand
    assert (finals > 3 * rand).all(), (finals, rand)


@pytest.mark.learning
def test_a2c_learns_acrobot_with_the_rl_zoo_preset(tmp_path: Path) -> None:
    """rl-zoo's A2C reaches −83 at 500k steps (RESULTS.md: ours −84.1 over 3 seeds); at 50k steps each of
    two seeds must already be far from the random policy's ≈ −500."""
    sweep = load_sweep(
        ROOT / "sweeps" / "zoo_a2c" / "acrobot.yaml",
        overrides=["sweep.seeds=[0,1]", "method.total_env_steps=50000"],
    )
    run_local(sweep, tmp_path / "out")
    _, trials = load_results(tmp_path / "out")
    assert trials["complete"].all() and len(trials) == 2
    rand = random_policy_return("Acrobot-v1", games=16)
    finals = trials["rl/episode_return"].to_numpy()
    print(f"\nrandom policy {rand:.1f}; A2C after 50k steps, seeds 0-1: {finals.round(1).tolist()}")
    assert rand < -400.0, rand
    assert (finals > -200.0).all(), (finals, rand)
