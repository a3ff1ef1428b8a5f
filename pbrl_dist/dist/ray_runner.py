"""The ``ray`` executor: rollout-worker and oracle actors behind the ``ChunkRunner`` interface.

The learner (the trial process) owns a ``RayRunner``. It

- puts the problem into the object store **once**; every rollout-worker actor receives that one copy
  (replacement actors too), so large immutable tensors are never re-sent;
- broadcasts the policy parameters (x, y, π̂) with a version number: one ``ray.put`` per new parameter
  set, and each actor deserializes a version only once, however many chunks it runs;
- deals the Monte Carlo chunks round-robin over ``num_rollout_workers`` actors, collects them with one
  ``ray.get`` over the list and returns them **in chunk order**. ``algos.base.mc_estimate`` seeds every
  chunk from (trial seed, iteration, chunk index) and sums in chunk order, so the estimate is bitwise
  the same as the local executor's, whatever the number of workers;
- replaces a worker that died (``RayActorError``) and re-issues that worker's chunks; the trial goes on;
- optionally runs best-response oracles on ``num_oracles`` ``OracleActor``s (``oracle(name)`` returns a
  function with the ``core.oracles.Oracle`` signature; ``solve_many`` runs several solves in parallel,
  e.g. the two best responses of the NI penalty).

Inside a Tune trial, actors land in the trial's placement group (Tune captures child tasks), so the
trial must reserve one bundle per worker and oracle (``tune_sweep.trial_resources``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import ray
import torch
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from pbrl_dist.core.oracles import ORACLES

ACTOR_ERRORS = (RayActorError, ActorDiedError, ActorUnavailableError)


@ray.remote
class RolloutWorker:
    """Holds one problem instance and runs Monte Carlo chunks for whichever parameter version is current."""

    def __init__(self, problem: Any, index: int) -> None:
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
        chunks: Sequence[tuple[int, int]],
        horizon: int,
    ) -> list[dict[str, Any]]:
        """Run ``chunks`` (``(num_rollouts, seed)`` each) with parameter set ``version``.

        The parameters arrive boxed in a list so that Ray does not resolve them for every call; the
        worker fetches a version once and caches it.
        """
        if version != self._version:
            self._params = ray.get(params_box[0])
            self._version = version
            self.deserialized += 1
        assert self._params is not None
        x, y, pi_hat = self._params
        return [
            self.problem.mc_chunk(
                x, y, pi_hat, parts=parts, num_rollouts=n, horizon=horizon, seed=s
            )
            for n, s in chunks
        ]

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

    def solve(
        self,
        name: str,
        P_SAS: torch.Tensor,
        r_SA: torch.Tensor,
        rho_S: torch.Tensor,
        gamma: float,
        tau: float,
        logits0_SA: torch.Tensor,
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
        """Return ``ORACLES[name](P, r, ρ, γ, τ, logits0, **kwargs)``."""
        return ORACLES[name](P_SAS, r_SA, rho_S, gamma, tau, logits0_SA, **kwargs)

    def info(self) -> dict[str, Any]:
        """Return where this actor runs."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


