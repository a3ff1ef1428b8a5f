"""A tiny vectorized "chase the moving target" gridworld that runs the RLHF code path with MLPs.

Same interface as ``pbrl_dist.envs.atari.AtariVecEnv`` (``reset``, ``step``,
``pop_finished_episode_returns``, ``num_envs``, ``num_actions``, ``obs_shape``, ``obs_dtype``,
``close``), but observations are float32 vectors (N, 7) and a step costs microseconds.

Dynamics (per env, all N envs stepped together with numpy, no Python loop over envs):

* grid {0, …, G−1}², agent a = (a_x, a_y), target g = (g_x, g_y), both uniform at reset;
* 5 actions: 0 stay, 1 up (+y), 2 down (−y), 3 right (+x), 4 left (−x); moves are clipped at walls;
* reward, a deterministic function of (s, a):  r(s, a) = 1 − 2·‖a' − g‖₁ / (2(G−1)) ∈ [−1, 1],
  with a' the agent's position after the move and g the target's position before it moves;
* then the target moves one cell in a uniformly random direction with prob. ``target_move_prob``;
* every episode lasts exactly ``episode_length`` steps; the last step has ``terminated = True``
  (time is part of the observation, so this is a finite-horizon MDP, not a truncation); autoreset is
  SAME_STEP, like the Atari wrapper (the returned obs is the next episode's first one, the real last
  one is in ``info["final_obs"]``).

Observation: [a_x, a_y, g_x, g_y] scaled to [−1, 1], (g − a)/(G−1) ∈ [−1, 1]², and t/T ∈ [0, 1).

The greedy policy ``greedy_actions`` (step towards the target along the larger gap) is optimal here:
once on the target it collects r = 1 every step (it moves onto the target's current cell). A
uniformly random policy earns about a quarter of that on the default 8×8 grid (see the tests), and
25-step segments have returns that spread widely, so synthetic preferences are informative.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pbrl_dist.core.types import derive_seed

# (dx, dy) per action: stay, up, down, right, left
_MOVES_A2 = np.array([[0, 0], [0, 1], [0, -1], [1, 0], [-1, 0]], dtype=np.int64)


class ToyTargetVecEnv:
    """N synchronous copies of the moving-target gridworld (see module docstring).

    Args:
        num_envs: number of envs N.
        seed: base seed; the whole env stream is a function of it.
        grid_size: G, cells per side (≥ 2).
        episode_length: T, steps per episode.
        target_move_prob: probability that the target moves after each step.
    """

    OBS_DIM = 7

    def __init__(
        self,
        *,
        num_envs: int,
        seed: int,
        grid_size: int = 8,
        episode_length: int = 100,
        target_move_prob: float = 0.5,
    ) -> None:
        """Set up the generator and state arrays (call ``reset()`` before ``step``)."""
        if num_envs < 1 or grid_size < 2 or episode_length < 1:
            raise ValueError(
                f"num_envs/grid_size/episode_length: need >= 1/2/1, got {num_envs}/{grid_size}/"
                f"{episode_length}"
            )
        if not 0.0 <= target_move_prob <= 1.0:
            raise ValueError(f"target_move_prob: must be in [0, 1], got {target_move_prob}")
        self.num_envs = int(num_envs)
        self.seed = int(seed)
        self.grid_size = int(grid_size)
        self.episode_length = int(episode_length)
        self.target_move_prob = float(target_move_prob)
        self.num_actions = len(_MOVES_A2)
        self.obs_shape: tuple[int, ...] = (self.OBS_DIM,)
        self.obs_dtype = np.dtype(np.float32)
        self._rng = np.random.default_rng(derive_seed(self.seed, "toy_target"))
        N = self.num_envs
        self._agent_N2 = np.zeros((N, 2), dtype=np.int64)
        self._target_N2 = np.zeros((N, 2), dtype=np.int64)
        self._t = 0
        self._ep_return_N = np.zeros(N, dtype=np.float64)
        self._finished_returns: list[float] = []
        self._needs_reset = True

    # --- helpers --------------------------------------------------------------------------------

    _sent: np.ndarray | None = None

    def _new_episode(self) -> None:
        G, N = self.grid_size, self.num_envs
        self._agent_N2 = self._rng.integers(0, G, size=(N, 2))
        self._target_N2 = self._rng.integers(0, G, size=(N, 2))
        self._t = 0
        self._ep_return_N[:] = 0.0

    def _obs(self) -> np.ndarray:
        G1 = float(self.grid_size - 1)
        a = self._agent_N2.astype(np.float32)
        g = self._target_N2.astype(np.float32)
        t = np.full((self.num_envs, 1), self._t / self.episode_length, dtype=np.float32)
        return np.concatenate([2 * a / G1 - 1, 2 * g / G1 - 1, (g - a) / G1, t], axis=1).astype(
            np.float32
        )

    def _positions(self, obs_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        G1 = self.grid_size - 1
        agent = np.rint((obs_ND[:, 0:2] + 1) * G1 / 2).astype(np.int64)
        target = np.rint((obs_ND[:, 2:4] + 1) * G1 / 2).astype(np.int64)
        return agent, target

    def _reward(self, agent_N2: np.ndarray, target_N2: np.ndarray, a_N: np.ndarray) -> np.ndarray:
        moved = np.clip(agent_N2 + _MOVES_A2[a_N], 0, self.grid_size - 1)
        dist = np.abs(moved - target_N2).sum(1)
        return (1.0 - dist / (self.grid_size - 1)).astype(np.float32)

    # --- public API -----------------------------------------------------------------------------

    def reward_of(self, obs_ND: np.ndarray, actions_N: np.ndarray) -> np.ndarray:
        """Return the true reward r(s, a) for observations produced by this env (for diagnostics).

        Args:
            obs_ND: float32 (B, 7) observations.
            actions_N: (B,) actions.

        Returns:
            float32 (B,) rewards, equal to what ``step`` would pay.
        """
        agent, target = self._positions(np.asarray(obs_ND))
        return self._reward(agent, target, np.asarray(actions_N, dtype=np.int64))

    def greedy_actions(self, obs_ND: np.ndarray) -> np.ndarray:
        """Return the optimal action per observation: close the larger gap (stay when on target).

        Args:
            obs_ND: float32 (B, 7) observations.

        Returns:
            int64 (B,) actions.
        """
        agent, target = self._positions(np.asarray(obs_ND))
        d = target - agent
        use_x = np.abs(d[:, 0]) >= np.abs(d[:, 1])
        a_x = np.where(d[:, 0] > 0, 3, 4)
        a_y = np.where(d[:, 1] > 0, 1, 2)
        act = np.where(use_x, a_x, a_y)
        return np.where((d == 0).all(1), 0, act).astype(np.int64)

    def reset(self) -> np.ndarray:
        """Start new episodes in every env.

        Returns:
            obs_ND: float32 (N, 7).
        """
        self._new_episode()
        self._needs_reset = False
        return self._obs()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every env by one step.

        Args:
            actions: (N,) integer actions in [0, 5) (numpy array, list or CPU tensor).

        Returns:
            obs_ND: float32 (N, 7); the next episode's first observation after the last step.
            reward_N: float32 (N,) true reward r(s, a).
            terminated_N: bool (N,), True on the T-th step of an episode (all envs together).
            truncated_N: bool (N,), always False.
            info: ``game_over`` (= terminated) and, on the last step, ``final_obs`` float32 (N, 7).
        """
        if self._needs_reset:
            raise RuntimeError("ToyTargetVecEnv.step: call reset() first")
        a_N = np.asarray(actions, dtype=np.int64).reshape(-1)
        if a_N.shape != (self.num_envs,):
            raise ValueError(f"actions: expected shape ({self.num_envs},), got {a_N.shape}")
        if a_N.min() < 0 or a_N.max() >= self.num_actions:
            raise ValueError(f"actions: values must be in [0, {self.num_actions}), got {a_N}")
        G1 = self.grid_size - 1
        reward_N = self._reward(self._agent_N2, self._target_N2, a_N)
        self._agent_N2 = np.clip(self._agent_N2 + _MOVES_A2[a_N], 0, G1)
        move_N = self._rng.random(self.num_envs) < self.target_move_prob
        dir_N = self._rng.integers(1, 5, size=self.num_envs)
        step_N2 = _MOVES_A2[dir_N] * move_N[:, None]
        self._target_N2 = np.clip(self._target_N2 + step_N2, 0, G1)
        self._t += 1
        self._ep_return_N += reward_N
        done = self._t >= self.episode_length
        terminated_N = np.full(self.num_envs, done)
        info: dict[str, Any] = {"game_over": terminated_N}
        if done:
            info["final_obs"] = self._obs()
            self._finished_returns.extend(self._ep_return_N.tolist())
            self._new_episode()
        return self._obs(), reward_N, terminated_N, np.zeros(self.num_envs, dtype=bool), info

    def send(self, actions: np.ndarray) -> None:
        """Hold the actions for ``recv`` (the same split as ``AtariVecEnv``; nothing runs in between)."""
        self._sent = np.array(actions, copy=True)

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step with the actions given to ``send``."""
        actions, self._sent = self._sent, None
        if actions is None:
            raise RuntimeError("ToyTargetVecEnv.recv: nothing was sent")
        return self.step(actions)

    def pop_finished_episode_returns(self) -> list[float]:
        """Return (and forget) the true returns of the episodes that ended since the last call."""
        out, self._finished_returns = self._finished_returns, []
        return out

    def optimal_return(self) -> float:
        """Return the upper bound T·1 on the episode return (r = 1 at every step on the target).

        The greedy policy attains T minus the catch-up cost (a few units on the default grid).
        """
        return float(self.episode_length)

    def state_dict(self) -> dict[str, Any]:
        """Return the full env state (generator included) for exact resume."""
        return {
            "rng": self._rng.bit_generator.state,
            "agent": self._agent_N2.copy(),
            "target": self._target_N2.copy(),
            "t": self._t,
            "ep_return": self._ep_return_N.copy(),
            "finished": list(self._finished_returns),
            "needs_reset": self._needs_reset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from ``state_dict()``."""
        self._rng.bit_generator.state = state["rng"]
        self._agent_N2 = state["agent"].copy()
        self._target_N2 = state["target"].copy()
        self._t = int(state["t"])
        self._ep_return_N = state["ep_return"].copy()
        self._finished_returns = list(state["finished"])
        self._needs_reset = bool(state["needs_reset"])

    def close(self) -> None:
        """Nothing to release (kept for interface parity)."""

    def __enter__(self) -> ToyTargetVecEnv:
        """Support ``with``."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the ``with`` block."""
        self.close()


def make_toy_vec_env(
    *,
    num_envs: int,
    seed: int,
    grid_size: int = 8,
    episode_length: int = 100,
    target_move_prob: float = 0.5,
) -> ToyTargetVecEnv:
    """Build the moving-target gridworld (see ``ToyTargetVecEnv``)."""
    return ToyTargetVecEnv(
        num_envs=num_envs,
        seed=seed,
        grid_size=grid_size,
        episode_length=episode_length,
        target_move_prob=target_move_prob,
    )
