"""Atari vector env built directly on ale-py's ``AtariVectorEnv`` (C++ threads, no subprocesses).

Preprocessing happens inside ALE: frame skip 4 with max-pooling of the last two frames, 84×84
grayscale, a stack of the last 4 frames (oldest first; zero frames at episode start), up to 30 no-op
starts, FIRE on reset where the game needs it. The wrapper returns the TRUE game reward (ALE's
reward clipping is off); clip it yourself where an algorithm wants clipped rewards.

Choices made here, on purpose (ale-py 0.12.1, checked by running it):

* autoreset is SAME_STEP: when ``terminated | truncated`` is True for env n at step t, the returned
  ``obs[n]`` is already the first observation of the next episode (the real last observation is in
  ``info["final_obs"][n]``; that array is only meaningful on the rows that ended). ale-py's default,
  NEXT_STEP, would instead spend the following ``step`` on the reset and ignore its action.
* ``sticky_action_prob`` is ALE's ``repeat_action_probability``. ale-py's constructor defaults to
  0.0 but the gymnasium ``ALE/*-v5`` registration uses 0.25 (Machado et al. 2018); callers choose.
* ``episodic_life=True`` maps to ale-py's ``life_loss_info=True``: ``terminated`` is raised on every
  life loss while the game continues (DeepMind's EpisodicLife semantics). ale-py's own
  ``episodic_life=True`` instead *resets the whole game* on the first life loss, so its episodes are
  one-life games whose scores are not game scores; we never use it. ``info["game_over"]`` marks real
  game ends in both modes, and the episode returns this wrapper reports are whole-game returns.
* seeds: ale-py takes one int32 seed per env (values ≥ 2³¹ are rejected); per-env seeds are
  ``derive_seed(seed, "atari", reset_index, env_index) mod 2³¹``. Given the seed, observations,
  rewards and autoresets are deterministic (sticky actions included).
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any

import numpy as np
from ale_py import roms
from ale_py.vector_env import AtariVectorEnv as _AleVectorEnv
from gymnasium.spaces import Discrete

from pbrl_dist.core.types import derive_seed


def ale_game_id(game: str) -> str:
    """Turn "BeamRider", "ALE/BeamRider-v5", "beam_rider", "MsPacman" into ALE's snake_case ROM id.

    Args:
        game: game name in any of the spellings above.

    Returns:
        The ROM id (e.g. "beam_rider", "ms_pacman").

    Raises:
        ValueError: if ale-py ships no ROM of that name.
    """
    name = game.split("/")[-1]
    name = re.sub(r"-v\d+$", "", name)
    if not name.islower():
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    with warnings.catch_warnings():  # ale-py warns before returning None for unknown names
        warnings.simplefilter("ignore", UserWarning)
        rom_path = roms.get_rom_path(name)
    if rom_path is None:
        raise ValueError(
            f"game: no ALE ROM named {name!r} (from {game!r}); examples: 'beam_rider', 'seaquest', "
            f"'ms_pacman'; all: {sorted(roms.get_all_rom_ids())}"
        )
    return name


class AtariVecEnv:
    """Thin wrapper over ``ale_py.vector_env.AtariVectorEnv`` that also tracks true episode returns.

    Interface shared with ``pbrl_dist.envs.toy.ToyTargetVecEnv``: ``reset()``, ``step(actions)``,
    ``pop_finished_episode_returns()``, ``num_envs``, ``num_actions``, ``obs_shape``, ``obs_dtype``,
    ``close()``.

    Args:
        game: ALE ROM id (snake_case).
        num_envs: number of emulators N.
        seed: base seed; every per-env seed is derived from it.
        ale_kwargs: keyword arguments for ``AtariVectorEnv`` (already resolved by the factory).
        episodic_life: True if ``terminated`` fires on life loss (game ends are detected apart).
    """

    def __init__(
        self,
        game: str,
        *,
        num_envs: int,
        seed: int,
        ale_kwargs: dict[str, Any],
        episodic_life: bool,
    ) -> None:
        """Create the ALE vector env (no reset yet)."""
        self.game = game
        self.seed = int(seed)
        self.episodic_life = bool(episodic_life)
        self._env = _AleVectorEnv(game, num_envs, **ale_kwargs)
        self.num_envs = int(num_envs)
        action_space = self._env.single_action_space
        obs_space_shape = self._env.single_observation_space.shape
        if not isinstance(action_space, Discrete) or obs_space_shape is None:
            raise TypeError(f"AtariVecEnv: unexpected spaces {action_space}, {obs_space_shape}")
        self.num_actions = int(action_space.n)
        self.obs_shape: tuple[int, ...] = tuple(obs_space_shape)
        self.obs_dtype = np.dtype(np.uint8)
        self.frame_skip = int(ale_kwargs["frameskip"])
        self.sticky_action_prob = float(ale_kwargs["repeat_action_probability"])
        self._num_resets = 0
        self._ep_return_N = np.zeros(self.num_envs, dtype=np.float64)
        self._ep_length_N = np.zeros(self.num_envs, dtype=np.int64)
        self._ep_frame_N = np.zeros(self.num_envs, dtype=np.int64)
        self._finished_returns: list[float] = []
        self._finished_lengths: list[int] = []
        self._closed = False
        self._needs_reset = True
        self._in_flight = False

    # --- core API -------------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        """Reset every env with freshly derived seeds and clear the running episode returns.

        The k-th call to ``reset`` on an env built with ``seed`` always gives the same observations.

        Returns:
            obs_NCHW: uint8 (N, 4, 84, 84) stacked frames, oldest first.
        """
        seeds_N = np.array(
            [
                derive_seed(self.seed, "atari", self._num_resets, i) % (2**31)
                for i in range(self.num_envs)
            ],
            dtype=np.int64,
        )
        self._num_resets += 1
        obs_NCHW, info = self._env.reset(seed=seeds_N)
        self._ep_return_N[:] = 0.0
        self._ep_length_N[:] = 0
        self._ep_frame_N[:] = info["episode_frame_number"]
        self._needs_reset = False
        return obs_NCHW

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every env by one agent step (``frame_skip`` emulator frames).

        Args:
            actions: (N,) integer actions in [0, num_actions) (numpy array, list or CPU tensor).

        Returns:
            obs_NCHW: uint8 (N, 4, 84, 84); the next episode's first observation where one ended.
            reward_N: float32 (N,) true (unclipped) game reward, summed over the skipped frames.
            terminated_N: bool (N,) (also on life loss when ``episodic_life``).
            truncated_N: bool (N,) (the per-episode frame cap was reached).
            info: ale-py's info (``lives``, ``episode_frame_number``, ``frame_number``, ``env_id``,
                ``final_obs``) plus ``game_over`` bool (N,): a whole game ended at this step.
        """
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start one agent step of every env on ALE's threads and return at once (see ``recv``).

        ``send`` then ``recv`` is exactly ``step``; in between the caller's thread is free, e.g. to
        run the policy on another env shard (``executors.shards`` pipelines shards this way).
        """
        if self._needs_reset:
            raise RuntimeError("AtariVecEnv.step: call reset() first")
        if self._in_flight:
            raise RuntimeError("AtariVecEnv.send: the previous send was not received")
        a_N = np.ascontiguousarray(np.asarray(actions), dtype=np.int64).reshape(-1)
        if a_N.shape != (self.num_envs,):
            raise ValueError(f"actions: expected shape ({self.num_envs},), got {a_N.shape}")
        if a_N.min() < 0 or a_N.max() >= self.num_actions:
            raise ValueError(f"actions: values must be in [0, {self.num_actions}), got {a_N}")
        self._env.send(a_N)
        self._in_flight = True

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Wait for the step started by ``send`` and return what ``step`` returns."""
        if not self._in_flight:
            raise RuntimeError("AtariVecEnv.recv: nothing was sent")
        obs_NCHW, reward, terminated_N, truncated_N, info = self._env.recv()
        self._in_flight = False
        reward_N = np.asarray(reward, dtype=np.float32)
        ep_frame_N = np.asarray(info["episode_frame_number"], dtype=np.int64)
        done_N = terminated_N | truncated_N
        # With episodic_life a life loss continues the game (the episode frame counter keeps
        # growing) while a game end autoresets it (the counter restarts near 0).
        game_over_N = done_N & (ep_frame_N < self._ep_frame_N) if self.episodic_life else done_N
        self._ep_frame_N = ep_frame_N
        self._ep_return_N += reward_N
        self._ep_length_N += 1
        if game_over_N.any():
            idx = np.flatnonzero(game_over_N)
            self._finished_returns.extend(self._ep_return_N[idx].tolist())
            self._finished_lengths.extend(self._ep_length_N[idx].tolist())
            self._ep_return_N[idx] = 0.0
            self._ep_length_N[idx] = 0
        info = dict(info)
        info["game_over"] = game_over_N
        return obs_NCHW, reward_N, terminated_N, truncated_N, info

    def pop_finished_episode_returns(self) -> list[float]:
        """Return (and forget) the true game returns of the games that ended since the last call.

        Order: by step, then by env index. Lengths (agent steps) are kept in step with it and can be
        read with ``pop_finished_episode_lengths`` before or after.
        """
        out, self._finished_returns = self._finished_returns, []
        return out

    def pop_finished_episode_lengths(self) -> list[int]:
        """Return (and forget) the lengths in agent steps of the games ended since the last call."""
        out, self._finished_lengths = self._finished_lengths, []
        return out

    def close(self) -> None:
        """Release the emulators (idempotent)."""
        if not self._closed:
            self._env.close()
            del self._env
            self._closed = True

    def __enter__(self) -> AtariVecEnv:
        """Support ``with make_atari_vec_env(...) as env``."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the ``with`` block."""
        self.close()


