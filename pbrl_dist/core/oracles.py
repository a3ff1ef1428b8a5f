"""Best-response oracles for the lower level: exact, soft value iteration, PMD and PG.

Every oracle has the same signature and works in logit space, so that the outer loop can warm-start
the next call from the previous output (Algorithm 1, step 1):

    oracle(P_SAS, r_SA, rho_S, gamma, tau, logits0_SA, *, num_steps, step_size, tol) -> logits_SA

``softmax(logits_SA)`` is the approximate best response π̂ ≈ π*_x. Oracles run without gradient
tracking: the penalty gradients of Lemmas 6-9 need π̂ only as a constant. Leading batch dimensions
are independent problems: each element's output is bitwise what it gets alone (early stops are per
element, ``core.mdp.keep_done``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from pbrl_dist.core.mdp import (
    evaluate_policy,
    keep_done,
    soft_policy_iteration,
    soft_value_iteration,
    softmax_policy_gradient,
)


class Oracle(Protocol):
    """Signature shared by every best-response oracle."""

    def __call__(
        self,
        P_SAS: torch.Tensor,
        r_SA: torch.Tensor,
        rho_S: torch.Tensor,
        gamma: float,
        tau: float,
        logits0_SA: torch.Tensor,
        *,
        num_steps: int,
        step_size: float,
        tol: float,
    ) -> torch.Tensor: ...


def exact_oracle(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    logits0_SA: torch.Tensor,
    *,
    num_steps: int,
    step_size: float,
    tol: float,
) -> torch.Tensor:
    """Return log π*_x from soft policy iteration warm-started at softmax(logits0).

    Math:
        π*_x = argmax_π V_{M_τ(x)}(π) (unique for τ > 0, Lemma 4).  ``num_steps`` caps the iterations;
        ``step_size`` is unused.
    """
    del rho_S, step_size
    sol = soft_policy_iteration(
        P_SAS, r_SA, gamma, tau, tol=tol, max_iter=num_steps, pi0=torch.softmax(logits0_SA, -1)
    )
    return torch.log(sol.pi_SA)


def value_iteration_oracle(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    logits0_SA: torch.Tensor,
    *,
    num_steps: int,
    step_size: float,
    tol: float,
) -> torch.Tensor:
    """Return log π* from soft value iteration (warm start: V of the soft-greedy of logits0).

    Math:
        v ← τ·logsumexp((r + γ·P v)/τ) until the bound γ/(1−γ)‖Δv‖_∞ ≤ tol or ``num_steps`` sweeps.
        The warm start uses v0(s) = τ·logsumexp(logits0(s)) − τ·log Σ_a exp(log π0) ... i.e. the value of
        the previous output is recovered by one exact evaluation.
    """
    del rho_S, step_size
    with torch.no_grad():
        v0, _ = evaluate_policy(P_SAS, r_SA, torch.softmax(logits0_SA, -1), gamma, tau)
    sol = soft_value_iteration(P_SAS, r_SA, gamma, tau, tol=tol, max_iter=num_steps, v0=v0)
    return torch.log(sol.pi_SA)


def pmd_oracle(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    logits0_SA: torch.Tensor,
    *,
    num_steps: int,
    step_size: float,
    tol: float,
) -> torch.Tensor:
    """Run ``num_steps`` steps of policy mirror descent with KL Bregman divergence and step η.

    Math:
        π^{t+1}(a|s) ∝ π^t(a|s)^{1/(1+ητ)} · exp(η·Q^{π^t}(s,a)/(1+ητ))      (C.35), closed form for entropy.

    Reference:
        Shen, Yang & Chen 2024/25, App. C.7 (C.35)-(C.36); linear convergence (Lan 2023).

    Returns:
        log π^T (normalized logits); stops early when the policy stops moving (max |Δ log π| ≤ tol),
        per batch element (an element keeps the policy at which it stopped while the others go on).
    """
    del rho_S
    eta = step_size
    with torch.no_grad():
        log_pi = torch.log_softmax(logits0_SA, -1)
        done = torch.zeros((), dtype=torch.bool)
        for _ in range(num_steps):
            _, q = evaluate_policy(P_SAS, r_SA, log_pi.exp(), gamma, tau)
            new = torch.log_softmax((log_pi + eta * q) / (1.0 + eta * tau), -1)
            delta = (new - log_pi).abs().amax((-2, -1))
            log_pi = keep_done(done, log_pi, new)
            done = done | (delta <= tol)
            if bool(done.all()):
                break
    return log_pi


def pg_oracle(
    P_SAS: torch.Tensor,
    r_SA: torch.Tensor,
    rho_S: torch.Tensor,
    gamma: float,
    tau: float,
    logits0_SA: torch.Tensor,
    *,
    num_steps: int,
    step_size: float,
    tol: float,
    grad_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run ``num_steps`` steps of softmax policy gradient ascent on V_{M_τ(x)}.

    Math:
        y^{t+1} = y^t + β·∇_y V_{M_τ(x)}(π_{y^t})      (C.37); exact gradient unless ``grad_fn`` supplies an
        estimate (e.g. REINFORCE from ``core.mc``).

    Returns:
        the final logits (not normalized).
    """
    del tol
    with torch.no_grad():
        y = logits0_SA.clone()
        for _ in range(num_steps):
            g = (
                softmax_policy_gradient(P_SAS, r_SA, y, rho_S, gamma, tau)
                if grad_fn is None
                else grad_fn(y)
            )
            y = y + step_size * g
    return y


ORACLES: dict[str, Oracle] = {
    "exact": exact_oracle,
    "vi": value_iteration_oracle,
    "pmd": pmd_oracle,
    "pg": pg_oracle,
}
