"""The gymnasium path learns: A2C on CartPole-v1's true reward through ``sweeps/gym_cartpole.yaml``.

Runs the sweep file's ``a2c_oracle`` trials through the same path as ``pbrl run`` (local backend),
fixed seeds, and compares with a uniformly random policy measured here on the same env (≈ 22 per
game). Only the oracle is asserted: on CartPole every in-game segment has the same true return, so the
synthetic teacher can only answer "tie" and drlhf/pbrl have nothing to learn (see the sweep file).

Runtime on one free core: ≈ 15 s (2 seeds × 40k steps).
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


def random_policy_return(*, num_envs: int = 8, games: int = 100, seed: int = 123) -> float:
    """Mean true return of uniformly random actions on CartPole-v1 (whole games)."""
    env = GymVecEnv("CartPole-v1", num_envs=num_envs, seed=seed)
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
