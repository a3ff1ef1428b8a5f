"""Any gymnasium env with a discrete action space, as a ``VecEnv`` for the deep-RLHF loop.

``GymVecEnv`` wraps ``gymnasium.make_vec(env_id, num_envs, vectorization_mode="sync")`` with the
autoreset mode chosen on purpose: ``SAME_STEP``, the convention of every pbrl env (the observation
returned with ``terminated | truncated`` is the next episode's first; the last one is in
``info["final_obs"]``), so a transition's ``done`` flag sits on the step that ended the episode and no
step of the rollout is a dummy reset step. The sync mode steps the envs in this process: a rollout
shard is pbrl's unit of parallelism (Ray rollout workers step whole shards), so one process per env
would only add pickling.

Observations are converted once, here, to what the nets take:

* ``Box`` of rank 1 (e.g. CartPole's 4 floats) → float32 vectors, MLP nets (``net_kind = "mlp"``);
* ``Box`` of rank 3 (MinAtar's 10×10×C bool grids, RGB images H×W×3) → channels-last grids, bool
  turned into uint8 (1 byte per cell in the preference buffer) → conv nets (``net_kind = "grid"``,
  sized from the shape: ``nets/grid.py``); rank 2 (H×W) gets a channel axis;
* ``Discrete(n)`` observations (the toy-text envs) → one-hot float32 vectors of length n.

Anything else is refused before a trial starts, by ``describe_env`` (which builds one env and reads its
spaces): a continuous or multi-discrete action space (the reward model scores every action of a
discrete set), ``Dict``/``Tuple`` observations, rank > 3 boxes.

Seeding: env i of a shard gets ``derive_seed(seed, "gym", i) mod 2³¹`` at the first reset; later
episodes continue each env's own generator (gymnasium's autoreset), so the stream is a function of the
shard seed and the actions. That is what exact resume replays (``problem.resume: replay``).

MinAtar (Young & Tian 2019) ids (``MinAtar/Breakout-v1``) are registered on first use when the
``minatar`` package is installed (``pip install 'pbrl_dist[minatar]'``). A user's own env registers
itself when ``problem.env_import`` (a module path) is imported, or through gymnasium's
``"module:EnvId"`` form of ``env_id``.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbrl_dist.core.types import derive_seed

MINATAR_HINT = "MinAtar games need the minatar package: pip install 'pbrl_dist[minatar]'"


class UnsupportedEnv(ValueError):
    """The env cannot run in the RLHF loop; the message says why and what to do."""


@dataclass(frozen=True)
class EnvInfo:
    """What the RLHF loop needs to know about an env before it runs.

    Attributes:
        obs_shape: the shape the nets see (after the conversions of the module docstring).
        obs_dtype: the stored dtype (float32, or uint8 for grids and images).
        num_actions: |A|.
        net_kind: "mlp" (vectors) or "grid" (channels-last grids / images).
    """

    obs_shape: tuple[int, ...]
    obs_dtype: str
    num_actions: int
    net_kind: str


def import_env_modules(env_id: str, imports: Sequence[str] = ()) -> None:
    """Import what registers the env: MinAtar for ``MinAtar/...`` ids, then the user's modules."""
    if env_id.split(":")[-1].startswith("MinAtar/"):
        try:
            import minatar.gym as minatar_gym
        except ImportError as e:
            raise UnsupportedEnv(f"{env_id}: {MINATAR_HINT}") from e
        import gymnasium as gym

        if "MinAtar/Breakout-v1" not in gym.registry:  # registering twice only warns, but noisily
            minatar_gym.register_envs()
    for name in imports:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UnsupportedEnv(f"cannot import {name!r} (problem.env_import): {e}") from e


