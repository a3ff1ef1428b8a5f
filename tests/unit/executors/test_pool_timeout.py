"""``ActorPool`` with ``timeout_s``: a hung actor is a dead actor (issue #20, point 8).

A tiny actor stands in for the rollout workers: ``work(x, sleep_s)`` answers ``10 * slot + x`` after
sleeping ``sleep_s`` (``inf``: never). The real scenario is an actor process stopped with SIGSTOP: it
holds its socket open, so Ray never sees it die; only the pool's timeout finds it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from typing import Any

import pytest
import ray

from pbrl_dist.executors.pool import ActorPool, ActorPoolError

pytestmark = [
    pytest.mark.ray,
    pytest.mark.chaos,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(300),
]


@ray.remote(num_cpus=0, max_restarts=0)
class Sleeper:
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def info(self) -> dict[str, Any]:
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def work(self, x: int, sleep_s: float = 0.0) -> int:
        if math.isinf(sleep_s):
            while True:
                time.sleep(1)
        time.sleep(sleep_s)
        return 10 * self.slot + x


def _start(slot: int, restart: int) -> Any:
    return Sleeper.remote(slot)


def _calls(xs: dict[int, int], sleep_s: dict[int, float] | None = None) -> dict[int, Any]:
    args = {s: (x, (sleep_s or {}).get(s, 0.0)) for s, x in xs.items()}
    return {s: (lambda a, xt=xt: a.work.remote(*xt)) for s, xt in args.items()}


def _gone(pid: int, within_s: float) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


def test_actor_pool_replaces_a_sigstopped_actor_after_its_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real hang: slot 1's process is SIGSTOPped. Its call is answered by a restored replacement
    shortly after the timeout, one warning line came at half of it, the stopped process is killed."""
    restored: list[int] = []

    def restore(slot: int, actor: Any) -> Any:
        restored.append(slot)
        return actor.info.remote()

    timeout = 3.0
    pool = ActorPool(_start, 2, kind="rollout", restore=restore, timeout_s=timeout)
    pid = pool.actors()[1].pid
    try:
        os.kill(pid, signal.SIGSTOP)
        capsys.readouterr()
        t0 = time.monotonic()
        assert pool.run(_calls({0: 1, 1: 2})) == {0: 1, 1: 12}
        took = time.monotonic() - t0
        out = capsys.readouterr().out
        assert timeout <= took < timeout + 30, took  # slack: a fresh actor starts on a busy machine
        assert pool.restarts == 1 and restored == [1]
        warnings = [line for line in out.splitlines() if "has not answered" in line]
        assert len(warnings) == 1, out
        assert f"rollout actor 1 (pid {pid}, node " in warnings[0]
        assert "replacing it at 3 s" in warnings[0]
        assert f"rollout actor 1 (pid {pid}, node " in out.split(warnings[0])[1]
        assert "did not answer within 3 s (hung); replaced it and re-issued its call" in out
        new = pool.actors()
        assert new[1].pid != pid and new[0].pid != pid
        assert _gone(pid, 30), f"the hung actor's process {pid} was not killed"
        assert pool.run(_calls({0: 5, 1: 6})) == {0: 5, 1: 16}  # the pool goes on as before
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        pool.shutdown()


def test_actor_pool_waits_for_a_long_call_below_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A long but legitimate call (past half the timeout) is warned about once and never replaced."""
    pool = ActorPool(_start, 2, kind="oracle", timeout_s=6.0)
    try:
        capsys.readouterr()
        assert pool.run(_calls({0: 1, 1: 2}, {1: 4.0})) == {0: 1, 1: 12}
        out = capsys.readouterr().out
        assert pool.restarts == 0, out
        (warning,) = [line for line in out.splitlines() if "has not answered" in line]
        assert warning.lstrip().startswith("oracle actor 1 (pid "), warning
        assert "replacing it at 6 s" in warning
        assert "replaced" not in out
    finally:
        pool.shutdown()


def test_actor_pool_patient_calls_have_no_timeout() -> None:
    """``patient=True`` (e.g. a checkpoint load that replays Atari actions) is waited for."""
    pool = ActorPool(_start, 1, kind="rollout", timeout_s=1.0)
    try:
        assert pool.run(_calls({0: 7}, {0: 2.5}), patient=True) == {0: 7}
        assert pool.restarts == 0
    finally:
        pool.shutdown()


def test_actor_pool_gives_up_on_a_call_that_hangs_every_actor() -> None:
    """A call that hangs on every replacement ends in one error naming the slot, not a stall."""
    pool = ActorPool(_start, 2, kind="test", max_restarts=1, timeout_s=1.0)
    try:
        with pytest.raises(
            ActorPoolError, match=r"test actors \[0\] kept hanging \(1 replacements\)"
        ):
            pool.run(_calls({0: 1, 1: 2}, {0: math.inf}))
        assert pool.restarts == 1
    finally:
        pool.shutdown()


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_actor_pool_refuses_a_timeout_that_is_not_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        ActorPool(_start, 0, kind="test", timeout_s=bad)
