"""Integration fixtures: W&B off unless a test turns it on, quiet Ray, tiny sweep files.

Tests that start Ray are marked ``ray``; they share one Ray runtime per test process (``ray_session``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _tiny import tiny_sweep_file

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def tiny_sweep(tmp_path: Path) -> Path:
    """A one-trial sweep file on a 4-state Stackelberg game (40 exact iterations)."""
    return tiny_sweep_file(tmp_path)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray runtime (4 logical CPUs) per test process, shared by every module that asks.

    Session scope, because pytest-xdist may interleave tests of different modules in one process and
    starting Ray costs seconds. Tests that need their own cluster run it in a subprocess.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
