"""``RayChunkRunner``: Monte Carlo rollout-worker and oracle actors behind the ``ChunkRunner`` contract.

The learner (the trial process) owns a ``RayRunner``. It

- puts the problem into the object store **once**; every rollout-worker actor receives that one copy
  (replacement actors too), so large immutable tensors are never re-sent;
- broadcasts the policy parameters (x, y, π̂) with a version number: one ``ray.put`` per new parameter
  set, and each actor deserializes a version only once, however many chunks it runs;
- deals the Monte Carlo chunks round-robin over ``num_rollout_workers`` actors, collects them with one
  ``ray.wait`` over the list and returns them **in chunk order**. ``algos.base.mc_estimate`` seeds every
  chunk from (trial seed, iteration, chunk index) and sums in chunk order, so the estimate is bitwise
  the same as the local executor's, whatever the number of workers;
- keeps its actors in ``ActorPool``s: a worker that died, or hung (no answer within
  ``dist.actor_timeout_s``), is replaced and its chunks re-issued, the trial goes on;
- optionally runs best-response oracles on ``num_oracles`` ``OracleActor``s (``oracle(name)`` returns a
  function with the ``core.oracles.Oracle`` signature; ``solve_many`` runs several solves in parallel,
  e.g. the two best responses of the NI penalty).

Inside a Tune trial, actors land in the trial's placement group (Tune captures child tasks), so the
trial must reserve one bundle per worker and oracle (``tune_sweep.trial_resources``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch

from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.executors.local import solve_local
from pbrl_dist.executors.pool import DEFAULT_TIMEOUT_S, ActorPool
from pbrl_dist.executors.protocols import ActorInfo, Chunk, McRequest, OracleRequest, run_chunks_on
from pbrl_dist.problems.base import ChunkProblem


@ray.remote
class RolloutWorker:
    """Holds one problem instance and runs Monte Carlo chunks for whichever parameter version is current."""

    def __init__(self, problem: ChunkProblem, index: int) -> None:
        """Keep ``problem`` (resolved from the learner's single ``ray.put``) and this worker's index."""
        torch.set_num_threads(1)
        self.problem = problem
        self.index = index
        self._version = -1
        self._params: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self.deserialized = 0

    def run(
        self,
        version: int,
        params_box: list[ray.ObjectRef],
        parts: tuple[str, ...],
        chunks: Sequence[Chunk],
        horizon: int,
    ) -> list[dict[str, Any]]:
        """Run ``chunks`` (``Chunk``: rollouts, seed) with parameter set ``version``.

        The parameters arrive boxed in a list so that Ray does not resolve them for every call; the
        worker fetches a version once and caches it.
        """
        if version != self._version:
            self._params = ray.get(params_box[0])
            self._version = version
            self.deserialized += 1
        assert self._params is not None
        return run_chunks_on(self.problem, self._params, chunks, parts=parts, horizon=horizon)

    def info(self) -> dict[str, Any]:
        """Return where this actor runs (node id, pid) and how many parameter versions it fetched."""
        ctx = ray.get_runtime_context()
        return {
            "index": self.index,
            "node_id": ctx.get_node_id(),
            "pid": os.getpid(),
            "deserialized": self.deserialized,
        }


@ray.remote
class OracleActor:
    """Runs best-response oracles (``core.oracles.ORACLES``) on given lower MDPs (P_x, r_x)."""

    def __init__(self) -> None:
        """Use one torch thread (one CPU bundle per actor)."""
        torch.set_num_threads(1)

    def solve(self, requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
        """Return ``ORACLES[name](P, r, ρ, γ, τ, logits0, **kwargs)`` for every request, in order."""
        return solve_local(requests)

    def info(self) -> dict[str, Any]:
        """Return where this actor runs."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


class RayChunkRunner:
    """``ChunkRunner`` over rollout-worker actors (and optional oracle actors) of one trial.

    Args:
        problem: the trial's problem (built once by the learner; put into the object store once).
        num_workers: rollout-worker actors (0 for a trial without Monte Carlo chunks: an exact
            gradient; ``run_chunks`` then refuses).
        num_oracles: oracle actors (0: oracles run in the learner).
        cpus_per_worker: CPUs each actor requests (its placement-group bundle inside a Tune trial).
        max_restarts: how many times per call dead actors are replaced before giving up.
        actor_timeout_s: ``dist.actor_timeout_s``, the longest one call (a worker's chunks, an oracle
            actor's solves) may take; an actor that has not answered by then is hung and replaced.
    """

    def __init__(
        self,
        problem: ChunkProblem,
        *,
        num_workers: int = 1,
        num_oracles: int = 0,
        cpus_per_worker: float = 1.0,
        max_restarts: int = 3,
        actor_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Start the actors."""
        if num_workers < 0:
            raise ValueError(f"num_workers must be ≥ 0 (got {num_workers})")
        if not ray.is_initialized():
            raise RuntimeError("RayChunkRunner needs a running Ray (ray.init) first")
        self.problem = problem
        self._problem_ref = ray.put(problem)
        cpus = cpus_per_worker
        self.workers = ActorPool(
            lambda i, _: RolloutWorker.options(num_cpus=cpus).remote(self._problem_ref, i),  # type: ignore[attr-defined]
            num_workers,
            kind="rollout",
            max_restarts=max_restarts,
            timeout_s=actor_timeout_s,
        )
        self.oracles = ActorPool(
            lambda i, _: OracleActor.options(num_cpus=cpus).remote(),  # type: ignore[attr-defined]
            num_oracles,
            kind="oracle",
            max_restarts=max_restarts,
            timeout_s=actor_timeout_s,
        )
        self.version = -1
        self._last: tuple[Any, Any, Any] | None = None
        self._params_box: list[ray.ObjectRef] = []

    @property
    def restarts(self) -> int:
        """Actors replaced so far (workers and oracles)."""
        return self.workers.restarts + self.oracles.restarts

    def _broadcast(self, x: torch.Tensor, y: torch.Tensor, pi_hat: torch.Tensor | None) -> None:
        """Put a new parameter version unless (x, y, π̂) are the very tensors of the current one."""
        last = self._last
        if last is not None and last[0] is x and last[1] is y and last[2] is pi_hat:
            return
        self.version += 1
        self._last = (x, y, pi_hat)
        detached = (x.detach(), y.detach(), None if pi_hat is None else pi_hat.detach())
        self._params_box = [ray.put(detached)]

    def run_chunks(self, request: McRequest) -> list[dict[str, Any]]:
        """Return ``problem.mc_chunk`` outputs for every chunk of ``request``, in chunk order.

        Chunks are dealt round-robin; one call per worker carries all of its chunks.
        """
        n = len(self.workers)
        if not n:
            raise RuntimeError(
                "this trial started no rollout workers (its method gives them no Monte Carlo chunks)"
            )
        self._broadcast(request.x, request.y, request.pi_hat_SA)
        chunks = request.chunks
        mine = {w: list(range(w, len(chunks), n)) for w in range(n)}
        version, box = self.version, self._params_box
        parts, horizon = request.parts, request.horizon

        def call(idx: list[int]) -> Callable[[Any], ray.ObjectRef]:
            return lambda a: a.run.remote(version, box, parts, [chunks[i] for i in idx], horizon)

        outs = self.workers.run({w: call(idx) for w, idx in mine.items() if idx})
        results: list[dict[str, Any] | None] = [None] * len(chunks)
        for w, out in outs.items():
            for i, o in zip(mine[w], out, strict=True):
                results[i] = o
        return results  # type: ignore[return-value]

    # --- oracles ---------------------------------------------------------------------------------
    def oracle(self, name: str) -> Callable[..., torch.Tensor]:
        """Return an oracle with the ``core.oracles.Oracle`` signature (remote when ``num_oracles`` > 0)."""
        if not len(self.oracles):
            return ORACLES[name]

        def remote_oracle(
            P_SAS: torch.Tensor,
            r_SA: torch.Tensor,
            rho_S: torch.Tensor,
            gamma: float,
            tau: float,
            logits0_SA: torch.Tensor,
            **kwargs: Any,
        ) -> torch.Tensor:
            request = OracleRequest(name, P_SAS, r_SA, rho_S, gamma, tau, logits0_SA, kwargs)
            return self.solve_many([request])[0]

        return remote_oracle

    def solve_many(self, requests: Sequence[OracleRequest]) -> list[torch.Tensor]:
        """Run oracle solves round-robin over the oracle actors (here when there are none), in order."""
        n = len(self.oracles)
        if not n:
            return solve_local(requests)
        args = [r.detached() for r in requests]
        mine = {o: list(range(o, len(args), n)) for o in range(n)}

        def call(idx: list[int]) -> Callable[[Any], ray.ObjectRef]:
            return lambda a: a.solve.remote([args[i] for i in idx])

        outs = self.oracles.run({o: call(idx) for o, idx in mine.items() if idx})
        results: list[torch.Tensor | None] = [None] * len(args)
        for o, out in outs.items():
            for i, t in zip(mine[o], out, strict=True):
                results[i] = t
        return results  # type: ignore[return-value]

    # --- bookkeeping -----------------------------------------------------------------------------
    def actors(self) -> list[ActorInfo]:
        """Where every rollout-worker and oracle actor runs."""
        return [*self.workers.actors(), *self.oracles.actors()]

    def shutdown(self) -> None:
        """Kill every actor of this runner."""
        self.workers.shutdown()
        self.oracles.shutdown()
