"""Incentive design: final_state.npz recomputes the metrics; the meta-gradient matches finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbrl_dist.algos.incentive import metagrad_step
from pbrl_dist.problems.incentive import IncentiveProblem, designer_return, make_game
from pbrl_dist.testing import fd_grad, random_logits


@pytest.fixture(scope="module")
def problem() -> IncentiveProblem:
    return IncentiveProblem(
        make_game(
            num_states=4, num_actions1=3, num_actions2=2, gamma=0.8, tau=0.2, cost_coef=0.05, game=2
        )
    )


def _soft_opt_value(P_SAS: np.ndarray, r_SA: np.ndarray, gamma: float, tau: float) -> np.ndarray:
    v = np.zeros(P_SAS.shape[0])
    for _ in range(3000):
        q = r_SA + gamma * P_SAS @ v
        m = q.max(1, keepdims=True)
        v = (m + tau * np.log(np.exp((q - m) / tau).sum(1, keepdims=True)))[:, 0]
    return v


def _numpy_metrics(z: dict[str, np.ndarray]) -> tuple[float, float]:
    """Designer return and NI gap from the saved arrays alone (numpy; independent of pbrl_dist)."""
    P, Pd, rd, rho = z["P"], z["P_designer"], z["r_designer"], z["rho"]
    gamma, tau, p1, p2 = float(z["gamma"]), float(z["tau"]), z["pi1"], z["pi2"]
    r = z["r"] + 1 / (1 + np.exp(-z["x"]))
    S = P.shape[0]
    joint = np.einsum("sa,sb->sab", p1, p2)
    vd = np.linalg.solve(
        np.eye(S) - gamma * np.einsum("sab,sabt->st", joint, Pd), (joint * rd).sum((1, 2))
    )
    h1, h2 = (p1 * np.log(p1)).sum(1), (p2 * np.log(p2)).sum(1)
    # Player 1's best value against π2, and player 2's best (lowest) value against π1.
    P1, r1 = np.einsum("sb,sabt->sat", p2, P), np.einsum("sb,sab->sa", p2, r) + tau * h2[:, None]
    P2, r2 = np.einsum("sa,sabt->sbt", p1, P), -np.einsum("sa,sab->sb", p1, r) + tau * h1[:, None]
    best1 = rho @ _soft_opt_value(P1, r1, gamma, tau)
    best2 = -(rho @ _soft_opt_value(P2, r2, gamma, tau))
    return float(rho @ vd), float(best1 - best2)


def test_final_state_recomputes_metrics(problem: IncentiveProblem) -> None:
    x = random_logits(4, 3, 2, seed=1)
    th1, th2 = random_logits(4, 3, seed=2), random_logits(4, 2, seed=3)
    z = problem.final_state(x, th1, th2)
    dr, ni = _numpy_metrics(z)
    assert dr == pytest.approx(float(z["designer_return"]), abs=1e-10)
    assert ni == pytest.approx(float(z["ni_gap"]), abs=1e-9)
    assert ni > 1e-3


def test_metagrad_designer_gradient_matches_finite_differences(problem: IncentiveProblem) -> None:
    x = random_logits(4, 3, 2, seed=4)
    th1, th2 = random_logits(4, 3, seed=5), random_logits(4, 2, seed=6)
    beta = 0.7
    gx, _, _, _ = metagrad_step(problem, x, th1, th2, beta)

    def designer_after_step(xx: torch.Tensor) -> torch.Tensor:
        # Recompute the players' one-step update at xx by plain autograd, then the designer objective.
        _, t1n, t2n, _ = metagrad_step(problem, xx, th1, th2, beta)
        pi1, pi2 = torch.softmax(t1n, -1), torch.softmax(t2n, -1)
        return (
            designer_return(problem.game, pi1, pi2)
            - problem.game.cost_coef * torch.sigmoid(xx).sum()
        )

    fd = fd_grad(designer_after_step, x)
    # eps = 1e-6 central differences: error ≈ 1e-10 here; the gradient itself is O(1e-2).
    torch.testing.assert_close(gx, fd, rtol=0, atol=1e-8)
    assert gx.abs().max() > 1e-4


def test_ni_mc_pieces_match_exact(problem: IncentiveProblem) -> None:
    """Each REINFORCE piece of the NI estimator within 5 standard errors of 40 batches of its exact value.

    Horizon 70 with γ = 0.8 bounds the truncation bias by 0.8**70·3/0.2 ≈ 2e-6, far below the standard errors.
    """
    from pbrl_dist.core.mdp import expected_value
    from pbrl_dist.core.zerosum import joint_evaluate
    from pbrl_dist.testing import mc_within

    g = problem.game
    x = random_logits(4, 3, 2, seed=7)
    th1, th2 = random_logits(4, 3, seed=8), random_logits(4, 2, seed=9)
    h1, h2 = (
        torch.softmax(random_logits(4, 3, seed=10), -1),
        torch.softmax(random_logits(4, 2, seed=11), -1),
    )
    x_, t1, t2 = (v.clone().requires_grad_(True) for v in (x, th1, th2))

    def V(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        v, _ = joint_evaluate(g.P_SABS, problem.reward(x_), p1, p2, g.gamma, g.tau)
        return expected_value(v, g.rho_S)

    v1 = V(h1, torch.softmax(t2, -1))
    gx1, g21 = torch.autograd.grad(v1, (x_, t2))
    v2 = V(torch.softmax(t1, -1), h2)
    gx2, g12 = torch.autograd.grad(v2, (x_, t1))
    vd = designer_return(g, torch.softmax(t1, -1), torch.softmax(t2, -1))
    g1f, g2f = torch.autograd.grad(-vd, (t1, t2))
    exact = {"gx_v1": gx1, "g2_v1": g21, "v1": v1, "gx_v2": gx2, "g1_v2": g12, "v2": v2,
             "g1_f": g1f, "g2_f": g2f, "vd": vd}  # fmt: skip
    y, hat = torch.cat([th1, th2], -1), torch.cat([h1, h2], -1)
    outs = [
        problem.mc_chunk(x, y, hat, parts=("ni", "designer"), num_rollouts=400, horizon=70, seed=m)
        for m in range(40)
    ]
    for key, val in exact.items():
        ok, worst = mc_within(torch.stack([o[key] for o in outs]), val.detach())
        assert ok, f"{key}: worst standardized error {worst:.2f}"
