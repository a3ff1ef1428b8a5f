"""A2C losses and the two PBRL coupling terms of the deep RLHF experiment (Sec. 6.2; MATH.md §6.2, §7.2).

Reference: Mnih et al. 2016 (A3C; A2C is its synchronous version); Shen, Yang & Chen (PBRL), Sec. 6.2
and App. E.2; Christiano et al. 2017 (DRLHF).

The RLHF bilevel problem, with x = φ the reward-model parameters and y = θ the policy parameters:

    min_{φ,θ}  f(φ, π_θ) = E_{(σ¹,σ²,y) ~ D(π_θ)} ℓ_BT(φ; σ¹, σ², y)
    s.t.       θ ∈ argmax V_φ(π_θ),      V_φ(π) = E_π[Σ_t γ^t r̃_φ(s_t, a_t)].

PBRL replaces the constraint by the value penalty p(φ, θ) = max_π V_φ(π) − V_φ(π_θ) and, with the
upper-level coefficient c = 1/λ (MATH.md §7.2 "How PBRL differs from DRLHF"), takes

    reward step  on  f + λ·p̄ :  ∇_φ f + λ·(1 − γ)·( ∇_φ V_φ(π̂*) − ∇_φ V_φ(π_θ) )
    policy step  on  p̄ + c·f :  the A2C loss on r̃_φ (≈ −(1 − γ)·∇_θ V_φ(π_θ))  + c·∇̄_θ f

with π̂* an approximate best response (an oracle actor-critic trained on r̃_φ). DRLHF drops both
coupling terms (∇_φ p and ∇_θ f).

Units. The A2C loss is a mean over samples, i.e. the per-step value (1 − γ)·V, so both coupling
terms are put on that per-step scale: the penalty enters the reward loss as p̄ = (1 − γ)·p̂ (the gap
of mean per-step rewards), and the score term as a mean over segment steps (each segment step counts
like one A2C sample whose return gets the bonus −c·(ℓ − ℓ̄)). The constants only rescale λ and c,
which are tuned anyway; ``penalty/value`` is still reported in value units p̂.

Estimators used here (the paper's exact estimators are unknown; these are documented choices):

* value-gap surrogate: with d̄^π the empirical state-action distribution of π's running rollouts,
  V_φ(π) ≈ (1 − γ)⁻¹·E_{(s,a)~d̄^π} r̃_φ(s, a), so
      p̂(φ) = (1 − γ)⁻¹·( mean r̃_φ over π̂*'s samples − mean r̃_φ over π_θ's samples )
  and ∇_φ p̂ is the plug-in estimate of Lemma 7(a). (Running vector envs visit states from their
  on-policy stationary mix, not the discounted occupancy from ρ; this is the usual deep-RL shortcut.)
* segment score function: ∇_θ f = E[ ℓ·∇_θ (log π_θ(σ¹) + log π_θ(σ²)) ] with log π_θ(σ) =
  Σ_t log π_θ(a_t | s_t) (the dynamics do not depend on θ). A batch-mean baseline ℓ̄ is subtracted
  (unbiased, lower variance). Equivalently, −c·ℓ is added to the return of the segments' actions.
  Only the segment's own actions are scored (the θ-dependence of where the segment starts is
  dropped), and the segments come from the last few rollouts (slightly off-policy).

Everything is torch only; nothing here logs or calls ``.item()``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class A2CLoss(NamedTuple):
    """The A2C loss and its parts (all scalar tensors; ``loss`` carries the gradient).

    Attributes:
        loss: policy_loss + vf_coef·value_loss − ent_coef·entropy.
        policy_loss: −mean(Â·log π(a|s)), Â detached.
        value_loss: mean((R − V)²).
        entropy: mean policy entropy.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor


def nstep_returns(
    rewards_TN: torch.Tensor,
    dones_TN: torch.Tensor,
    bootstrap_N: torch.Tensor,
    *,
    gamma: float,
) -> torch.Tensor:
    """Return the bootstrapped n-step returns of a time-major rollout fragment.

    Math:
        R_T = V(s_T);   R_t = r_t + γ·(1 − d_t)·R_{t+1}   for t = T−1 … 0

    Reference: Mnih et al. 2016, Algorithm S3 (n-step returns of A3C).

    Args:
        rewards_TN: (T, N) rewards r_t of the transitions.
        dones_TN: (T, N) bool, True where transition t ended an episode (s_{t+1} is then the next
            episode's first state, so nothing is bootstrapped across it).
        bootstrap_N: (N,) V(s_T) of the state after the fragment.
        gamma: discount γ ∈ [0, 1).

    Returns:
        (T, N) returns R_t, same dtype as ``rewards_TN``.

    Invariants:
        with every d_t = 0 and V = 0 this is the discounted sum; d_t = 1 cuts the sum after t.
    """
    if rewards_TN.dim() != 2 or dones_TN.shape != rewards_TN.shape:
        raise ValueError(
            f"rewards_TN/dones_TN: expected equal (T, N) shapes, got {tuple(rewards_TN.shape)}, "
            f"{tuple(dones_TN.shape)}"
        )
    if bootstrap_N.shape != rewards_TN.shape[1:]:
        raise ValueError(
            f"bootstrap_N: expected shape {tuple(rewards_TN.shape[1:])}, got {tuple(bootstrap_N.shape)}"
        )
    not_done_TN = 1.0 - dones_TN.to(rewards_TN.dtype)
    out = torch.empty_like(rewards_TN)
    R = bootstrap_N.to(rewards_TN.dtype)
    for t in range(rewards_TN.shape[0] - 1, -1, -1):
        R = rewards_TN[t] + gamma * not_done_TN[t] * R
        out[t] = R
    return out


