"""Where one trial's work runs: typed runner contracts, local and Ray runners, one fault-tolerant pool.

| module | what |
|---|---|
| ``protocols`` | ``ChunkRunner`` (tabular Monte Carlo chunks + oracles) and ``RolloutRunner`` (env shards) |
| ``local`` | both contracts in the learner's process |
| ``pool`` | ``ActorPool``: Ray actors in slots; a dead or hung actor is replaced (and restored), its call re-issued |
| ``ray_chunks`` | ``RayChunkRunner``: Monte Carlo rollout-worker and oracle actors |
| ``ray_rollouts`` | ``RayRolloutRunner``: rollout-worker actors that own env shards (deep RLHF) |

``make_runner(problem, dist_cfg)`` picks the runner a trial's ``dist:`` block asks for. Only ``pool``
and ``ray_*`` import Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbrl_dist.executors.protocols import (
    ActorInfo,
    ChunkRunner,
    RolloutRunner,
    Runner,
    RunnerDist,
)

if TYPE_CHECKING:
    from pbrl_dist.problems.base import ChunkProblem
    from pbrl_dist.problems.rlhf import RLHFProblem

__all__ = ["ActorInfo", "ChunkRunner", "RolloutRunner", "Runner", "RunnerDist", "make_runner"]


def make_runner(
    problem: ChunkProblem | RLHFProblem,
    dist_cfg: RunnerDist,
    actors: tuple[int, int] | None = None,
) -> Runner:
    """Return the runner a trial's ``dist:`` block asks for.

    Deep-RLHF problems get a ``RolloutRunner`` (env shards), every other (tabular) problem a
    ``ChunkRunner``; ``dist.backend=local`` keeps everything in this process, ``ray`` starts
    ``actors = (rollout workers, oracle actors)`` (``algos.registry.actor_counts``: none of a kind the
    trial gives no work; without it, the ``dist:`` counts) — Ray must be running.
    """
    from pbrl_dist.problems.rlhf import RLHFProblem

    if dist_cfg.backend != "ray":
        from pbrl_dist.executors.local import LocalChunkRunner, LocalRolloutRunner

        if isinstance(problem, RLHFProblem):
            return LocalRolloutRunner()
        return LocalChunkRunner(problem)
    workers, oracles = actors or (max(1, dist_cfg.num_rollout_workers), dist_cfg.num_oracles)
    if isinstance(problem, RLHFProblem):
        from pbrl_dist.executors.ray_rollouts import RayRolloutRunner

        return RayRolloutRunner(
            num_workers=workers,
            num_oracles=oracles,
            cpus_per_worker=dist_cfg.cpus_per_worker,
            actor_timeout_s=dist_cfg.actor_timeout_s,
        )
    from pbrl_dist.executors.ray_chunks import RayChunkRunner

    return RayChunkRunner(
        problem,
        num_workers=workers,
        num_oracles=oracles,
        cpus_per_worker=dist_cfg.cpus_per_worker,
        actor_timeout_s=dist_cfg.actor_timeout_s,
    )
