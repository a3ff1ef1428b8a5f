"""Every oracle converges to the soft-optimal policy, and warm starts cut the work."""

from __future__ import annotations

import itertools

import pytest
import torch

from pbrl_dist.core import mdp
from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.testing import random_logits, random_mdp

GAMMA, TAU = 0.8, 0.3


@pytest.mark.parametrize(
    ("name", "steps", "lr", "atol"),
    [
        ("exact", 50, 1.0, 1e-12),
        ("vi", 10_000, 1.0, 1e-9),
        ("pmd", 200, 5.0, 1e-10),
        ("pg", 4000, 2.0, 1e-4),
    ],
)
def test_oracle_converges_to_soft_optimum(name: str, steps: int, lr: float, atol: float) -> None:
    P, r, rho = random_mdp(5, 3, seed=3)
    star = mdp.soft_policy_iteration(P, r, GAMMA, TAU, tol=1e-14)
    logits = ORACLES[name](
        P,
        r,
        rho,
        GAMMA,
        TAU,
        torch.zeros(5, 3, dtype=torch.float64),
        num_steps=steps,
        step_size=lr,
        tol=0.0,
    )
    torch.testing.assert_close(torch.softmax(logits, -1), star.pi_SA, rtol=0, atol=atol)


def test_pmd_is_a_contraction_towards_the_optimum() -> None:
    """PMD converges linearly: each step shrinks the distance to π* (Lan 2023)."""
    P, r, rho = random_mdp(5, 3, seed=4)
    star = mdp.soft_policy_iteration(P, r, GAMMA, TAU, tol=1e-14)
    logits = random_logits(5, 3, seed=4)
    errs = []
    for _ in range(6):
        logits = ORACLES["pmd"](P, r, rho, GAMMA, TAU, logits, num_steps=1, step_size=1.0, tol=0.0)
        errs.append(float((torch.softmax(logits, -1) - star.pi_SA).abs().max()))
    assert all(b < a for a, b in itertools.pairwise(errs)), errs


def test_warm_start_needs_fewer_value_iteration_sweeps() -> None:
    P, r, _ = random_mdp(6, 3, seed=5)
    star = mdp.soft_value_iteration(P, r, GAMMA, TAU, tol=1e-12)
    r2 = r + 1e-3  # the next outer iteration's slightly different MDP
    cold = mdp.soft_value_iteration(P, r2, GAMMA, TAU, tol=1e-10, max_iter=40)
    warm = mdp.soft_value_iteration(P, r2, GAMMA, TAU, tol=1e-10, max_iter=40, v0=star.v_S)
    ref = mdp.soft_value_iteration(P, r2, GAMMA, TAU, tol=1e-13)
    assert (warm.v_S - ref.v_S).abs().max() < 1e-2 * (cold.v_S - ref.v_S).abs().max()
