"""Batched Monte Carlo rollouts in tabular models and REINFORCE estimators.

The sampler works on a two-player simultaneous-move model P(s'|s, a, b) (leader/follower, or the two
players of a zero-sum game); a single-agent MDP is the special case B = 1 (``sample_mdp``).
All draws come from one explicit ``torch.Generator``; the same generator state gives the same rollouts,
which is what makes the local and Ray executors agree.

Estimators (regularized REINFORCE with reward-to-go, MATH.md §7.1):

    ∇_θ V(π_θ) ≈ (1/N)·Σ_n Σ_t γ^t·∇_θ log π_θ(a_t|s_t)·G_t,   G_t = Σ_{t'≥t} γ^{t'−t}·(r_{t'} − τ·log π(a_{t'}|s_{t'}))

For a softmax policy ∇_θ(s,·) log π(a|s) = e_a − π(s), so gradients are scattered without autograd.
Truncating at horizon H biases the estimate by O(γ^H·R_max/(1−γ)); tests choose H so that this is far
below the statistical tolerance.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Rollouts(NamedTuple):
    """N trajectories of length T: states s_NT, leader/first actions a_NT, follower/second actions b_NT."""

    s_NT: torch.Tensor
    a_NT: torch.Tensor
    b_NT: torch.Tensor


def sample_categorical(probs_NK: torch.Tensor, u_N: torch.Tensor) -> torch.Tensor:
    """Draw one index per row by inverse CDF with the given uniforms u ∈ [0, 1)."""
    cdf = probs_NK.cumsum(-1)
    idx = (cdf < u_N.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return idx.clamp_max(probs_NK.shape[-1] - 1)


def sample_initial_states(rho_S: torch.Tensor, num: int, gen: torch.Generator) -> torch.Tensor:
    """Draw ``num`` initial states s_0 ~ ρ."""
    u = torch.rand(num, generator=gen, dtype=rho_S.dtype)
    return sample_categorical(rho_S.expand(num, -1), u)


def sample_game(
    P_SABS: torch.Tensor,
    pi_SA: torch.Tensor,
    sigma_SB: torch.Tensor,
    s0_N: torch.Tensor,
    horizon: int,
    gen: torch.Generator,
    *,
    a0_N: torch.Tensor | None = None,
    b0_N: torch.Tensor | None = None,
) -> Rollouts:
    """Roll out N trajectories of length ``horizon`` with a_t ~ π(s_t), b_t ~ σ(s_t), s_{t+1} ~ P(s_t, a_t, b_t).

    Args:
        P_SABS: (S, A, B, S) transitions.
        pi_SA: (S, A) first player's policy.
        sigma_SB: (S, B) second player's policy.
        s0_N: (N,) initial states.
        horizon: T ≥ 1.
        gen: generator for every draw (three uniforms per step, drawn as one block).
        a0_N: optional fixed first actions a_0 (for Q(s, a) estimates).
        b0_N: optional fixed second actions b_0 (for Q(s, b) estimates).

    Returns:
        ``Rollouts`` of int64 tensors (N, T).
    """
    N = s0_N.shape[0]
    u = torch.rand(horizon, 3, N, generator=gen, dtype=P_SABS.dtype)
    s = s0_N
    s_l, a_l, b_l = [], [], []
    for t in range(horizon):
        a = a0_N if (t == 0 and a0_N is not None) else sample_categorical(pi_SA[s], u[t, 0])
        b = b0_N if (t == 0 and b0_N is not None) else sample_categorical(sigma_SB[s], u[t, 1])
        s_l.append(s)
        a_l.append(a)
        b_l.append(b)
        s = sample_categorical(P_SABS[s, a, b], u[t, 2])
    return Rollouts(torch.stack(s_l, 1), torch.stack(a_l, 1), torch.stack(b_l, 1))


def sample_mdp(
    P_SAS: torch.Tensor,
    pi_SA: torch.Tensor,
    s0_N: torch.Tensor,
    horizon: int,
    gen: torch.Generator,
    *,
    a0_N: torch.Tensor | None = None,
) -> Rollouts:
    """Roll out a single-agent MDP (the B = 1 case of ``sample_game``); ``b_NT`` is all zeros."""
    S = P_SAS.shape[0]
    ones = torch.ones(S, 1, dtype=pi_SA.dtype)
    return sample_game(P_SAS.unsqueeze(2), pi_SA, ones, s0_N, horizon, gen, a0_N=a0_N)


def reward_to_go(r_NT: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return G_t = Σ_{t'≥t} γ^{t'−t}·r_{t'} for each trajectory (truncated at T)."""
    G = torch.zeros_like(r_NT)
    acc = torch.zeros_like(r_NT[:, 0])
    for t in range(r_NT.shape[1] - 1, -1, -1):
        acc = r_NT[:, t] + gamma * acc
        G[:, t] = acc
    return G