def a2c_loss(
    logits_TNA: torch.Tensor,
    values_TN: torch.Tensor,
    actions_TN: torch.Tensor,
    returns_TN: torch.Tensor,
    *,
    vf_coef: float,
    ent_coef: float,
) -> A2CLoss:
    """Return the synchronous advantage actor-critic loss of one rollout fragment.

    Math:
        Â = R − V(s) (detached),   L = −mean(Â·log π(a|s)) + c_v·mean((R − V(s))²) − c_H·mean(H(π(·|s)))

    Reference: Mnih et al. 2016 (A3C, eq. in Sec. 4); the policy term is −∇_θ V(π_θ) of the lower level.

    Args:
        logits_TNA: (T, N, A) policy logits at s_t.
        values_TN: (T, N) critic values V(s_t).
        actions_TN: (T, N) int actions a_t.
        returns_TN: (T, N) targets R_t (e.g. ``nstep_returns``), treated as constants.
        vf_coef: c_v, weight of the value loss.
        ent_coef: c_H, weight of the entropy bonus.

    Returns:
        ``A2CLoss``.

    Invariants:
        ∂L/∂logits is the REINFORCE-with-baseline gradient; the value loss is 0 iff V = R.
    """
    if logits_TNA.shape[:-1] != values_TN.shape or values_TN.shape != actions_TN.shape:
        raise ValueError(
            f"logits_TNA/values_TN/actions_TN: leading shapes differ: {tuple(logits_TNA.shape)}, "
            f"{tuple(values_TN.shape)}, {tuple(actions_TN.shape)}"
        )
    logp_TNA = F.log_softmax(logits_TNA, -1)
    logp_TN = logp_TNA.gather(-1, actions_TN.long().unsqueeze(-1)).squeeze(-1)
    returns_TN = returns_TN.detach()
    adv_TN = returns_TN - values_TN.detach()
    policy_loss = -(adv_TN * logp_TN).mean()
    value_loss = (returns_TN - values_TN).pow(2).mean()
    entropy = -(logp_TNA.exp() * logp_TNA).sum(-1).mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return A2CLoss(loss, policy_loss, value_loss, entropy)


def value_gap_surrogate(
    r_hat_oracle_B: torch.Tensor, r_agent_B: torch.Tensor, *, gamma: float
) -> torch.Tensor:
    """Return the sample estimate of the value penalty p = V_φ(π̂*) − V_φ(π_θ) (differentiable in φ).

    Math:
        p̂(φ) = (1 − γ)⁻¹·( (1/|B̂|)·Σ_{(s,a)~π̂*} r̃_φ(s,a) − (1/|B|)·Σ_{(s,a)~π_θ} r̃_φ(s,a) )
        ∇_φ p̂ ≈ E_{π̂*}[Σ_t γ^t ∇_φ r̃_φ] − E_{π_θ}[Σ_t γ^t ∇_φ r̃_φ]

    Reference: PBRL Lemma 7(a) / (C.31) with π̂* plugged in for π* (Algorithm 1 step 2); MATH.md §7.2.

    Args:
        r_hat_oracle_B: (B̂,) rewards r̃_φ(s, a) on samples of the oracle policy π̂*.
        r_agent_B: (B,) rewards r̃_φ(s, a) on samples of the agent π_θ.
        gamma: discount γ ∈ [0, 1).

    Returns:
        Scalar tensor.

    Invariants:
        0 when both sample sets are equal; linear in r̃.
    """
    if r_hat_oracle_B.dim() != 1 or r_agent_B.dim() != 1:
        raise ValueError(
            f"r_hat_oracle_B/r_agent_B: expected 1-D, got {tuple(r_hat_oracle_B.shape)}, "
            f"{tuple(r_agent_B.shape)}"
        )
    return (r_hat_oracle_B.mean() - r_agent_B.mean()) / (1.0 - gamma)


