"""Incentive design over a zero-sum Markov game (paper eq. 5.5, 6.2; Figure 3; MATH.md §6.4, §7.3).

Two players share the transition P and the zero-sum reward r; a designer adds the incentive sigmoid(x):

    players:  M_τ(x) = {S, A1 × A2, r_x = r + sigmoid(x), P, τ·h},  player 1 maximizes, player 2 minimizes;
    designer: min_x  −V^d(π) + c(x)   s.t.  π ∈ NE(x),   V^d(π) = Σ_s ρ(s)·E_{π, P^d}[Σ_t γ^t r^d(s_t, a_t)].

P^d and r^d are the designer's own kernel and reward (random, like P and r); c(x) = cost_coef·Σ sigmoid(x)
(PROPOSED default cost_coef = 0). Exact metrics: designer return V^d and the NI gap ψ (5.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pbrl_dist.core import mc
from pbrl_dist.core.mdp import evaluate_joint_policy, expected_value
from pbrl_dist.core.types import DTYPE, generator
from pbrl_dist.core.zerosum import ni_function
from pbrl_dist.problems.base import transition_floor
from pbrl_dist.problems.registry import ProblemSpec, register_problem


@dataclass(frozen=True)
class IncentiveGame:
    """Tensors of one incentive-design instance."""

    P_SABS: torch.Tensor
    r_SAB: torch.Tensor
    P_designer_SABS: torch.Tensor
    r_designer_SAB: torch.Tensor
    rho_S: torch.Tensor
    gamma: float
    tau: float
    cost_coef: float


def make_game(
    *,
    num_states: int,
    num_actions1: int,
    num_actions2: int,
    gamma: float,
    tau: float,
    cost_coef: float,
    game: int,
) -> IncentiveGame:
    """Draw instance ``game``: P, P^d normalized U[0,1]; r, r^d ~ U[0,1]; ρ uniform (MATH.md §7.3)."""
    gen = generator(0, "incentive", game)
    S, A, B = num_states, num_actions1, num_actions2

    def kernel() -> torch.Tensor:
        P = torch.rand(S, A, B, S, generator=gen, dtype=DTYPE)
        return P / P.sum(-1, keepdim=True)

    P, P_d = kernel(), kernel()
    r = torch.rand(S, A, B, generator=gen, dtype=DTYPE)
    r_d = torch.rand(S, A, B, generator=gen, dtype=DTYPE)
    rho = torch.full((S,), 1.0 / S, dtype=DTYPE)
    return IncentiveGame(P, r, P_d, r_d, rho, gamma, tau, cost_coef)


def designer_return(
    game: IncentiveGame, pi1_SA: torch.Tensor, pi2_SB: torch.Tensor
) -> torch.Tensor:
    """Return V^d(π) = Σ_s ρ(s)·V^d(s) under (P^d, r^d) and the joint policy π1 × π2 (differentiable)."""
    v, _ = evaluate_joint_policy(
        game.P_designer_SABS, game.r_designer_SAB, pi1_SA, pi2_SB, game.gamma
    )
    return expected_value(v, game.rho_S)


class IncentiveProblem:
    """Incentive design as a bilevel problem with a zero-sum lower level.

    Parameters: x (S, A1, A2) incentive logits; θ1 (S, A1), θ2 (S, A2) the players' softmax logits.
    The objective and metrics are per game (lists over a batch of games), but the spec has no
    ``stack``: the incentive loops (``algos/incentive.py``) run one instance at a time.
    """

    def __init__(self, game: IncentiveGame) -> None:
        """Wrap an instance."""
        self.game = game
        self.rho_S = game.rho_S
        self.gamma = game.gamma
        self.tau = game.tau

    def init_params(
        self, seed: int, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return x = 0 (incentive sigmoid(0) = 1/2 everywhere) and θ1, θ2 ~ scale·N(0, 1)."""
        gen = generator(seed, "init")
        S, A, B = self.game.r_SAB.shape
        x = torch.zeros(S, A, B, dtype=DTYPE)
        th1 = scale * torch.randn(S, A, generator=gen, dtype=DTYPE)
        th2 = scale * torch.randn(S, B, generator=gen, dtype=DTYPE)
        return x, th1, th2

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the players' reward r_x = r + sigmoid(x) (differentiable)."""
        return self.game.r_SAB + torch.sigmoid(x)

    def upper_objective(
        self, x: torch.Tensor, th1: torch.Tensor, th2: torch.Tensor
    ) -> torch.Tensor:
        """Return f(x, π) = −V^d(π) + c(x) (one value per game when batched)."""
        pi1, pi2 = torch.softmax(th1, -1), torch.softmax(th2, -1)
        cost = self.game.cost_coef * torch.sigmoid(x).sum((-3, -2, -1))
        return -designer_return(self.game, pi1, pi2) + cost

    def metrics(self, x: torch.Tensor, th1: torch.Tensor, th2: torch.Tensor) -> dict[str, Any]:
        """Return the exact designer return and NI gap ψ (lists over the games when batched)."""
        with torch.no_grad():
            pi1, pi2 = torch.softmax(th1, -1), torch.softmax(th2, -1)
            g = self.game
            psi = ni_function(g.P_SABS, self.reward(x), pi1, pi2, g.rho_S, g.gamma, g.tau)
            return {
                "upper/designer_return": designer_return(g, pi1, pi2).tolist(),
                "lower/ni_gap": psi.tolist(),
            }

    def mc_chunk(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        pi_hat: torch.Tensor | None,
        *,
        parts: tuple[str, ...],
        num_rollouts: int,
        horizon: int,
        seed: int,
    ) -> dict[str, Any]:
        """Return REINFORCE pieces of the NI estimator (5.12) and of ∇f from ``num_rollouts`` rollouts per batch.

        ``y`` = [θ1 | θ2] and ``pi_hat`` = [π̂1 | π̂2] are concatenated along the action axis (the
        ``ChunkRunner`` interface carries one tensor each). V below is the players' regularized value (5.1):
        per-step sample reward r_x − τ·log π1(a|s) + τ·log π2(b|s). Parts:
            ``ni``: rollouts of (π̂1, π2) → ``gx_v1`` ≈ ∇_x V(π̂1, π2), ``g2_v1`` ≈ ∇_θ2 V(π̂1, π2), ``v1``;
                    rollouts of (π1, π̂2) → ``gx_v2`` ≈ ∇_x V(π1, π̂2), ``g1_v2`` ≈ ∇_θ1 V(π1, π̂2), ``v2``;
            ``designer``: rollouts of (π1, π2) under P^d → ``g1_f``, ``g2_f`` ≈ ∇_θ(−V^d), ``vd`` ≈ V^d.
        ∇_x V uses ∂r_x/∂x = sigmoid'(x) and the discounted visit counts (Lemma 7(a) form).
        """
        g = self.game
        S, A, B = g.r_SAB.shape
        gen = generator(seed, "mc_chunk")
        th1, th2 = y[..., :A], y[..., A:]
        pi1, pi2 = torch.softmax(th1, -1), torch.softmax(th2, -1)
        r_x = self.reward(x)
        dsig = (torch.sigmoid(x) * (1 - torch.sigmoid(x))).reshape(-1)
        out: dict[str, Any] = {}

        def players(
            p1: torch.Tensor, p2: torch.Tensor
        ) -> tuple[mc.Rollouts, torch.Tensor, torch.Tensor]:
            s0 = mc.sample_initial_states(g.rho_S, num_rollouts, gen)
            ro = mc.sample_game(g.P_SABS, p1, p2, s0, horizon, gen)
            rew = (
                r_x[ro.s_NT, ro.a_NT, ro.b_NT]
                - g.tau * torch.log(p1[ro.s_NT, ro.a_NT])
                + g.tau * torch.log(p2[ro.s_NT, ro.b_NT])
            )
            idx = (ro.s_NT * A + ro.a_NT) * B + ro.b_NT
            gx = (mc.discounted_counts(idx, S * A * B, g.gamma) * dsig).reshape(S, A, B)
            return ro, rew, gx

        if "ni" in parts:
            assert pi_hat is not None
            h1, h2 = pi_hat[..., :A], pi_hat[..., A:]
            ro, rew, out["gx_v1"] = players(h1, pi2)
            out["g2_v1"] = mc.reinforce_grad(ro.s_NT, ro.b_NT, pi2, rew, g.gamma)
            out["v1"] = mc.reward_to_go(rew, g.gamma)[:, 0].mean()
            ro, rew, out["gx_v2"] = players(pi1, h2)
            out["g1_v2"] = mc.reinforce_grad(ro.s_NT, ro.a_NT, pi1, rew, g.gamma)
            out["v2"] = mc.reward_to_go(rew, g.gamma)[:, 0].mean()
        if "designer" in parts:
            s0 = mc.sample_initial_states(g.rho_S, num_rollouts, gen)
            ro = mc.sample_game(g.P_designer_SABS, pi1, pi2, s0, horizon, gen)
            rd = g.r_designer_SAB[ro.s_NT, ro.a_NT, ro.b_NT]
            out["g1_f"] = -mc.reinforce_grad(ro.s_NT, ro.a_NT, pi1, rd, g.gamma)
            out["g2_f"] = -mc.reinforce_grad(ro.s_NT, ro.b_NT, pi2, rd, g.gamma)
            out["vd"] = mc.reward_to_go(rd, g.gamma)[:, 0].mean()
        return out

    def final_state(
        self, x: torch.Tensor, th1: torch.Tensor, th2: torch.Tensor
    ) -> dict[str, np.ndarray]:
        """Return every array needed to recompute the designer return and the NI gap."""
        g = self.game
        m = self.metrics(x, th1, th2)
        return {
            "P": g.P_SABS.numpy(),
            "r": g.r_SAB.numpy(),
            "P_designer": g.P_designer_SABS.numpy(),
            "r_designer": g.r_designer_SAB.numpy(),
            "x": x.detach().numpy(),
            "gamma": np.asarray(g.gamma, dtype=np.float64),
            "tau": np.asarray(g.tau, dtype=np.float64),
            "rho": g.rho_S.numpy(),
            "pi1": torch.softmax(th1, -1).detach().numpy(),
            "pi2": torch.softmax(th2, -1).detach().numpy(),
            "designer_return": np.asarray(m["upper/designer_return"], dtype=np.float64),
            "ni_gap": np.asarray(m["lower/ni_gap"], dtype=np.float64),
        }


