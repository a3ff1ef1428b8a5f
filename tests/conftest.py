"""Shared fixtures: single-threaded torch, float64 by default in the tabular tests."""

from __future__ import annotations

import os

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
