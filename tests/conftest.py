"""Shared fixtures: single-threaded torch, float64 by default in the tabular tests."""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests never talk to W&B; the W&B sink's own tests switch it back on explicitly.
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---- SIGINT left as found ------------------------------------------------------------------------
# A child process inherits its parent's ignored and blocked signals. A pytest worker whose SIGINT was
# left ignored or blocked by some earlier in-process code (CI: test_local_run_interrupted's `pbrl run`
# child then ran through its Ctrl-C, rc 0) would make every later Ctrl-C test of that worker fail for a
# reason that is not theirs. This guard puts SIGINT back before and after every test and names the test that
# changed it in a warning, so the culprit shows in the summary.

_SIGINT_BIT = 1 << (signal.SIGINT - 1)


def _sigint_kernel_state() -> tuple[bool, bool]:
    """(ignored, blocked) of SIGINT for this thread, as the kernel sees it."""
    fields = dict(
        line.split(":\t", 1)
        for line in Path("/proc/thread-self/status").read_text().splitlines()
        if line.startswith(("SigIgn", "SigBlk"))
    )
    return (
        bool(int(fields["SigIgn"], 16) & _SIGINT_BIT),
        bool(int(fields["SigBlk"], 16) & _SIGINT_BIT),
    )


def _put_sigint_back(when: str, nodeid: str) -> None:
    ignored, blocked = _sigint_kernel_state()
    if blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if ignored or blocked:
        warnings.warn(
            f"SIGINT was left {'ignored' if ignored else 'blocked'} {when} {nodeid}; put back",
            stacklevel=1,
        )


@pytest.fixture(autouse=True)
def _sigint_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not _HAS_PROC:
        yield
        return
    _put_sigint_back("before", request.node.nodeid)
    handler = signal.getsignal(signal.SIGINT)
    yield
    _put_sigint_back("by", request.node.nodeid)
    if signal.getsignal(signal.SIGINT) is not handler:  # e.g. a handler of a run left installed
        signal.signal(signal.SIGINT, handler)
        warnings.warn(
            f"the SIGINT handler was left changed by {request.node.nodeid}; put back", stacklevel=1
        )


_HAS_PROC = Path("/proc/thread-self/status").exists()
