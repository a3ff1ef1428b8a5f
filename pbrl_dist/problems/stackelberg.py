"""Stackelberg Markov game (paper eq. 2.4-2.5, 6.1; Figure 1; MATH.md §6.1, §7.1).

Leader policy π = softmax(x) over A, follower policy σ = softmax(y) over B, joint transition P(s'|s,a,b),
rewards r_l, r_f. The leader is unregularized (PROPOSAL τ_l = 0); the follower maximizes its
entropy-regularized value, so for a fixed leader it faces the MDP

    M_τ(x) = {S, B, r_x, P_x, τ·h},   r_x(s,b) = Σ_a π_x(a|s)·r_f(s,a,b),   P_x(s'|s,b) = Σ_a π_x(a|s)·P(s'|s,a,b),

which is differentiable in x. Upper objective f(x, σ) = −V_l(π_x, σ).
Exact metrics: leader return Σ_s ρ(s)·V_l(s) and follower gap Σ_s ρ(s)·(V*_f(s) − V_f(s)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pbrl_dist.core import mc
from pbrl_dist.core.mdp import evaluate_joint_policy, expected_value, neg_entropy
from pbrl_dist.core.penalties import value_penalty
from pbrl_dist.core.types import DTYPE, generator
from pbrl_dist.problems.base import transition_floor
from pbrl_dist.problems.registry import ProblemSpec, register_problem


@dataclass(frozen=True)
class StackelbergGame:
    """Tensors of one random game (batch dimensions allowed in front)."""

    P_SABS: torch.Tensor
    r_leader_SAB: torch.Tensor
    r_follower_SAB: torch.Tensor
    rho_S: torch.Tensor
    gamma: float
    tau: float


def make_game(
    *,
    num_states: int,
    num_leader_actions: int,
    num_follower_actions: int,
    sparsity: float,
    gamma: float,
    tau: float,
    game: int,
) -> StackelbergGame:
    """Draw random game number ``game`` (MATH.md §7.1).

    Math:
        P(·|s,a,b) = u/Σu with u ~ U[0,1]^S;  r_l, r_f ~ U[0,1] with entries < ``sparsity`` set to 0;  ρ uniform.
    """
    gen = generator(0, "stackelberg", game)
    S, A, B = num_states, num_leader_actions, num_follower_actions
    P = torch.rand(S, A, B, S, generator=gen, dtype=DTYPE)
    P = P / P.sum(-1, keepdim=True)
    r_l = torch.rand(S, A, B, generator=gen, dtype=DTYPE)
    r_f = torch.rand(S, A, B, generator=gen, dtype=DTYPE)
    r_l = torch.where(r_l < sparsity, torch.zeros_like(r_l), r_l)
    r_f = torch.where(r_f < sparsity, torch.zeros_like(r_f), r_f)
    rho = torch.full((S,), 1.0 / S, dtype=DTYPE)
    return StackelbergGame(P, r_l, r_f, rho, gamma, tau)


def stack_games(games: list[StackelbergGame]) -> StackelbergGame:
    """Stack games of equal size, γ and τ into one batched game (leading dimension G, in order).

    Raises ``ValueError`` (one line: what differs) when the games cannot share a batch.
    """
    if not games:
        raise ValueError("no games to stack")
    g0 = games[0]
    for g in games[1:]:
        if g.P_SABS.shape != g0.P_SABS.shape:
            raise ValueError(
                f"game sizes differ: {tuple(g.P_SABS.shape)} vs {tuple(g0.P_SABS.shape)} (S, A, B, S)"
            )
        if (g.gamma, g.tau) != (g0.gamma, g0.tau):
            raise ValueError(
                f"problem.gamma/tau differ: ({g.gamma}, {g.tau}) vs ({g0.gamma}, {g0.tau})"
            )
    return StackelbergGame(
        torch.stack([g.P_SABS for g in games]),
        torch.stack([g.r_leader_SAB for g in games]),
        torch.stack([g.r_follower_SAB for g in games]),
        torch.stack([g.rho_S for g in games]),
        g0.gamma,
        g0.tau,
    )


def follower_mdp(game: StackelbergGame, pi_SA: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the follower's MDP (P_x [S,B,S], r_x [S,B]) induced by leader policy π (differentiable).

    Math:
        P_x(s'|s,b) = Σ_a π(a|s)·P(s'|s,a,b),   r_x(s,b) = Σ_a π(a|s)·r_f(s,a,b); written as a broadcast
        product summed over a (not ``einsum``), so a batched game gives each game its solo bits.
    """
    P_x = (pi_SA[..., None, None] * game.P_SABS).sum(-3)
    r_x = (pi_SA[..., None] * game.r_follower_SAB).sum(-2)
    return P_x, r_x