class RayRunner:
    """``ChunkRunner`` over rollout-worker actors (and optional oracle actors) of one trial.

    Args:
        problem: the trial's problem (built once by the learner; put into the object store once).
        num_workers: rollout-worker actors (≥ 1).
        num_oracles: oracle actors (0: oracles run in the learner).
        cpus_per_worker: CPUs each actor requests (its placement-group bundle inside a Tune trial).
        max_restarts: how many times per ``run_chunks`` call dead workers are replaced before giving up.
    """

    def __init__(
        self,
        problem: Any,
        *,
        num_workers: int = 1,
        num_oracles: int = 0,
        cpus_per_worker: float = 1.0,
        max_restarts: int = 3,
    ) -> None:
        """Start the actors."""
        if num_workers < 1:
            raise ValueError("the ray executor needs dist.num_rollout_workers ≥ 1")
        if not ray.is_initialized():
            raise RuntimeError("RayRunner needs a running Ray (ray.init) first")
        self.problem = problem
        self.cpus = cpus_per_worker
        self.max_restarts = max_restarts
        self._problem_ref = ray.put(problem)
        self.workers = [self._new_worker(i) for i in range(num_workers)]
        self.oracles = [
            OracleActor.options(num_cpus=cpus_per_worker).remote() for _ in range(num_oracles)
        ]
        self.restarts = 0
        self.version = -1
        self._last: tuple[Any, Any, Any] | None = None
        self._params_box: list[ray.ObjectRef] = []

    def _new_worker(self, index: int) -> Any:
        return RolloutWorker.options(num_cpus=self.cpus).remote(self._problem_ref, index)

    def _broadcast(self, x: torch.Tensor, y: torch.Tensor, pi_hat: torch.Tensor | None) -> None:
        """Put a new parameter version unless (x, y, π̂) are the very tensors of the current one."""
        last = self._last
        if last is not None and last[0] is x and last[1] is y and last[2] is pi_hat:
            return
        self.version += 1
        self._last = (x, y, pi_hat)
        detached = (x.detach(), y.detach(), None if pi_hat is None else pi_hat.detach())
        self._params_box = [ray.put(detached)]

    def run_chunks(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        pi_hat_SA: torch.Tensor | None,
        *,
        parts: tuple[str, ...],
        chunks: Sequence[tuple[int, int]],
        horizon: int,
    ) -> list[dict[str, Any]]:
        """Return ``problem.mc_chunk`` outputs for every chunk, in chunk order."""
        self._broadcast(x, y, pi_hat_SA)
        n = len(self.workers)
        owner = [i % n for i in range(len(chunks))]
        # One call per worker with all of its chunks (fewer round trips than one call per chunk).
        mine: dict[int, list[int]] = {
            w: [i for i in range(len(chunks)) if owner[i] == w] for w in range(n)
        }
        pending = {w: idx for w, idx in mine.items() if idx}
        results: list[dict[str, Any] | None] = [None] * len(chunks)
        for attempt in range(self.max_restarts + 1):
            refs = {
                w: self._submit(w, [chunks[i] for i in idx], parts, horizon)
                for w, idx in pending.items()
            }
            failed = self._collect(refs, pending, results)
            if not failed:
                return results  # type: ignore[return-value]
            if attempt == self.max_restarts:
                break
            for w in failed:
                self._replace(w)
            pending = {w: pending[w] for w in failed}
        raise RuntimeError(
            f"rollout workers {sorted(pending)} kept dying ({self.max_restarts} replacements)"
        )

    def _submit(
        self, w: int, chunks: list[tuple[int, int]], parts: tuple[str, ...], horizon: int
    ) -> ray.ObjectRef:
        return self.workers[w].run.remote(self.version, self._params_box, parts, chunks, horizon)

    @staticmethod
    def _collect(
        refs: dict[int, ray.ObjectRef],
        pending: dict[int, list[int]],
        results: list[dict[str, Any] | None],
    ) -> list[int]:
        """Fill ``results``; return the workers whose call failed because the actor died."""
        try:
            outs = dict(zip(refs, ray.get(list(refs.values())), strict=True))  # the common case
        except ACTOR_ERRORS:
            outs = {}
            for w, ref in refs.items():
                with contextlib.suppress(ACTOR_ERRORS):
                    outs[w] = ray.get(ref)
        for w, out in outs.items():
            for i, o in zip(pending[w], out, strict=True):
                results[i] = o
        return [w for w in refs if w not in outs]

    def _replace(self, w: int) -> None:
        """Start a fresh worker in slot ``w`` (same problem object, fetches the current version)."""
        with contextlib.suppress(Exception):
            ray.kill(self.workers[w], no_restart=True)
        self.workers[w] = self._new_worker(w)
        self.restarts += 1
        print(f"    rollout worker {w} died; replaced it and re-issued its chunks", flush=True)

    # --- oracles ---------------------------------------------------------------------------------
    def oracle(self, name: str) -> Callable[..., torch.Tensor]:
        """Return an oracle with the ``core.oracles.Oracle`` signature (remote when ``num_oracles`` > 0)."""
        if not self.oracles:
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
            return self.solve_many([(name, P_SAS, r_SA, rho_S, gamma, tau, logits0_SA, kwargs)])[0]

        return remote_oracle

    def solve_many(self, requests: Sequence[tuple[Any, ...]]) -> list[torch.Tensor]:
        """Run oracle solves ``(name, P, r, ρ, γ, τ, logits0, kwargs)`` round-robin over the oracle actors.

        A dead oracle actor is replaced and its solves re-issued, like a rollout worker.
        """
        if not self.oracles:
            return [ORACLES[r[0]](*r[1:7], **r[7]) for r in requests]
        args = [
            (r[0], *(t.detach() if isinstance(t, torch.Tensor) else t for t in r[1:7]), r[7])
            for r in requests
        ]
        for attempt in range(self.max_restarts + 1):
            owners = [i % len(self.oracles) for i in range(len(args))]
            refs = [self.oracles[o].solve.remote(*a) for o, a in zip(owners, args, strict=True)]
            try:
                return list(ray.get(refs))
            except ACTOR_ERRORS:
                if attempt == self.max_restarts:
                    raise
                for o in range(len(self.oracles)):
                    try:
                        ray.get(self.oracles[o].info.remote())
                    except ACTOR_ERRORS:
                        self.oracles[o] = OracleActor.options(num_cpus=self.cpus).remote()
                        self.restarts += 1
        raise AssertionError("unreachable")

    # --- bookkeeping -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Return node ids / pids of every actor and the restart count."""
        return {
            "workers": ray.get([w.info.remote() for w in self.workers]),
            "oracles": ray.get([o.info.remote() for o in self.oracles]),
            "restarts": self.restarts,
            "version": self.version,
        }

    def shutdown(self) -> None:
        """Kill every actor of this runner."""
        for a in [*self.workers, *self.oracles]:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        self.workers, self.oracles = [], []


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Start (or connect to) Ray unless it is running; return True when this call started it.

    ``address`` (or the ``RAY_ADDRESS`` environment variable) joins a running cluster; otherwise an
    embedded local Ray starts with ``num_cpus`` (default: every CPU of this machine).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address)
    else:
        # "local": a new instance even if a `ray start` cluster on this machine left its address behind.
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    return True


