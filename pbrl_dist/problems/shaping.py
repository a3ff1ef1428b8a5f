"""Reward shaping as bilevel RL (paper Sec. 2.2, eq. 2.7; MATH.md §6.3).

Original task M_0 = {S, A, r, P}: a slippery chain whose only reward sits at its far end (sparse). The upper
level learns a shaping term, the lower level solves the shaped, entropy-regularized task:

    min_{x, y}  −V_{M_0}(π_y)   s.t.  y ∈ argmax V_{M_τ(x)}(π_y),   M_τ(x) = {S, A, r + κ·tanh(x), P, τ·h}.

x (S, A) is tabular and bounded through tanh (κ = ``shaping_scale``). The value and Bellman penalties apply
as they are (Lemma 7(a), 9(a): only the reward depends on x). Metrics: the original task's return of π_y,
the lower gap, and, to compare at an equal budget, the task return of a policy trained from scratch by
``retrain_iters`` exact policy-gradient steps on the learned shaped reward vs on the sparse reward alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pbrl_dist.core.mdp import evaluate_policy, expected_value, softmax_policy_gradient
from pbrl_dist.core.penalties import value_penalty
from pbrl_dist.core.types import DTYPE, generator
from pbrl_dist.problems.base import transition_floor
from pbrl_dist.problems.registry import ProblemSpec, register_problem


@dataclass
class ShapingConfig:
    """Sparse-reward chain and shaping parameterization (all PROPOSED; the paper runs no experiment).

    Attributes:
        name: problem registry key.
        num_states: chain length |S| (start at 0, reward at the last state).
        slip: probability that a move goes the other way.
        distractor: small reward for 'left' at the start state, a local optimum for myopic learners.
        gamma: discount.
        tau: lower-level entropy temperature.
        shaping_scale: κ, the shaped reward is r + κ·tanh(x).
        retrain_iters: PG steps of the equal-budget retraining comparison (0 disables it).
        retrain_lr: PG step of that comparison.
        game: index of the random perturbation of the chain's slip probabilities.
    """

    name: str = "shaping"
    num_states: int = 10
    slip: float = 0.1
    distractor: float = 0.05
    gamma: float = 0.95
    tau: float = 0.01
    shaping_scale: float = 0.5
    retrain_iters: int = 300
    retrain_lr: float = 1.0
    game: int = 0

    def checks(self) -> list[tuple[str, bool, str]]:
        """Range checks beyond the generic ones."""
        return [
            ("problem.slip", 0 <= self.slip < 0.5, "must be in [0, 0.5)"),
            ("problem.shaping_scale", self.shaping_scale > 0, "must be > 0"),
            ("problem.retrain_iters", self.retrain_iters >= 0, "must be ≥ 0"),
            ("problem.num_states", self.num_states >= 2, "must be ≥ 2"),
        ]


def make_chain(cfg: ShapingConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (P_SAS, r_SA, rho_S): actions 0 = left, 1 = right; reward 1 for 'right' at the last state,
    ``distractor`` for 'left' at the start."""
    S = cfg.num_states
    gen = generator(0, "shaping", cfg.game)
    slip = cfg.slip * (
        0.5 + torch.rand(S, generator=gen, dtype=DTYPE)
    )  # per-state slip around cfg.slip
    P = torch.zeros(S, 2, S, dtype=DTYPE)
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        P[s, 0, left] += 1 - slip[s]
        P[s, 0, right] += slip[s]
        P[s, 1, right] += 1 - slip[s]
        P[s, 1, left] += slip[s]
    r = torch.zeros(S, 2, dtype=DTYPE)
    r[S - 1, 1] = 1.0
    r[0, 0] = cfg.distractor
    rho = torch.zeros(S, dtype=DTYPE)
    rho[0] = 1.0
    return P, r, rho