def make_atari_vec_env(
    game: str,
    *,
    num_envs: int,
    seed: int,
    sticky_action_prob: float = 0.25,
    frame_skip: int = 4,
    stack: int = 4,
    img: int = 84,
    noop_max: int = 30,
    episodic_life: bool = False,
    num_threads: int = 0,
    max_episode_frames: int = 108_000,
    full_action_space: bool = False,
) -> AtariVecEnv:
    """Build N preprocessed Atari emulators (grayscale img×img, ``stack`` frames, frame skip).

    Args:
        game: "BeamRider", "beam_rider", "ALE/BeamRider-v5", …
        num_envs: number of emulators N.
        seed: base seed (per-env seeds are derived from it).
        sticky_action_prob: ALE ``repeat_action_probability``; 0.25 = Machado et al. 2018 / v5
            default, 0.0 = deterministic emulator (ale-py's constructor default). Set in the config.
        frame_skip: emulator frames per agent step (max-pooled over the last two).
        stack: frames per observation.
        img: observation height = width.
        noop_max: at most this many no-ops after each reset.
        episodic_life: raise ``terminated`` on life loss while the game goes on (module docstring).
        num_threads: ALE worker threads (0 = auto).
        max_episode_frames: per-episode emulator frame cap (108000 = 30 min); then ``truncated``.
        full_action_space: use all 18 actions instead of the game's minimal set.

    Returns:
        An ``AtariVecEnv``; call ``reset()`` before ``step``.
    """
    if not 0.0 <= sticky_action_prob <= 1.0:
        raise ValueError(f"sticky_action_prob: must be in [0, 1], got {sticky_action_prob}")
    for name, v in (
        ("num_envs", num_envs),
        ("frame_skip", frame_skip),
        ("stack", stack),
        ("img", img),
    ):
        if int(v) < 1:
            raise ValueError(f"{name}: must be >= 1, got {v}")
    if noop_max < 0 or num_threads < 0:
        raise ValueError(f"noop_max/num_threads: must be >= 0, got {noop_max}, {num_threads}")
    ale_kwargs: dict[str, Any] = {
        "num_threads": int(num_threads),
        "max_num_frames_per_episode": int(max_episode_frames),
        "repeat_action_probability": float(sticky_action_prob),
        "full_action_space": bool(full_action_space),
        "autoreset_mode": "SameStep",
        "img_height": int(img),
        "img_width": int(img),
        "grayscale": True,
        "stack_num": int(stack),
        "frameskip": int(frame_skip),
        "maxpool": True,
        "noop_max": int(noop_max),
        "episodic_life": False,  # ale-py's flag resets the game on life loss; see module docstring
        "life_loss_info": bool(episodic_life),
        "reward_clipping": False,
        "use_fire_reset": True,
    }
    return AtariVecEnv(
        ale_game_id(game),
        num_envs=int(num_envs),
        seed=int(seed),
        ale_kwargs=ale_kwargs,
        episodic_life=episodic_life,
    )