def leader_value(
    game: StackelbergGame, pi_SA: torch.Tensor, sigma_SB: torch.Tensor
) -> torch.Tensor:
    """Return V_l^{π,σ}(s), the leader's unregularized value (differentiable)."""
    v, _ = evaluate_joint_policy(game.P_SABS, game.r_leader_SAB, pi_SA, sigma_SB, game.gamma)
    return v


def follower_value(
    game: StackelbergGame, pi_SA: torch.Tensor, sigma_SB: torch.Tensor
) -> torch.Tensor:
    """Return V_f^{π,σ}(s), the follower's entropy-regularized value (differentiable)."""
    v, _ = evaluate_joint_policy(
        game.P_SABS, game.r_follower_SAB, pi_SA, sigma_SB, game.gamma,
        game.tau * neg_entropy(sigma_SB),
    )  # fmt: skip
    return v


def leader_return(
    game: StackelbergGame, pi_SA: torch.Tensor, sigma_SB: torch.Tensor
) -> torch.Tensor:
    """Return Σ_s ρ(s)·V_l^{π,σ}(s)."""
    return expected_value(leader_value(game, pi_SA, sigma_SB), game.rho_S)


def follower_gap(
    game: StackelbergGame, pi_SA: torch.Tensor, sigma_SB: torch.Tensor
) -> torch.Tensor:
    """Return Σ_s ρ(s)·(V*_f(s) − V_f^{π,σ}(s)) ≥ 0, the value penalty of σ in M_τ(x)."""
    P_x, r_x = follower_mdp(game, pi_SA)
    return value_penalty(P_x, r_x, sigma_SB, game.rho_S, game.gamma, game.tau)