def discounts(T: int, gamma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return (γ^0, …, γ^{T−1})."""
    return gamma ** torch.arange(T, dtype=dtype)


def softmax_score_grad(
    s_NT: torch.Tensor,
    a_NT: torch.Tensor,
    pi_SA: torch.Tensor,
    w_NT: torch.Tensor,
    *,
    group_N: torch.Tensor | None = None,
    num_groups: int = 1,
) -> torch.Tensor:
    """Return (1/n)·Σ_{n,t} w_{n,t}·∇_θ log π_θ(a_t|s_t) for softmax logits θ (S, A).

    Math:
        ∂ log π(a|s)/∂θ(s', a') = 1[s'=s]·(1[a'=a] − π(a'|s)).

    Args:
        s_NT: (N, T) states.
        a_NT: (N, T) actions of the policy being differentiated.
        pi_SA: (S, A) that policy.
        w_NT: (N, T) weights (e.g. γ^t·G_t).
        group_N: optional (N,) group id of each trajectory (e.g. its start pair); the sum is then
            taken per group and divided by the group's size.
        num_groups: number of groups when ``group_N`` is given.

    Returns:
        (S, A), or (num_groups, S, A) with ``group_N``.
    """
    S, A = pi_SA.shape
    N = s_NT.shape[0]
    g = torch.zeros(N, dtype=torch.long) if group_N is None else group_N
    G = 1 if group_N is None else num_groups
    row = (g.unsqueeze(1) * S + s_NT).reshape(-1)  # (group, state) row index
    w = w_NT.reshape(-1).to(pi_SA.dtype)
    grad = torch.zeros(G * S * A, dtype=pi_SA.dtype)
    grad.index_add_(0, row * A + a_NT.reshape(-1), w)
    grad = grad.view(G * S, A)
    grad.index_add_(0, row, -w.unsqueeze(-1) * pi_SA[s_NT.reshape(-1)])
    counts = torch.bincount(g, minlength=G).clamp_min(1).to(pi_SA.dtype)
    grad = grad.view(G, S, A) / counts.view(G, 1, 1)
    return grad[0] if group_N is None else grad


def reinforce_grad(
    s_NT: torch.Tensor, a_NT: torch.Tensor, pi_SA: torch.Tensor, rew_NT: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Return the REINFORCE estimate (1/N)·Σ_n Σ_t γ^t·∇ log π(a_t|s_t)·G_t of ∇_θ V_ρ(π_θ).

    Math:
        G_t = Σ_{t'≥t} γ^{t'−t}·rew_{t'}; ``rew`` already contains the regularization −τ·log π when the
        objective is regularized (the extra −τ·∇ log π term has mean zero).

    Invariants:
        Unbiased for the horizon-T objective; within a stated tolerance of ``softmax_policy_gradient``.
    """
    w = discounts(rew_NT.shape[1], gamma, rew_NT.dtype) * reward_to_go(rew_NT, gamma)
    return softmax_score_grad(s_NT, a_NT, pi_SA, w)


def discounted_counts(
    idx_NT: torch.Tensor, size: int, gamma: float, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Return (1/N)·Σ_n Σ_t γ^t·e_{idx_{n,t}}: the MC estimate of ∂V/∂r over flat (state, action) indices.

    Math:
        ∂V_ρ(π)/∂r(s, a) = E[Σ_t γ^t·1[(s_t, a_t) = (s, a)]] = d^π_ρ(s)·π(a|s)/(1−γ)   (Lemma 7(a)).
    """
    N, T = idx_NT.shape
    w = discounts(T, gamma, dtype).expand(N, T).reshape(-1)
    out = torch.zeros(size, dtype=dtype)
    out.index_add_(0, idx_NT.reshape(-1), w)
    return out / N
