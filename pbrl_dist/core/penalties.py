"""Value and Bellman penalties of the lower-level optimality condition, and their gradient surrogates.

For the lower MDP M_τ(x) = {S, A, r_x, P_x, τ·h} and a lower policy π = π_y:

* value penalty (3.2):    p(x, y) = max_π' V_{M_τ(x)}(π') − V_{M_τ(x)}(π_y) ≥ 0
* Bellman penalty (3.5):  g(x, π) = Σ_s ρ(s)·(g_s(x, π(s)) − min_p g_s(x, p)),  g_s(x, p) = −⟨q*_s(x), p⟩ + τ·h_s(p)
                          = τ·Σ_s ρ(s)·KL(π(s) ‖ π*_x(s))   for the entropy regularizer (MATH.md §3).

Gradients (Lemmas 6 and 8, generalized Danskin) need π*_x only as a constant, so the algorithm plugs in the
oracle's π̂ (App. C.7, (C.31) and (C.34)). We express each estimator as a *surrogate*: a scalar built from
the differentiable lower MDP (P_x, r_x), the lower policy π_y and the detached π̂, whose value is the plug-in
penalty estimate and whose autograd gradient in (x, y) is exactly the paper's estimator:

    value:    p̂ = V_x(π̂) − V_x(π_y)                                   ∇_x p̂ = ∇_x V_x(π)|_{π=π̂} − ∇_x V_x(π_y),
                                                                       ∇_y p̂ = −∇_y V_x(π_y)
    Bellman:  ĝ = Σ_s ρ(s)·[⟨Q^π̂_x(s,·), π̂(s) − π_y(s)⟩ − τ·h(π̂(s)) + τ·h(π_y(s))]
                                                                       ∇_x ĝ = Σ_s ρ(s)·⟨π̂(s) − π_y(s), ∇_x Q^π̂_x(s,·)⟩,
                                                                       ∇_π(s) ĝ = ρ(s)·(τ·∇h(π_y(s)) − Q^π̂_x(s,·))
At π̂ = π*_x both surrogates equal the true penalties and their gradients equal the true gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pbrl_dist.core.mdp import evaluate_policy, expected_value, neg_entropy, soft_policy_iteration


def value_penalty(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    pi_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
) -> torch.Tensor:
    """Return the exact value penalty p = V*_ρ − V_ρ(π) of M_τ.

    Math:
        p(x, y) = max_π' V_{M_τ(x)}(π') − V_{M_τ(x)}(π_y)      (3.2)

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 3.1.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        pi_SA: (..., S, A) lower policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature > 0.
        tol: accuracy of the inner soft-optimal solve.

    Returns:
        (...) penalty; not differentiable through the max (use ``value_penalty_surrogate``).

    Invariants:
        p ≥ 0; p = 0 iff π = π*_x.
    """
    with torch.no_grad():
        star = soft_policy_iteration(P_SAS, r_SA, gamma, tau, tol=tol)
        v_pi, _ = evaluate_policy(P_SAS, r_SA, pi_SA, gamma, tau)
        return expected_value(star.v_S - v_pi, rho_S)


def bellman_penalty(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    pi_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    *,
    tol: float = 1e-12,
) -> torch.Tensor:
    """Return the exact Bellman penalty g(x, π) by its definition (3.5)-(3.7).

    Math:
        g(x, π) = Σ_s ρ(s)·(−⟨q*_s, π(s)⟩ + τ·h(π(s)) + V*(s))   since  min_p g_s(x, p) = −V*(s);
        equals τ·Σ_s ρ(s)·KL(π(s) ‖ π*(s)) for the entropy regularizer.

    Reference:
        Shen, Yang & Chen 2024/25, Sec. 3.2; closed form MATH.md §3.

    Args:
        P_SAS: (..., S, A, S) transitions.
        r_SA: (..., S, A) rewards.
        pi_SA: (..., S, A) lower policy.
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature > 0.
        tol: accuracy of the inner soft-optimal solve.

    Returns:
        (...) penalty.

    Invariants:
        g ≥ 0; g = 0 iff π = π*_x; g = τ·Σρ·KL(π ‖ π*).
    """
    with torch.no_grad():
        star = soft_policy_iteration(P_SAS, r_SA, gamma, tau, tol=tol)
        g_S = -(star.q_SA * pi_SA).sum(-1) + tau * neg_entropy(pi_SA) + star.v_S
        return expected_value(g_S, rho_S)


def value_penalty_surrogate(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    pi_SA: torch.Tensor,
    pi_hat_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
) -> torch.Tensor:
    """Return p̂ = V_x(π̂) − V_x(π_y), whose autograd gradient is the estimator (C.31).

    Math:
        ∇_x p̂ = ∇_x V_{M_τ(x)}(π)|_{π=π̂} − ∇_x V_{M_τ(x)}(π_y);   ∇_y p̂ = −∇_y V_{M_τ(x)}(π_y)   (Lemma 6)

    Reference:
        Shen, Yang & Chen 2024/25, Lemma 6, App. C.7 (C.31).

    Args:
        P_SAS: (..., S, A, S) lower transitions P_x (differentiable in x).
        r_SA: (..., S, A) lower rewards r_x (differentiable in x).
        pi_SA: (..., S, A) lower policy π_y (differentiable in y).
        pi_hat_SA: (..., S, A) oracle output π̂ ≈ π*_x (detached here).
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature ≥ 0.

    Returns:
        (...) penalty estimate.

    Invariants:
        At π̂ = π*_x: value = p(x, y) and gradients = ∇p (checked by finite differences).
    """
    v_hat, _ = evaluate_policy(P_SAS, r_SA, pi_hat_SA.detach(), gamma, tau)
    v_pi, _ = evaluate_policy(P_SAS, r_SA, pi_SA, gamma, tau)
    return expected_value(v_hat - v_pi, rho_S)


def bellman_penalty_surrogate(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    pi_SA: torch.Tensor,
    pi_hat_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
) -> torch.Tensor:
    """Return ĝ, whose autograd gradient is the Bellman-penalty estimator (C.34).

    Math:
        ĝ = Σ_s ρ(s)·[⟨Q^π̂_x(s,·), π̂(s) − π(s)⟩ − τ·h(π̂(s)) + τ·h(π(s))]
        ∇_x ĝ = Σ_s ρ(s)·⟨π̂(s) − π(s), ∇_x Q^π̂_x(s,·)⟩;   ∇_π(s) ĝ = ρ(s)·(τ·∇h(π(s)) − Q^π̂_x(s,·))   (Lemma 8)

    Reference:
        Shen, Yang & Chen 2024/25, Lemma 8, App. C.7 (C.34).

    Args:
        P_SAS: (..., S, A, S) lower transitions P_x (differentiable in x).
        r_SA: (..., S, A) lower rewards r_x (differentiable in x).
        pi_SA: (..., S, A) lower policy π (differentiable in y).
        pi_hat_SA: (..., S, A) oracle output π̂ ≈ π*_x (detached here).
        rho_S: (..., S) initial distribution.
        gamma: discount in [0, 1).
        tau: entropy temperature > 0.

    Returns:
        (...) penalty estimate.

    Invariants:
        At π̂ = π*_x: value = g(x, π) = τ·Σρ·KL(π ‖ π*_x) and gradients = ∇g.
    """
    pi_hat = pi_hat_SA.detach()
    _, q_hat = evaluate_policy(P_SAS, r_SA, pi_hat, gamma, tau)
    return bellman_surrogate_from_q(q_hat, pi_SA, pi_hat, rho_S, tau)


def bellman_surrogate_from_q(
    q_hat_SA: torch.Tensor,
    pi_SA: torch.Tensor,
    pi_hat_SA: torch.Tensor,
    rho_S: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Return ĝ of ``bellman_penalty_surrogate`` given Q^π̂ (exact, or a Monte Carlo estimate).

    Math:
        ĝ = Σ_s ρ(s)·[⟨Q̂(s,·), π̂(s) − π(s)⟩ − τ·h(π̂(s)) + τ·h(π(s))];
        ∇_π(s) ĝ = ρ(s)·(τ·∇h(π(s)) − Q̂(s,·))   (Lemma 8, (C.34)); ∇_x ĝ flows through Q̂ only.

    Args:
        q_hat_SA: (..., S, A) Q of the oracle policy π̂ in M_τ(x) (its x-dependence, if any, is kept).
        pi_SA: (..., S, A) lower policy π (differentiable in y).
        pi_hat_SA: (..., S, A) oracle output π̂ (detached here).
        rho_S: (..., S) initial distribution.
        tau: entropy temperature > 0.

    Returns:
        (...) penalty estimate.
    """
    pi_hat = pi_hat_SA.detach()
    g_S = (
        (q_hat_SA * (pi_hat - pi_SA)).sum(-1) - tau * neg_entropy(pi_hat) + tau * neg_entropy(pi_SA)
    )
    return expected_value(g_S, rho_S)


Surrogate = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float],
    torch.Tensor,
]

PENALTY_SURROGATES: dict[str, Surrogate] = {
    "value": value_penalty_surrogate,
    "bellman": bellman_penalty_surrogate,
}