class StackelbergProblem:
    """The Stackelberg game as a ``BilevelProblem``: x = leader logits (S, A), y = follower logits (S, B).

    A batched game (``stack_games``) gives x (G, S, A), y (G, S, B) and metrics as lists over the games;
    every exact piece gives game g bitwise what the solo game g gives (``stack_problems``).
    """

    def __init__(self, game: StackelbergGame) -> None:
        """Wrap a (possibly batched) game."""
        self.game = game
        self.rho_S = game.rho_S
        self.gamma = game.gamma
        self.tau = game.tau

    # --- exact pieces -------------------------------------------------------------------------
    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Return x, y ~ scale·N(0, 1) from the trial seed."""
        gen = generator(seed, "init")
        *batch, S, A, B, _ = self.game.P_SABS.shape
        x = scale * torch.randn((*batch, S, A), generator=gen, dtype=DTYPE)
        y = scale * torch.randn((*batch, S, B), generator=gen, dtype=DTYPE)
        return x, y

    def lower_mdp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the follower's MDP induced by π_x."""
        return follower_mdp(self.game, torch.softmax(x, -1))

    def upper_objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return f(x, σ_y) = −Σ_s ρ(s)·V_l(s)."""
        return -leader_return(self.game, torch.softmax(x, -1), torch.softmax(y, -1))

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Return exact leader return and follower gap (lists when games are batched)."""
        with torch.no_grad():
            pi, sigma = torch.softmax(x, -1), torch.softmax(y, -1)
            lr = leader_return(self.game, pi, sigma)
            gap = follower_gap(self.game, pi, sigma)
        return {"upper/leader_return": lr.tolist(), "lower/gap": gap.tolist()}

    def final_state(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """Return every array needed to recompute the leader return and follower gap."""
        g = self.game
        m = self.metrics(x, y)
        return {
            "P": g.P_SABS.numpy(),
            "r_leader": g.r_leader_SAB.numpy(),
            "r_follower": g.r_follower_SAB.numpy(),
            "gamma": np.asarray(g.gamma, dtype=np.float64),
            "tau": np.asarray(g.tau, dtype=np.float64),
            "rho": g.rho_S.numpy(),
            "x": x.detach().numpy(),
            "y": y.detach().numpy(),
            "pi_leader": torch.softmax(x, -1).detach().numpy(),
            "pi_follower": torch.softmax(y, -1).detach().numpy(),
            "leader_return": np.asarray(m["upper/leader_return"]),
            "follower_gap": np.asarray(m["lower/gap"]),
        }

    # --- Monte Carlo pieces -------------------------------------------------------------------
    def mc_chunk(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        pi_hat_SA: torch.Tensor | None,
        *,
        parts: tuple[str, ...],
        num_rollouts: int,
        horizon: int,
        seed: int,
    ) -> dict[str, Any]:
        """Return REINFORCE pieces from ``num_rollouts`` rollouts per part (single game only).

        Parts (σ = softmax(y); V is the follower's regularized value, i.e. the lower value V_{M_τ(x)}):
            ``joint``: rollouts of (π_x, σ) from ρ →
                ``gx_f`` ≈ ∇_x f = −∇_x V_l, ``gy_f`` ≈ ∇_y f, ``gx_v`` ≈ ∇_x V_{M_τ(x)}(σ) (Lemma 7(b)),
                ``gy_v`` ≈ ∇_y V_{M_τ(x)}(σ), ``v`` ≈ V_{M_τ(x)}(σ);
            ``hat``: rollouts of (π_x, π̂) from ρ → ``gx_v_hat`` ≈ ∇_x V_{M_τ(x)}(π̂), ``v_hat``;
            ``q_hat``: ``num_rollouts`` rollouts of (π_x, π̂) from every (s, b) →
                ``q_hat`` ≈ Q^π̂_x(s, b) (S, B) and ``gx_q_hat`` ≈ ∇_x Q^π̂_x(s, b) (S, B, S, A)   (Lemma 9(b)).
        """
        g = self.game
        if g.P_SABS.dim() != 4:
            raise ValueError("Monte Carlo estimates are per game; batch games only in exact mode")
        gen = generator(seed, "mc_chunk")
        pi, sigma = torch.softmax(x, -1), torch.softmax(y, -1)
        S, A, B = g.r_leader_SAB.shape
        gamma, tau = g.gamma, g.tau
        out: dict[str, Any] = {}

        def follower_rewards(ro: mc.Rollouts, pol_SB: torch.Tensor) -> torch.Tensor:
            return g.r_follower_SAB[ro.s_NT, ro.a_NT, ro.b_NT] - tau * torch.log(
                pol_SB[ro.s_NT, ro.b_NT]
            )

        if "joint" in parts:
            s0 = mc.sample_initial_states(g.rho_S, num_rollouts, gen)
            ro = mc.sample_game(g.P_SABS, pi, sigma, s0, horizon, gen)
            r_l = g.r_leader_SAB[ro.s_NT, ro.a_NT, ro.b_NT]
            r_f = follower_rewards(ro, sigma)
            out["gx_f"] = -mc.reinforce_grad(ro.s_NT, ro.a_NT, pi, r_l, gamma)
            out["gy_f"] = -mc.reinforce_grad(ro.s_NT, ro.b_NT, sigma, r_l, gamma)
            out["gx_v"] = mc.reinforce_grad(ro.s_NT, ro.a_NT, pi, r_f, gamma)
            out["gy_v"] = mc.reinforce_grad(ro.s_NT, ro.b_NT, sigma, r_f, gamma)
            out["v"] = mc.reward_to_go(r_f, gamma)[:, 0].mean()
        if "hat" in parts:
            assert pi_hat_SA is not None
            s0 = mc.sample_initial_states(g.rho_S, num_rollouts, gen)
            ro = mc.sample_game(g.P_SABS, pi, pi_hat_SA, s0, horizon, gen)
            r_f = follower_rewards(ro, pi_hat_SA)
            out["gx_v_hat"] = mc.reinforce_grad(ro.s_NT, ro.a_NT, pi, r_f, gamma)
            out["v_hat"] = mc.reward_to_go(r_f, gamma)[:, 0].mean()
        if "q_hat" in parts:
            assert pi_hat_SA is not None
            pair = torch.arange(S * B).repeat_interleave(num_rollouts)
            s0, b0 = pair // B, pair % B
            ro = mc.sample_game(g.P_SABS, pi, pi_hat_SA, s0, horizon, gen, b0_N=b0)
            r_f = follower_rewards(ro, pi_hat_SA)
            r_f[:, 0] = g.r_follower_SAB[
                ro.s_NT[:, 0], ro.a_NT[:, 0], ro.b_NT[:, 0]
            ]  # Q excludes step-0 reg
            G = mc.reward_to_go(r_f, gamma)
            out["q_hat"] = G[:, 0].reshape(S * B, num_rollouts).mean(-1).reshape(S, B)
            w = mc.discounts(horizon, gamma) * G
            gq = mc.softmax_score_grad(ro.s_NT, ro.a_NT, pi, w, group_N=pair, num_groups=S * B)
            out["gx_q_hat"] = gq.reshape(S, B, S, A)
        return out


def stack_problems(problems: list[StackelbergProblem]) -> StackelbergProblem:
    """``ProblemSpec.stack``: one problem over the stacked games of ``problems`` (lane i = problems[i]).

    Raises ``ValueError`` when the games differ in size, γ or τ.
    """
    return StackelbergProblem(stack_games([p.game for p in problems]))


@dataclass
class StackelbergConfig:
    """Random Stackelberg game of MATH.md §7.1 (sizes, sparsity, γ, τ are PROPOSED defaults).

    Attributes:
        name: problem registry key.
        num_states: |S|.
        num_leader_actions: |A|.
        num_follower_actions: |B|.
        sparsity: rewards drawn U[0,1] below this threshold are set to 0.
        gamma: discount γ ∈ [0, 1).
        tau: follower entropy temperature τ (> 0 for the Bellman penalty).
        game: index of the random game (the game's tensors depend on this only).
    """

    name: str = "stackelberg"
    num_states: int = 10
    num_leader_actions: int = 5
    num_follower_actions: int = 5
    sparsity: float = 0.7
    gamma: float = 0.9
    tau: float = 0.1
    game: int = 0

    def checks(self) -> list[tuple[str, bool, str]]:
        """(dotted key, ok, message) for this problem's own range rules."""
        return [("problem.sparsity", 0 <= self.sparsity <= 1, "must be in [0, 1]")]


def build(cfg: StackelbergConfig) -> StackelbergProblem:
    """Build the problem of a validated config."""
    return StackelbergProblem(
        make_game(
            num_states=cfg.num_states,
            num_leader_actions=cfg.num_leader_actions,
            num_follower_actions=cfg.num_follower_actions,
            sparsity=cfg.sparsity,
            gamma=cfg.gamma,
            tau=cfg.tau,
            game=cfg.game,
        )
    )


SPEC = register_problem(
    ProblemSpec(
        name="stackelberg",
        config=StackelbergConfig,
        build=build,
        algos=("pbrl", "indep_pg"),
        metrics={
            "upper/leader_return": "Σ_s ρ(s)·V_l^{π_x,σ_y}(s), leader unregularized, exact",
            "lower/gap": "Σ_s ρ(s)·(V*_f(s) − V_f^{π_x,σ_y}(s)), follower entropy-regularized, exact",
        },
        higher_is_better=("upper/leader_return",),
        progress=("upper/leader_return", "lower/gap"),
        figure=("fig1_stackelberg.png", "pbrl_dist.report.figures:fig1_stackelberg"),
        memory_floor=lambda p, m: transition_floor(
            p.num_states, p.num_leader_actions * p.num_follower_actions
        ),
        stack=stack_problems,
    )
)
