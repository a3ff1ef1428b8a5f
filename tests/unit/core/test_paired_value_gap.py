"""``core.a2c.paired_value_gap``: the first-order performance-difference estimate of p̂, checked on a
random tabular MDP against the exact value gap and against its exact counterpart (float64)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from pbrl_dist.core.a2c import paired_value_gap

S, A, GAMMA = 5, 3, 0.8


def _mdp(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (P (S, A, S), r (S, A), ρ (S,), the agent's logits (S, A))."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    return P, rng.normal(size=(S, A)), rng.dirichlet(np.ones(S)), rng.normal(size=(S, A))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _exact(
    P: np.ndarray, r: np.ndarray, pi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (V^π (S,), Q^π (S, A), M = (I − γ P_π)⁻¹)."""
    P_pi = np.einsum("sa,sat->st", pi, P)
    M = np.linalg.inv(np.eye(S) - GAMMA * P_pi)
    V = M @ (pi * r).sum(1)
    return V, r + GAMMA * P @ V, M


def _gap_and_surrogate(seed: int, eps: float) -> tuple[float, float]:
    """Return the exact V(π̂)(ρ) − V(π)(ρ) and the exact first-order surrogate, π̂ = π moved by eps."""
    P, r, rho, z = _mdp(seed)
    pi = _softmax(z)
    pi_hat = _softmax(z + eps * np.random.default_rng(seed + 1).normal(size=(S, A)))
    V, Q, M = _exact(P, r, pi)
    V_hat, _, _ = _exact(P, r, pi_hat)
    d = (1 - GAMMA) * rho @ M  # the discounted state occupancy of π from ρ (sums to 1)
    surrogate = float(d @ ((pi_hat - pi) * Q).sum(1)) / (1 - GAMMA)
    return float(rho @ (V_hat - V)), surrogate


@pytest.mark.parametrize("seed", [0, 2, 3, 4])
def test_paired_value_gap_target_is_the_value_gap_to_first_order(seed: int) -> None:
    """Halving the policy change quarters the surrogate's error against the exact gap (second
    order: ratios in (3, 5)), and at the smallest change the error is < 5% of the gap."""
    errs, gaps = [], []
    for eps in (0.1, 0.05, 0.025):
        gap, sur = _gap_and_surrogate(seed, eps)
        errs.append(abs(gap - sur))
        gaps.append(abs(gap))
    for big, small in itertools.pairwise(errs):
        assert 3.0 < big / small < 5.0
    assert errs[-1] < 0.05 * gaps[-1]


def test_paired_value_gap_matches_its_exact_counterpart_whatever_the_baseline() -> None:
    """Monte Carlo over 200k samples (s ~ d^π, a ~ π, G a sampled discounted return of 60 steps,
    γ^60 < 2e-6) against the exact surrogate: within 4 standard errors, with the critic V^π, a
    zero and a constant-offset baseline (a baseline changes the variance, not the mean)."""
    seed, eps, B, H = 3, 0.3, 200_000, 60
    P, r, rho, z = _mdp(seed)
    pi = _softmax(z)
    pi_hat = _softmax(z + eps * np.random.default_rng(seed + 1).normal(size=(S, A)))
    V, Q, M = _exact(P, r, pi)
    d = (1 - GAMMA) * rho @ M
    exact = float(d @ ((pi_hat - pi) * Q).sum(1)) / (1 - GAMMA)

    rng = np.random.default_rng(10)
    s0 = rng.choice(S, size=B, p=d)
    a0 = (rng.random(B)[:, None] > np.cumsum(pi[s0], 1)).sum(1)
    G, s, a = np.zeros(B), s0, a0
    for k in range(H):
        G += GAMMA**k * r[s, a]
        s = (rng.random(B)[:, None] > np.cumsum(P[s, a], 1)).sum(1).clip(max=S - 1)
        a = (rng.random(B)[:, None] > np.cumsum(pi[s], 1)).sum(1).clip(max=A - 1)
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    lp_hat, lp = t(np.log(pi_hat[s0, a0])), t(np.log(pi[s0, a0]))
    ratio_m1 = np.expm1(np.log(pi_hat[s0, a0]) - np.log(pi[s0, a0]))
    for baseline in (V[s0], np.zeros(B), V[s0] + 7.0):
        got = float(paired_value_gap(lp_hat, lp, t(G), t(baseline), gamma=GAMMA))
        se = float(np.std(ratio_m1 * (G - baseline)) / np.sqrt(B)) / (1 - GAMMA)
        assert abs(got - exact) < 4 * se, (got, exact, se)
    assert abs(exact) > 10 * se  # the check can fail: the effect is far above the noise


def test_paired_value_gap_is_zero_for_equal_policies_and_checks_shapes() -> None:
    lp = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    G = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    assert float(paired_value_gap(lp, lp, G, torch.zeros(3, dtype=torch.float64), gamma=0.9)) == 0.0
    with pytest.raises(ValueError, match="four equal 1-D shapes"):
        paired_value_gap(lp, lp[:2], G, G, gamma=0.9)
