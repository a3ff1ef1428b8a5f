"""The interface every tabular bilevel problem offers to the PBRL loop (``algos/pbrl.py``).

A problem owns the upper variable x, the lower softmax policy logits y, the differentiable map
x ↦ M_τ(x) = (P_x, r_x), the upper objective f(x, π_y), exact metrics, and Monte Carlo estimators.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch


class ChunkProblem(Protocol):
    """What a ``ChunkRunner`` (``executors``) needs of a tabular problem: its Monte Carlo gradient
    pieces. Every ``BilevelProblem``, the incentive problem and a batch of lanes have it."""

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
        """Return Monte Carlo gradient pieces from ``num_rollouts`` rollouts drawn with ``seed``."""
        ...


class BilevelProblem(ChunkProblem, Protocol):
    """Tabular bilevel RL problem  min_{x,y} f(x, π_y)  s.t.  y ∈ argmax V_{M_τ(x)}(π_y)."""

    rho_S: torch.Tensor
    gamma: float
    tau: float

    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Return initial (x, y) drawn from the trial seed."""
        ...

    def lower_mdp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (P_x [S, A, S], r_x [S, A]), differentiable in x."""
        ...

    def upper_objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return f(x, π_y), differentiable in x and y."""
        ...

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Return the exact metrics at (x, y)."""
        ...

    def final_state(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """Return the arrays from which anyone can recompute the reported metrics."""
        ...


def transition_floor(num_states: int, joint_actions: int) -> tuple[int, str]:
    """``ProblemSpec.memory_floor`` of a tabular problem: its transition tensor P (float64, states² ×
    joint actions), driven by ``problem.num_states``."""
    return int(num_states) ** 2 * int(joint_actions) * 8, "problem.num_states"
