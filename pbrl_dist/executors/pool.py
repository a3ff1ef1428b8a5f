"""``ActorPool``: the one place where a dead or hung Ray actor is replaced and its call re-issued.

Every Ray runner keeps its actors in a pool of numbered slots. A call is a function ``slot's actor ->
ObjectRef``; ``submit`` issues one per slot at once and returns a wait function; waiting gathers every
result with ``ray.wait`` and, for each slot whose actor died (``RayActorError`` and kin) or did not
answer within ``timeout_s`` of the call's issue (a hung actor, e.g. SIGSTOPped: it is killed with
``ray.kill``), starts a replacement with the runner's ``start(slot, restart)``, waits until it is up,
lets the runner bring it up to date with ``restore(slot, actor)`` (a dead actor during the restore is
replaced again), and issues the same call again. At half the timeout a hung slot gets one warning
line. After ``max_restarts`` replacements of one slot within one wait the pool gives up with
``ActorPoolError`` naming the slot. ``actors()`` says where every actor runs, from each actor's
``info()``.

The timeout is the longest one call may take (``dist.actor_timeout_s``). It counts from the call's
issue, and a call is only issued to an actor that is up (its ``info()`` answered), so an actor's
start-up is never counted. Calls that may legitimately run long (a restore that replays an Atari
shard's actions, loading a checkpoint) are waited for without a limit (``patient=True``), with one
line when they pass the timeout.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from pbrl_dist.executors.protocols import ActorInfo

ACTOR_ERRORS = (RayActorError, ActorDiedError, ActorUnavailableError)
Call = Callable[[Any], ray.ObjectRef]
DEFAULT_TIMEOUT_S = 60.0  # dist.actor_timeout_s's default
START_NOTICE_S = 30.0  # name actors still starting after this long (or the timeout, if longer)


class ActorPoolError(RuntimeError):
    """Actors kept dying (or hanging) after ``max_restarts`` replacements."""


class ActorPool:
    """Ray actors in slots ``0..size-1``; dead or hung ones are replaced, restored, calls re-issued.

    Args:
        start: ``(slot, restart) -> actor handle``; ``restart`` counts the pool's replacements so far
            (0 for the first actors).
        size: number of slots.
        kind: what the actors are, for messages and ``actors()`` (``rollout``, ``oracle``, ...).
        restore: ``(slot, new actor) -> ObjectRef | None`` run on every replacement before its call is
            re-issued (e.g. load the dead worker's shard state); None: nothing to restore.
        max_restarts: replacements of one slot allowed within one wait before giving up.
        describe: ``slot -> text`` appended to the replacement message (e.g. how shards came back).
        timeout_s: the longest one call may take, from its issue; an actor that has not answered by
            then is hung: killed and replaced like a dead one. None: wait forever.
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
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Start ``size`` actors and wait until they are up."""
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"ActorPool timeout_s must be > 0 or None, not {timeout_s!r}")
        self.start, self.kind, self.restore = start, kind, restore
        self.max_restarts, self.describe, self.timeout_s = max_restarts, describe, timeout_s
        self.restarts = 0
        self.handles: list[Any] = [start(i, 0) for i in range(size)]
        self._where: dict[int, str] = {}  # slot -> "pid N, node X" of its current actor
        self._await_up(range(size))

    def __len__(self) -> int:
        """Number of slots."""
        return len(self.handles)

    def submit(
        self, calls: Mapping[int, Call], *, patient: bool = False
    ) -> Callable[[], dict[int, Any]]:
        """Issue ``calls[slot](actor)`` for every slot now; return the function that waits for them.

        ``patient``: the calls may legitimately take longer than ``timeout_s``; wait without a limit.
        """
        calls = dict(calls)
        issued = {s: (call(self.handles[s]), time.monotonic()) for s, call in calls.items()}
        return lambda: self._gather(calls, issued, None if patient else self.timeout_s)

    def run(self, calls: Mapping[int, Call], *, patient: bool = False) -> dict[int, Any]:
        """``submit`` and wait: ``{slot: result}``."""
        return self.submit(calls, patient=patient)()

    def broadcast(self, call: Call, *, patient: bool = False) -> list[Any]:
        """Run ``call`` on every slot; results in slot order."""
        out = self.run(dict.fromkeys(range(len(self.handles)), call), patient=patient)
        return [out[s] for s in range(len(self.handles))]

    def _gather(
        self,
        calls: dict[int, Call],
        issued: dict[int, tuple[ray.ObjectRef, float]],
        timeout_s: float | None,
    ) -> dict[int, Any]:
        out: dict[int, Any] = {}
        tries = dict.fromkeys(calls, 0)
        warned: set[int] = set()
        pending = dict(issued)

        def again(s: int, why: str, what: str) -> None:
            if tries[s] >= self.max_restarts:
                raise ActorPoolError(
                    f"{self.kind} actors [{s}] kept {what} ({self.max_restarts} replacements)"
                )
            tries[s] += 1
            warned.discard(s)
            self.replace(s, why=why)
            pending[s] = (calls[s](self.handles[s]), time.monotonic())

        while pending:
            wait_s = None
            if timeout_s is not None:
                now = time.monotonic()
                due = [
                    t0 + (timeout_s if s in warned else timeout_s / 2)
                    for s, (_, t0) in pending.items()
                ]
                wait_s = max(0.0, min(due) - now)
            slot_of = {ref: s for s, (ref, _) in pending.items()}
            ready, _ = ray.wait(list(slot_of), num_returns=1, timeout=wait_s)
            if ready:  # take every answer that is in, not only the first
                ready, _ = ray.wait(list(slot_of), num_returns=len(slot_of), timeout=0)
            for ref in ready:
                s = slot_of[ref]
                del pending[s]
                try:
                    out[s] = ray.get(ref)
                except ACTOR_ERRORS:
                    again(s, "died", "dying")
            if timeout_s is None:
                continue
            now = time.monotonic()
            for s, (ref, t0) in list(pending.items()):
                late = now - t0
                if late < timeout_s / 2 or ray.wait([ref], timeout=0)[0]:
                    continue  # in time, or its answer came while another slot was replaced
                if late >= timeout_s:
                    del pending[s]
                    again(s, f"did not answer within {timeout_s:g} s (hung)", "hanging")
                elif s not in warned:
                    warned.add(s)
                    print(
                        f"    {self.kind} actor {s} ({self._where.get(s, 'pid ?')}) has not "
                        f"answered for {late:.3g} s; replacing it at {timeout_s:g} s "
                        "(dist.actor_timeout_s)",
                        flush=True,
                    )
        return out

    def replace(self, slot: int, *, why: str = "died") -> None:
        """Kill slot ``slot``'s actor (if still alive) and start a restored replacement."""
        where = self._where.get(slot, "pid ?")
        for _ in range(self.max_restarts + 1):
            with contextlib.suppress(Exception):
                ray.kill(self.handles[slot], no_restart=True)
            self.restarts += 1
            self.handles[slot] = self.start(slot, self.restarts)
            self._await_up([slot])
            ref = self.restore(slot, self.handles[slot]) if self.restore is not None else None
            try:
                if ref is not None:
                    self._patient_get(ref, f"restoring {self.kind} actor {slot}")
                break
            except ACTOR_ERRORS:
                continue  # the replacement died while restoring: replace it again
        else:
            raise ActorPoolError(
                f"{self.kind} actor {slot}: every replacement died while restoring"
            )
        how = f" ({self.describe(slot)})" if self.describe is not None else ""
        print(
            f"    {self.kind} actor {slot} ({where}) {why}; replaced it{how} and re-issued its call",
            flush=True,
        )

    def _await_up(self, slots: Iterable[int]) -> None:
        """Wait until the actors of ``slots`` answer ``info()`` (they are up); note where they run.

        Start-up has no limit (an actor may wait for free CPUs); one line says so past
        ``START_NOTICE_S`` (or the timeout, if longer). An actor that died meanwhile is left to the
        next call, which replaces it.
        """
        refs = {self.handles[s].info.remote(): s for s in slots}
        t0, warned = time.monotonic(), False
        notice = max(START_NOTICE_S, self.timeout_s or 0.0)
        while refs:
            wait_s = None if warned else max(0.0, t0 + notice - time.monotonic())
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=wait_s)
            for ref in ready:
                s = refs.pop(ref)
                with contextlib.suppress(*ACTOR_ERRORS):
                    d = ray.get(ref)
                    self._where[s] = f"pid {d['pid']}, node {str(d['node_id'])[:8]}"
            if not ready and not warned:
                warned = True
                print(
                    f"    {self.kind} actors {sorted(refs.values())} have not started after "
                    f"{time.monotonic() - t0:.0f} s; still waiting (are CPUs free?)",
                    flush=True,
                )

    def _patient_get(self, ref: ray.ObjectRef, what: str) -> Any:
        """``ray.get`` without a limit, but one line once it passes the timeout."""
        if self.timeout_s is not None:
            t0 = time.monotonic()
            ready, _ = ray.wait([ref], timeout=self.timeout_s)
            if not ready:
                print(
                    f"    {what} has taken {time.monotonic() - t0:.0f} s; still waiting",
                    flush=True,
                )
        return ray.get(ref)

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
