"""The ``local`` backend: both runner contracts in the learner's own process (tests, small problems).

``LocalChunkRunner`` runs Monte Carlo chunks in order and oracles as plain calls;
``LocalRolloutRunner`` steps every env shard of a role here (pipelined). The Ray runners call the very
same functions on actors, so a trial's numbers do not depend on the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.executors.protocols import ActorInfo, McRequest, OracleRequest
from pbrl_dist.problems.base import ChunkProblem

if TYPE_CHECKING:
    from pbrl_dist.executors.shards import RolloutSource, RolloutSpec


def solve_local(requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
    """Run oracle solves here, one after the other."""
    return [
        ORACLES[r.name](r.P_SAS, r.r_SA, r.rho_S, r.gamma, r.tau, r.logits0_SA, **r.kwargs)
        for r in requests
    ]


class LocalChunkRunner:
    """``ChunkRunner`` in this process: chunks in order, oracles as direct calls."""

    def __init__(self, problem: ChunkProblem) -> None:
        """Hold the problem (anything with ``mc_chunk``)."""
        self.problem = problem

    def run_chunks(self, request: McRequest) -> list[dict[str, Any]]:
        """Run the chunks in order."""
        return request.run(self.problem)

    def oracle(self, name: str) -> Callable[..., torch.Tensor]:
        """Return ``core.oracles.ORACLES[name]`` itself."""
        return ORACLES[name]

    def solve_many(self, requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
        """Run the solves one after the other."""
        return solve_local(requests)

    def actors(self) -> list[ActorInfo]:
        """No actors."""
        return []

    def shutdown(self) -> None:
        """Nothing to stop."""


class LocalRolloutRunner:
    """``RolloutRunner`` in this process: every shard of a role is a ``ShardGroup`` here."""

    def __init__(self) -> None:
        """Keep the sources it hands out, to close them at the end."""
        self.sources: list[Any] = []

    def make_rollouts(self, spec: RolloutSpec) -> RolloutSource:
        """Return all of the role's shards, stepped here."""
        from pbrl_dist.executors.shards import ShardGroup

        src = ShardGroup(spec)
        self.sources.append(src)
        return src

    def actors(self) -> list[ActorInfo]:
        """No actors."""
        return []

    def shutdown(self) -> None:
        """Close every env handed out (the loop closes them too; closing twice is harmless)."""
        self.sources = []