def measure_random_fps(
    game: str, *, num_envs: int, num_steps: int, seed: int, num_threads: int = 0
) -> dict[str, float]:
    """Time ``num_steps`` vector steps with uniformly random actions (raw env throughput).

    Args:
        game: game name.
        num_envs: emulators N.
        num_steps: vector steps timed (after 20 warm-up steps).
        seed: seed for the env and the random actions.
        num_threads: ALE threads (0 = auto).

    Returns:
        {"steps_per_s": agent steps/s summed over envs, "frames_per_s": steps_per_s · frame_skip}.
    """
    env = make_atari_vec_env(game, num_envs=num_envs, seed=seed, num_threads=num_threads)
    try:
        rng = np.random.default_rng(derive_seed(seed, "fps_actions"))
        a_TN = rng.integers(0, env.num_actions, size=(num_steps + 20, num_envs))
        env.reset()
        for t in range(20):
            env.step(a_TN[t])
        t0 = time.perf_counter()
        for t in range(20, num_steps + 20):
            env.step(a_TN[t])
        dt = time.perf_counter() - t0
    finally:
        env.close()
    sps = num_steps * num_envs / dt
    return {"steps_per_s": sps, "frames_per_s": sps * env.frame_skip}


def random_episode_returns(
    game: str, *, num_games: int, num_envs: int = 8, seed: int = 0, **env_kwargs: Any
) -> list[float]:
    """Play uniformly random actions until ``num_games`` whole games have ended; return their true scores.

    The random-policy start line of Figure 2 (same preprocessing as training; ``env_kwargs`` go to
    ``make_atari_vec_env``, e.g. ``sticky_action_prob=0.0``). Games that end in the same step are all
    kept, so slightly more than ``num_games`` scores may come back.
    """
    rng = np.random.default_rng(seed)
    out: list[float] = []
    with make_atari_vec_env(game, num_envs=num_envs, seed=seed, **env_kwargs) as env:
        env.reset()
        while len(out) < num_games:
            env.step(rng.integers(0, env.num_actions, size=num_envs))
            out.extend(env.pop_finished_episode_returns())
    return out
