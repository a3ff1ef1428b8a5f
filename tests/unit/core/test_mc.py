"""Monte Carlo estimators against their exact counterparts.

Tolerance: each estimate is the mean of M = 40 independent batch estimates; the test passes when every
coordinate lies within z = 5 standard errors (estimated from the batch spread) of the exact value, plus
the truncation bias bound γ^H·R_max/(1−γ)·(score bound). z = 5 gives a false-alarm rate below 1e-6 per
coordinate under the CLT; the horizons below make the bias bound < 1e-8.
"""

from __future__ import annotations

import pytest
import torch

from pbrl_dist.core import mc, mdp
from pbrl_dist.core.types import generator
from pbrl_dist.problems.stackelberg import (
    StackelbergProblem,
    follower_value,
    leader_return,
    make_game,
)
from pbrl_dist.testing import mc_within, random_logits, random_mdp

GAMMA, TAU, H, M, N = 0.6, 0.4, 45, 40, 500  # 0.6**45 ≈ 1e-10


def test_sampler_follows_the_model() -> None:
    P, _, rho = random_mdp(3, 2, seed=1)
    pi = torch.softmax(random_logits(3, 2, seed=1), -1)
    gen = generator(0, "t")
    s0 = mc.sample_initial_states(rho, 40000, gen)
    ro = mc.sample_mdp(P, pi, s0, 2, gen)
    freq0 = torch.bincount(ro.s_NT[:, 0], minlength=3).double() / 40000
    # Binomial standard error ≤ 0.5/sqrt(40000) = 0.0025; 5 SE = 0.0125.
    assert (freq0 - rho).abs().max() < 0.0125
    expect1 = rho @ mdp.policy_transition(P, pi)
    freq1 = torch.bincount(ro.s_NT[:, 1], minlength=3).double() / 40000
    assert (freq1 - expect1).abs().max() < 0.0125


def test_same_generator_state_gives_same_rollouts() -> None:
    P, _, rho = random_mdp(3, 2, seed=1)
    pi = torch.softmax(random_logits(3, 2), -1)
    a = mc.sample_mdp(P, pi, mc.sample_initial_states(rho, 50, generator(5)), 7, generator(6))
    b = mc.sample_mdp(P, pi, mc.sample_initial_states(rho, 50, generator(5)), 7, generator(6))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_reinforce_matches_exact_policy_gradient() -> None:
    P, r, rho = random_mdp(4, 3, seed=2)
    theta = random_logits(4, 3, seed=2)
    pi = torch.softmax(theta, -1)
    exact = mdp.softmax_policy_gradient(P, r, theta, rho, GAMMA, TAU)
    ests = []
    for m in range(M):
        gen = generator(m, "reinforce")
        ro = mc.sample_mdp(P, pi, mc.sample_initial_states(rho, N, gen), H, gen)
        rew = r[ro.s_NT, ro.a_NT] - TAU * torch.log(pi[ro.s_NT, ro.a_NT])
        ests.append(mc.reinforce_grad(ro.s_NT, ro.a_NT, pi, rew, GAMMA))
    ok, worst = mc_within(torch.stack(ests), exact)
    assert ok, f"worst standardized error {worst:.2f}"


def test_discounted_counts_match_occupancy_gradient() -> None:
    P, _, rho = random_mdp(4, 3, seed=3)
    pi = torch.softmax(random_logits(4, 3, seed=3), -1)
    d = mdp.occupancy(P, pi, rho, GAMMA)
    exact = (d.unsqueeze(-1) * pi / (1 - GAMMA)).reshape(-1)
    ests = []
    for m in range(M):
        gen = generator(m, "counts")
        ro = mc.sample_mdp(P, pi, mc.sample_initial_states(rho, N, gen), H, gen)
        ests.append(mc.discounted_counts(ro.s_NT * 3 + ro.a_NT, 12, GAMMA))
    ok, worst = mc_within(torch.stack(ests), exact)
    assert ok, f"worst standardized error {worst:.2f}"


@pytest.fixture(scope="module")
def stackelberg() -> StackelbergProblem:
    game = make_game(
        num_states=3,
        num_leader_actions=3,
        num_follower_actions=2,
        sparsity=0.2,
        gamma=GAMMA,
        tau=TAU,
        game=3,
    )
    return StackelbergProblem(game)


def _exact_pieces(
    problem: StackelbergProblem, x: torch.Tensor, y: torch.Tensor, pi_hat: torch.Tensor
):
    g = problem.game
    x_, y_ = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    f = -leader_return(g, torch.softmax(x_, -1), torch.softmax(y_, -1))
    gx_f, gy_f = torch.autograd.grad(f, (x_, y_))
    V = lambda xx, sig: mdp.expected_value(follower_value(g, torch.softmax(xx, -1), sig), g.rho_S)  # noqa: E731
    v = V(x_, torch.softmax(y_, -1))
    gx_v, gy_v = torch.autograd.grad(v, (x_, y_))
    v_hat = V(x_, pi_hat)
    (gx_v_hat,) = torch.autograd.grad(v_hat, x_)
    P_x, r_x = problem.lower_mdp(x_)
    _, q_hat = mdp.evaluate_policy(P_x, r_x, pi_hat, GAMMA, TAU)
    S, B = q_hat.shape
    gx_q = torch.stack(
        [
            torch.autograd.grad(q_hat[s, b], x_, retain_graph=True)[0]
            for s in range(S)
            for b in range(B)
        ]
    )
    return {
        "gx_f": gx_f,
        "gy_f": gy_f,
        "gx_v": gx_v,
        "gy_v": gy_v,
        "v": v.detach(),
        "gx_v_hat": gx_v_hat,
        "v_hat": v_hat.detach(),
        "q_hat": q_hat.detach(),
        "gx_q_hat": gx_q.reshape(S, B, *x.shape),
    }


def test_stackelberg_mc_pieces_match_exact(stackelberg: StackelbergProblem) -> None:
    x, y = random_logits(3, 3, seed=51), random_logits(3, 2, seed=52)
    pi_hat = torch.softmax(random_logits(3, 2, seed=53), -1)
    exact = _exact_pieces(stackelberg, x, y, pi_hat)
    outs = [
        stackelberg.mc_chunk(
            x, y, pi_hat, parts=("joint", "hat", "q_hat"), num_rollouts=N, horizon=H, seed=m
        )
        for m in range(M)
    ]
    for key, val in exact.items():
        ok, worst = mc_within(torch.stack([o[key] for o in outs]), val)
        assert ok, f"{key}: worst standardized error {worst:.2f}"
