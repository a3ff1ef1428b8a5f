"""``ActorPool``: the one place where a dead Ray actor is replaced and its call re-issued.

Every Ray runner keeps its actors in a pool of numbered slots. A call is a function ``slot's actor ->
ObjectRef``; ``submit`` issues one per slot at once and returns a wait function; waiting gathers every
result and, for each slot whose actor died (``RayActorError`` and kin), starts a replacement with the
runner's ``start(slot, restart)``, lets the runner bring it up to date with ``restore(slot, actor)``
(a dead actor during the restore is replaced again), and issues the same call again. After
``max_restarts`` replacements within one wait the pool gives up with ``ActorPoolError`` naming the
slots. ``actors()`` says where every actor runs, from each actor's ``info()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from pbrl_dist.executors.protocols import ActorInfo

ACTOR_ERRORS = (RayActorError, ActorDiedError, ActorUnavailableError)
Call = Callable[[Any], ray.ObjectRef]


class ActorPoolError(RuntimeError):
    """Actors kept dying after ``max_restarts`` replacements."""


class ActorPool:
    """Ray actors in slots ``0..size-1``; dead ones are replaced, restored and their calls re-issued.

    Args:
        start: ``(slot, restart) -> actor handle``; ``restart`` counts the pool's replacements so far
            (0 for the first actors).
        size: number of slots.
        kind: what the actors are, for messages and ``actors()`` (``rollout``, ``oracle``, ...).
        restore: ``(slot, new actor) -> ObjectRef | None`` run on every replacement before its call is
            re-issued (e.g. load the dead worker's shard state); None: nothing to restore.
        max_restarts: replacements allowed within one wait before giving up.
        describe: ``slot -> text`` appended to the replacement message (e.g. how shards came back).
    """

    def __init__(
        self,
        start: Callable[[int, int], Any],
        size: int,
        *,
        kind: str,
        restore: Callable[[int, Any], ray.ObjectRef | None] | None = None,
        max_restarts: int = 3,
        describe: Callable[[int], str] | None = None,
    ) -> None:
        """Start ``size`` actors."""
        self.start, self.kind, self.restore = start, kind, restore
        self.max_restarts, self.describe = max_restarts, describe
        self.restarts = 0
        self.handles: list[Any] = [start(i, 0) for i in range(size)]

    def __len__(self) -> int:
        """Number of slots."""
        return len(self.handles)

    def submit(self, calls: Mapping[int, Call]) -> Callable[[], dict[int, Any]]:
        """Issue ``calls[slot](actor)`` for every slot now; return the function that waits for them."""
        calls = dict(calls)
        refs = {s: call(self.handles[s]) for s, call in calls.items()}
        return lambda: self._gather(calls, refs)

    def run(self, calls: Mapping[int, Call]) -> dict[int, Any]:
        """``submit`` and wait: ``{slot: result}``."""
        return self.submit(calls)()

    def broadcast(self, call: Call) -> list[Any]:
        """Run ``call`` on every slot; results in slot order."""
        out = self.run(dict.fromkeys(range(len(self.handles)), call))
        return [out[s] for s in range(len(self.handles))]

    def _gather(self, calls: dict[int, Call], refs: dict[int, ray.ObjectRef]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        dead: list[int] = []
        for attempt in range(self.max_restarts + 1):
            dead = []
            for s, ref in refs.items():
                if s in out:
                    continue
                try:
                    out[s] = ray.get(ref)
                except ACTOR_ERRORS:
                    dead.append(s)
            if not dead:
                return out
            if attempt == self.max_restarts:
                break
            for s in dead:
                self.replace(s)
                refs[s] = calls[s](self.handles[s])
        raise ActorPoolError(
            f"{self.kind} actors {sorted(dead)} kept dying ({self.max_restarts} replacements)"
        )

    def replace(self, slot: int) -> None:
        """Kill slot ``slot``'s actor (if still alive) and start a restored replacement."""
        for _ in range(self.max_restarts + 1):
            with contextlib.suppress(Exception):
                ray.kill(self.handles[slot], no_restart=True)
            self.restarts += 1
            self.handles[slot] = self.start(slot, self.restarts)
            ref = self.restore(slot, self.handles[slot]) if self.restore is not None else None
            try:
                if ref is not None:
                    ray.get(ref)
                break
            except ACTOR_ERRORS:
                continue  # the replacement died while restoring: replace it again
        else:
            raise ActorPoolError(
                f"{self.kind} actor {slot}: every replacement died while restoring"
            )
        how = f" ({self.describe(slot)})" if self.describe is not None else ""
        print(
            f"    {self.kind} actor {slot} died; replaced it{how} and re-issued its call",
            flush=True,
        )

    def info(self) -> list[dict[str, Any]]:
        """Each actor's own ``info()`` dict (at least ``node_id`` and ``pid``), in slot order."""
        return self.broadcast(lambda a: a.info.remote())

    def actors(self) -> list[ActorInfo]:
        """Where each actor runs."""
        infos = self.info()
        return [
            ActorInfo(kind=self.kind, index=i, node_id=str(d["node_id"]), pid=int(d["pid"]))
            for i, d in enumerate(infos)
        ]

    def shutdown(self, close: Call | None = None) -> None:
        """Stop every actor (after ``close(actor)`` where given, e.g. to close envs); idempotent."""
        for a in self.handles:
            if close is not None:
                with contextlib.suppress(Exception):
                    ray.get(close(a), timeout=30)
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
        self.handles = []