def runner_for(problem: Any, dist_cfg: Any) -> Any:
    """Build the runner that a trial's ``dist:`` block asks for.

    Tabular problems (``mc_chunk``) get a ``RayRunner``; deep RLHF problems (``make_env``) get a
    ``dist.ray_rollouts.RayRolloutRunner`` whose actors own env shards.
    """
    if not hasattr(problem, "mc_chunk") and hasattr(problem, "make_env"):
        from pbrl_dist.dist.ray_rollouts import RayRolloutRunner

        return RayRolloutRunner(
            num_workers=dist_cfg.num_rollout_workers,
            num_oracles=dist_cfg.num_oracles,
            cpus_per_worker=dist_cfg.cpus_per_worker,
        )
    return RayRunner(
        problem,
        num_workers=max(1, dist_cfg.num_rollout_workers),
        num_oracles=dist_cfg.num_oracles,
        cpus_per_worker=dist_cfg.cpus_per_worker,
    )


def check_actor_fit(dists: Sequence[Any], names: Sequence[str]) -> None:
    """Outside Tune (``pbrl run``): each trial's actors must fit the running cluster's CPUs.

    Raises ``ConfigError`` naming the first trial that would wait forever for its actors.
    """
    from pbrl_dist.config.loader import ConfigError

    total = float(ray.cluster_resources().get("CPU", 0.0))
    for d, name in zip(dists, names, strict=True):
        need = (max(1, d.num_rollout_workers) + d.num_oracles) * d.cpus_per_worker
        if need > total + 1e-9:
            raise ConfigError(
                f"dist: trial {name} starts {max(1, d.num_rollout_workers) + d.num_oracles} actors × "
                f"cpus_per_worker={d.cpus_per_worker} = {need:g} CPUs but Ray has {total:g}; lower "
                "dist.num_rollout_workers / dist.num_oracles / dist.cpus_per_worker"
            )