@dataclass
class IncentiveConfig:
    """Incentive-design instance of MATH.md §7.3 (sizes, γ, τ are PROPOSED defaults).

    Attributes:
        name: problem registry key.
        num_states: |S|.
        num_actions1: |A1|.
        num_actions2: |A2|.
        gamma: discount γ ∈ [0, 1).
        tau: entropy temperature τ > 0 (the NI penalty needs unique best responses).
        cost_coef: designer cost c(x) = cost_coef·Σ sigmoid(x) (PROPOSED 0).
        game: index of the random instance.
    """

    name: str = "incentive"
    num_states: int = 5
    num_actions1: int = 3
    num_actions2: int = 3
    gamma: float = 0.8
    tau: float = 0.1
    cost_coef: float = 0.0
    game: int = 0

    def checks(self) -> list[tuple[str, bool, str]]:
        """Range checks beyond the generic ones."""
        return [
            (
                "problem.tau",
                self.tau > 0,
                "must be > 0 (the NI penalty needs unique best responses)",
            ),
            ("problem.cost_coef", self.cost_coef >= 0, "must be ≥ 0"),
        ]


def build(cfg: IncentiveConfig) -> IncentiveProblem:
    """Build the problem of a validated config."""
    return IncentiveProblem(
        make_game(
            num_states=cfg.num_states,
            num_actions1=cfg.num_actions1,
            num_actions2=cfg.num_actions2,
            gamma=cfg.gamma,
            tau=cfg.tau,
            cost_coef=cfg.cost_coef,
            game=cfg.game,
        )
    )


SPEC = register_problem(
    ProblemSpec(
        name="incentive",
        config=IncentiveConfig,
        build=build,
        algos=("pbrl_ni", "metagrad", "start_line"),
        metrics={
            "upper/designer_return": "designer return under (P^d, r^d) and the players' joint policy, exact",
            "lower/ni_gap": "Nikaido–Isoda function ψ(x, π) of the players' policies, exact",
        },
        higher_is_better=("upper/designer_return",),
        progress=("upper/designer_return", "lower/ni_gap"),
        figure=("fig3_incentive.png", "pbrl_dist.report.figures:fig3_incentive"),
        memory_floor=lambda p, m: transition_floor(p.num_states, p.num_actions1 * p.num_actions2),
    )
)