class ShapingProblem:
    """Reward shaping as a ``BilevelProblem``: x = shaping logits (S, A), y = policy logits (S, A).

    A batched chain (``stack_problems``) gives x, y (G, S, A) and metrics as lists over the chains;
    every exact piece gives chain g bitwise what the solo chain g gives.
    """

    def __init__(
        self,
        cfg: ShapingConfig,
        chain: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Build the chain of ``cfg`` (or take ``chain`` = (P_SAS, r_SA, rho_S), e.g. stacked chains;
        then only the scalars of ``cfg`` are read: γ, τ, κ and the retraining settings)."""
        self.cfg = cfg
        self.P_SAS, self.r_SA, self.rho_S = make_chain(cfg) if chain is None else chain
        self.gamma, self.tau = cfg.gamma, cfg.tau

    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Return x = 0 (no shaping) and y ~ scale·N(0, 1)."""
        gen = generator(seed, "init")
        return torch.zeros_like(self.r_SA), scale * torch.randn(
            self.r_SA.shape, generator=gen, dtype=DTYPE
        )

    def shaped_reward(self, x: torch.Tensor) -> torch.Tensor:
        """Return r + κ·tanh(x)."""
        return self.r_SA + self.cfg.shaping_scale * torch.tanh(x)

    def lower_mdp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (P, r_x); only the reward depends on x."""
        return self.P_SAS, self.shaped_reward(x)

    def task_return(self, pi_SA: torch.Tensor) -> torch.Tensor:
        """Return V_{M_0}(π): the original sparse task, unregularized (differentiable)."""
        v, _ = evaluate_policy(self.P_SAS, self.r_SA, pi_SA, self.gamma, 0.0)
        return expected_value(v, self.rho_S)

    def upper_objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return f(x, π_y) = −V_{M_0}(π_y)."""
        return -self.task_return(torch.softmax(y, -1))

    def retrain(self, r_SA: torch.Tensor) -> Any:
        """Train a fresh uniform policy by ``retrain_iters`` exact PG steps on r; return its task return
        (a float, or a list over the chains when batched)."""
        y = torch.zeros_like(r_SA)
        for _ in range(self.cfg.retrain_iters):
            y = y + self.cfg.retrain_lr * softmax_policy_gradient(
                self.P_SAS, r_SA, y, self.rho_S, self.gamma, self.tau
            )
        return self.task_return(torch.softmax(y, -1)).tolist()

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Return task return of π_y, the lower gap, and the equal-budget retraining comparison
        (lists over the chains when batched)."""
        with torch.no_grad():
            pi = torch.softmax(y, -1)
            gap = value_penalty(
                self.P_SAS, self.shaped_reward(x), pi, self.rho_S, self.gamma, self.tau
            )
            out = {"upper/task_return": self.task_return(pi).tolist(), "lower/gap": gap.tolist()}
            if self.cfg.retrain_iters > 0:
                out["upper/retrain_shaped_return"] = self.retrain(self.shaped_reward(x))
                out["upper/retrain_sparse_return"] = self.retrain(self.r_SA)
        return out

    def final_state(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """Return the chain, the learned shaping and the policy."""
        m = self.metrics(x, y)
        return {
            "P": self.P_SAS.numpy(),
            "r": self.r_SA.numpy(),
            "rho": self.rho_S.numpy(),
            "gamma": np.asarray(self.gamma, dtype=np.float64),
            "tau": np.asarray(self.tau, dtype=np.float64),
            "x": x.detach().numpy(),
            "r_shaped": self.shaped_reward(x).detach().numpy(),
            "pi": torch.softmax(y, -1).detach().numpy(),
            **{k.split("/")[1]: np.asarray(v, dtype=np.float64) for k, v in m.items()},
        }

    def mc_chunk(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Monte Carlo estimates are not implemented for this problem (exact gradients only)."""
        raise ValueError("problem 'shaping' supports method.estimator=exact only")


STACK_EQUAL = ("num_states", "gamma", "tau", "shaping_scale", "retrain_iters", "retrain_lr")
"""``ShapingConfig`` fields the chains of one batch share (the others only change the tensors)."""


def stack_problems(problems: list[ShapingProblem]) -> ShapingProblem:
    """``ProblemSpec.stack``: one problem over the stacked chains (leading dimension G; lane i =
    problems[i]).

    Raises ``ValueError`` when the problems differ in a field of ``STACK_EQUAL``.
    """
    if not problems:
        raise ValueError("no problems to stack")
    c0 = problems[0].cfg
    for p in problems[1:]:
        diff = [k for k in STACK_EQUAL if getattr(p.cfg, k) != getattr(c0, k)]
        if diff:
            raise ValueError(
                f"problem.{diff[0]} differs: {getattr(p.cfg, diff[0])} vs {getattr(c0, diff[0])}"
            )
    P = torch.stack([p.P_SAS for p in problems])
    r = torch.stack([p.r_SA for p in problems])
    return ShapingProblem(c0, (P, r, torch.stack([p.rho_S for p in problems])))


def build(cfg: ShapingConfig) -> ShapingProblem:
    """Build the problem of a validated config."""
    return ShapingProblem(cfg)


SPEC = register_problem(
    ProblemSpec(
        name="shaping",
        config=ShapingConfig,
        build=build,
        algos=("pbrl", "indep_pg"),
        metrics={
            "upper/task_return": "the original sparse task's return of the lower policy, exact",
            "lower/gap": "the lower policy's optimality gap on the shaped reward, exact",
            "upper/retrain_shaped_return": "sparse return of fresh PG trained on the learned shaped reward",
            "upper/retrain_sparse_return": "sparse return of fresh PG trained on the sparse reward",
        },
        higher_is_better=(
            "upper/task_return",
            "upper/retrain_shaped_return",
            "upper/retrain_sparse_return",
        ),
        progress=("upper/task_return", "lower/gap"),
        estimators=("exact",),
        figure=("shaping_chain.png", "pbrl_dist.report.figures:shaping"),
        memory_floor=lambda p, m: transition_floor(p.num_states, 2),  # two actions: left, right
        stack=stack_problems,
    )
)
