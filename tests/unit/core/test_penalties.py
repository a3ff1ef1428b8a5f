"""Penalties: sign, zero at the best response, and every gradient against central finite differences.

Gradients are checked on the Stackelberg game, where x enters both r_x and P_x (Lemma 7(b), 9(b)).
Finite differences of the *true* penalty recompute π*_x at every perturbed x, so agreement checks the
Danskin-type formulas (Lemmas 6 and 8), not just autograd. Tolerance 1e-7 absolute: central differences
with eps=1e-6 in float64 have truncation error ~1e-12 and rounding error ~1e-10·|p|/eps ≈ 1e-9 here.
"""

from __future__ import annotations

import pytest
import torch

from pbrl_dist.core import mdp, penalties
from pbrl_dist.problems.stackelberg import (
    StackelbergProblem,
    follower_value,
    make_game,
)
from pbrl_dist.testing import fd_grad, random_logits, random_mdp

PENALTIES = {"value": penalties.value_penalty, "bellman": penalties.bellman_penalty}

GAMMA, TAU = 0.8, 0.5
ATOL = 1e-7


@pytest.fixture(scope="module")
def problem() -> StackelbergProblem:
    game = make_game(
        num_states=4,
        num_leader_actions=3,
        num_follower_actions=2,
        sparsity=0.3,
        gamma=GAMMA,
        tau=TAU,
        game=7,
    )
    return StackelbergProblem(game)


def test_penalties_nonnegative_and_zero_at_best_response() -> None:
    P, r, rho = random_mdp(5, 3, seed=11)
    star = mdp.soft_policy_iteration(P, r, GAMMA, TAU)
    for name, pen in PENALTIES.items():
        assert float(pen(P, r, star.pi_SA, rho, GAMMA, TAU)) == pytest.approx(0.0, abs=1e-12), name
        for seed in range(5):
            pi = torch.softmax(random_logits(5, 3, seed=seed), -1)
            assert float(pen(P, r, pi, rho, GAMMA, TAU)) > 1e-6, name


def test_bellman_penalty_equals_tau_kl() -> None:
    P, r, rho = random_mdp(5, 3, seed=12)
    star = mdp.soft_policy_iteration(P, r, GAMMA, TAU)
    pi = torch.softmax(random_logits(5, 3, seed=3), -1)
    kl = (pi * (pi.log() - star.pi_SA.log())).sum(-1)
    g = penalties.bellman_penalty(P, r, pi, rho, GAMMA, TAU)
    assert float(g) == pytest.approx(float(TAU * (rho * kl).sum()), abs=1e-12)


@pytest.mark.parametrize("name", ["value", "bellman"])
def test_surrogate_value_equals_penalty_at_exact_best_response(name: str) -> None:
    P, r, rho = random_mdp(4, 3, seed=13)
    star = mdp.soft_policy_iteration(P, r, GAMMA, TAU)
    pi = torch.softmax(random_logits(4, 3, seed=4), -1)
    s = penalties.PENALTY_SURROGATES[name](P, r, pi, star.pi_SA, rho, GAMMA, TAU)
    p = PENALTIES[name](P, r, pi, rho, GAMMA, TAU)
    assert float(s) == pytest.approx(float(p), abs=1e-11)


