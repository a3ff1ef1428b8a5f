"""Two-player zero-sum entropy-regularized Markov games and the Nikaido-Isoda (NI) penalty.

Notation (Shen, Yang & Chen, "Principled Penalty-based Methods for Bilevel RL and RLHF", Sec. 5; MATH.md §5):
M_τ(x) = {S, A1 × A2, r_x, P_x, τ·h}. Player 1 plays π1(a|s), player 2 plays π2(b|s) independently; player 1
receives r(s, a, b) and MAXIMIZES, player 2 receives −r and MINIMIZES the joint value

    V^π(s) = E[Σ_t γ^t (r(s_t, a_t, b_t) − τ·h(π1(s_t)) + τ·h(π2(s_t))) | s_0 = s]       (5.1)
    Q^π(s, a, b) = r(s, a, b) + γ·Σ_s' P(s'|s, a, b) V^π(s')                                (5.2)

with h(p) = Σ p log p (negative entropy). Each player is rewarded for its OWN entropy: player 1 adds −τ·h(π1)
to the quantity it maximizes, player 2 adds −τ·h(π2) to the quantity −V it maximizes. As in ``core.mdp`` the
regularizer of the current step sits in V, not in Q:  V^π(s) = π1(s)ᵀ Q^π(s) π2(s) − τ·h(π1(s)) + τ·h(π2(s)).

Shape suffixes: P_SABS = P[s, a, b, s'], r_SAB, q_SAB, pi1_SA, pi2_SB, v_S, rho_S. Every function accepts
arbitrary leading batch dimensions. Everything is float64 and pure; γ and τ are always explicit arguments.

Sign conventions of the induced single-agent MDPs (both are MAXIMIZATION problems in the sense of
``core.mdp``, so soft policy iteration and the oracles of ``core.oracles`` are reused as they are):

* player 1 against a fixed π2:  r¹(s, a) = Σ_b π2(b|s) r(s, a, b) + τ·h(π2(s)),  P¹(s'|s, a) = Σ_b π2(b|s) P(s'|s, a, b);
  then V_{M¹_τ}^{π1} = V^{(π1, π2)}.
* player 2 against a fixed π1:  r²(s, b) = −Σ_a π1(a|s) r(s, a, b) + τ·h(π1(s)),  P²(s'|s, b) = Σ_a π1(a|s) P(s'|s, a, b);
  then V_{M²_τ}^{π2} = −V^{(π1, π2)}, so argmax_{π2} V_{M²_τ} = argmin_{π2} V.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from pbrl_dist.core.mdp import (
    evaluate_joint_policy,
    expected_value,
    keep_done,
    neg_entropy,
    occupancy,
    soft_policy_iteration,
    soft_value_iteration,
)
from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.core.types import assert_shape


class NashEquilibrium(NamedTuple):
    """Regularized Nash equilibrium of a zero-sum Markov game and its value."""

    pi1_SA: torch.Tensor
    pi2_SB: torch.Tensor
    v_S: torch.Tensor


class MatrixGameSolution(NamedTuple):
    """Saddle point of entropy-regularized matrix games (one per leading index) and their values."""

    log_p_A: torch.Tensor
    log_q_B: torch.Tensor
    value: torch.Tensor


# --------------------------------------------------------------------------------------------------
# Joint policy, joint evaluation and the induced single-agent MDPs
# --------------------------------------------------------------------------------------------------


def joint_policy(pi1_SA: torch.Tensor, pi2_SB: torch.Tensor) -> torch.Tensor:
    """Return the product policy π(a, b|s) = π1(a|s)·π2(b|s).

    Math:
        π_SAB[s, a, b] = π1(a|s)·π2(b|s).

    Args:
        pi1_SA: (..., S, A1) policy of the maximizer.
        pi2_SB: (..., S, A2) policy of the minimizer.

    Returns:
        (..., S, A1, A2) joint policy.

    Invariants:
        Sums to 1 over (a, b) for every s.
    """
    return pi1_SA.unsqueeze(-1) * pi2_SB.unsqueeze(-2)


def joint_evaluate(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    gamma: float,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate (π1, π2) exactly in the regularized zero-sum game M_τ.

    Math:
        V = (I − γ·P_π)⁻¹ (r_π − τ·h(π1) + τ·h(π2)),  Q(s,a,b) = r(s,a,b) + γ·Σ_s' P(s'|s,a,b) V(s')
        (5.1)-(5.2); one linear solve on the flattened joint action a·A2 + b.

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 5, eqs. (5.1)-(5.2).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1 (player 2 receives −r).
        pi1_SA: (..., S, A1) maximizer's policy.
        pi2_SB: (..., S, A2) minimizer's policy.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.

    Returns:
        ``(v_S, q_SAB)``; differentiable in every tensor argument.

    Invariants:
        v(s) = π1(s)ᵀ q(s) π2(s) − τ·h(π1(s)) + τ·h(π2(s)).
    """
    S = P_SABS.shape[-1]
    A1, A2 = P_SABS.shape[-3], P_SABS.shape[-2]
    assert_shape(P_SABS, (S, A1, A2, S), "P_SABS")
    assert_shape(r_SAB, (S, A1, A2), "r_SAB")
    assert_shape(pi1_SA, (S, A1), "pi1_SA")
    assert_shape(pi2_SB, (S, A2), "pi2_SB")
    cost_S = tau * (neg_entropy(pi1_SA) - neg_entropy(pi2_SB))
    return evaluate_joint_policy(P_SABS, r_SAB, pi1_SA, pi2_SB, gamma, cost_S)


