"""Finite entropy-regularized MDPs: evaluation, soft-optimal solve, occupancy, policy gradients.

Notation (Shen, Yang & Chen, "Principled Penalty-based Methods for Bilevel RL and RLHF", Sec. 2.1):
M_τ = {S, A, r, P, τ·h} with the negative entropy h_s(p) = Σ_a p(a) log p(a),

    V^π(s) = E[Σ_t γ^t (r(s_t, a_t) − τ·h(π(s_t))) | s_0 = s],   Q^π(s, a) = r(s, a) + γ·Σ_s' P(s'|s, a) V^π(s').

The regularizer of the current step sits in V, not in Q, so V^π(s) = ⟨π(s), Q^π(s, ·)⟩ − τ·h(π(s)).
Every function accepts arbitrary leading batch dimensions (``B``) in front of the documented shapes,
so a batch of games is solved by one call. Tabular math is float64 throughout.

Batch invariance: each batch element gets exactly the bits it gets alone. Contractions are written as a
broadcast product and a ``sum`` over one axis (``torch.einsum`` picks a different BLAS kernel for a
batched and an unbatched contraction, which changes the last bits), and iterative solvers stop per
batch element (``keep_done``): an element is frozen from the iteration where it would have stopped
alone, and the loop ends once every element is done (an element whose numbers are NaN never stops and
runs to the iteration cap without touching the others).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from pbrl_dist.core.types import assert_shape


class SoftOptimal(NamedTuple):
    """Soft-optimal policy, value and Q of a finite MDP."""

    pi_SA: torch.Tensor
    v_S: torch.Tensor
    q_SA: torch.Tensor


def neg_entropy(pi_SA: torch.Tensor) -> torch.Tensor:
    """Return h_s(π(s)) = Σ_a π(a|s) log π(a|s) per state (0·log 0 = 0).

    Args:
        pi_SA: (..., S, A) row-stochastic policy.

    Returns:
        (..., S) negative entropy, in [−log A, 0].
    """
    return torch.special.xlogy(pi_SA, pi_SA).sum(-1)


def policy_transition(P_SAS: torch.Tensor, pi_SA: torch.Tensor) -> torch.Tensor:
    """Return the state chain P_π(s'|s) = Σ_a π(a|s) P(s'|s, a).

    Args:
        P_SAS: (..., S, A, S) transition tensor.
        pi_SA: (..., S, A) policy.

    Returns:
        (..., S, S) row-stochastic matrix.
    """
    return (pi_SA.unsqueeze(-1) * P_SAS).sum(-2)


def q_from_v(
    P_SAS: torch.Tensor, r_SA: torch.Tensor, v_S: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Return Q(s, a) = r(s, a) + γ·Σ_s' P(s'|s, a) v(s')  (eq. 2.2)."""
    return r_SA + gamma * (P_SAS * v_S[..., None, None, :]).sum(-1)


