"""Bring your own bilevel problem: tax design over a tabular MDP, in one file.

A principal sets a tax on each of the agent's A activities, t(x) = tax_scale·tanh(x) ∈ (−scale, scale)^A
(a negative tax is a subsidy). The agent lives in a small random tabular MDP (S states, A activities):
its reward is its private utility minus the tax, r_x(s, a) = u(s, a) − t(x)_a, and it plays an
entropy-regularized (τ) best response π*_x. The principal collects the tax and bears an externality
e(s, a) < 0 of some activities (pollution); its return is

    F(x, π) = Σ_s ρ(s)·V^π_{(P, t(x)_a + e(s, a))}(s)                (unregularized, discount γ)

and the bilevel problem is  max_x F(x, π*_x)  (the loop minimizes f = −F).

What a problem file holds (nothing in pbrl_dist changes):

1. a config dataclass: the ``problem:`` block of a sweep file (a ``name`` field = the registered name;
   an optional ``checks()`` for range rules);
2. a problem class with the ``pbrl_dist.problems.base.BilevelProblem`` interface (``rho_S``,
   ``gamma``, ``tau``, ``init_params``, ``lower_mdp``, ``upper_objective``, ``metrics``,
   ``final_state``, ``mc_chunk``) — here built on ``pbrl_dist.core`` (policy evaluation, penalties);
3. a ``ProblemSpec``: config, builder, the loops it runs with (``pbrl``, ``indep_pg``), its metrics,
   which of them are "higher is better", which ones the progress line and the figure show.

A sweep file names it with ``problem.target: tax_design.py:SPEC`` (a path relative to the sweep file)
or ``problem.target: tax_design:SPEC`` (a module on PYTHONPATH); see ``examples/tax_design.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pbrl_dist.core.mdp import evaluate_policy, expected_value
from pbrl_dist.core.penalties import value_penalty
from pbrl_dist.core.types import DTYPE, generator
from pbrl_dist.problems import ProblemSpec


@dataclass
class TaxDesignConfig:
    """The ``problem:`` block.

    Attributes:
        name: the registered name (``problem.name``).
        num_states: |S|, the agent's states.
        num_actions: |A|, its activities (one tax per activity).
        gamma: discount γ ∈ [0, 1).
        tau: the agent's entropy temperature τ > 0.
        tax_scale: taxes and subsidies lie in (−tax_scale, tax_scale).
        externality: cost to the principal of the polluting activities (the last half of them).
        game: index of the random instance (the MDP's tensors depend on this only).
    """

    name: str = "tax_design"
    num_states: int = 6
    num_actions: int = 4
    gamma: float = 0.9
    tau: float = 0.1
    tax_scale: float = 1.0
    externality: float = 0.5
    game: int = 0

    def checks(self) -> list[tuple[str, bool, str]]:
        """(dotted key, ok, message) for the rules beyond the generic ones."""
        return [
            ("problem.num_states", self.num_states >= 1, "must be ≥ 1"),
            ("problem.num_actions", self.num_actions >= 2, "must be ≥ 2"),
            ("problem.tax_scale", self.tax_scale > 0, "must be > 0"),
            ("problem.externality", self.externality >= 0, "must be ≥ 0"),
        ]


class TaxDesignProblem:
    """x = tax logits (A,), y = the agent's policy logits (S, A)."""

    def __init__(self, cfg: TaxDesignConfig) -> None:
        """Draw the instance ``cfg.game``: transitions, the agent's utility and the externality."""
        S, A = cfg.num_states, cfg.num_actions
        gen = generator(0, "tax_design", cfg.game)
        self.cfg = cfg
        self.P_SAS = torch.softmax(3.0 * torch.rand(S, A, S, generator=gen, dtype=DTYPE), -1)
        self.u_SA = torch.rand(S, A, generator=gen, dtype=DTYPE)
        self.e_SA = torch.zeros(S, A, dtype=DTYPE)
        self.e_SA[:, A // 2 :] = -cfg.externality  # the polluting activities
        self.rho_S = torch.full((S,), 1.0 / S, dtype=DTYPE)
        self.gamma, self.tau = cfg.gamma, cfg.tau

    def tax(self, x: torch.Tensor) -> torch.Tensor:
        """t(x) = tax_scale·tanh(x), one tax per activity."""
        return self.cfg.tax_scale * torch.tanh(x)

    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """x = 0 (no tax), y ~ scale·N(0, 1) from the trial seed."""
        gen = generator(seed, "init")
        y = scale * torch.randn(self.u_SA.shape, generator=gen, dtype=DTYPE)
        return torch.zeros(self.cfg.num_actions, dtype=DTYPE), y

    def lower_mdp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The agent's MDP M_τ(x) = (P, u − t(x)); only the reward depends on x."""
        return self.P_SAS, self.u_SA - self.tax(x).unsqueeze(0)

    def principal_return(self, x: torch.Tensor, pi_SA: torch.Tensor) -> torch.Tensor:
        """F(x, π): tax revenue plus externality, unregularized (differentiable in x and π)."""
        r_SA = self.tax(x).unsqueeze(0) + self.e_SA
        v, _ = evaluate_policy(self.P_SAS, r_SA, pi_SA, self.gamma, 0.0)
        return expected_value(v, self.rho_S)

    def upper_objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f(x, π_y) = −F(x, π_y) (the loops minimize)."""
        return -self.principal_return(x, torch.softmax(y, -1))

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """The principal's return, the agent's optimality gap, the mean tax."""
        with torch.no_grad():
            pi = torch.softmax(y, -1)
            P, r = self.lower_mdp(x)
            return {
                "upper/principal_return": float(self.principal_return(x, pi)),
                "lower/gap": float(value_penalty(P, r, pi, self.rho_S, self.gamma, self.tau)),
                "upper/mean_tax": float(self.tax(x).mean()),
            }

    def final_state(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """The instance, the taxes and the agent's policy."""
        return {
            "P": self.P_SAS.numpy(),
            "u": self.u_SA.numpy(),
            "e": self.e_SA.numpy(),
            "tax": self.tax(x).detach().numpy(),
            "pi": torch.softmax(y, -1).detach().numpy(),
        }

    def mc_chunk(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Monte Carlo estimates are not written for this example (exact gradients only)."""
        raise ValueError("problem 'tax_design' supports method.estimator=exact only")


SPEC = ProblemSpec(
    name="tax_design",
    config=TaxDesignConfig,
    build=TaxDesignProblem,
    algos=("pbrl", "indep_pg"),
    metrics={
        "upper/principal_return": "principal's tax revenue + externality under the agent's policy",
        "lower/gap": "the agent's entropy-regularized optimality gap in M_τ(x), exact",
        "upper/mean_tax": "mean tax over activities (negative: a subsidy)",
    },
    higher_is_better=("upper/principal_return",),
    progress=("upper/principal_return", "lower/gap"),
    figure=("tax_design.png", "pbrl_dist.report.figures:progress_figure"),
    estimators=("exact",),
    # bytes one trial holds at least (P: states² × actions float64): refused up front if too big
    memory_floor=lambda p, m: (p.num_states**2 * p.num_actions * 8, "problem.num_states"),
)
"""What ``problem.target: tax_design.py:SPEC`` names (registered when the sweep is loaded)."""