def induced_mdp_player1(
    P_SABS: torch.Tensor, r_SAB: torch.Tensor, pi2_SB: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the MDP player 1 (maximizer) faces when player 2 plays the fixed π2.

    Math:
        P¹(s'|s,a) = Σ_b π2(b|s) P(s'|s,a,b),   r¹(s,a) = Σ_b π2(b|s) r(s,a,b) + τ·h(π2(s)).
        h(π2(s)) is a per-state term (independent of a), added to every a; in M¹_τ player 1 pays its own
        −τ·h(π1) as usual, so V_{M¹_τ}^{π1}(s) = V^{(π1, π2)}(s)  (5.1).

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 5 / Lemma 12(a) (best responses are soft-optimal in the induced MDP).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        pi2_SB: (..., S, A2) fixed policy of player 2.
        tau: entropy temperature ≥ 0.

    Returns:
        ``(P_SAS, r_SA)``: a maximization MDP over player 1's actions; differentiable.

    Invariants:
        ``evaluate_policy(P¹, r¹, π1, γ, τ)[0] == joint_evaluate(P, r, π1, π2, γ, τ)[0]``.
    """
    P_SAS = (pi2_SB[..., None, :, None] * P_SABS).sum(-2)
    r_SA = (pi2_SB.unsqueeze(-2) * r_SAB).sum(-1)
    return P_SAS, r_SA + tau * neg_entropy(pi2_SB).unsqueeze(-1)


def induced_mdp_player2(
    P_SABS: torch.Tensor, r_SAB: torch.Tensor, pi1_SA: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the MINIMIZER's problem against a fixed π1, written as a MAXIMIZATION MDP.

    Math:
        P²(s'|s,b) = Σ_a π1(a|s) P(s'|s,a,b),   r²(s,b) = −Σ_a π1(a|s) r(s,a,b) + τ·h(π1(s)),
        so that V_{M²_τ}^{π2}(s) = −V^{(π1, π2)}(s) and argmax_{π2} V_{M²_τ} = argmin_{π2} V  (5.1).

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 5 / Lemma 12(a).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1 (player 2's reward is −r).
        pi1_SA: (..., S, A1) fixed policy of player 1.
        tau: entropy temperature ≥ 0.

    Returns:
        ``(P_SBS, r_SB)``: a maximization MDP over player 2's actions; differentiable.

    Invariants:
        ``evaluate_policy(P², r², π2, γ, τ)[0] == −joint_evaluate(P, r, π1, π2, γ, τ)[0]``.
    """
    P_SBS = (pi1_SA[..., None, None] * P_SABS).sum(-3)
    r_SB = -(pi1_SA.unsqueeze(-1) * r_SAB).sum(-2)
    return P_SBS, r_SB + tau * neg_entropy(pi1_SA).unsqueeze(-1)


# --------------------------------------------------------------------------------------------------
# Best responses
# --------------------------------------------------------------------------------------------------

_DEFAULT_NUM_STEPS = {"exact": 200, "vi": 100_000, "pmd": 1000, "pg": 20_000}


def _default_step_size(method: str, gamma: float, tau: float, num_actions: int) -> float:
    """Default step: η = 10 for PMD; β = 1/L with Mei et al.'s smoothness L for PG; unused otherwise."""
    if method == "pmd":
        return 10.0
    if method == "pg":
        return (1.0 - gamma) ** 3 / (8.0 + tau * (4.0 + 8.0 * math.log(num_actions)))
    return 0.0


def _best_response(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    gamma: float,
    tau: float,
    method: str,
    num_steps: int | None,
    step_size: float | None,
    tol: float,
    logits0: torch.Tensor | None,
    rho_S: torch.Tensor | None,
) -> torch.Tensor:
    """Run ``ORACLES[method]`` on an induced maximization MDP and return its logits."""
    if method not in ORACLES:
        raise ValueError(f"unknown best-response method {method!r}; choose from {sorted(ORACLES)}")
    S, A = r_SA.shape[-2], r_SA.shape[-1]
    with torch.no_grad():
        P_SAS, r_SA = P_SAS.detach(), r_SA.detach()
        if rho_S is None:
            rho_S = torch.full(r_SA.shape[:-1], 1.0 / S, dtype=r_SA.dtype)
        if logits0 is None:
            logits0 = torch.zeros_like(r_SA)
        return ORACLES[method](
            P_SAS,
            r_SA,
            rho_S.detach(),
            gamma,
            tau,
            logits0.detach(),
            num_steps=_DEFAULT_NUM_STEPS[method] if num_steps is None else num_steps,
            step_size=_default_step_size(method, gamma, tau, A) if step_size is None else step_size,
            tol=tol,
        )


def best_response(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi_other: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    player: int,
    method: str = "exact",
    num_steps: int | None = None,
    step_size: float | None = None,
    tol: float = 1e-12,
    logits0: torch.Tensor | None = None,
    rho_S: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return logits of (an approximation of) one player's best response to the other's fixed policy.

    Math:
        player 1: π1*(x, π2) = argmax_{π1} V(π1, π2) = soft-optimal policy of M¹_τ = (P¹, r¹)
                  (``induced_mdp_player1``);
        player 2: π2*(x, π1) = argmin_{π2} V(π1, π2) = soft-optimal policy of the maximization MDP
                  M²_τ = (P², r²) (``induced_mdp_player2``, whose value is −V).
        Unique for τ > 0. method ∈ {'exact' (soft policy iteration), 'vi', 'pmd' (C.35), 'pg' (C.37)}
        = ``core.oracles.ORACLES``.

    Reference:
        Shen, Yang & Chen 2024/25, Lemma 12(a), (5.12) and App. D.5 (single-agent best-response oracles).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        pi_other: (..., S, A2) player 2's policy (player=1) or (..., S, A1) player 1's (player=2).
        gamma: discount in [0, 1).
        tau: entropy temperature (> 0 for 'exact').
        player: 1 (the maximizer) or 2 (the minimizer).
        method: key of ``ORACLES``.
        num_steps: oracle iterations (default per method: exact 200, vi 1e5, pmd 1000, pg 2e4).
        step_size: PMD η (default 10) or PG β (default (1−γ)³/(8 + τ(4 + 8 log A))); unused by exact/vi.
        tol: early-stopping tolerance passed to the oracle.
        logits0: (..., S, A_player) warm start (default uniform).
        rho_S: (..., S) initial distribution for PG (default uniform).

    Returns:
        (..., S, A_player) logits, computed without gradient tracking; softmax gives the response.

    Invariants:
        For 'exact': V(br1, π2) ≥ V(π1, π2) for every π1 and V(π1, br2) ≤ V(π1, π2) for every π2,
        at every state.
    """
    induced = {1: induced_mdp_player1, 2: induced_mdp_player2}.get(player)
    if induced is None:
        raise ValueError(f"player must be 1 or 2 (got {player!r})")
    P, r = induced(P_SABS, r_SAB, pi_other, tau)
    return _best_response(P, r, gamma, tau, method, num_steps, step_size, tol, logits0, rho_S)


def exact_best_responses(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the exact best responses (π1*(x, π2), π2*(x, π1)) as probabilities.

    Math:
        π1* = argmax_{π1'} V(π1', π2),  π2* = argmin_{π2'} V(π1, π2'): soft policy iteration on the induced MDPs
        (τ > 0; unique); τ = 0 falls back to hard value iteration (a uniform-over-argmax best response).

    Reference:
        Shen, Yang & Chen 2024/25, Lemma 12(a).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        pi1_SA: (..., S, A1) player 1's policy (fixed for player 2's response).
        pi2_SB: (..., S, A2) player 2's policy (fixed for player 1's response).
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.
        tol: accuracy of the inner solves.

    Returns:
        ``(br1_SA, br2_SB)``, detached.

    Invariants:
        V(br1, π2) ≥ V(π1, π2) ≥ V(π1, br2) at every state.
    """
    with torch.no_grad():
        P1, r1 = induced_mdp_player1(P_SABS.detach(), r_SAB.detach(), pi2_SB.detach(), tau)
        P2, r2 = induced_mdp_player2(P_SABS.detach(), r_SAB.detach(), pi1_SA.detach(), tau)
        if tau > 0:
            br1 = soft_policy_iteration(P1, r1, gamma, tau, tol=tol).pi_SA
            br2 = soft_policy_iteration(P2, r2, gamma, tau, tol=tol).pi_SA
        else:
            br1 = soft_value_iteration(P1, r1, gamma, 0.0, tol=tol).pi_SA
            br2 = soft_value_iteration(P2, r2, gamma, 0.0, tol=tol).pi_SA
    return br1, br2


# --------------------------------------------------------------------------------------------------
# NI function, its gradient surrogate, ε-Nash and the reward gradient
# --------------------------------------------------------------------------------------------------


def ni_surrogate(
    P_x: torch.Tensor,
    r_x: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    pi1_hat_SA: torch.Tensor,
    pi2_hat_SB: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
) -> torch.Tensor:
    """Return the plug-in NI estimate whose autograd gradient is the estimator (5.12).

    Math:
        ψ̂ = V_x(π̂1, π2) − V_x(π1, π̂2)   with π̂1 ≈ π1*(x, π2), π̂2 ≈ π2*(x, π1) DETACHED, so that
        ∇_x ψ̂ = ∇_x V_x(π̂1, π2) − ∇_x V_x(π1, π̂2),  ∇_π1 ψ̂ = −∇_π1 V_x(π1, π̂2),  ∇_π2 ψ̂ = ∇_π2 V_x(π̂1, π2).
        At the exact best responses ψ̂ = ψ and ∇ψ̂ = ∇ψ (Lemma 12(a), Danskin).

    Reference:
        Shen, Yang & Chen 2024/25, eq. (5.12) and Lemma 12(a).

    Args:
        P_x: (..., S, A1, A2, S) transitions (may carry the graph of x).
        r_x: (..., S, A1, A2) reward of player 1 (may carry the graph of x).
        pi1_SA: (..., S, A1) player 1's policy (differentiable).
        pi2_SB: (..., S, A2) player 2's policy (differentiable).
        pi1_hat_SA: (..., S, A1) approximate best response of player 1 (detached here).
        pi2_hat_SB: (..., S, A2) approximate best response of player 2 (detached here).
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.

    Returns:
        (...) scalar surrogate.

    Invariants:
        Equals ``ni_function`` when π̂ are the exact best responses; ≤ ψ for any π̂.
    """
    v_hat1, _ = joint_evaluate(P_x, r_x, pi1_hat_SA.detach(), pi2_SB, gamma, tau)
    v_hat2, _ = joint_evaluate(P_x, r_x, pi1_SA, pi2_hat_SB.detach(), gamma, tau)
    return expected_value(v_hat1, rho_S) - expected_value(v_hat2, rho_S)


def ni_function(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
) -> torch.Tensor:
    """Return the Nikaido-Isoda function ψ(x, π) with exact best responses.

    Math:
        ψ(x, π) = max_{π1'} V_x(π1', π2) − min_{π2'} V_x(π1, π2')                         (5.6)
        computed as ``ni_surrogate`` at the exact best responses, so its autograd gradient is the true
        ∇ψ of Lemma 12(a) (Danskin; best responses held fixed).

    Reference:
        Shen, Yang & Chen 2024/25, eq. (5.6), Lemmas 11-12.

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        pi1_SA: (..., S, A1) player 1's policy.
        pi2_SB: (..., S, A2) player 2's policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature (> 0 for a differentiable, unique best response).
        tol: accuracy of the best-response solves.

    Returns:
        (...) ψ ≥ 0; differentiable in (P, r, π1, π2) for τ > 0.

    Invariants:
        ψ ≥ 0, and ψ = 0 iff (π1, π2) is the regularized NE (Lemma 11); ψ = gap1 + gap2 (``epsilon_nash``).
    """
    br1, br2 = exact_best_responses(P_SABS, r_SAB, pi1_SA, pi2_SB, gamma, tau, tol=tol)
    return ni_surrogate(P_SABS, r_SAB, pi1_SA, pi2_SB, br1, br2, rho_S, gamma, tau)


def epsilon_nash(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
) -> torch.Tensor:
    """Return the smallest ε for which (π1, π2) is an ε-NE (5.3) under ρ.

    Math:
        gap1 = V(π1*(π2), π2) − V(π1, π2) ≥ 0,   gap2 = V(π1, π2) − V(π1, π2*(π1)) ≥ 0,   ε = max(gap1, gap2);
        hence ψ = gap1 + gap2 and ε ≤ ψ ≤ 2ε.

    Reference:
        Shen, Yang & Chen 2024/25, eq. (5.3).

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        pi1_SA: (..., S, A1) player 1's policy.
        pi2_SB: (..., S, A2) player 2's policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.
        tol: accuracy of the best-response solves.

    Returns:
        (...) ε ≥ 0, detached.

    Invariants:
        ε ≤ ψ ≤ 2ε.
    """
    with torch.no_grad():
        br1, br2 = exact_best_responses(P_SABS, r_SAB, pi1_SA, pi2_SB, gamma, tau, tol=tol)
        v, _ = joint_evaluate(P_SABS, r_SAB, pi1_SA, pi2_SB, gamma, tau)
        v1, _ = joint_evaluate(P_SABS, r_SAB, br1, pi2_SB, gamma, tau)
        v2, _ = joint_evaluate(P_SABS, r_SAB, pi1_SA, br2, gamma, tau)
        gap1 = expected_value(v1 - v, rho_S)
        gap2 = expected_value(v - v2, rho_S)
        return torch.maximum(gap1, gap2)


def grad_reward_value(
    P_SABS: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Return ∂V_ρ(π1, π2)/∂r(s, a, b) in closed form.

    Math:
        ∂V_ρ/∂r(s,a,b) = d^π_ρ(s)·π1(a|s)·π2(b|s)/(1−γ),  d^π_ρ the discounted state occupancy of the joint
        policy; for r_x = r + sigmoid(x): ∇_x V_ρ = sigmoid'(x)·∂V_ρ/∂r  (MATH.md §6.4).

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 6.3, eq. (6.2) (incentive design; MATH.md §6.4), Lemma 7(a) applied
        to the joint MDP.

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        pi1_SA: (..., S, A1) player 1's policy.
        pi2_SB: (..., S, A2) player 2's policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).

    Returns:
        (..., S, A1, A2) gradient; independent of r and τ.

    Invariants:
        Sums to 1/(1−γ); equals autograd of ``joint_evaluate`` in r.
    """
    pi_SAB = joint_policy(pi1_SA, pi2_SB)
    d_S = occupancy(P_SABS.flatten(-3, -2), pi_SAB.flatten(-2, -1), rho_S, gamma)
    return d_S[..., None, None] * pi_SAB / (1.0 - gamma)


# --------------------------------------------------------------------------------------------------
# Regularized Nash equilibrium: Shapley's operator with an exact inner matrix-game solver
# --------------------------------------------------------------------------------------------------


def _game_residual(
    Q_AB: torch.Tensor, tau: float, u_A: torch.Tensor, w_B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the fixed-point residual G(u, w) of the regularized matrix game and its Jacobian.

    Math:
        p = softmax(u), q = softmax(w);  G = (u − log softmax(Q q/τ),  w − log softmax(−Qᵀ p/τ)).
        G = 0 iff (p, q) is the saddle point and u = log p, w = log q.
    """
    A1, A2 = Q_AB.shape[-2], Q_AB.shape[-1]
    p, q = torch.softmax(u_A, -1), torch.softmax(w_B, -1)
    y1 = (Q_AB * q.unsqueeze(-2)).sum(-1) / tau
    y2 = -(Q_AB * p.unsqueeze(-1)).sum(-2) / tau
    G = torch.cat([u_A - torch.log_softmax(y1, -1), w_B - torch.log_softmax(y2, -1)], -1)
    # d log_softmax(y)/dy = I − 1·σᵀ;  d softmax(w)/dw = diag(q) − q qᵀ.
    s1, s2 = torch.softmax(y1, -1), torch.softmax(y2, -1)
    I1 = torch.eye(A1, dtype=Q_AB.dtype)
    I2 = torch.eye(A2, dtype=Q_AB.dtype)
    Dq = torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)
    Dp = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    J12 = -(I1 - s1.unsqueeze(-2)) @ (Q_AB / tau) @ Dq
    J21 = (I2 - s2.unsqueeze(-2)) @ (Q_AB.transpose(-1, -2) / tau) @ Dp
    top = torch.cat([I1.expand(*J12.shape[:-1], A1), J12], -1)
    bottom = torch.cat([J21, I2.expand(*J21.shape[:-1], A2)], -1)
    return G, torch.cat([top, bottom], -2)


def _newton_matrix_game(
    Q_AB: torch.Tensor,
    tau: float,
    u_A: torch.Tensor,
    w_B: torch.Tensor,
    tol: float,
    max_iter: int,
    max_halvings: int = 30,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Damped Newton on G(u, w) = 0 (backtracking on ‖G‖²); returns (u, w, converged mask)."""
    A1 = Q_AB.shape[-2]
    # Round-off floor: G involves Q/τ, so its attainable accuracy scales with max|Q|/τ.
    floor = tol + 1e-14 * (1.0 + Q_AB.abs().amax((-1, -2)) / tau)
    G, J = _game_residual(Q_AB, tau, u_A, w_B)
    for _ in range(max_iter):
        done = G.abs().amax(-1) <= floor
        if bool(done.all()):
            break
        merit = (G * G).sum(-1)
        d = torch.linalg.solve(J, -G)
        d = torch.where(done.unsqueeze(-1), torch.zeros_like(d), d)
        alpha = torch.ones_like(merit)
        for _ in range(max_halvings):
            u_new = u_A + alpha.unsqueeze(-1) * d[..., :A1]
            w_new = w_B + alpha.unsqueeze(-1) * d[..., A1:]
            G_new, J_new = _game_residual(Q_AB, tau, u_new, w_new)
            ok = ((G_new * G_new).sum(-1) <= (1.0 - 1e-4 * alpha) * merit) | done
            if bool(ok.all()):
                break
            alpha = torch.where(ok, alpha, 0.5 * alpha)
        u_A, w_B, G, J = u_new, w_new, G_new, J_new
    return u_A, w_B, G.abs().amax(-1) <= floor


def regularized_matrix_game(
    Q_AB: torch.Tensor,
    tau: float,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    warm_iter: int = 20,
    log_p0: torch.Tensor | None = None,
    log_q0: torch.Tensor | None = None,
) -> MatrixGameSolution:
    """Solve entropy-regularized matrix games max_p min_q pᵀQq − τ·h(p) + τ·h(q) (batched).

    Math:
        The saddle point is the unique solution of p = softmax(Q q/τ), q = softmax(−Qᵀ p/τ); solved by damped
        Newton in log space, warm-started at (log_p0, log_q0); entries that do not converge are re-solved by
        continuation in the temperature (τ_k = spread(Q)·4^{−k} down to τ, Newton warm-started along the path).
        value = pᵀQq − τ·h(p) + τ·h(q). Entries that still miss ``tol`` are returned at the last iterate.
        Batch invariance: Newton stops per entry, so an entry solved from the warm start gets its solo
        bits; the continuation starts at the spread of the WHOLE batch, so an entry that falls back
        to it may differ from its solo solve (within the tolerance).

    Reference:
        Shapley (1953); regularized matrix games as in Cen, Wei & Chi (2021), "Fast policy extragradient methods
        for competitive games with entropy regularization".

    Args:
        Q_AB: (..., A1, A2) payoff to the maximizer (row player).
        tau: entropy temperature > 0.
        tol: absolute tolerance on the log-space residual (relaxed to the round-off floor ~1e-14·max|Q|/τ).
        max_iter: Newton iterations of the final continuation stage.
        warm_iter: Newton iterations from the warm start before falling back to continuation.
        log_p0: (..., A1) warm start (default uniform).
        log_q0: (..., A2) warm start (default uniform).

    Returns:
        ``MatrixGameSolution(log_p_A, log_q_B, value)``, without gradient tracking.

    Invariants:
        softmax(log_p) = exp(log_p); value = max_p min_q (…) = min_q max_p (…).
    """
    if tau <= 0:
        raise ValueError("regularized_matrix_game needs tau > 0")
    with torch.no_grad():
        Q_AB = Q_AB.detach()
        batch = Q_AB.shape[:-2]
        zeros_A = torch.zeros(*batch, Q_AB.shape[-2], dtype=Q_AB.dtype)
        zeros_B = torch.zeros(*batch, Q_AB.shape[-1], dtype=Q_AB.dtype)
        u = zeros_A if log_p0 is None else log_p0.detach().expand_as(zeros_A)
        w = zeros_B if log_q0 is None else log_q0.detach().expand_as(zeros_B)
        u, w, ok = _newton_matrix_game(Q_AB, tau, u, w, tol, warm_iter, max_halvings=10)
        if not bool(ok.all()):
            # Temperature continuation from the uniform policies (robust for small τ).
            uc, wc = zeros_A, zeros_B
            t = float(Q_AB.amax() - Q_AB.amin()) + tau
            while t > tau:
                uc, wc, _ = _newton_matrix_game(Q_AB, t, uc, wc, 1e-6, 10)
                t *= 0.25
            uc, wc, _ = _newton_matrix_game(Q_AB, tau, uc, wc, tol, max_iter)
            u = torch.where(ok.unsqueeze(-1), u, uc)
            w = torch.where(ok.unsqueeze(-1), w, wc)
        log_p, log_q = torch.log_softmax(u, -1), torch.log_softmax(w, -1)
        p, q = log_p.exp(), log_q.exp()
        value = (
            ((p.unsqueeze(-1) * Q_AB).sum(-2) * q).sum(-1)
            - tau * (p * log_p).sum(-1)
            + tau * (q * log_q).sum(-1)
        )
    return MatrixGameSolution(log_p, log_q, value)


def nash_equilibrium(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    v0: torch.Tensor | None = None,
) -> NashEquilibrium:
    """Return the regularized Nash equilibrium (π1*, π2*) of the zero-sum game M_τ and its value.

    Math:
        Shapley operator (T v)(s) = max_p min_q pᵀ Q_v(s) q − τ·h(p) + τ·h(q),  Q_v = r + γ·P v, a γ-contraction
        whose fixed point is V^{NE}; each state's game is solved by ``regularized_matrix_game``. Each iteration
        proposes the Pollatschek-Avi-Itzhak step v⁺ = V^{(p_v, q_v)} (exact evaluation of the state-game saddle
        policies; for τ > 0 this is Newton's method on v − T v = 0, since ∂(T v)/∂v = γ·P_{π_v}) and accepts it
        when ‖T v⁺ − v⁺‖_∞ ≤ γ·‖T v − v‖_∞, otherwise takes the value-iteration step v⁺ = T v. Hence at least
        linear convergence at rate γ, quadratic near the solution. Stops when ‖T v − v‖_∞ ≤ (1−γ)·tol, which
        bounds ‖v − V^{NE}‖_∞ ≤ tol; the returned policies are the state-game saddle of Q_v, and ψ = O(tol²/τ).
        Batched games stop one by one (each keeps the iterate at which it stopped, ``keep_done``).

    Reference:
        Shapley (1953); Pollatschek & Avi-Itzhak (1969); Cen, Wei & Chi (2021); Shen, Yang & Chen 2024/25, Sec. 5.

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) reward of player 1.
        gamma: discount in [0, 1).
        tau: entropy temperature > 0 (small τ approximates the unregularized NE within O(τ·log A/(1−γ))).
        tol: sup-norm accuracy of the equilibrium value.
        max_iter: outer iteration cap.
        v0: (..., S) warm-start value (e.g. the previous outer step's NE value).

    Returns:
        ``NashEquilibrium(pi1_SA, pi2_SB, v_S)`` with v = ``joint_evaluate`` of the returned policies;
        no gradient tracking.

    Invariants:
        ψ(π1*, π2*) ≈ 0; v(s) = value of the regularized matrix game of Q^{π*}(s).
    """
    if tau <= 0:
        raise ValueError("nash_equilibrium needs tau > 0 (use a small tau to approximate tau = 0)")
    with torch.no_grad():
        P_SABS, r_SAB = P_SABS.detach(), r_SAB.detach()

        def shapley(v_S: torch.Tensor, warm: MatrixGameSolution | None) -> MatrixGameSolution:
            Q = r_SAB + gamma * (P_SABS * v_S[..., None, None, None, :]).sum(-1)
            if warm is None:
                return regularized_matrix_game(Q, tau)
            return regularized_matrix_game(Q, tau, log_p0=warm.log_p_A, log_q0=warm.log_q_B)

        def residual(v_S: torch.Tensor, sol: MatrixGameSolution) -> torch.Tensor:
            return (sol.value - v_S).abs().amax(-1)

        def step(
            v: torch.Tensor, sol: MatrixGameSolution, res: torch.Tensor
        ) -> tuple[torch.Tensor, MatrixGameSolution, torch.Tensor]:
            v_pai, _ = joint_evaluate(
                P_SABS, r_SAB, sol.log_p_A.exp(), sol.log_q_B.exp(), gamma, tau
            )
            sol_pai = shapley(v_pai, sol)
            res_pai = residual(v_pai, sol_pai)
            accept = res_pai <= gamma * res
            if bool(accept.all()):
                return v_pai, sol_pai, res_pai
            v_vi = sol.value
            sol_vi = shapley(v_vi, sol)
            res_vi = residual(v_vi, sol_vi)
            acc = accept.unsqueeze(-1)
            return (
                torch.where(acc, v_pai, v_vi),
                MatrixGameSolution(
                    torch.where(acc.unsqueeze(-1), sol_pai.log_p_A, sol_vi.log_p_A),
                    torch.where(acc.unsqueeze(-1), sol_pai.log_q_B, sol_vi.log_q_B),
                    torch.where(acc, sol_pai.value, sol_vi.value),
                ),
                torch.where(accept, res_pai, res_vi),
            )

        v = torch.zeros(r_SAB.shape[:-2], dtype=r_SAB.dtype) if v0 is None else v0.detach().clone()
        sol = shapley(v, None)
        res = residual(v, sol)
        # The attainable residual is limited by round-off in Q ~ max|r|/(1−γ) (per game).
        r_max = r_SAB.abs().amax((-3, -2, -1))
        threshold = (1e-14 * (1.0 + r_max / (1.0 - gamma))).clamp(min=(1.0 - gamma) * tol)
        done = res <= threshold
        for _ in range(max_iter):
            if bool(done.all()):
                break
            v_new, sol_new, res_new = step(v, sol, res)
            v, res = keep_done(done, v, v_new), keep_done(done, res, res_new)
            sol = MatrixGameSolution(
                *(keep_done(done, a, b) for a, b in zip(sol, sol_new, strict=True))
            )
            done = done | (res <= threshold)
        pi1, pi2 = sol.log_p_A.exp(), sol.log_q_B.exp()
        v_S, _ = joint_evaluate(P_SABS, r_SAB, pi1, pi2, gamma, tau)
    return NashEquilibrium(pi1, pi2, v_S)
