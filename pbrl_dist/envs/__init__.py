"""Environments: ale-py Atari vector env and a tiny vectorized gridworld, with one shared interface.

Both envs implement ``VecEnv``: SAME_STEP autoreset, true (unclipped) rewards, and per-env running
returns of whole episodes that ``pop_finished_episode_returns()`` hands out.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from pbrl_dist.envs.atari import (
    AtariVecEnv,
    ale_game_id,
    make_atari_vec_env,
    measure_random_fps,
    random_episode_returns,
)
from pbrl_dist.envs.toy import ToyTargetVecEnv, make_toy_vec_env


class VecEnv(Protocol):
    """The interface the RLHF code path relies on."""

    num_envs: int
    num_actions: int
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype

    def reset(self) -> np.ndarray:
        """Return obs (N, *obs_shape)."""
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Return (obs, reward_true float32 (N,), terminated (N,), truncated (N,), info)."""
        ...

    def send(self, actions: np.ndarray) -> None:
        """Start a step (may run in the background); ``send`` then ``recv`` equals ``step``."""
        ...

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Finish the step started by ``send``; return what ``step`` returns."""
        ...

    def pop_finished_episode_returns(self) -> list[float]:
        """Return and forget the returns of the episodes finished since the last call."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


__all__ = [
    "AtariVecEnv",
    "ToyTargetVecEnv",
    "VecEnv",
    "ale_game_id",
    "make_atari_vec_env",
    "make_toy_vec_env",
    "measure_random_fps",
    "random_episode_returns",
]
