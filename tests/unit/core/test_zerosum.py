"""Zero-sum regularized Markov games: joint evaluation, best responses, NI function and its gradients, NE."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from pbrl_dist.core import mdp, zerosum
from pbrl_dist.core.types import DTYPE, generator
from pbrl_dist.testing import fd_grad

GAMMA, TAU = 0.8, 0.1


def random_game(
    S: int = 5, A1: int = 3, A2: int = 3, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (P_SABS, r_SAB, rho_S): normalized U[0,1] transitions, U[0,1] rewards, full-support ρ."""
    gen = generator(seed, "random_game")
    P = torch.rand(S, A1, A2, S, generator=gen, dtype=DTYPE)
    P = P / P.sum(-1, keepdim=True)
    r = torch.rand(S, A1, A2, generator=gen, dtype=DTYPE)
    rho = torch.rand(S, generator=gen, dtype=DTYPE) + 0.5
    return P, r, rho / rho.sum()


def random_policy(S: int, A: int, *, seed: int, scale: float = 1.0) -> torch.Tensor:
    logits = scale * torch.randn(S, A, generator=generator(seed, "policy", A), dtype=DTYPE)
    return torch.softmax(logits, -1)


def brute_force_evaluate(
    P: torch.Tensor, r: torch.Tensor, pi1: torch.Tensor, pi2: torch.Tensor, gamma: float, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterate the joint regularized Bellman operator 2000 times (5.1)-(5.2)."""
    h1, h2 = mdp.neg_entropy(pi1), mdp.neg_entropy(pi2)
    v = torch.zeros(P.shape[0], dtype=DTYPE)
    for _ in range(2000):
        q = r + gamma * torch.einsum("sabt,t->sab", P, v)
        v = torch.einsum("sa,sab,sb->s", pi1, q, pi2) - tau * h1 + tau * h2
    return v, r + gamma * torch.einsum("sabt,t->sab", P, v)


# ----------------------------------------------------------------------------------------------
# Joint evaluation and the induced MDPs
# ----------------------------------------------------------------------------------------------


def test_joint_evaluate_matches_bellman_iteration() -> None:
    P, r, _ = random_game(seed=1)
    pi1, pi2 = random_policy(5, 3, seed=1), random_policy(5, 3, seed=2)
    v, q = zerosum.joint_evaluate(P, r, pi1, pi2, GAMMA, TAU)
    v_bf, q_bf = brute_force_evaluate(P, r, pi1, pi2, GAMMA, TAU)
    torch.testing.assert_close(v, v_bf, rtol=0, atol=1e-12)
    torch.testing.assert_close(q, q_bf, rtol=0, atol=1e-12)
    # V(s) = π1ᵀ Q π2 − τ h(π1) + τ h(π2): the regularizer sits in V, not in Q.
    v_from_q = (
        torch.einsum("sa,sab,sb->s", pi1, q, pi2)
        - TAU * mdp.neg_entropy(pi1)
        + TAU * mdp.neg_entropy(pi2)
    )
    torch.testing.assert_close(v, v_from_q, rtol=0, atol=1e-12)


def test_joint_evaluate_with_unequal_action_sets_and_batch() -> None:
    games = [random_game(4, 2, 3, seed=s) for s in (3, 4)]
    pols = [(random_policy(4, 2, seed=s), random_policy(4, 3, seed=s + 10)) for s in (3, 4)]
    P = torch.stack([g[0] for g in games])
    r = torch.stack([g[1] for g in games])
    pi1 = torch.stack([p[0] for p in pols])
    pi2 = torch.stack([p[1] for p in pols])
    v, q = zerosum.joint_evaluate(P, r, pi1, pi2, GAMMA, TAU)
    assert v.shape == (2, 4)
    assert q.shape == (2, 4, 2, 3)
    for i in range(2):
        v_bf, q_bf = brute_force_evaluate(P[i], r[i], pi1[i], pi2[i], GAMMA, TAU)
        torch.testing.assert_close(v[i], v_bf, rtol=0, atol=1e-12)
        torch.testing.assert_close(q[i], q_bf, rtol=0, atol=1e-12)


def test_induced_mdps_reproduce_the_joint_value_with_the_documented_signs() -> None:
    P, r, _ = random_game(seed=5)
    pi1, pi2 = random_policy(5, 3, seed=5), random_policy(5, 3, seed=6)
    v, _ = zerosum.joint_evaluate(P, r, pi1, pi2, GAMMA, TAU)
    P1, r1 = zerosum.induced_mdp_player1(P, r, pi2, TAU)
    P2, r2 = zerosum.induced_mdp_player2(P, r, pi1, TAU)
    assert P1.shape == (5, 3, 5)
    assert P2.shape == (5, 3, 5)
    torch.testing.assert_close(P1.sum(-1), torch.ones(5, 3, dtype=DTYPE))
    v1, _ = mdp.evaluate_policy(P1, r1, pi1, GAMMA, TAU)
    v2, _ = mdp.evaluate_policy(P2, r2, pi2, GAMMA, TAU)
    torch.testing.assert_close(v1, v, rtol=0, atol=1e-12)
    torch.testing.assert_close(v2, -v, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Best responses
# ----------------------------------------------------------------------------------------------


def test_exact_best_responses_dominate_every_policy_statewise() -> None:
    P, r, _ = random_game(seed=7)
    pi1, pi2 = random_policy(5, 3, seed=7), random_policy(5, 3, seed=8)
    br1 = torch.softmax(zerosum.best_response(P, r, pi2, GAMMA, TAU, player=1), -1)
    br2 = torch.softmax(zerosum.best_response(P, r, pi1, GAMMA, TAU, player=2), -1)
    v_br1, _ = zerosum.joint_evaluate(P, r, br1, pi2, GAMMA, TAU)
    v_br2, _ = zerosum.joint_evaluate(P, r, pi1, br2, GAMMA, TAU)
    for k in range(10):
        other1 = random_policy(5, 3, seed=100 + k, scale=3.0)
        other2 = random_policy(5, 3, seed=200 + k, scale=3.0)
        v_o1, _ = zerosum.joint_evaluate(P, r, other1, pi2, GAMMA, TAU)
        v_o2, _ = zerosum.joint_evaluate(P, r, pi1, other2, GAMMA, TAU)
        assert bool((v_br1 >= v_o1 - 1e-12).all())
        assert bool((v_br2 <= v_o2 + 1e-12).all())
    # Soft-greedy fixed points: br1 = softmax(Q π2 / τ), br2 = softmax(−Qᵀ π1 / τ).
    _, q1 = zerosum.joint_evaluate(P, r, br1, pi2, GAMMA, TAU)
    torch.testing.assert_close(br1, torch.softmax(torch.einsum("sab,sb->sa", q1, pi2) / TAU, -1))
    _, q2 = zerosum.joint_evaluate(P, r, pi1, br2, GAMMA, TAU)
    torch.testing.assert_close(br2, torch.softmax(-torch.einsum("sab,sa->sb", q2, pi1) / TAU, -1))


@pytest.mark.parametrize(
    ("method", "steps", "step_size", "tau", "atol"),
    [("pmd", 100, 10.0, 0.1, 1e-10), ("pg", 300, 5.0, 0.5, 1e-6), ("vi", 5000, 0.0, 0.1, 1e-9)],
)
def test_iterative_best_responses_converge_to_the_exact_one(
    method: str, steps: int, step_size: float, tau: float, atol: float
) -> None:
    P, r, rho = random_game(4, 3, 3, seed=9)
    pi1, pi2 = random_policy(4, 3, seed=9), random_policy(4, 3, seed=10)
    for player, other in ((1, pi2), (2, pi1)):
        exact = torch.softmax(zerosum.best_response(P, r, other, GAMMA, tau, player=player), -1)
        approx = zerosum.best_response(
            P, r, other, GAMMA, tau, player=player,
            method=method, num_steps=steps, step_size=step_size, tol=0.0, rho_S=rho,
        )  # fmt: skip
        torch.testing.assert_close(torch.softmax(approx, -1), exact, rtol=0, atol=atol)


def test_best_response_warm_start_and_unknown_method() -> None:
    P, r, _ = random_game(4, 3, 3, seed=11)
    pi2 = random_policy(4, 3, seed=11)
    exact = zerosum.best_response(P, r, pi2, GAMMA, TAU, player=1)
    # Warm-started at the answer, PMD stays there after a single step.
    again = zerosum.best_response(
        P, r, pi2, GAMMA, TAU, player=1, method="pmd", num_steps=1, step_size=1.0, logits0=exact
    )
    torch.testing.assert_close(torch.log_softmax(again, -1), torch.log_softmax(exact, -1))
    with pytest.raises(ValueError, match="unknown"):
        zerosum.best_response(P, r, pi2, GAMMA, TAU, player=1, method="newton")
    with pytest.raises(ValueError, match="player"):
        zerosum.best_response(P, r, pi2, GAMMA, TAU, player=3)


# ----------------------------------------------------------------------------------------------
# NI function and ε-Nash
# ----------------------------------------------------------------------------------------------


def test_ni_function_is_nonnegative_and_is_the_sum_of_the_two_gaps() -> None:
    P, r, rho = random_game(seed=12)
    for k in range(6):
        pi1 = random_policy(5, 3, seed=300 + k, scale=2.0)
        pi2 = random_policy(5, 3, seed=400 + k, scale=2.0)
        psi = float(zerosum.ni_function(P, r, pi1, pi2, rho, GAMMA, TAU))
        eps = float(zerosum.epsilon_nash(P, r, pi1, pi2, rho, GAMMA, TAU))
        assert psi > 1e-3  # random policies are far from the NE
        assert eps <= psi + 1e-14
        assert psi <= 2 * eps + 1e-14
        # ψ = gap1 + gap2 exactly.
        br1, br2 = zerosum.exact_best_responses(P, r, pi1, pi2, GAMMA, TAU)
        v = mdp.expected_value(zerosum.joint_evaluate(P, r, pi1, pi2, GAMMA, TAU)[0], rho)
        v1 = mdp.expected_value(zerosum.joint_evaluate(P, r, br1, pi2, GAMMA, TAU)[0], rho)
        v2 = mdp.expected_value(zerosum.joint_evaluate(P, r, pi1, br2, GAMMA, TAU)[0], rho)
        gap1, gap2 = float(v1 - v), float(v - v2)
        assert min(gap1, gap2) >= 0
        assert psi == pytest.approx(gap1 + gap2, abs=1e-13)
        assert eps == pytest.approx(max(gap1, gap2), abs=1e-13)
        # Any plug-in π̂ under-estimates ψ (the surrogate's value is a lower bound).
        hat1, hat2 = random_policy(5, 3, seed=500 + k), random_policy(5, 3, seed=600 + k)
        assert float(zerosum.ni_surrogate(P, r, pi1, pi2, hat1, hat2, rho, GAMMA, TAU)) <= psi


def test_ni_function_is_batched() -> None:
    games = [random_game(seed=s) for s in (13, 14)]
    pols = [(random_policy(5, 3, seed=s), random_policy(5, 3, seed=s + 1)) for s in (13, 14)]
    P, r, rho = (torch.stack([g[i] for g in games]) for i in range(3))
    pi1 = torch.stack([p[0] for p in pols])
    pi2 = torch.stack([p[1] for p in pols])
    psi = zerosum.ni_function(P, r, pi1, pi2, rho, GAMMA, TAU)
    assert psi.shape == (2,)
    for i in range(2):
        one = zerosum.ni_function(P[i], r[i], pi1[i], pi2[i], rho[i], GAMMA, TAU)
        assert float(psi[i]) == pytest.approx(float(one), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Lemma 12(a) / (5.12): autograd of the surrogate at exact best responses = finite differences of ψ
# ----------------------------------------------------------------------------------------------


def _surrogate_at_exact_br(
    P: torch.Tensor, r: torch.Tensor, pi1: torch.Tensor, pi2: torch.Tensor, rho: torch.Tensor
) -> torch.Tensor:
    br1, br2 = zerosum.exact_best_responses(P, r, pi1, pi2, GAMMA, TAU)
    return zerosum.ni_surrogate(P, r, pi1, pi2, br1, br2, rho, GAMMA, TAU)


def _true_psi(
    P: torch.Tensor, r: torch.Tensor, pi1: torch.Tensor, pi2: torch.Tensor, rho: torch.Tensor
) -> torch.Tensor:
    with torch.no_grad():
        return zerosum.ni_function(P, r, pi1, pi2, rho, GAMMA, TAU, tol=1e-14)


def _assert_grad_close(auto: torch.Tensor, fd: torch.Tensor) -> None:
    torch.testing.assert_close(auto, fd, rtol=1e-6, atol=1e-8)


def test_ni_gradient_in_incentive_x_matches_finite_differences() -> None:
    P, r, rho = random_game(seed=15)
    pi1, pi2 = random_policy(5, 3, seed=15), random_policy(5, 3, seed=16)
    x = 0.5 * torch.randn(5, 3, 3, generator=generator(15, "x"), dtype=DTYPE)
    xg = x.clone().requires_grad_(True)
    (g_auto,) = torch.autograd.grad(
        _surrogate_at_exact_br(P, r + torch.sigmoid(xg), pi1, pi2, rho), xg
    )
    g_fd = fd_grad(lambda z: _true_psi(P, r + torch.sigmoid(z), pi1, pi2, rho), x)
    _assert_grad_close(g_auto, g_fd)
    # Closed form (MATH.md §6.4): ∇_x V = sigmoid'(x)·d^π_ρ(s)π1(a|s)π2(b|s)/(1−γ), per joint policy.
    r_x = r + torch.sigmoid(x)
    br1, br2 = zerosum.exact_best_responses(P, r_x, pi1, pi2, GAMMA, TAU)
    dsig = torch.sigmoid(x) * (1 - torch.sigmoid(x))
    closed = dsig * (
        zerosum.grad_reward_value(P, br1, pi2, rho, GAMMA)
        - zerosum.grad_reward_value(P, pi1, br2, rho, GAMMA)
    )
    torch.testing.assert_close(g_auto, closed, rtol=1e-10, atol=1e-12)


def test_ni_gradient_in_transition_parameters_matches_finite_differences() -> None:
    _, r, rho = random_game(4, 3, 3, seed=17)
    y = torch.randn(4, 3, 3, 4, generator=generator(17, "y"), dtype=DTYPE)
    pi1, pi2 = random_policy(4, 3, seed=17), random_policy(4, 3, seed=18)
    yg = y.clone().requires_grad_(True)
    (g_auto,) = torch.autograd.grad(
        _surrogate_at_exact_br(torch.softmax(yg, -1), r, pi1, pi2, rho), yg
    )
    g_fd = fd_grad(lambda z: _true_psi(torch.softmax(z, -1), r, pi1, pi2, rho), y)
    _assert_grad_close(g_auto, g_fd)


def test_ni_gradient_in_both_policies_matches_finite_differences() -> None:
    P, r, rho = random_game(seed=19)
    th1 = torch.randn(5, 3, generator=generator(19, "th1"), dtype=DTYPE)
    th2 = torch.randn(5, 3, generator=generator(19, "th2"), dtype=DTYPE)
    t1, t2 = th1.clone().requires_grad_(True), th2.clone().requires_grad_(True)
    g1, g2 = torch.autograd.grad(
        _surrogate_at_exact_br(P, r, torch.softmax(t1, -1), torch.softmax(t2, -1), rho), (t1, t2)
    )
    fd1 = fd_grad(lambda z: _true_psi(P, r, torch.softmax(z, -1), torch.softmax(th2, -1), rho), th1)
    fd2 = fd_grad(lambda z: _true_psi(P, r, torch.softmax(th1, -1), torch.softmax(z, -1), rho), th2)
    _assert_grad_close(g1, fd1)
    _assert_grad_close(g2, fd2)
    # The surrogate's policy gradients are the (5.12) components: −∇π1 V(π1, π̂2) and ∇π2 V(π̂1, π2).
    br1, br2 = zerosum.exact_best_responses(
        P, r, torch.softmax(th1, -1), torch.softmax(th2, -1), GAMMA, TAU
    )
    P_b2, r_b2 = zerosum.induced_mdp_player1(P, r, br2, TAU)
    pg1 = mdp.softmax_policy_gradient(P_b2, r_b2, th1, rho, GAMMA, TAU)
    P_b1, r_b1 = zerosum.induced_mdp_player2(P, r, br1, TAU)
    pg2 = mdp.softmax_policy_gradient(P_b1, r_b1, th2, rho, GAMMA, TAU)  # gradient of −V
    torch.testing.assert_close(g1, -pg1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, -pg2, rtol=1e-10, atol=1e-12)


def test_grad_reward_value_matches_autograd() -> None:
    P, r, rho = random_game(4, 2, 3, seed=21)
    pi1, pi2 = random_policy(4, 2, seed=21), random_policy(4, 3, seed=22)
    rg = r.clone().requires_grad_(True)
    v, _ = zerosum.joint_evaluate(P, rg, pi1, pi2, GAMMA, TAU)
    (g_auto,) = torch.autograd.grad(mdp.expected_value(v, rho), rg)
    g = zerosum.grad_reward_value(P, pi1, pi2, rho, GAMMA)
    torch.testing.assert_close(g, g_auto, rtol=1e-12, atol=1e-13)
    assert float(g.sum()) == pytest.approx(1 / (1 - GAMMA), rel=1e-12)


# ----------------------------------------------------------------------------------------------
# Nash equilibrium
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [23, 24, 25, 26])
def test_nash_equilibrium_has_zero_ni_value(seed: int) -> None:
    P, r, rho = random_game(5, 3, 3, seed=seed)
    zerosum.nash_equilibrium(P, r, GAMMA, TAU)  # warm-up (first-call overheads)
    t0 = time.perf_counter()
    ne = zerosum.nash_equilibrium(P, r, GAMMA, TAU, tol=1e-10)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5
    psi = float(zerosum.ni_function(P, r, ne.pi1_SA, ne.pi2_SB, rho, GAMMA, TAU))
    assert psi <= 1e-9
    assert float(zerosum.epsilon_nash(P, r, ne.pi1_SA, ne.pi2_SB, rho, GAMMA, TAU)) <= 1e-9
    # v is the joint value of the returned policies and each state's regularized matrix-game value.
    v, q = zerosum.joint_evaluate(P, r, ne.pi1_SA, ne.pi2_SB, GAMMA, TAU)
    torch.testing.assert_close(ne.v_S, v, rtol=0, atol=1e-12)
    game = zerosum.regularized_matrix_game(q, TAU)
    torch.testing.assert_close(game.value, v, rtol=0, atol=1e-9)
    torch.testing.assert_close(game.log_p_A.exp(), ne.pi1_SA, rtol=0, atol=1e-8)
    # Away from the NE, ψ is clearly positive.
    far = zerosum.ni_function(P, r, random_policy(5, 3, seed=seed), ne.pi2_SB, rho, GAMMA, TAU)
    assert float(far) > 1e-3


def test_nash_equilibrium_batched_and_warm_started() -> None:
    games = [random_game(4, 3, 2, seed=s) for s in (27, 28)]
    P = torch.stack([g[0] for g in games])
    r = torch.stack([g[1] for g in games])
    ne = zerosum.nash_equilibrium(P, r, GAMMA, TAU)
    assert ne.pi1_SA.shape == (2, 4, 3)
    assert ne.pi2_SB.shape == (2, 4, 2)
    for i in range(2):
        one = zerosum.nash_equilibrium(P[i], r[i], GAMMA, TAU)
        torch.testing.assert_close(ne.v_S[i], one.v_S, rtol=0, atol=1e-9)
    warm = zerosum.nash_equilibrium(P, r + 1e-3, GAMMA, TAU, v0=ne.v_S)
    psi = zerosum.ni_function(
        P, r + 1e-3, warm.pi1_SA, warm.pi2_SB, games[0][2].expand(2, 4), GAMMA, TAU
    )
    assert float(psi.max()) <= 1e-9


def test_rock_paper_scissors_is_uniform_with_value_zero() -> None:
    rps = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=DTYPE)
    r = rps.reshape(1, 3, 3)
    P = torch.ones(1, 3, 3, 1, dtype=DTYPE)  # a single state with a self-loop
    uniform = torch.full((1, 3), 1 / 3, dtype=DTYPE)
    for gamma in (0.0, 0.9):
        for tau in (1e-3, 0.1, 1.0):
            ne = zerosum.nash_equilibrium(P, r, gamma, tau)
            torch.testing.assert_close(ne.pi1_SA, uniform, rtol=0, atol=1e-6)
            torch.testing.assert_close(ne.pi2_SB, uniform, rtol=0, atol=1e-6)
            assert abs(float(ne.v_S[0])) <= 1e-6


def test_regularized_matrix_game_is_a_saddle_point() -> None:
    Q = 3.0 * torch.randn(6, 3, 4, generator=generator(29, "Q"), dtype=DTYPE)
    for tau in (1.0, 0.1, 1e-3):
        sol = zerosum.regularized_matrix_game(Q, tau)
        p, q = sol.log_p_A.exp(), sol.log_q_B.exp()
        torch.testing.assert_close(p, torch.softmax(torch.einsum("kab,kb->ka", Q, q) / tau, -1))
        torch.testing.assert_close(q, torch.softmax(-torch.einsum("kab,ka->kb", Q, p) / tau, -1))
        # Closed-form inner min: value = max_p [pᵀQq*(p) − τh(p) + τh(q*(p))] = −τh(p) − τ·lse(−Qᵀp/τ).
        inner = -tau * torch.logsumexp(-torch.einsum("kab,ka->kb", Q, p) / tau, -1)
        torch.testing.assert_close(sol.value, inner - tau * (p * sol.log_p_A).sum(-1))


def _shapley_lp_value(P: np.ndarray, r: np.ndarray, gamma: float, iters: int = 80) -> np.ndarray:
    """Unregularized Shapley value iteration, each state's matrix game solved by an LP."""
    S, A1, A2 = r.shape
    v = np.zeros(S)
    for _ in range(iters):
        Q = r + gamma * np.einsum("sabt,t->sab", P, v)
        new = np.empty(S)
        for s in range(S):
            # max_{p, z} z  s.t.  Σ_a p_a Q[a, b] ≥ z ∀b, Σ p = 1, p ≥ 0.
            c = np.zeros(A1 + 1)
            c[-1] = -1.0
            A_ub = np.hstack([-Q[s].T, np.ones((A2, 1))])
            A_eq = np.hstack([np.ones((1, A1)), np.zeros((1, 1))])
            res = linprog(
                c, A_ub=A_ub, b_ub=np.zeros(A2), A_eq=A_eq, b_eq=[1.0],
                bounds=[(0, None)] * A1 + [(None, None)], method="highs",
            )  # fmt: skip
            assert res.status == 0
            new[s] = -res.fun
        v = new
    return v


def test_small_tau_equilibrium_value_matches_shapley_linear_programs() -> None:
    P, r, _ = random_game(3, 2, 2, seed=31)
    gamma, tau = 0.6, 1e-4
    ne = zerosum.nash_equilibrium(P, r, gamma, tau)
    v_lp = _shapley_lp_value(P.numpy(), r.numpy(), gamma)
    np.testing.assert_allclose(ne.v_S.numpy(), v_lp, atol=1e-3)
    # |V_τ − V_0| ≤ τ·log(A)/(1−γ) (each player's entropy bonus is at most τ·log A per step).
    assert np.abs(ne.v_S.numpy() - v_lp).max() <= tau * np.log(2) / (1 - gamma) + 1e-8


def test_nash_equilibrium_rejects_zero_tau() -> None:
    P, r, _ = random_game(3, 2, 2, seed=33)
    with pytest.raises(ValueError, match="tau > 0"):
        zerosum.nash_equilibrium(P, r, GAMMA, 0.0)
