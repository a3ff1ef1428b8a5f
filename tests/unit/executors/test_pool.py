"""D13: ``ActorPool``, the one place where a dead Ray actor is replaced, restored and its call re-issued.

A tiny actor class stands in for the rollout workers: ``info()`` says where it runs, ``work(x)``
answers ``10 * slot + x`` (or dies on ``x < 0``). Actors take no CPU, so the pool never waits for one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import ray

from pbrl_dist.executors.pool import ACTOR_ERRORS, ActorPool, ActorPoolError

pytestmark = [pytest.mark.ray, pytest.mark.chaos, pytest.mark.usefixtures("ray_session")]


@ray.remote(num_cpus=0, max_restarts=0)
class Worker:
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def info(self) -> dict[str, Any]:
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def work(self, x: int) -> int:
        if x < 0:
            os._exit(1)  # the actor dies while running the call
        return 10 * self.slot + x


def _start(slot: int, restart: int) -> Any:
    return Worker.remote(slot)


def _kill_and_wait(actor: Any, timeout: float = 30.0) -> None:
    """``ray.kill`` and wait until a call on the actor fails (so no later call can still reach it)."""
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=5)
        except ACTOR_ERRORS:
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.05)
    raise AssertionError("the killed actor kept answering")


def _calls(xs: dict[int, int]) -> dict[int, Any]:
    return {s: (lambda a, x=x: a.work.remote(x)) for s, x in xs.items()}


def test_d13_pool_replaces_a_killed_actor_restores_it_and_reissues_its_call() -> None:
    restored: list[tuple[int, Any]] = []

    def restore(slot: int, actor: Any) -> Any:
        restored.append((slot, actor))
        return actor.info.remote()

    pool = ActorPool(_start, 2, kind="test", restore=restore)
    try:
        before = {a.pid for a in pool.actors()}
        assert len(before) == 2
        dead = pool.handles[1]
        _kill_and_wait(dead)
        assert pool.run(_calls({0: 1, 1: 2})) == {0: 1, 1: 12}
        assert pool.restarts == 1
        assert len(restored) == 1
        slot, actor = restored[0]
        assert slot == 1 and actor is pool.handles[1] and actor is not dead
        infos = pool.actors()
        assert [i.index for i in infos] == [0, 1] and {i.kind for i in infos} == {"test"}
        assert len({i.pid for i in infos}) == 2
        assert infos[1].pid not in before  # slot 1 runs in a new process
    finally:
        pool.shutdown()


def test_d13_pool_replaces_again_when_the_restore_kills_the_replacement() -> None:
    restored: list[int] = []

    def restore(slot: int, actor: Any) -> Any:
        restored.append(slot)
        if len(restored) == 1:
            _kill_and_wait(actor)  # the first replacement dies while it is being restored
        return actor.info.remote()

    pool = ActorPool(_start, 2, kind="test", restore=restore)
    try:
        _kill_and_wait(pool.handles[0])
        assert pool.run(_calls({0: 3, 1: 4})) == {0: 3, 1: 14}
        assert restored == [0, 0]
        assert pool.restarts == 2
        assert len({i.pid for i in pool.actors()}) == 2
    finally:
        pool.shutdown()


def test_d13_pool_gives_up_after_max_restarts_naming_the_slot() -> None:
    pool = ActorPool(_start, 2, kind="test", max_restarts=2)
    try:
        with pytest.raises(
            ActorPoolError, match=r"test actors \[1\] kept dying \(2 replacements\)"
        ):
            pool.run(_calls({0: 1, 1: -1}))  # slot 1's call kills every actor that runs it
        assert pool.restarts == 2
    finally:
        pool.shutdown()
