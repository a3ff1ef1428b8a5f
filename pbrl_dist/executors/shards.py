"""Env shards and rollout collection behind a small interface, so the RLHF learner does not care where
envs run. It sits in ``executors/`` so that both runners (``local``, ``ray_rollouts``) import it
downward; ``rlhf/rollouts.py`` re-exports it for older imports and pickles.

The learner calls ``source.collect(policy_state, version)`` and gets a time-major ``Rollout`` of
``n_steps`` steps from every env. ``LocalRollouts`` steps its env shards in this process; a Ray
backend can implement the same ``RolloutSource`` with one actor per shard (each actor holds a
``ShardGroup`` of consecutive shards, ``dist.ray_rollouts``), broadcasting ``policy_state`` once per
``version``. Within a process the shards are pipelined (``collect_pipelined``): the policy runs on one
shard while the emulators of the others step on ALE's threads.

Numbers depend only on the shards (their seeds, their env counts), never on who steps them:
shard i of role r is seeded with ``derive_seed(seed, "env", r, i)`` and samples its actions from
its own generator ``derive_seed(seed, "actions", r, i)``; the learner concatenates shards in order.

Resume: ``state_dict()`` holds each shard's current observation, action-generator state, collect
count and the env's state. The toy env saves its state directly. ale-py's ``AtariVectorEnv`` exposes
no clone/restore of its emulators, but it is deterministic given its seed and actions, so an Atari
shard keeps the seed of its env and every action since (1 byte per env step) and, on resume, rebuilds
the env and replays them (``problem.resume: replay``, the default; the replayed observation is checked
against the saved one): the resumed run is bitwise the uninterrupted one. ``problem.resume: reseed``
instead rebuilds the env with ``derive_seed(shard seed, "resume", num_collects)``: instant, but the
running episodes are lost and the trajectory differs from an uninterrupted run from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pbrl_dist.core.types import derive_seed
from pbrl_dist.envs import EpisodeLengths, RestorableVecEnv, VecEnv
from pbrl_dist.nets import make_actor_critic
from pbrl_dist.problems.rlhf import RLHFProblem


@dataclass
class Rollout:
    """``n_steps`` steps of N envs, time-major, on CPU.

    Attributes:
        obs_TN: (T, N, *obs_shape) observation s_t in which a_t was taken.
        actions_TN: (T, N) int64 actions.
        rewards_TN: (T, N) float32 TRUE env rewards (the teacher's; the learner decides what to use).
        dones_TN: (T, N) bool, transition t ended an episode (terminated or truncated).
        last_obs_N: (N, *obs_shape) observation after the last step (for bootstrapping).
        episode_returns: true returns of the whole episodes (games) that ended during the fragment.
        graph: (logits (T, N, A), values (T, N)) of the acting forward passes *with* their autograd
            graph, when the shards acted with the learner's own net (``ShardGroup.bind``); the A2C
            step then needs no second forward. Never stored in windows or checkpoints.
    """

    obs_TN: torch.Tensor
    actions_TN: torch.Tensor
    rewards_TN: torch.Tensor
    dones_TN: torch.Tensor
    last_obs_N: torch.Tensor
    episode_returns: list[float]
    graph: tuple[torch.Tensor, torch.Tensor] | None = None

    def without_graph(self) -> Rollout:
        """Return the fragment without its acting graph (what windows and checkpoints keep)."""
        return self if self.graph is None else dataclasses.replace(self, graph=None)

    @property
    def num_steps(self) -> int:
        """Return the env steps in the fragment, T·N."""
        return int(self.actions_TN.numel())


def cat_envs(parts: Sequence[Rollout]) -> Rollout:
    """Concatenate shard rollouts along the env axis (episode returns in shard order)."""
    if len(parts) == 1:
        return parts[0]
    tensors = {
        f.name: torch.cat(
            [getattr(p, f.name) for p in parts], dim=1 if f.name != "last_obs_N" else 0
        )
        for f in fields(Rollout)
        if f.name not in ("episode_returns", "graph")
    }
    graphs = [p.graph for p in parts]
    graph = None
    if all(g is not None for g in graphs):
        graph = (
            torch.cat([g[0] for g in graphs if g is not None], dim=1),
            torch.cat([g[1] for g in graphs if g is not None], dim=1),
        )
    return Rollout(
        **tensors, episode_returns=[r for p in parts for r in p.episode_returns], graph=graph
    )


def cat_time(parts: Sequence[Rollout]) -> Rollout:
    """Concatenate consecutive rollouts of the same envs along time."""
    if len(parts) == 1:
        return parts[0]
    return Rollout(
        obs_TN=torch.cat([p.obs_TN for p in parts]),
        actions_TN=torch.cat([p.actions_TN for p in parts]),
        rewards_TN=torch.cat([p.rewards_TN for p in parts]),
        dones_TN=torch.cat([p.dones_TN for p in parts]),
        last_obs_N=parts[-1].last_obs_N,
        episode_returns=[r for p in parts for r in p.episode_returns],
    )


class RolloutSource(Protocol):
    """Collects on-policy rollout fragments for one role ("agent" or "oracle")."""

    num_envs: int
    num_actions: int
    obs_shape: tuple[int, ...]
    restarted: bool
    """True when the last fragment does not continue the previous one (envs re-seeded after a worker
    death under ``problem.resume=reseed``): no preference segment may cross that seam."""

    def collect(self, policy_state: Mapping[str, torch.Tensor], version: int) -> Rollout:
        """Return the next ``n_steps`` steps of every env under the policy with these weights.

        ``version`` identifies the weights; implementations reload them only when it changes.
        """
        ...

    def collect_async(
        self, policy_state: Mapping[str, torch.Tensor], version: int
    ) -> Callable[[], Rollout]:
        """Start collecting a fragment; return the function that waits for it.

        Ray workers start now; a local source collects when waited on, so ``policy_state`` (live
        parameters) must not change before the wait.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Return what a resumed source needs (see the module docstring for Atari)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        ...

    def close(self) -> None:
        """Release the envs."""
        ...


@dataclass(frozen=True)
class RolloutSpec:
    """Everything needed to build a role's rollout source anywhere (picklable).

    Attributes:
        problem: the RLHF problem (holds its config; a remote worker rebuilds envs from it).
        role: "agent" or "oracle" (part of every seed).
        seed: the trial seed.
        n_steps: T, steps per ``collect``.
        net_kwargs: keyword arguments of ``make_actor_critic`` (e.g. ``hidden`` for MLPs).
    """

    problem: RLHFProblem
    role: str
    seed: int
    n_steps: int
    net_kwargs: Mapping[str, Any]


class RolloutShard:
    """One independently seeded env group with its own policy copy and action generator.

    Args:
        spec: the role's rollout spec.
        index: shard index i (seeds derive from it).
        num_envs: envs in this shard.
    """

    def __init__(self, spec: RolloutSpec, index: int, num_envs: int) -> None:
        """Build the env (reset it) and the policy copy."""
        self.spec, self.index, self.num_envs = spec, int(index), int(num_envs)
        self.env_seed = derive_seed(spec.seed, "env", spec.role, index)
        self.env: VecEnv = spec.problem.make_env(num_envs=self.num_envs, seed=self.env_seed)
        self.num_actions = int(self.env.num_actions)
        self.obs_shape = tuple(self.env.obs_shape)
        self.gen = torch.Generator()
        self.gen.manual_seed(derive_seed(spec.seed, "actions", spec.role, index))
        # The learner's weights always overwrite these; a fixed generator keeps the global RNG out.
        init = torch.Generator()
        init.manual_seed(0)
        self.policy: nn.Module = make_actor_critic(
            spec.problem.net_kind,
            self.obs_shape,
            self.num_actions,
            generator=init,
            **spec.net_kwargs,
        )
        self.policy.eval()
        self.live: nn.Module | None = None  # the learner's own net (``ShardGroup.bind``), or None
        self.version = -1
        self.num_collects = 0
        self.obs = self.env.reset()
        # Exact resume of envs without state_dict (ale-py): keep every action since the env's seed.
        self.replay = not isinstance(self.env, RestorableVecEnv) and (
            getattr(spec.problem.cfg, "resume", "reseed") == "replay"
        )
        self._replay_seed = self.env_seed
        self._actions: list[np.ndarray] = []

    def collect(self, policy_state: Mapping[str, torch.Tensor], version: int) -> Rollout:
        """Step every env ``n_steps`` times with actions sampled from the policy."""
        return collect_pipelined([self], policy_state, version)[0]

    # --- the three phases ``collect_pipelined`` interleaves across shards ---------------------------

    def begin(self, policy_state: Mapping[str, torch.Tensor], version: int) -> None:
        """Load the weights if ``version`` is new and open an empty fragment."""
        if version != self.version and self.live is None:
            self.policy.load_state_dict(policy_state)
        self.version = version
        self._frag: tuple[list[Any], ...] = ([], [], [], [], [], [])

    @torch.no_grad()
    def act(self) -> None:
        """Sample actions for the current observations and start the env step (``env.send``)."""
        if self.live is None:
            logits_NA, _ = self.policy(torch.from_numpy(self.obs))
        else:  # keep the graph: the A2C step differentiates these very outputs
            with torch.enable_grad():
                logits_NA, values_N = self.live(torch.from_numpy(self.obs))
            self._frag[4].append(logits_NA)
            self._frag[5].append(values_N)
            logits_NA = logits_NA.detach()
        a_N = torch.multinomial(torch.softmax(logits_NA, -1), 1, generator=self.gen).squeeze(1)
        self._frag[0].append(self.obs)
        self._frag[1].append(a_N)
        self.env.send(a_N.numpy())
        if self.replay:
            self._actions.append(a_N.numpy().astype(np.uint8))

    def observe(self) -> None:
        """Finish the env step (``env.recv``) and keep its reward and done flags."""
        next_obs, r_N, term_N, trunc_N, _ = self.env.recv()
        self._frag[2].append(r_N)
        self._frag[3].append(term_N | trunc_N)
        self.obs = next_obs

    def end(self) -> Rollout:
        """Close the fragment and return it."""
        obs_l, act_l, rew_l, done_l, logits_l, values_l = self._frag
        self.num_collects += 1
        graph = (torch.stack(logits_l), torch.stack(values_l)) if logits_l else None
        return Rollout(
            obs_TN=torch.from_numpy(np.stack(obs_l)),
            actions_TN=torch.stack(act_l).to(torch.int64),
            rewards_TN=torch.from_numpy(np.stack(rew_l).astype(np.float32)),
            dones_TN=torch.from_numpy(np.stack(done_l)),
            last_obs_N=torch.from_numpy(np.array(self.obs, copy=True)),
            episode_returns=[float(r) for r in self.env.pop_finished_episode_returns()],
            graph=graph,
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the shard state: the env's own state, or its seed and action history (replay)."""
        env_state = self.env.state_dict() if isinstance(self.env, RestorableVecEnv) else None
        if self.replay:
            if len(self._actions) > 1:
                self._actions = [
                    np.concatenate([a.reshape(-1, self.num_envs) for a in self._actions])
                ]
            acts = self._actions[0] if self._actions else np.zeros((0, self.num_envs), np.uint8)
            env_state = {
                "replay_seed": self._replay_seed,
                "actions": acts.reshape(-1, self.num_envs),
            }
        return {
            "env": env_state,
            "obs": np.array(self.obs, copy=True),
            "gen": self.gen.get_state(),
            "num_collects": self.num_collects,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore: the env's own state, a replay of its actions, or (``resume: reseed``) a re-seed."""
        self.gen.set_state(state["gen"])
        self.num_collects = int(state["num_collects"])
        self.version = -1
        env_state = state["env"]
        if env_state is not None and isinstance(self.env, RestorableVecEnv):
            self.env.load_state_dict(env_state)
            self.obs = np.array(state["obs"], copy=True)
        elif env_state is not None and "actions" in env_state and self.replay:
            self._replay(int(env_state["replay_seed"]), env_state["actions"], state["obs"])
        else:
            self.reseed("resume", self.num_collects)

    def _replay(self, seed: int, actions_LN: np.ndarray, want_obs: np.ndarray) -> None:
        """Rebuild the env from ``seed`` and step it through ``actions_LN``; check the observation."""
        self.env.close()
        self.env = self.spec.problem.make_env(num_envs=self.num_envs, seed=seed)
        obs = self.env.reset()
        for a_N in actions_LN:
            obs = self.env.step(a_N.astype(np.int64))[0]
        self.env.pop_finished_episode_returns()  # reported before the checkpoint
        if isinstance(self.env, EpisodeLengths):
            self.env.pop_finished_episode_lengths()
        if not np.array_equal(obs, want_obs):
            raise RuntimeError(
                f"resume: replaying {len(actions_LN)} steps of env shard {self.index} did not reproduce "
                "the checkpointed observation (was the emulator or problem config changed?)"
            )
        self.obs = obs
        self._replay_seed, self._actions = seed, [np.array(actions_LN, copy=True)]

    @property
    def exact_restore(self) -> bool:
        """Whether ``load_state_dict`` brings the shard back exactly (env state, or action replay)."""
        return isinstance(self.env, RestorableVecEnv) or self.replay

    def step_state(self) -> dict[str, Any]:
        """Return the small part of ``state_dict`` a fragment changes besides its actions and last obs.

        With the fragment's actions and last observation it updates a copy of ``state_dict`` kept
        elsewhere (``dist.ray_rollouts``: to restore a dead worker's shards) without shipping the
        action history.
        """
        return {
            "gen": self.gen.get_state(),
            "num_collects": self.num_collects,
            "env": self.env.state_dict() if isinstance(self.env, RestorableVecEnv) else None,
        }

    def reseed(self, *tag: object) -> None:
        """Rebuild and reset the env with the seed ``derive_seed(shard seed, *tag)`` (running episodes end)."""
        self.env.close()
        self._replay_seed, self._actions = derive_seed(self.env_seed, *tag), []
        self.env = self.spec.problem.make_env(num_envs=self.num_envs, seed=self._replay_seed)
        self.obs = self.env.reset()

    def close(self) -> None:
        """Close the env."""
        self.env.close()


def collect_pipelined(
    shards: Sequence[RolloutShard], policy_state: Mapping[str, torch.Tensor], version: int
) -> list[Rollout]:
    """Collect one fragment from every shard, overlapping one shard's inference with the others' envs.

    At each step every shard in turn finishes its previous env step, samples its next actions and
    starts the env step (``send``), so while the policy runs on shard i the ALE threads of the other
    shards are emulating. Each shard only touches its own env and generator, in the same order as a
    shard stepped alone: the fragments are bitwise those of collecting the shards one by one.
    """
    for s in shards:
        s.begin(policy_state, version)
    for t in range(shards[0].spec.n_steps):
        for s in shards:
            if t:
                s.observe()
            s.act()
    for s in shards:
        s.observe()
    return [s.end() for s in shards]


def shard_sizes(spec: RolloutSpec) -> list[int]:
    """Return the env count of every shard of the role (``num_envs`` split over ``env_shards``)."""
    cfg = spec.problem.cfg
    return [cfg.num_envs // cfg.env_shards] * cfg.env_shards


class ShardGroup:
    """Some shards of one role stepped in this process (pipelined), concatenated in shard order.

    Args:
        spec: the role's rollout spec.
        indices: which shards (default: all ``problem.cfg.env_shards`` of them).
    """

    def __init__(self, spec: RolloutSpec, indices: Sequence[int] | None = None) -> None:
        """Build the shards (their envs are reset)."""
        sizes = shard_sizes(spec)
        idx = range(len(sizes)) if indices is None else indices
        self.shards = [RolloutShard(spec, i, sizes[i]) for i in idx]
        self.num_envs = sum(s.num_envs for s in self.shards)
        self.num_actions = self.shards[0].num_actions
        self.obs_shape = self.shards[0].obs_shape
        self.restarted = False  # shards in this process never restart

    def collect(self, policy_state: Mapping[str, torch.Tensor], version: int) -> Rollout:
        """Collect from every shard (pipelined) and concatenate along the env axis."""
        return cat_envs(collect_pipelined(self.shards, policy_state, version))

    def collect_async(
        self, policy_state: Mapping[str, torch.Tensor], version: int
    ) -> Callable[[], Rollout]:
        """Defer the collection to the wait (same numbers as ``collect``)."""
        return lambda: self.collect(policy_state, version)

    def bind(self, net: nn.Module) -> None:
        """Act with the learner's own ``net`` (with autograd) instead of a copy of its weights.

        Exact where it is allowed: the weights do not change within a fragment, so the acting outputs
        are the learner's outputs on the same observations (computed per step, so the last bits differ
        from one batched forward pass: a bound run is not bitwise an unbound one).
        """
        for s in self.shards:
            s.live = net

    def state_dict(self) -> dict[str, Any]:
        """Return every shard's state."""
        return {"shards": [s.state_dict() for s in self.shards]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore every shard."""
        for s, st in zip(self.shards, state["shards"], strict=True):
            s.load_state_dict(st)

    def reseed(self, *tag: object) -> None:
        """Re-seed every shard (``RolloutShard.reseed``); action generators are re-seeded too."""
        for s in self.shards:
            s.reseed(*tag)
            s.gen.manual_seed(derive_seed(s.spec.seed, "actions", s.spec.role, s.index, *tag))

    def close(self) -> None:
        """Close every shard's env."""
        for s in self.shards:
            s.close()


LocalRollouts = ShardGroup
"""The ``local`` backend: all of a role's shards in the learner's process."""

RolloutFactory = Callable[[RolloutSpec], RolloutSource]
