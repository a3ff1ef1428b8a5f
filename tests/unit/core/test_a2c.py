"""Tests for the A2C losses and the PBRL coupling terms of ``pbrl_dist.core.a2c``."""

from __future__ import annotations

import math

import pytest
import torch

from pbrl_dist.core.a2c import (
    a2c_loss,
    nstep_returns,
    segment_score_loss,
    upper_coef,
    value_gap_surrogate,
)
from pbrl_dist.core.types import generator
from pbrl_dist.testing import fd_grad


def test_nstep_returns_hand_case() -> None:
    # One env, T = 3, a terminal at t = 1: R_2 = r_2 + γ·V, R_1 = r_1 (cut), R_0 = r_0 + γ·R_1.
    g = 0.9
    r = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    d = torch.tensor([[False], [True], [False]])
    v = torch.tensor([10.0], dtype=torch.float64)
    R = nstep_returns(r, d, v, gamma=g)
    torch.testing.assert_close(R[:, 0], torch.tensor([1 + g * 2, 2.0, 3 + g * 10], dtype=R.dtype))


def test_nstep_returns_no_dones_is_discounted_sum() -> None:
    g = 0.5
    r = torch.ones(4, 2, dtype=torch.float64)
    R = nstep_returns(
        r, torch.zeros(4, 2, dtype=torch.bool), torch.zeros(2, dtype=torch.float64), gamma=g
    )
    torch.testing.assert_close(R[0], torch.full((2,), sum(g**t for t in range(4)), dtype=R.dtype))


def test_a2c_loss_gradients_match_hand_derivation() -> None:
    """∂L/∂logits = −Â·(onehot(a) − π)/n − c_H·∂H/∂logits/n and ∂L/∂V = −2·c_v·(R − V)/n."""
    gen = generator(0, "a2c")
    T, N, A = 3, 2, 4
    logits = torch.randn(T, N, A, generator=gen, dtype=torch.float64, requires_grad=True)
    values = torch.randn(T, N, generator=gen, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(A, (T, N), generator=gen)
    returns = torch.randn(T, N, generator=gen, dtype=torch.float64)
    out = a2c_loss(logits, values, actions, returns, vf_coef=0.5, ent_coef=0.0)
    out.loss.backward()
    n = T * N
    pi = torch.softmax(logits.detach(), -1)
    adv = returns - values.detach()
    onehot = torch.nn.functional.one_hot(actions, A).to(pi.dtype)
    torch.testing.assert_close(logits.grad, -adv.unsqueeze(-1) * (onehot - pi) / n)
    torch.testing.assert_close(values.grad, -2 * 0.5 * (returns - values.detach()) / n)
    want = float(((returns - values.detach()) ** 2).mean())
    assert math.isclose(float(out.value_loss.detach()), want)


def test_value_gap_surrogate_is_linear_and_zero_on_equal_samples() -> None:
    r = torch.tensor([0.1, -0.3, 0.5], dtype=torch.float64)
    assert float(value_gap_surrogate(r, r, gamma=0.9)) == 0.0
    r2 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert math.isclose(float(value_gap_surrogate(r2, r, gamma=0.9)), (1.5 - 0.1) / 0.1)


def test_segment_score_loss_gradient_is_centered_score_function() -> None:
    gen = generator(1, "score")
    B, H = 5, 3
    lp1 = torch.randn(B, H, generator=gen, dtype=torch.float64)
    lp2 = torch.randn(B, H, generator=gen, dtype=torch.float64)
    ell = torch.rand(B, generator=gen, dtype=torch.float64)
    g1 = fd_grad(lambda x: segment_score_loss(x, lp2, ell), lp1)
    expected = ((ell - ell.mean()) / (B * 2 * H)).unsqueeze(1).expand(B, H)
    torch.testing.assert_close(g1, expected, atol=1e-8, rtol=1e-6)  # FD of a linear map: ~1e-10
    # A constant loss carries no signal.
    assert float(segment_score_loss(lp1, lp2, torch.full((B,), 0.7, dtype=torch.float64))) == 0.0


def test_upper_coef_schedule() -> None:
    assert upper_coef(1.0, decay=0.5, every=10, num_updates=0) == 1.0
    assert upper_coef(1.0, decay=0.5, every=10, num_updates=9) == 1.0
    assert upper_coef(1.0, decay=0.5, every=10, num_updates=25) == 0.25


def test_shape_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="bootstrap_N"):
        nstep_returns(
            torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2), gamma=0.9
        )
    with pytest.raises(ValueError, match="bt_loss_B"):
        segment_score_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3))
