"""Deep-RLHF rollouts on Ray: rollout-worker actors that own env shards and a copy of the policy.

``RayRolloutRunner.make_rollouts(spec)`` is what ``rlhf.run`` asks its runner for. It returns a
``RayRollouts`` (a ``RolloutSource``) for the agent role on ``dist.num_rollout_workers`` actors and, in
PBRL mode, one for the oracle role π̂* on ``dist.num_oracles`` actors (0: the oracle's envs step in
the learner's process). The learner

- broadcasts versioned weights: one ``ray.put`` per new policy version, handed to the actors boxed in
  a list so that each actor fetches (deserializes) a version once;
- gathers fixed-length fragments from every actor with one ``ray.get`` and concatenates them in shard
  order. Actor w owns the consecutive shards ``[w·S/W, (w+1)·S/W)`` of the role's ``S = env_shards``
  and steps them pipelined (``executors.shards.collect_pipelined``). Shard seeds do not depend on W, so a
  run is bitwise the same on the ``local`` backend and on any number of workers that divides S;
- ``collect_async`` submits without waiting, so the agent's and the oracle's fragments of one
  iteration are collected at the same time on different actors.

A worker that dies, or hangs (no answer within ``dist.actor_timeout_s``: it is killed), is replaced
exactly: the driver keeps a copy of every shard's ``state_dict`` as of the last fragment it received
(the fragment's own actions and last observation plus each shard's small
``RolloutShard.step_state``: action-generator state, collect count, the toy env's state), starts a
fresh worker, restores the shards from it (Atari: rebuild from the seed and replay every
action, checking the replayed observation) and collects the lost fragment again, so the run is
bitwise the one without the failure. Only shards that cannot be restored exactly
(``problem.resume=reseed`` on Atari) are re-seeded from (shard seed, "restart", restart count)
instead: running episodes are lost, and ``restarted`` tells the learner that the new fragment does
not continue the previous one (no preference segment may cross the seam).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import ray
import torch

from pbrl_dist.executors.pool import DEFAULT_TIMEOUT_S, ActorPool
from pbrl_dist.executors.protocols import ActorInfo
from pbrl_dist.executors.shards import (
    Rollout,
    RolloutSource,
    RolloutSpec,
    ShardGroup,
    cat_envs,
    shard_sizes,
)


@ray.remote
class EnvWorker:
    """One rollout worker: a ``ShardGroup`` of consecutive shards and the policy copy it samples from."""

    def __init__(self, spec: RolloutSpec, indices: Sequence[int], restart: int) -> None:
        """Build the shards (one torch thread); a replacement (``restart`` ≥ 1) re-seeds them."""
        torch.set_num_threads(1)
        self.group = ShardGroup(spec, indices)
        if restart:
            self.group.reseed("restart", restart)
        self.version = -1
        self.weights: Mapping[str, torch.Tensor] = {}
        self.fetched = 0

    def meta(self) -> tuple[int, int, tuple[int, ...]]:
        """Return (envs, actions, observation shape)."""
        return self.group.num_envs, self.group.num_actions, self.group.obs_shape

    def collect(
        self, version: int, box: list[ray.ObjectRef]
    ) -> tuple[Rollout, list[dict[str, Any]]]:
        """Collect one fragment with weight version ``version`` (fetched once per version).

        Returns:
            The fragment and each shard's ``step_state()`` after it.
        """
        if version != self.version:
            self.weights = ray.get(box[0])
            self.version = version
            self.fetched += 1
        roll = self.group.collect(self.weights, version)
        return roll, [s.step_state() for s in self.group.shards]

    def exact_restore(self) -> bool:
        """Whether every shard can be restored exactly from its ``state_dict``."""
        return all(s.exact_restore for s in self.group.shards)

    def state_dict(self) -> dict[str, Any]:
        """Return the shards' state (``ShardGroup.state_dict``)."""
        return self.group.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shards."""
        self.group.load_state_dict(state)
        self.version = -1

    def info(self) -> dict[str, Any]:
        """Return where this actor runs and how many weight versions it fetched."""
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "pid": os.getpid(), "fetched": self.fetched}

    def close(self) -> None:
        """Close the envs."""
        self.group.close()


class RayRollouts:
    """A role's shards on ``num_workers`` ``EnvWorker`` actors (a ``RolloutSource``).

    Args:
        spec: the role's rollout spec.
        num_workers: W, actors; must divide ``problem.env_shards``.
        cpus_per_worker: CPUs each actor reserves.
        max_restarts: replacements per ``collect`` before giving up.
        timeout_s: ``dist.actor_timeout_s``, the longest one fragment may take; a worker that has not
            answered by then is hung and replaced exactly like a dead one.
    """

    def __init__(
        self,
        spec: RolloutSpec,
        *,
        num_workers: int,
        cpus_per_worker: float = 1.0,
        max_restarts: int = 3,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Start the actors and read the env's action count and observation shape."""
        S = len(shard_sizes(spec))
        if num_workers < 1 or S % num_workers:
            raise ValueError(
                f"dist.num_rollout_workers: {num_workers} workers cannot split problem.env_shards={S} "
                "shards evenly; use a divisor of env_shards (each worker owns whole shards)"
            )
        self.spec, self.cpus = spec, cpus_per_worker
        per = S // num_workers
        self.blocks = [list(range(w * per, (w + 1) * per)) for w in range(num_workers)]
        self._sizes = shard_sizes(spec)
        self.restarted = False
        self._mirror: list[dict[str, Any]] = []
        self._new_actions: list[
            list[np.ndarray]
        ] = []  # replay: actions since ``_mirror``'s history
        self.exact = (
            True  # until the first workers say otherwise (no replacement can happen before)
        )
        self.pool = ActorPool(
            self._start,
            num_workers,
            kind=f"{spec.role} rollout",
            restore=self._restore,
            max_restarts=max_restarts,
            timeout_s=timeout_s,
            describe=lambda _: (
                "its shards restored exactly"
                if self.exact
                else "its envs re-seeded: problem.resume=reseed"
            ),
        )
        self.started = self.pool.actors()  # still reported once the loop has closed the source
        metas = self.pool.broadcast(lambda a: a.meta.remote())
        self.num_envs = sum(m[0] for m in metas)
        self.num_actions, self.obs_shape = metas[0][1], tuple(metas[0][2])
        self.version = -1
        self._box: list[ray.ObjectRef] = []
        # Each shard's state_dict as of the last fragment received (restores a dead worker's shards).
        self.exact = all(self.pool.broadcast(lambda a: a.exact_restore.remote()))
        if self.exact:
            self._set_mirror(self.state_dict()["shards"])

    @property
    def restarts(self) -> int:
        """Workers replaced so far."""
        return self.pool.restarts

    def _start(self, w: int, restart: int) -> Any:
        # Exact restores start from the seed and load the mirrored state; otherwise re-seed.
        return EnvWorker.options(num_cpus=self.cpus).remote(  # type: ignore[attr-defined]
            self.spec, self.blocks[w], 0 if self.exact else restart
        )

    def _restore(self, w: int, actor: Any) -> ray.ObjectRef | None:
        if not self.exact:
            self.restarted = True
            return None
        return actor.load_state_dict.remote(
            {"shards": [self._shard_state(i) for i in self.blocks[w]]}
        )

    def collect_async(
        self, policy_state: Mapping[str, torch.Tensor], version: int
    ) -> Callable[[], Rollout]:
        """Submit one fragment per worker now; the returned function waits and concatenates them."""
        if version != self.version:
            # ray.put serializes now: later in-place updates of the live parameters do not leak in.
            self._box = [ray.put({k: v.detach() for k, v in policy_state.items()})]
            self.version = version
        box = self._box
        wait = self.pool.submit(
            dict.fromkeys(range(len(self.blocks)), lambda a: a.collect.remote(version, box))
        )

        def gather() -> Rollout:
            self.restarted = False
            out = wait()
            done = [out[w] for w in range(len(self.blocks))]
            if self.exact:
                self._advance(done)
            return cat_envs([roll for roll, _ in done])

        return gather

    def collect(self, policy_state: Mapping[str, torch.Tensor], version: int) -> Rollout:
        """Collect one fragment from every worker (see ``collect_async``)."""
        return self.collect_async(policy_state, version)()

    def _set_mirror(self, shards: list[dict[str, Any]]) -> None:
        self._mirror = [dict(st) for st in shards]
        self._new_actions = [[] for _ in shards]

    def _advance(self, parts: list[tuple[Rollout, list[dict[str, Any]]]]) -> None:
        """Move every shard's mirrored state past the fragment just received."""
        for block, (roll, steps) in zip(self.blocks, parts, strict=True):
            lo = 0
            for i, step in zip(block, steps, strict=True):
                hi = lo + self._sizes[i]
                st = self._mirror[i]
                st.update(gen=step["gen"], num_collects=step["num_collects"])
                st["obs"] = roll.last_obs_N[lo:hi].numpy()
                if step["env"] is not None:
                    st["env"] = step["env"]
                else:  # concatenated only when a replacement needs it
                    self._new_actions[i].append(roll.actions_TN[:, lo:hi].numpy().astype(np.uint8))
                lo = hi

    def _shard_state(self, i: int) -> dict[str, Any]:
        """Return shard ``i``'s ``state_dict`` as of the last fragment received."""
        st = self._mirror[i]
        if self._new_actions[i]:
            env = st["env"]
            old = env["actions"].reshape(-1, self._sizes[i])
            acts = np.concatenate([old, *self._new_actions[i]])
            st["env"] = {"replay_seed": env["replay_seed"], "actions": acts}
            self._new_actions[i] = []
        return st

    def state_dict(self) -> dict[str, Any]:
        """Return every shard's state in shard order (the same layout as ``ShardGroup``)."""
        states = self.pool.broadcast(lambda a: a.state_dict.remote())
        return {"shards": [s for st in states for s in st["shards"]]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Hand every worker the state of its own shards."""
        shards = state["shards"]
        parts = [{"shards": [shards[i] for i in b]} for b in self.blocks]
        # Atari shards replay every action from the seed: may take longer than the timeout.
        self.pool.run({w: _load(p) for w, p in enumerate(parts)}, patient=True)
        if self.exact:  # exact restores hold exactly the loaded state
            self._set_mirror(shards)

    def actors(self) -> list[ActorInfo]:
        """Where each worker runs (after ``close``: where the first workers ran)."""
        return self.pool.actors() if len(self.pool) else self.started

    def close(self) -> None:
        """Close the envs and stop the actors (idempotent)."""
        self.pool.shutdown(close=lambda a: a.close.remote())


def _load(state: dict[str, Any]) -> Callable[[Any], ray.ObjectRef]:
    return lambda a: a.load_state_dict.remote(state)


class RayRolloutRunner:
    """The ``runner`` a deep-RLHF trial gets on the ``ray`` backend (``make_rollouts`` per role).

    Args:
        num_workers: ``dist.num_rollout_workers`` (agent role).
        num_oracles: ``dist.num_oracles`` (oracle role; 0 = its shards step in the learner).
        cpus_per_worker: ``dist.cpus_per_worker``.
        actor_timeout_s: ``dist.actor_timeout_s`` (a hung worker is replaced like a dead one).
    """

    def __init__(
        self,
        *,
        num_workers: int,
        num_oracles: int,
        cpus_per_worker: float,
        actor_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Remember the sizes; actors start in ``make_rollouts``."""
        if not ray.is_initialized():
            raise RuntimeError("RayRolloutRunner needs a running Ray (ray.init) first")
        self.num_workers, self.num_oracles = max(1, num_workers), num_oracles
        self.cpus, self.timeout_s = cpus_per_worker, actor_timeout_s
        self.sources: list[RayRollouts] = []

    def make_rollouts(self, spec: RolloutSpec) -> RolloutSource:
        """Return the role's rollout source: Ray actors, or local shards for an oracle without actors."""
        n = self.num_workers if spec.role == "agent" else self.num_oracles
        if n == 0:
            return ShardGroup(spec)
        src = RayRollouts(spec, num_workers=n, cpus_per_worker=self.cpus, timeout_s=self.timeout_s)
        self.sources.append(src)
        return src

    def actors(self) -> list[ActorInfo]:
        """Where every rollout worker of every role runs."""
        return [i for s in self.sources for i in s.actors()]

    def shutdown(self) -> None:
        """Stop every actor (``RayRollouts.close`` is idempotent)."""
        for s in self.sources:
            s.close()
        self.sources = []
