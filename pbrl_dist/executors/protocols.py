"""The two runner contracts a trial's loop talks to; the ``local`` and ``ray`` runners implement both.

A leaf module (typing and torch only): the outer loops in ``algos/`` import these contracts to type the
runner they are handed, and ``launch/`` records a runner's actors through ``actors()``. No loop or
launcher probes a runner with ``hasattr``: what a runner can do is what its protocol says.

- ``ChunkRunner``: tabular problems. Monte Carlo requests (``McRequest``: ``problem.mc_chunk`` for
  each ``Chunk`` of rollouts and a seed, in chunk order), and best-response oracle solves (one or
  several at once).
- ``RolloutRunner``: deep RLHF. One ``RolloutSource`` per role (agent, PBRL oracle π̂*) whose env
  shards step wherever the runner puts them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from pbrl_dist.executors.shards import RolloutSource, RolloutSpec
    from pbrl_dist.problems.base import ChunkProblem


class RunnerDist(Protocol):
    """The ``dist:`` fields that choose and size a runner (``config.schema.DistConfig``)."""

    backend: str
    num_rollout_workers: int
    num_oracles: int
    cpus_per_worker: float
    actor_timeout_s: float


class Chunk(NamedTuple):
    """One Monte Carlo work unit: ``rollouts`` of ``problem.mc_chunk`` drawn from ``seed``. Its bounds
    and seed depend only on the trial's seed, the iteration and the batch (``algos.base.mc_estimate``),
    never on which worker runs it."""

    rollouts: int
    seed: int


@dataclass(frozen=True)
class McRequest:
    """One Monte Carlo estimate's work: ``problem.mc_chunk`` at (x, y, π̂) once per chunk, in order."""

    x: torch.Tensor
    y: torch.Tensor
    pi_hat_SA: torch.Tensor | None
    parts: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    horizon: int

    def run(self, problem: ChunkProblem) -> list[dict[str, Any]]:
        """Every chunk's ``mc_chunk`` output on ``problem``, in chunk order (here, in this process)."""
        params = (self.x, self.y, self.pi_hat_SA)
        return run_chunks_on(problem, params, self.chunks, parts=self.parts, horizon=self.horizon)


def run_chunks_on(
    problem: ChunkProblem,
    params: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    chunks: Sequence[Chunk],
    *,
    parts: tuple[str, ...],
    horizon: int,
) -> list[dict[str, Any]]:
    """``problem.mc_chunk`` at ``params`` = (x, y, π̂) for each chunk, in order (a rollout worker
    passes the parameters it cached and its share of a request's chunks)."""
    x, y, pi_hat = params
    return [
        problem.mc_chunk(
            x, y, pi_hat, parts=parts, num_rollouts=c.rollouts, horizon=horizon, seed=c.seed
        )
        for c in chunks
    ]


@dataclass(frozen=True)
class OracleRequest:
    """One best-response solve: ``core.oracles.ORACLES[name](P_SAS, r_SA, rho_S, gamma, tau,
    logits0_SA, **kwargs)`` (``kwargs``: ``num_steps``, ``step_size``, ``tol``)."""

    name: str
    P_SAS: torch.Tensor
    r_SA: torch.Tensor
    rho_S: torch.Tensor
    gamma: float
    tau: float
    logits0_SA: torch.Tensor
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def detached(self) -> OracleRequest:
        """The same request with every tensor detached (to ship it to an oracle actor)."""
        return dataclasses.replace(
            self,
            P_SAS=self.P_SAS.detach(),
            r_SA=self.r_SA.detach(),
            rho_S=self.rho_S.detach(),
            logits0_SA=self.logits0_SA.detach(),
        )


@dataclass(frozen=True)
class ActorInfo:
    """Where one actor of a runner lives (``tune_attempts.jsonl`` records these)."""

    kind: str
    index: int
    node_id: str
    pid: int


@runtime_checkable
class ChunkRunner(Protocol):
    """Runs Monte Carlo chunks and best-response oracles of a tabular problem."""

    def run_chunks(self, request: McRequest) -> list[dict[str, Any]]:
        """Return ``problem.mc_chunk`` outputs for each of the request's chunks, in chunk order."""
        ...

    def oracle(self, name: str) -> Callable[..., torch.Tensor]:
        """Return oracle ``name`` with the ``core.oracles.Oracle`` signature (run wherever it runs)."""
        ...

    def solve_many(self, requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
        """Run independent oracle solves (in parallel where the runner has several oracle actors)."""
        ...

    def actors(self) -> list[ActorInfo]:
        """Return every actor this runner started (empty for the local runner)."""
        ...

    def shutdown(self) -> None:
        """Stop every actor (idempotent)."""
        ...


@runtime_checkable
class RolloutRunner(Protocol):
    """Hands a deep-RLHF loop one rollout source per role."""

    def make_rollouts(self, spec: RolloutSpec) -> RolloutSource:
        """Return the role's rollout source (``spec.role``: ``agent`` or ``oracle``)."""
        ...

    def actors(self) -> list[ActorInfo]:
        """Return every actor this runner started (empty for the local runner)."""
        ...

    def shutdown(self) -> None:
        """Stop every actor and close every env (idempotent)."""
        ...


Runner = ChunkRunner | RolloutRunner