def _obs_rule(space: Any) -> tuple[tuple[int, ...], str, str]:
    """Return (obs_shape, obs_dtype, net_kind) for an observation space, or raise ``UnsupportedEnv``."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return (int(space.n),), "float32", "mlp"
    if isinstance(space, spaces.Box):
        shape = tuple(int(s) for s in space.shape)
        small = space.dtype == np.bool_ or space.dtype == np.uint8
        if len(shape) == 1:
            return shape, "float32", "mlp"
        if len(shape) in (2, 3):
            shape3 = shape if len(shape) == 3 else (*shape, 1)
            return shape3, "uint8" if small else "float32", "grid"
        raise UnsupportedEnv(
            f"has a rank-{len(shape)} Box observation {shape}; vectors (D,), grids/images (H, W) "
            "or (H, W, C) are supported"
        )
    kind = type(space).__name__
    raise UnsupportedEnv(
        f"has a {kind} observation space; only Box (vectors, grids, images) and Discrete "
        "observations are supported (flatten it with gymnasium.wrappers.FlattenObservation in an "
        "env you register yourself, then name that env)"
    )


def _action_count(space: Any) -> int:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return int(space.n)
    what = "continuous" if isinstance(space, spaces.Box) else type(space).__name__
    raise UnsupportedEnv(
        f"has a {what} action space {space}; the RLHF loop needs a Discrete action space "
        "(the reward model r(s, ·) scores every action and the policy is a softmax over them)"
    )


@functools.lru_cache(maxsize=64)
def _describe(env_id: str, kwargs_json: str, imports: tuple[str, ...]) -> EnvInfo:
    import gymnasium as gym

    import_env_modules(env_id, imports)
    try:
        env = gym.make(env_id, **json.loads(kwargs_json))
    except gym.error.Error as e:
        hint = f"; {MINATAR_HINT}" if "minatar" in env_id.lower() else ""
        raise UnsupportedEnv(f"{e}{hint}") from e
    except TypeError as e:
        raise UnsupportedEnv(f"bad problem.env_kwargs: {e}") from e
    try:
        num_actions = _action_count(env.action_space)
        obs_shape, obs_dtype, kind = _obs_rule(env.observation_space)
    finally:
        env.close()
    return EnvInfo(obs_shape, obs_dtype, num_actions, kind)


def describe_env(
    env_id: str, env_kwargs: Mapping[str, Any] | None = None, imports: Sequence[str] = ()
) -> EnvInfo:
    """Build one env, read its spaces and return what the loop needs (cached per id and kwargs).

    Raises:
        UnsupportedEnv: the id does not resolve, or a space is not supported (the message says why).
    """
    return _describe(env_id, json.dumps(dict(env_kwargs or {}), sort_keys=True), tuple(imports))


class GymVecEnv:
    """``num_envs`` copies of a gymnasium env behind pbrl's ``VecEnv`` interface (module docstring).

    Args:
        env_id: a registered gymnasium id (``CartPole-v1``, ``MinAtar/Breakout-v1``, ``pkg.mod:MyEnv-v0``).
        num_envs: N.
        seed: the shard seed (every draw of the envs derives from it).
        env_kwargs: keyword arguments of ``gymnasium.make`` (e.g. ``max_episode_steps``).
        imports: modules that register the env (``problem.env_import``).
    """

    def __init__(
        self,
        env_id: str,
        *,
        num_envs: int,
        seed: int,
        env_kwargs: Mapping[str, Any] | None = None,
        imports: Sequence[str] = (),
    ) -> None:
        """Check the spaces and build the vector env (call ``reset()`` before ``step``)."""
        import gymnasium as gym

        info = describe_env(env_id, env_kwargs, imports)
        self.env_id, self.num_envs, self.seed = env_id, int(num_envs), int(seed)
        self.num_actions = info.num_actions
        self.obs_shape: tuple[int, ...] = info.obs_shape
        self.obs_dtype = np.dtype(info.obs_dtype)
        self._env = gym.make_vec(
            env_id,
            num_envs=self.num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            **dict(env_kwargs or {}),
        )
        single = self._env.single_observation_space
        self._one_hot = isinstance(single, gym.spaces.Discrete)
        self._bool = getattr(single, "dtype", None) == np.bool_
        self._action_start = int(getattr(self._env.single_action_space, "start", 0))
        self._returns_N = np.zeros(self.num_envs, dtype=np.float64)
        self._finished: list[float] = []
        self._pending: np.ndarray | None = None

    def _convert(self, obs: np.ndarray) -> np.ndarray:
        if self._one_hot:
            out = np.zeros((self.num_envs, self.obs_shape[0]), dtype=np.float32)
            out[np.arange(self.num_envs), np.asarray(obs, dtype=np.int64)] = 1.0
            return out
        if self._bool:  # a cell that is on is 255, like a lit pixel: the nets scale by 1/255
            return np.asarray(obs, dtype=np.uint8).reshape(
                self.num_envs, *self.obs_shape
            ) * np.uint8(255)
        return np.ascontiguousarray(obs, dtype=self.obs_dtype).reshape(
            self.num_envs, *self.obs_shape
        )

    def reset(self) -> np.ndarray:
        """Reset every env with its seed; return obs (N, *obs_shape)."""
        seeds = [derive_seed(self.seed, "gym", i) % (2**31) for i in range(self.num_envs)]
        obs, _ = self._env.reset(seed=seeds)  # type: ignore[arg-type]  # a list: one seed per env
        self._returns_N[:] = 0.0
        return self._convert(obs)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; return (obs, true reward float32 (N,), terminated, truncated, info)."""
        obs, r, term, trunc, info = self._env.step(np.asarray(actions) + self._action_start)
        r_N = np.asarray(r, dtype=np.float32)
        term_N, trunc_N = np.asarray(term, dtype=bool), np.asarray(trunc, dtype=bool)
        self._returns_N += r_N
        done_N = term_N | trunc_N
        if done_N.any():
            self._finished.extend(float(v) for v in self._returns_N[done_N])
            self._returns_N[done_N] = 0.0
        return self._convert(obs), r_N, term_N, trunc_N, info

    def send(self, actions: np.ndarray) -> None:
        """Remember the actions; ``recv`` steps (a sync env has no background work)."""
        self._pending = np.array(actions, copy=True)

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step with the actions given to ``send``."""
        if self._pending is None:
            raise RuntimeError("recv() without send()")
        actions, self._pending = self._pending, None
        return self.step(actions)

    def pop_finished_episode_returns(self) -> list[float]:
        """Return and forget the true returns of the episodes finished since the last call."""
        out, self._finished = self._finished, []
        return out

    def close(self) -> None:
        """Close the vector env."""
        self._env.close()


def make_gym_vec_env(
    env_id: str,
    *,
    num_envs: int,
    seed: int,
    env_kwargs: Mapping[str, Any] | None = None,
    imports: Sequence[str] = (),
) -> GymVecEnv:
    """Build a ``GymVecEnv`` (see the class)."""
    return GymVecEnv(env_id, num_envs=num_envs, seed=seed, env_kwargs=env_kwargs, imports=imports)
