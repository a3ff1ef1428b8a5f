"""When is it due: the one place that decides logging, progress and checkpoint cadence.

Every loop and driver asks here instead of writing ``k % every == 0 or k == total`` itself:

- ``due(k_done, every, total)``: iteration-count cadence (metrics rows, checkpoints) — after every
  ``every``-th iteration and always after the last one;
- ``Timer(every_s)``: wall-clock cadence (progress lines).

The deep-RLHF loop (``rlhf/loop.py``) checkpoints with ``due`` and times its warm-up progress with
``Timer``; its metrics rows are due by agent env steps (``log_every_steps``), not iterations.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def due(k_done: int, every: int, total: int) -> bool:
    """True after iteration ``k_done`` (1-based count of finished iterations) when it is a multiple of
    ``every`` or the last of ``total``; ``every`` ≤ 0 means only at the end."""
    return k_done == total or (every > 0 and k_done % every == 0)


class Timer:
    """Wall-clock cadence: ``ready()`` is True at most once every ``every_s`` seconds."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        """Start now; the first ``ready()`` is due ``every_s`` seconds from now."""
        self.every_s, self.clock = every_s, clock
        self.start = self.last = clock()

    def ready(self) -> bool:
        """True (and restart the interval) when ``every_s`` seconds have passed since the last time."""
        now = self.clock()
        if now - self.last < self.every_s:
            return False
        self.last = now
        return True

    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return self.clock() - self.start