def _true_penalty(
    problem: StackelbergProblem, name: str, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    P_x, r_x = problem.lower_mdp(x)
    return PENALTIES[name](P_x, r_x, torch.softmax(y, -1), problem.rho_S, GAMMA, TAU, tol=1e-14)


def _surrogate_grads(problem: StackelbergProblem, name: str, x: torch.Tensor, y: torch.Tensor):
    x_, y_ = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    with torch.no_grad():
        P0, r0 = problem.lower_mdp(x)
    pi_star = mdp.soft_policy_iteration(P0, r0, GAMMA, TAU, tol=1e-14).pi_SA
    P_x, r_x = problem.lower_mdp(x_)
    s = penalties.PENALTY_SURROGATES[name](
        P_x, r_x, torch.softmax(y_, -1), pi_star, problem.rho_S, GAMMA, TAU
    )
    return torch.autograd.grad(s, (x_, y_))


@pytest.mark.parametrize("name", ["value", "bellman"])
def test_penalty_gradients_match_finite_differences(problem: StackelbergProblem, name: str) -> None:
    x = random_logits(4, 3, seed=21)
    y = random_logits(4, 2, seed=22)
    gx, gy = _surrogate_grads(problem, name, x, y)
    fx = fd_grad(lambda xx: _true_penalty(problem, name, xx, y), x)
    fy = fd_grad(lambda yy: _true_penalty(problem, name, x, yy), y)
    torch.testing.assert_close(gx, fx, rtol=0, atol=ATOL)
    torch.testing.assert_close(gy, fy, rtol=0, atol=ATOL)
    assert gx.abs().max() > 1e-3 and gy.abs().max() > 1e-3  # the check is not vacuous


def test_lemma_7b_closed_form_matches_autograd(problem: StackelbergProblem) -> None:
    """∇_x V_f(π_x, σ) = (1/(1−γ))·Σ_s d(s)·π_x(a|s)·(Q̃(s,a) − V(s)) for a softmax leader (Lemma 7(b))."""
    g = problem.game
    x = random_logits(4, 3, seed=31)
    sigma = torch.softmax(random_logits(4, 2, seed=32), -1)
    pi = torch.softmax(x, -1)
    # Closed form: the leader faces the MDP with reward E_b r_f − τ·h(σ) and transition E_b P.
    P_l = torch.einsum("sb,sabt->sat", sigma, g.P_SABS)
    r_l = torch.einsum("sb,sab->sa", sigma, g.r_follower_SAB) - TAU * mdp.neg_entropy(
        sigma
    ).unsqueeze(-1)
    v, q = mdp.evaluate_policy(P_l, r_l, pi, GAMMA, 0.0)
    d = mdp.occupancy(P_l, pi, g.rho_S, GAMMA)
    closed = d.unsqueeze(-1) / (1 - GAMMA) * pi * (q - v.unsqueeze(-1))
    x_ = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(
        mdp.expected_value(follower_value(g, torch.softmax(x_, -1), sigma), g.rho_S), x_
    )
    torch.testing.assert_close(closed, auto, rtol=0, atol=1e-12)
    fd = fd_grad(
        lambda xx: mdp.expected_value(follower_value(g, torch.softmax(xx, -1), sigma), g.rho_S), x
    )
    torch.testing.assert_close(closed, fd, rtol=0, atol=1e-8)


def test_bellman_x_gradient_is_danskin_form(problem: StackelbergProblem) -> None:
    """∇_x g = Σ_s ρ(s)·Σ_b (π*(b|s) − π(b|s))·∇_x Q*(s,b) with ∇_x Q* = ∇_x Q^π|_{π=π*} (Lemma 8)."""
    x = random_logits(4, 3, seed=41)
    y = random_logits(4, 2, seed=42)
    with torch.no_grad():
        P0, r0 = problem.lower_mdp(x)
    star = mdp.soft_policy_iteration(P0, r0, GAMMA, TAU, tol=1e-14)
    sigma = torch.softmax(y, -1)
    rows = []
    for s in range(4):
        for b in range(2):
            x_ = x.clone().requires_grad_(True)
            P_x, r_x = problem.lower_mdp(x_)
            _, q = mdp.evaluate_policy(P_x, r_x, star.pi_SA, GAMMA, TAU)
            (gq,) = torch.autograd.grad(q[s, b], x_)
            rows.append(problem.rho_S[s] * (star.pi_SA[s, b] - sigma[s, b]) * gq)
    danskin = torch.stack(rows).sum(0)
    fx = fd_grad(lambda xx: _true_penalty(problem, "bellman", xx, y), x)
    torch.testing.assert_close(danskin, fx, rtol=0, atol=ATOL)