def evaluate_policy_with_cost(
    P_SAS: torch.Tensor, r_SA: torch.Tensor, pi_SA: torch.Tensor, gamma: float, cost_S: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate π exactly when each visit to s costs ``cost_S[s]`` (e.g. τ·h(π(s))).

    Math:
        v = (I − γ·P_π)⁻¹ (r_π − c),   r_π(s) = Σ_a π(a|s) r(s, a);   q = r + γ·P v.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        pi_SA: (..., S, A) policy.
        gamma: discount in [0, 1).
        cost_S: (..., S) per-state regularization cost subtracted from the reward.

    Returns:
        ``(v_S, q_SA)``; differentiable in every tensor argument.

    Invariants:
        v(s) = ⟨π(s), q(s, ·)⟩ − c(s).
    """
    S = P_SAS.shape[-1]
    assert_shape(P_SAS, (S, None, S), "P_SAS")
    P_pi = policy_transition(P_SAS, pi_SA)
    r_pi = (pi_SA * r_SA).sum(-1) - cost_S
    eye = torch.eye(S, dtype=P_pi.dtype, device=P_pi.device)
    v_S = torch.linalg.solve(eye - gamma * P_pi, r_pi.unsqueeze(-1)).squeeze(-1)
    return v_S, q_from_v(P_SAS, r_SA, v_S, gamma)


def evaluate_joint_policy(
    P_SABS: torch.Tensor,
    r_SAB: torch.Tensor,
    pi1_SA: torch.Tensor,
    pi2_SB: torch.Tensor,
    gamma: float,
    cost_S: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate the product policy π1 × π2 of a two-player game exactly (one linear solve).

    Math:
        π(a, b | s) = π1(a|s)·π2(b|s) on the flattened joint action a·A2 + b;
        v = (I − γ·P_π)⁻¹ (r_π − c),  q(s, a, b) = r(s, a, b) + γ·Σ_s' P(s'|s, a, b) v(s').

    Args:
        P_SABS: (..., S, A1, A2, S) transitions.
        r_SAB: (..., S, A1, A2) the reward being evaluated (any player's).
        pi1_SA: (..., S, A1) player 1's policy.
        pi2_SB: (..., S, A2) player 2's policy.
        gamma: discount in [0, 1).
        cost_S: (..., S) per-state regularization cost (default 0: unregularized).

    Returns:
        ``(v_S, q_SAB)``; differentiable in every tensor argument.

    Invariants:
        v(s) = π1(s)ᵀ q(s) π2(s) − c(s).
    """
    A1, A2 = P_SABS.shape[-3], P_SABS.shape[-2]
    joint = (pi1_SA.unsqueeze(-1) * pi2_SB.unsqueeze(-2)).flatten(-2, -1)
    if cost_S is None:
        cost_S = torch.zeros_like(joint[..., 0])
    v_S, q = evaluate_policy_with_cost(
        P_SABS.flatten(-3, -2), r_SAB.flatten(-2, -1), joint, gamma, cost_S
    )
    return v_S, q.unflatten(-1, (A1, A2))


def evaluate_policy(
    P_SAS: torch.Tensor, r_SA: torch.Tensor, pi_SA: torch.Tensor, gamma: float, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate π in M_τ by an exact linear solve.

    Math:
        V^π = (I − γ·P_π)⁻¹ (r_π − τ·h(π)),   Q^π = r + γ·P V^π   (eqs. 2.1-2.2).

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 2.1.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        pi_SA: (..., S, A) policy.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.

    Returns:
        ``(v_S, q_SA)``.

    Invariants:
        Equals the fixed point of the regularized Bellman operator T^π.
    """
    return evaluate_policy_with_cost(P_SAS, r_SA, pi_SA, gamma, tau * neg_entropy(pi_SA))


def soft_greedy(q_SA: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the soft-greedy policy and soft maximum of q.

    Math:
        π(a|s) = exp((q(s,a) − v(s))/τ),   v(s) = τ·log Σ_a exp(q(s,a)/τ)   (τ > 0);
        τ = 0: v = max_a q, π uniform over the argmax set.

    Returns:
        ``(pi_SA, v_S)``.
    """
    if tau > 0:
        v_S = tau * torch.logsumexp(q_SA / tau, dim=-1)
        return torch.softmax(q_SA / tau, dim=-1), v_S
    v_S = q_SA.max(-1).values
    is_max = (q_SA >= v_S.unsqueeze(-1) - 1e-12).to(q_SA.dtype)
    return is_max / is_max.sum(-1, keepdim=True), v_S


def keep_done(done: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Return ``old`` in the batch elements that are ``done`` and ``new`` in the others.

    Args:
        done: (...) per-batch-element stop flags (0-dim for an unbatched solve).
        old: (..., *event) the values an element had when it stopped.
        new: (..., *event) this iteration's values.

    Returns:
        (..., *event) a selection, so every element's bits are those of ``old`` or ``new``.
    """
    return torch.where(done.reshape(done.shape + (1,) * (new.dim() - done.dim())), old, new)


def soft_value_iteration(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-10,
    max_iter: int = 100_000,
    v0: torch.Tensor | None = None,
) -> SoftOptimal:
    """Solve M_τ by soft value iteration.

    Math:
        v ← τ·log Σ_a exp((r + γ·P v)/τ);  stop when γ/(1−γ)·‖v_k − v_{k−1}‖_∞ ≤ tol,
        which bounds ‖v_k − V*‖_∞ ≤ tol.  π*(a|s) = exp((Q*(s,a) − V*(s))/τ).
        Batched: the test is per batch element (the sup over its own states), and an element keeps
        the iterate at which it stopped while the others go on.

    Reference:
        Shen, Yang & Chen 2024/25, Lemma 4 (unique optimum for τ > 0); MATH.md §1.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0 (0 gives hard value iteration).
        tol: sup-norm accuracy of the returned value.
        max_iter: iteration cap.
        v0: (..., S) warm start (e.g. the previous outer iteration's V*).

    Returns:
        ``SoftOptimal(pi_SA, v_S, q_SA)``, computed without gradient tracking.

    Invariants:
        v = soft-max of q; q = r + γ·P v; evaluate_policy(π*) = v.
    """
    with torch.no_grad():
        v = torch.zeros(r_SA.shape[:-1], dtype=r_SA.dtype) if v0 is None else v0.detach().clone()
        scale = gamma / (1.0 - gamma) if gamma > 0 else 1.0
        done = torch.zeros((), dtype=torch.bool)
        for _ in range(max_iter):
            q = q_from_v(P_SAS, r_SA, v, gamma)
            _, v_new = soft_greedy(q, tau)
            delta = (v_new - v).abs().amax(-1)
            v = keep_done(done, v, v_new)
            done = done | (scale * delta <= tol)
            if bool(done.all()):
                break
        q = q_from_v(P_SAS, r_SA, v, gamma)
        pi, v = soft_greedy(q, tau)
    return SoftOptimal(pi, v, q)


def soft_policy_iteration(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
    max_iter: int = 200,
    pi0: torch.Tensor | None = None,
) -> SoftOptimal:
    """Solve M_τ (τ > 0) by soft policy iteration (Newton's method on the soft Bellman equation).

    Math:
        π_{k+1} = softmax(Q^{π_k}/τ) with Q^{π_k} from the exact linear solve; V^{π_k} increases
        monotonically and converges quadratically near V*. Stops when ‖V^{π_{k+1}} − V^{π_k}‖_∞ ≤ tol,
        per batch element (an element keeps the iterate at which it stopped while the others go on).

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        gamma: discount in [0, 1).
        tau: entropy temperature > 0.
        tol: stopping threshold on the value change.
        max_iter: iteration cap.
        pi0: (..., S, A) warm-start policy (e.g. the previous outer iteration's π*).

    Returns:
        ``SoftOptimal(pi_SA, v_S, q_SA)``, computed without gradient tracking.

    Invariants:
        Same fixed point as ``soft_value_iteration``.
    """
    if tau <= 0:
        raise ValueError("soft_policy_iteration needs tau > 0")
    with torch.no_grad():
        pi = torch.full_like(r_SA, 1.0 / r_SA.shape[-1]) if pi0 is None else pi0.detach()
        v, q = evaluate_policy(P_SAS, r_SA, pi, gamma, tau)
        done = torch.zeros((), dtype=torch.bool)
        for _ in range(max_iter):
            pi = torch.softmax(q / tau, dim=-1)
            v_new, q_new = evaluate_policy(P_SAS, r_SA, pi, gamma, tau)
            delta = (v_new - v).abs().amax(-1)
            v, q = keep_done(done, v, v_new), keep_done(done, q, q_new)
            done = done | (delta <= tol)
            if bool(done.all()):
                break
        pi, v = soft_greedy(q, tau)
    return SoftOptimal(pi, v, q)


def occupancy(
    P_SAS: torch.Tensor, pi_SA: torch.Tensor, rho_S: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Return the normalized discounted state occupancy d^π_ρ.

    Math:
        d^π_ρ(s) = (1−γ)·Σ_t γ^t Pr(s_t = s | s_0 ~ ρ, π) = (1−γ)·[ρᵀ (I − γ·P_π)⁻¹](s).

    Args:
        P_SAS: (..., S, A, S) transitions.
        pi_SA: (..., S, A) policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).

    Returns:
        (..., S) distribution.

    Invariants:
        Σ_s d(s) = 1 and d ≥ (1−γ)·ρ.
    """
    S = P_SAS.shape[-1]
    P_pi = policy_transition(P_SAS, pi_SA)
    eye = torch.eye(S, dtype=P_pi.dtype)
    # Solve (I − γ P_π)ᵀ d = (1−γ) ρ.
    A = (eye - gamma * P_pi).transpose(-1, -2)
    return torch.linalg.solve(A, ((1.0 - gamma) * rho_S).unsqueeze(-1)).squeeze(-1)


def expected_value(v_S: torch.Tensor, rho_S: torch.Tensor) -> torch.Tensor:
    """Return V(π) = Σ_s ρ(s) V^π(s)."""
    return (rho_S * v_S).sum(-1)


def softmax_policy_gradient(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    logits_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
) -> torch.Tensor:
    """Return the exact gradient of V_ρ(π_θ) in the softmax logits θ.

    Math:
        ∂V_ρ(π_θ)/∂θ(s,a) = d^π_ρ(s)/(1−γ) · π(a|s) · (Q^π(s,a) − τ·log π(a|s) − V^π(s)).

    Reference:
        Regularized policy gradient (B.11) of Shen, Yang & Chen composed with the softmax Jacobian.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        logits_SA: (..., S, A) policy logits θ.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.

    Returns:
        (..., S, A) gradient (ascent direction).

    Invariants:
        Matches autograd and central finite differences of V_ρ(softmax(θ)).
    """
    log_pi = torch.log_softmax(logits_SA, dim=-1)
    pi = log_pi.exp()
    v, q = evaluate_policy(P_SAS, r_SA, pi, gamma, tau)
    d = occupancy(P_SAS, pi, rho_S, gamma)
    adv = q - tau * log_pi - v.unsqueeze(-1)
    return d.unsqueeze(-1) / (1.0 - gamma) * pi * adv
