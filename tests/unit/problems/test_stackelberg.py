"""The Stackelberg game: generator, induced follower MDP, exact metrics, final_state.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbrl_dist.core import mdp
from pbrl_dist.problems.stackelberg import (
    StackelbergProblem,
    follower_gap,
    leader_return,
    make_game,
    stack_games,
)
from pbrl_dist.testing import random_logits


def _game(i: int = 0, **kw):
    args = dict(
        num_states=6, num_leader_actions=3, num_follower_actions=4, sparsity=0.7, gamma=0.9, tau=0.1
    )
    return make_game(**(args | kw), game=i)


def test_generator_shapes_sparsity_and_determinism() -> None:
    g = _game(0)
    assert g.P_SABS.shape == (6, 3, 4, 6)
    torch.testing.assert_close(g.P_SABS.sum(-1), torch.ones(6, 3, 4, dtype=torch.float64))
    assert (g.r_leader_SAB == 0).double().mean() > 0.4  # threshold 0.7 zeroes ~70%
    assert g.r_leader_SAB.max() <= 1 and g.r_leader_SAB[g.r_leader_SAB > 0].min() >= 0.7
    assert torch.equal(_game(0).P_SABS, g.P_SABS)
    assert not torch.equal(_game(1).P_SABS, g.P_SABS)


def test_follower_gap_zero_at_follower_best_response_and_positive_elsewhere() -> None:
    prob = StackelbergProblem(_game(2))
    x = random_logits(6, 3, seed=1)
    P_x, r_x = prob.lower_mdp(x)
    star = mdp.soft_policy_iteration(P_x, r_x, 0.9, 0.1)
    pi = torch.softmax(x, -1)
    assert float(follower_gap(prob.game, pi, star.pi_SA)) == pytest.approx(0.0, abs=1e-10)
    assert float(follower_gap(prob.game, pi, torch.softmax(random_logits(6, 4, seed=2), -1))) > 1e-3


def test_batched_games_equal_one_by_one() -> None:
    games = [_game(i) for i in range(3)]
    batch = StackelbergProblem(stack_games(games))
    xb, yb = batch.init_params(0, 1.0)
    mb = batch.metrics(xb, yb)
    for i, g in enumerate(games):
        m = StackelbergProblem(g).metrics(xb[i], yb[i])
        assert mb["upper/leader_return"][i] == pytest.approx(m["upper/leader_return"], abs=1e-12)
        assert mb["lower/gap"][i] == pytest.approx(m["lower/gap"], abs=1e-10)


def _numpy_metrics(z: dict[str, np.ndarray]) -> tuple[float, float]:
    """Recompute both metrics from the saved arrays alone, with numpy only (independent of pbrl_dist)."""
    P, rl, rf, rho = z["P"], z["r_leader"], z["r_follower"], z["rho"]
    gamma, tau, pi, sig = float(z["gamma"]), float(z["tau"]), z["pi_leader"], z["pi_follower"]
    S = P.shape[0]
    joint = np.einsum("sa,sb->sab", pi, sig)
    P_j = np.einsum("sab,sabt->st", joint, P)
    v_l = np.linalg.solve(np.eye(S) - gamma * P_j, (joint * rl).sum((1, 2)))
    # Follower: induced MDP, soft value iteration to machine precision.
    P_f = np.einsum("sa,sabt->sbt", pi, P)
    r_f = np.einsum("sa,sab->sb", pi, rf)
    v = np.zeros(S)
    for _ in range(2000):
        q = r_f + gamma * P_f @ v
        v = tau * np.log(np.exp(q / tau).sum(1))
    h = (sig * np.log(sig)).sum(1)
    v_f = np.linalg.solve(
        np.eye(S) - gamma * np.einsum("sb,sbt->st", sig, P_f), (sig * r_f).sum(1) - tau * h
    )
    return float(rho @ v_l), float(rho @ (v - v_f))


def test_final_state_recomputes_metrics() -> None:
    prob = StackelbergProblem(_game(4))
    x, y = prob.init_params(3, 1.0)
    z = prob.final_state(x, y)
    lr, gap = _numpy_metrics(z)
    assert lr == pytest.approx(float(z["leader_return"]), abs=1e-10)
    assert gap == pytest.approx(float(z["follower_gap"]), abs=1e-9)
    assert float(
        leader_return(prob.game, torch.softmax(x, -1), torch.softmax(y, -1))
    ) == pytest.approx(lr, abs=1e-10)
