"""Environments: ale-py Atari vector env and a tiny vectorized gridworld, with one shared interface.

Both envs implement ``VecEnv``: SAME_STEP autoreset, true (unclipped) rewards, and per-env running
returns of whole episodes that ``pop_finished_episode_returns()`` hands out.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class RestorableVecEnv(Protocol):
    """A ``VecEnv`` that saves and restores its whole state (the toy gridworld): an env shard resumes it
    exactly from a checkpoint. Envs without it (ale-py) resume by replaying their actions or re-seed."""

    def state_dict(self) -> dict[str, Any]:
        """Return everything ``load_state_dict`` needs to continue bit for bit."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output."""
        ...


@runtime_checkable
class EpisodeLengths(Protocol):
    """A ``VecEnv`` that also hands out the lengths of finished episodes (the Atari env)."""

    def pop_finished_episode_lengths(self) -> list[int]:
        """Return and forget the lengths of the episodes finished since the last call."""
        ...


__all__ = [
    "AtariVecEnv",
    "EpisodeLengths",
    "RestorableVecEnv",
    "ToyTargetVecEnv",
    "VecEnv",
    "ale_game_id",
    "make_atari_vec_env",
    "make_toy_vec_env",
    "measure_random_fps",
    "random_episode_returns",
]