def paired_value_gap(
    logp_oracle_B: torch.Tensor,
    logp_agent_B: torch.Tensor,
    returns_B: torch.Tensor,
    baseline_B: torch.Tensor,
    *,
    gamma: float,
) -> torch.Tensor:
    """Return p̂ = V_φ(π̂*) − V_φ(π_θ) to first order, from the agent's samples alone.

    Math (performance difference, first order in π̂* − π_θ; Kakade & Langford 2002, TRPO's L_π):
        V(π̂) − V(π) = (1 − γ)⁻¹·E_{s~d^π̂} Σ_a π̂(a|s)·A^π(s, a)
                    = (1 − γ)⁻¹·E_{s~d^π, a~π}[(ρ − 1)·A^π(s, a)] + O(‖π̂ − π‖²),  ρ = π̂(a|s)/π(a|s)
        p̂ = (1 − γ)⁻¹·mean_b[(ρ_b − 1)·(G_b − b(s_b))]
    with G_b a return of r̃_φ from (s_b, a_b) on, and any state baseline b(s): E_{a~π}[ρ − 1] = 0,
    so b changes the variance only. Both policies are scored on the same states and actions, so
    the two independent sample means of ``value_gap_surrogate`` (whose noise, not the policies,
    set p̂'s sign in half the reward epochs: BENCHMARKS.md) are replaced by one paired mean.

    Not a setting of the RLHF loop, by measurement: ``benchmarks/bench_oracle_truth.py`` sets it
    beside the measured gap at every reward epoch of toy-env runs, and on the agent's 50-step window
    its sign agrees with the measured one in only about half the epochs where that is clear (the
    window's steps come from the last ten agent versions, the oracle moved KL 0.03–0.5 away, and
    the window's few hundred advantages are noisy). The benchmark reports it for that comparison.

    Args:
        logp_oracle_B: (B,) log π̂*(a_b | s_b) on the agent's samples.
        logp_agent_B: (B,) log π_θ(a_b | s_b), the policy the samples are taken as drawn from.
        returns_B: (B,) returns G_b of r̃_φ (e.g. ``nstep_returns`` over the window).
        baseline_B: (B,) b(s_b), e.g. the agent's critic.
        gamma: discount γ ∈ [0, 1).

    Returns:
        Scalar tensor (value units, like ``value_gap_surrogate``).

    Invariants:
        0 when π̂* = π_θ; unchanged by a constant added to the baseline, in expectation.
    """
    shapes = {t.shape for t in (logp_oracle_B, logp_agent_B, returns_B, baseline_B)}
    if len(shapes) != 1 or logp_oracle_B.dim() != 1:
        raise ValueError(f"paired_value_gap: expected four equal 1-D shapes, got {shapes}")
    ratio_m1 = torch.expm1(logp_oracle_B - logp_agent_B)
    return (ratio_m1 * (returns_B - baseline_B)).mean() / (1.0 - gamma)


def segment_score_loss(
    logp1_BH: torch.Tensor, logp2_BH: torch.Tensor, bt_loss_B: torch.Tensor
) -> torch.Tensor:
    """Return a surrogate whose θ-gradient is the per-step score-function estimate of ∇_θ f.

    Math:
        ∇_θ f = E[ ℓ·∇_θ (Σ_t log π_θ(a¹_t|s¹_t) + Σ_t log π_θ(a²_t|s²_t)) ]
        L(θ) = (1/(2BH))·Σ_b (ℓ_b − ℓ̄)·(Σ_t logp¹_{b,t} + Σ_t logp²_{b,t}),  ℓ detached, ℓ̄ = mean_b ℓ_b
        ∇_θ L = ∇̂_θ f / (2H)   (per segment step, the unit of the A2C loss)

    Reference: MATH.md §6.2 (∇_y f through the segment distribution D(π_y); DERIVED, the paper's
    exact estimator is unknown) and §7.2 (−c·ℓ added to the return of the segments' rollouts).

    Args:
        logp1_BH: (B, H) log π_θ(a¹_t | s¹_t) along segment 1 (carries the gradient).
        logp2_BH: (B, H) log π_θ(a²_t | s²_t) along segment 2.
        bt_loss_B: (B,) per-pair Bradley–Terry losses ℓ_b (detached inside).

    Returns:
        Scalar tensor.

    Invariants:
        0 (and zero gradient) when all ℓ_b are equal: a constant loss carries no signal.
    """
    if logp1_BH.shape != logp2_BH.shape or logp1_BH.dim() != 2:
        raise ValueError(
            f"logp1_BH/logp2_BH: expected equal (B, H) shapes, got {tuple(logp1_BH.shape)}, "
            f"{tuple(logp2_BH.shape)}"
        )
    if bt_loss_B.shape != logp1_BH.shape[:1]:
        raise ValueError(
            f"bt_loss_B: expected shape {tuple(logp1_BH.shape[:1])}, got {tuple(bt_loss_B.shape)}"
        )
    ell_B = bt_loss_B.detach()
    weight_B = ell_B - ell_B.mean()
    H = logp1_BH.shape[1]
    return (weight_B * (logp1_BH.sum(1) + logp2_BH.sum(1))).mean() / (2 * H)


def upper_coef(c0: float, *, decay: float, every: int, num_updates: int) -> float:
    """Return the upper-level coefficient c = 1/λ after ``num_updates`` A2C updates.

    Math:
        c_k = c0 · decay^⌊k / M⌋,   λ_k = 1 / c_k   (MATH.md §7.2: c decays every M AC steps)

    Args:
        c0: initial coefficient c0 > 0.
        decay: factor in (0, 1].
        every: M, A2C updates between decays (≥ 1).
        num_updates: k.

    Returns:
        c_k as a Python float.
    """
    return float(c0 * decay ** (num_updates // every))
