"""RLHF on the toy gridworld learns: A2C oracle, DRLHF and PBRL all end clearly above a random policy.

Runs ``sweeps/rlhf_toy.yaml`` through the same path as ``pbrl run`` (local backend) with fixed seeds.
The random policy's mean episode return is measured here on the same env (≈ 25 of an optimum ≈ 92).
PBRL vs DRLHF is printed and recorded (``record_property``), never asserted: at this size their
difference is within seed noise.

Runtime on one free core: small ≈ 35 s (3 trials, seed 0); slow ≈ 2 min (3 methods × 3 seeds).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbrl_dist.config import load_sweep
from pbrl_dist.envs import make_toy_vec_env
from pbrl_dist.launch.local import run_local
from pbrl_dist.report import load_results

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "sweeps" / "rlhf_toy.yaml"
MARGIN = 25.0  # return units; random ≈ 25 and the optimum ≈ 92 on the default 8×8 grid, T = 100


def random_policy_return(*, num_envs: int = 16, episodes: int = 4, seed: int = 123) -> float:
    """Mean true return of uniformly random actions on the sweep's toy env."""
    env = make_toy_vec_env(num_envs=num_envs, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    for _ in range(episodes * env.episode_length):
        env.step(rng.integers(0, env.num_actions, num_envs))
    return float(np.mean(env.pop_finished_episode_returns()))


def _run(tmp_path: Path, overrides: list[str]) -> pd.DataFrame:
    sweep = load_sweep(TOY, overrides=overrides)
    run_local(sweep, tmp_path / "out")
    _, trials = load_results(tmp_path / "out")
    assert trials["complete"].all()
    return trials


def _check(trials: pd.DataFrame, record: Callable[[str, object], None]) -> None:
    rand = random_policy_return()
    final = trials.groupby("method.name")["rl/episode_return"].mean()
    print(f"\nrandom policy: {rand:.2f}")
    print("final true episode return (mean over seeds):", final.round(2).to_dict())
    ranking = "pbrl > drlhf" if final["pbrl"] > final["drlhf"] else "drlhf >= pbrl"
    print(f"measured ranking: {ranking} ({final['pbrl']:.2f} vs {final['drlhf']:.2f})")
    record("random_return", round(rand, 3))
    record("final_returns", {k: round(float(v), 3) for k, v in final.items()})
    record("pbrl_vs_drlhf", ranking)
    for method in ("a2c_oracle", "drlhf", "pbrl"):
        assert final[method] > rand + MARGIN, (method, final[method], rand)


@pytest.mark.learning
def test_rlhf_toy_learns_small(tmp_path: Path, record_property: Callable) -> None:
    trials = _run(tmp_path, ["sweep.seeds=[0]", "method.total_env_steps=60000"])
    assert len(trials) == 3
    _check(trials, record_property)


@pytest.mark.learning
def test_rlhf_toy_learns_in_bfloat16(tmp_path: Path, record_property: Callable) -> None:
    """Mixed precision (``method.compute_dtype=bfloat16``) still learns in all three modes."""
    overrides = ["sweep.seeds=[0]", "method.total_env_steps=60000", "method.compute_dtype=bfloat16"]
    trials = _run(tmp_path, overrides)
    assert len(trials) == 3
    _check(trials, record_property)


@pytest.mark.slow
@pytest.mark.learning
def test_rlhf_toy_learns_full(tmp_path: Path, record_property: Callable) -> None:
    trials = _run(tmp_path, [])
    assert len(trials) == 9
    _check(trials, record_property)
