"""Integration fixtures: W&B off unless a test turns it on, quiet Ray, tiny sweep files.

Tests that start Ray are marked ``ray``; they share one Ray runtime per test process (``ray_session``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parents[2]

TINY = """\
name: tiny
problem:
  name: stackelberg
  num_states: 4
  num_leader_actions: 3
  num_follower_actions: 3
  sparsity: 0.5
  gamma: 0.8
  tau: 0.2
method:
  name: pbrl_value
  algo: pbrl
  penalty: value
  estimator: exact
  oracle: exact
  lam: 20.0
  lr_x: 0.1
  lr_y: 0.1
  num_iters: 40
  log_every: 10
  mc_batch: 32
  mc_chunk: 16
  mc_horizon: 8
dist:
  checkpoint_every: 10
logging:
  wandb: disabled
  progress_every_s: 1000
sweep:
  seeds: [0]
"""


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture
def tiny_sweep(tmp_path: Path) -> Path:
    """A one-trial sweep file on a 4-state Stackelberg game (40 exact iterations)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


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
