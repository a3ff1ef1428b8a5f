"""Analytic checks of policy evaluation, the soft-optimal solve, occupancy and policy gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbrl_dist.core import mdp
from pbrl_dist.testing import fd_grad, random_logits, random_mdp

GAMMA, TAU = 0.8, 0.3


def test_policy_evaluation_equals_linear_solve_and_bellman_fixed_point() -> None:
    P, r, _ = random_mdp(5, 3)
    pi = torch.softmax(random_logits(5, 3), -1)
    v, q = mdp.evaluate_policy(P, r, pi, GAMMA, TAU)
    # Independent numpy solve of (I − γ P_π) v = r_π − τ h(π).
    Pn, rn, pin = P.numpy(), r.numpy(), pi.numpy()
    P_pi = np.einsum("sa,sat->st", pin, Pn)
    r_pi = (pin * rn).sum(1) - TAU * (pin * np.log(pin)).sum(1)
    v_np = np.linalg.solve(np.eye(5) - GAMMA * P_pi, r_pi)
    np.testing.assert_allclose(v.numpy(), v_np, rtol=0, atol=1e-12)
    # The regularized Bellman operator T^π, iterated, converges to the same value.
    w = torch.zeros(5, dtype=torch.float64)
    for _ in range(400):
        w = (pi * (r + GAMMA * P @ w)).sum(-1) - TAU * mdp.neg_entropy(pi)
    torch.testing.assert_close(v, w, rtol=0, atol=1e-12)
    torch.testing.assert_close(v, (pi * q).sum(-1) - TAU * mdp.neg_entropy(pi), rtol=0, atol=1e-12)


def test_evaluation_is_batched() -> None:
    Ps, rs, pis = zip(
        *[
            (*random_mdp(4, 2, seed=i)[:2], torch.softmax(random_logits(4, 2, seed=i), -1))
            for i in range(3)
        ],
        strict=True,
    )
    vb, qb = mdp.evaluate_policy(torch.stack(Ps), torch.stack(rs), torch.stack(pis), GAMMA, TAU)
    for i in range(3):
        v, q = mdp.evaluate_policy(Ps[i], rs[i], pis[i], GAMMA, TAU)
        torch.testing.assert_close(vb[i], v, rtol=0, atol=1e-13)
        torch.testing.assert_close(qb[i], q, rtol=0, atol=1e-13)


@pytest.mark.parametrize("solver", ["vi", "spi"])
def test_soft_optimal_fixed_point(solver: str) -> None:
    P, r, _ = random_mdp(6, 4, seed=1)
    if solver == "vi":
        pi, v, q = mdp.soft_value_iteration(P, r, GAMMA, TAU, tol=1e-12)
    else:
        pi, v, q = mdp.soft_policy_iteration(P, r, GAMMA, TAU, tol=1e-13)
    torch.testing.assert_close(q, r + GAMMA * torch.einsum("sat,t->sa", P, v), rtol=0, atol=1e-11)
    torch.testing.assert_close(v, TAU * torch.logsumexp(q / TAU, -1), rtol=0, atol=1e-11)
    torch.testing.assert_close(pi, torch.softmax(q / TAU, -1), rtol=0, atol=1e-11)
    v_pi, _ = mdp.evaluate_policy(P, r, pi, GAMMA, TAU)
    torch.testing.assert_close(v_pi, v, rtol=0, atol=1e-10)
    # No other policy is better in any state.
    for seed in range(5):
        other = torch.softmax(random_logits(6, 4, seed=seed + 10), -1)
        v_o, _ = mdp.evaluate_policy(P, r, other, GAMMA, TAU)
        assert (v_o <= v + 1e-12).all()


def test_value_iteration_and_policy_iteration_agree_and_warm_start_helps() -> None:
    P, r, _ = random_mdp(5, 3, seed=2)
    a = mdp.soft_value_iteration(P, r, GAMMA, TAU, tol=1e-12)
    b = mdp.soft_policy_iteration(P, r, GAMMA, TAU, tol=1e-13)
    torch.testing.assert_close(a.v_S, b.v_S, rtol=0, atol=1e-11)
    # A warm start at the solution returns the solution after one sweep.
    c = mdp.soft_value_iteration(P, r, GAMMA, TAU, tol=1e-12, max_iter=1, v0=a.v_S)
    torch.testing.assert_close(c.v_S, a.v_S, rtol=0, atol=1e-11)


def test_hard_value_iteration_tau_zero() -> None:
    P, r, _ = random_mdp(4, 3, seed=3)
    pi, v, q = mdp.soft_value_iteration(P, r, GAMMA, 0.0, tol=1e-12)
    torch.testing.assert_close(v, q.max(-1).values, rtol=0, atol=1e-11)
    v_pi, _ = mdp.evaluate_policy(P, r, pi, GAMMA, 0.0)
    torch.testing.assert_close(v_pi, v, rtol=0, atol=1e-10)


def test_occupancy_sums_to_one_and_dominates_rho() -> None:
    P, _, rho = random_mdp(5, 3, seed=4)
    pi = torch.softmax(random_logits(5, 3, seed=4), -1)
    d = mdp.occupancy(P, pi, rho, GAMMA)
    assert float(d.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (d >= (1 - GAMMA) * rho - 1e-12).all()
    # Against the truncated series (1−γ) Σ_t γ^t ρᵀ P_π^t.
    P_pi = mdp.policy_transition(P, pi)
    acc, mu = torch.zeros(5, dtype=torch.float64), rho.clone()
    for t in range(300):
        acc += (1 - GAMMA) * GAMMA**t * mu
        mu = mu @ P_pi
    torch.testing.assert_close(d, acc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_softmax_policy_gradient_matches_finite_differences(tau: float) -> None:
    P, r, rho = random_mdp(4, 3, seed=5)
    theta = random_logits(4, 3, seed=5)

    def V(th: torch.Tensor) -> torch.Tensor:
        v, _ = mdp.evaluate_policy(P, r, torch.softmax(th, -1), GAMMA, tau)
        return mdp.expected_value(v, rho)

    g = mdp.softmax_policy_gradient(P, r, theta, rho, GAMMA, tau)
    # Central differences in float64 with eps=1e-6: truncation O(eps²)·V''' ≈ 1e-11, rounding ≈ 1e-10.
    torch.testing.assert_close(g, fd_grad(V, theta), rtol=0, atol=1e-8)
    th = theta.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(V(th), th)
    torch.testing.assert_close(g, ga, rtol=0, atol=1e-12)
