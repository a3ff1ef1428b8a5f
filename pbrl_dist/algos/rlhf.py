"""Deep RLHF on Atari / the toy env: A2C oracle, DRLHF (Christiano et al. 2017) and PBRL, one loop.

Paper: Shen, Yang & Chen, Sec. 6.2 / App. E.2 (Figure 2); restored numbers and PROPOSED defaults in
MATH.md §7.2; the coupling terms and their estimators in ``pbrl_dist/core/a2c.py``.

Modes (``method.mode``):

* ``a2c_oracle``: A2C on the TRUE reward (sign-clipped when ``clip_true_reward``); the upper bound.
* ``drlhf``: learn r_φ from synthetic preferences over segments of the agent's own rollouts (BT loss,
  eq. (2.6)) and train A2C on the normalised r̃_φ. No coupling between the levels.
* ``pbrl``: DRLHF plus the two coupling terms of the penalty reformulation (c = 1/λ):
    - ``use_penalty_in_reward``: the reward step adds λ·∇_φ p̂, p̂ = V_φ(π̂*) − V_φ(π_θ) estimated from
      the rollouts of an oracle actor-critic π̂* (warm-started, ``oracle_steps`` A2C steps on r̃_φ per
      agent update) and of the agent;
    - ``use_upper_in_policy``: the policy step adds c·∇_θ f, the segment score-function term, on the
      freshly labelled pairs (applied at the update that labels them).
  ``drlhf`` is exactly ``pbrl`` with both switches off (``mode=drlhf`` forces them off).

One A2C update = one ``iter``. Every iteration k:
    1. lower level: the agent collects ``n_steps`` steps in each of the ``num_envs`` envs;
    2. its rewards: r̃_φk(s, a) normalised to std ``reward_std`` (or the true reward for the oracle);
    3. PBRL: the oracle π̂* takes ``oracle_steps`` A2C steps on r̃_φk with its own envs;
    4. upper level, every ``rm_every`` iterations: label ``pairs_per_epoch`` new pairs from the last
       ``pair_window_steps`` agent steps, then one reward-model epoch on BT (+ λ·p̂);
    5. policy step: A2C on r̃_φk (+ c·score term).
Before the loop (DRLHF/PBRL): ``initial_pairs`` pairs from ``initial_rollout_steps`` steps of the
initial policy, and ``warmup_epochs`` reward-model epochs on them (BT only).

Choices the paper leaves open (documented so they can be changed with evidence):

* the score term c·∇_θ f is added once per labelling event, at the update that labels the pairs,
  on those pairs (their segments come from the last ``pair_window_steps`` steps, so they are at most
  that stale); between labellings the policy step is plain A2C on r̃_φ;
* the penalty in the reward step is λ·(1 − γ)·max(p̂, 0) with p̂ from the last ``pair_window_steps``
  steps of the oracle's and the agent's rollouts: when the oracle looks worse than the agent, the agent
  is the better best-response estimate and p (≥ 0 by definition) has no gradient. Without the clamp
  the term can run away (toy env, seed 1, 80k steps: p̂ drifted to −40, i.e. r_φ learned to rate the
  agent far above the oracle, and the true return ended at 48 instead of 88 with the clamp);
* the oracle π̂* starts as a copy of the initial agent and steps in its own envs; its frames are
  counted in ``perf/oracle_env_frames``, not in ``env_frames`` (the x axis counts the agent's frames),
  while ``perf/env_steps_per_s`` counts both;
* the warm-up epochs use the BT loss only; truncation (Atari's frame cap) is treated as terminal.

Determinism: every draw comes from a generator derived from the seed (nets' init, actions per env
shard, segment sampling, teacher, minibatch order and dropout masks), so on CPU with one torch thread
a run is a function of its config; a checkpoint holds all of it (see ``RLHFLearner.state_dict``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pbrl_dist.algos.base import Checkpointer, Result, maybe_checkpoint, start_state
from pbrl_dist.algos.rollouts import (
    LocalRollouts,
    Rollout,
    RolloutSource,
    RolloutSpec,
    cat_time,
)
from pbrl_dist.core.a2c import (
    a2c_loss,
    nstep_returns,
    segment_score_loss,
    upper_coef,
    value_gap_surrogate,
)
from pbrl_dist.core.preference import (
    TEACHER_MODES,
    PreferenceBatch,
    PreferenceBuffer,
    PreferenceSchedule,
    RunningMeanStd,
    SegmentPairs,
    SyntheticTeacher,
    bt_loss,
    normalize_rewards,
    sample_segment_pairs,
    valid_segment_starts,
)
from pbrl_dist.core.types import generator
from pbrl_dist.metrics import MetricSink
from pbrl_dist.nets import COMPUTE_DTYPES, make_actor_critic, make_reward_model
from pbrl_dist.problems.rlhf import RLHFProblem

if TYPE_CHECKING:
    from pbrl_dist.executors.protocols import RolloutRunner

MODES = ("a2c_oracle", "drlhf", "pbrl")
WARMUP_PROGRESS_S = 30.0  # seconds between progress lines of the reward-model warm-up


@dataclass
class RLHFConfig:
    """Hyperparameters of the RLHF loop (MATH.md §7.2; K117 numbers, else PROPOSED defaults).

    Attributes:
        name: the method's label in results and figures.
        algo: ``rlhf`` (this loop).
        mode: ``a2c_oracle``, ``drlhf`` or ``pbrl``.
        use_upper_in_policy: PBRL: add c·∇_θ f (segment score function) to the policy step.
        use_penalty_in_reward: PBRL: add λ·∇_φ p̂ (value penalty, oracle π̂*) to the reward step.
        total_env_steps: agent env steps in all (PROPOSAL 10M = 40M Atari frames); the initial
            pair-collection rollout counts towards it.
        lr: A2C learning rate (RMSprop; PROPOSAL 7e-4).
        lr_by_game: per-game A2C learning rates that replace ``lr`` (PROPOSAL {BeamRider: 3e-4}); keys
            match case- and underscore-insensitively ("BeamRider" = "beam_rider").
        rms_alpha: RMSprop smoothing constant.
        rms_eps: RMSprop ε.
        ent_coef: entropy coefficient (PROPOSAL 0.01).
        vf_coef: value-loss coefficient (0.5).
        n_steps: A2C rollout length per env per update (5; batch = 5·num_envs).
        max_grad_norm: gradient-norm clip of the A2C steps (0.5).
        clip_true_reward: a2c_oracle trains on sign(r) instead of r (standard for Atari A2C).
        ac_hidden: actor-critic trunk widths (MLP nets only; the Atari net is fixed).
        continuing: A2C on a learned reward (the agent in drlhf/pbrl, the oracle) bootstraps across
            episode ends, as in a continuing task. BT preferences fix r_φ only up to an additive
            constant, and with episode ends that constant is not harmless: a negative offset pays the
            agent to end episodes early, a positive one to drag them out. Treating episodes as one
            continuing stream makes every policy's value shift by the same c/(1 − γ), so the policy
            step is invariant to the constant (off by default; on for games that end on failure,
            e.g. MinAtar). ``a2c_oracle`` on the true reward always stops at episode ends.
        compute_dtype: ``float32``, or ``bfloat16`` to run the actor-critic and reward model (acting,
            learning, reward labelling) under autocast: parameters, gradients and optimizer state
            stay float32. About 1.6× faster network steps on a CPU with AVX512-BF16
            (BENCHMARKS.md); results differ from float32 runs.
        rm_lr: reward-model learning rate (Adam; PROPOSAL 2e-4).
        rm_batch_size: pairs per reward-model minibatch (PROPOSAL 32).
        rm_dropout: dropout between the reward model's FC layers (PROPOSAL 0.5).
        rm_hidden: reward-model hidden widths (MLP nets only).
        rm_every: A2C updates between reward-learning epochs (PROPOSAL 250; the paper's n is unknown).
        rm_epoch_batches: minibatches per reward epoch; 0 = one full pass over the buffer.
        reward_std: r̃_φ is normalised to zero mean and this std before A2C (Christiano: 0.05).
        initial_pairs: pairs labelled before training (K117: 576).
        initial_rollout_steps: steps per env of the initial policy to cut them from.
        warmup_epochs: reward-model epochs on the initial pairs (K117: 500).
        pairs_per_epoch: new pairs per reward-learning epoch (K117: 16).
        buffer_size: only the last this many pairs are kept (K117: 3000).
        segment_length: H, steps per segment (PROPOSAL 25).
        pair_window_steps: new pairs are cut from the agent's last this many steps per env.
        teacher_mode: ``deterministic`` (paper: prefer the higher true return) or ``bt``.
        teacher_error_rate: probability that the teacher flips a label.
        upper_coef: c0, initial upper-level coefficient c = 1/λ (PROPOSAL 1.0).
        upper_coef_decay: c is multiplied by this every ``upper_coef_decay_every`` updates (PROPOSAL 0.5).
        upper_coef_decay_every: A2C updates between decays (PROPOSAL 1e5).
        oracle_steps: inner A2C steps of the oracle π̂* per agent update (PBRL with the penalty).
        oracle_warm_start: π̂* continues from its own previous parameters (True) or restarts from
            the agent's current parameters every iteration (False).
        log_every_steps: a metrics row every this many agent env steps (and at the end).
        return_window: ``rl/episode_return`` is the mean of the last this many finished episodes.
    """

    name: str = "pbrl"
    algo: str = "rlhf"
    mode: str = "pbrl"
    use_upper_in_policy: bool = True
    use_penalty_in_reward: bool = True
    total_env_steps: int = 10_000_000
    # --- A2C ---
    lr: float = 7e-4
    lr_by_game: dict[str, float] = field(default_factory=dict)
    rms_alpha: float = 0.99
    rms_eps: float = 1e-5
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    n_steps: int = 5
    max_grad_norm: float = 0.5
    clip_true_reward: bool = True
    ac_hidden: list[int] = field(default_factory=lambda: [64, 64])
    continuing: bool = False
    compute_dtype: str = "float32"
    # --- reward model ---
    rm_lr: float = 2e-4
    rm_batch_size: int = 32
    rm_dropout: float = 0.5
    rm_hidden: list[int] = field(default_factory=lambda: [64, 64])
    rm_every: int = 250
    rm_epoch_batches: int = 0
    reward_std: float = 0.05
    # --- preference schedule ---
    initial_pairs: int = 576
    initial_rollout_steps: int = 200
    warmup_epochs: int = 500
    pairs_per_epoch: int = 16
    buffer_size: int = 3000
    segment_length: int = 25
    pair_window_steps: int = 50
    teacher_mode: str = "deterministic"
    teacher_error_rate: float = 0.0
    # --- PBRL coupling ---
    upper_coef: float = 1.0
    upper_coef_decay: float = 0.5
    upper_coef_decay_every: int = 100_000
    oracle_steps: int = 1
    oracle_warm_start: bool = True
    # --- logging / evaluation ---
    log_every_steps: int = 100_000
    return_window: int = 100

    def init_steps(self, num_envs: int) -> int:
        """Return the agent env steps of the initial pair-collection rollout (0 for ``a2c_oracle``)."""
        if self.mode == "a2c_oracle":
            return 0
        return math.ceil(self.initial_rollout_steps / self.n_steps) * self.n_steps * num_envs

    def num_updates(self, num_envs: int) -> int:
        """Return the A2C updates (outer iterations) that spend ``total_env_steps`` with ``num_envs`` envs."""
        batch = self.n_steps * num_envs
        return max(1, (self.total_env_steps - self.init_steps(num_envs)) // batch)

    def outer_iters(self, problem_cfg: Any) -> int:
        """Return ``num_updates`` for the problem's env count (progress totals, checkpoints, ASHA)."""
        return self.num_updates(int(problem_cfg.num_envs))

    def checks(self) -> list[tuple[str, bool, str]]:
        """Return (dotted key, ok, message) for every range rule of this config."""
        m = "method."
        out = [
            (m + "mode", self.mode in MODES, f"must be one of {', '.join(MODES)}"),
            (m + "algo", self.algo == "rlhf", "must be rlhf for this config"),
            (m + "total_env_steps", self.total_env_steps >= 1, "must be ≥ 1"),
            (m + "lr", self.lr > 0, "must be > 0"),
            (m + "lr_by_game", all(v > 0 for v in self.lr_by_game.values()), "values must be > 0"),
            (m + "rms_alpha", 0 < self.rms_alpha < 1, "must be in (0, 1)"),
            (m + "rms_eps", self.rms_eps > 0, "must be > 0"),
            (m + "ent_coef", self.ent_coef >= 0, "must be ≥ 0"),
            (m + "vf_coef", self.vf_coef >= 0, "must be ≥ 0"),
            (m + "n_steps", self.n_steps >= 1, "must be ≥ 1"),
            (m + "max_grad_norm", self.max_grad_norm > 0, "must be > 0"),
            (m + "ac_hidden", len(self.ac_hidden) >= 1 and min(self.ac_hidden) >= 1, "widths ≥ 1"),
            (
                m + "compute_dtype",
                self.compute_dtype in COMPUTE_DTYPES,
                f"must be one of {', '.join(COMPUTE_DTYPES)}",
            ),
            (m + "rm_lr", self.rm_lr > 0, "must be > 0"),
            (m + "rm_batch_size", self.rm_batch_size >= 1, "must be ≥ 1"),
            (m + "rm_dropout", 0 <= self.rm_dropout < 1, "must be in [0, 1)"),
            (m + "rm_hidden", len(self.rm_hidden) >= 1 and min(self.rm_hidden) >= 1, "widths ≥ 1"),
            (m + "rm_every", self.rm_every >= 1, "must be ≥ 1"),
            (m + "rm_epoch_batches", self.rm_epoch_batches >= 0, "must be ≥ 0 (0 = full pass)"),
            (m + "reward_std", self.reward_std > 0, "must be > 0"),
            (m + "initial_pairs", self.initial_pairs >= 1, "must be ≥ 1"),
            (m + "warmup_epochs", self.warmup_epochs >= 0, "must be ≥ 0"),
            (m + "pairs_per_epoch", self.pairs_per_epoch >= 0, "must be ≥ 0"),
            (m + "segment_length", self.segment_length >= 1, "must be ≥ 1"),
            (
                m + "buffer_size",
                self.buffer_size >= self.initial_pairs,
                f"must be ≥ method.initial_pairs={self.initial_pairs}",
            ),
            (
                m + "initial_rollout_steps",
                self.initial_rollout_steps >= self.segment_length,
                f"must be ≥ method.segment_length={self.segment_length}",
            ),
            (
                m + "pair_window_steps",
                self.pair_window_steps >= self.segment_length,
                f"must be ≥ method.segment_length={self.segment_length}",
            ),
            (
                m + "teacher_mode",
                self.teacher_mode in TEACHER_MODES,
                f"must be one of {', '.join(TEACHER_MODES)}",
            ),
            (m + "teacher_error_rate", 0 <= self.teacher_error_rate < 1, "must be in [0, 1)"),
            (m + "upper_coef", self.upper_coef > 0, "must be > 0 (c = 1/λ)"),
            (m + "upper_coef_decay", 0 < self.upper_coef_decay <= 1, "must be in (0, 1]"),
            (m + "upper_coef_decay_every", self.upper_coef_decay_every >= 1, "must be ≥ 1"),
            (m + "oracle_steps", self.oracle_steps >= 1, "must be ≥ 1"),
            (m + "log_every_steps", self.log_every_steps >= 1, "must be ≥ 1"),
            (m + "return_window", self.return_window >= 1, "must be ≥ 1"),
        ]
        return out


def couplings(cfg: RLHFConfig) -> tuple[bool, bool]:
    """Return the effective (use_upper_in_policy, use_penalty_in_reward): both off unless mode=pbrl."""
    if cfg.mode == "pbrl":
        return bool(cfg.use_upper_in_policy), bool(cfg.use_penalty_in_reward)
    return False, False


def _net_kwargs(kind: str, cfg: RLHFConfig, hidden: Sequence[int]) -> dict[str, Any]:
    """Return a network's constructor kwargs: compute dtype, and widths for MLPs (Atari nets are fixed)."""
    kw: dict[str, Any] = {"compute_dtype": cfg.compute_dtype}
    if kind == "mlp":
        kw["hidden"] = tuple(hidden)
    return kw


def ac_kwargs(problem: RLHFProblem, cfg: RLHFConfig) -> dict[str, Any]:
    """Return the actor-critic's constructor kwargs."""
    return _net_kwargs(problem.net_kind, cfg, cfg.ac_hidden)


def rm_reward(
    rm: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return r_φ(s, a) for the taken actions: (*B, *obs_shape), (*B,) → (*B,)."""
    r_BA: torch.Tensor = rm(obs, generator)
    return r_BA.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def _game_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# -------------------------------------------------------------------------------------------------
# Update steps (each returns plain floats for logging)
# -------------------------------------------------------------------------------------------------


@dataclass
class A2CStats:
    """Scalars of one A2C update."""

    policy_loss: float
    value_loss: float
    entropy: float
    upper_loss: float


def a2c_step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    roll: Rollout,
    rewards_TN: torch.Tensor,
    *,
    gamma: float,
    cfg: RLHFConfig,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    continuing: bool = False,
) -> A2CStats:
    """Take one A2C step on a rollout with the given rewards (plus an optional extra loss term).

    Args:
        net: actor-critic, ``forward(obs) -> (logits, value)``.
        opt: its optimizer.
        roll: the on-policy rollout of ``net``'s current weights.
        rewards_TN: (T, N) rewards the step optimises (true, clipped or r̃_φ).
        gamma: discount γ.
        cfg: A2C coefficients (``vf_coef``, ``ent_coef``, ``max_grad_norm``).
        extra_loss: ``net -> scalar`` added to the loss (PBRL's c·score term).
        continuing: bootstrap across episode ends (``RLHFConfig.continuing``).

    Returns:
        ``A2CStats``.
    """
    obs = torch.cat([roll.obs_TN, roll.last_obs_N.unsqueeze(0)])
    logits, values = net(obs)
    dones_TN = torch.zeros_like(roll.dones_TN) if continuing else roll.dones_TN
    returns_TN = nstep_returns(rewards_TN, dones_TN, values[-1].detach(), gamma=gamma)
    out = a2c_loss(
        logits[:-1],
        values[:-1],
        roll.actions_TN,
        returns_TN,
        vf_coef=cfg.vf_coef,
        ent_coef=cfg.ent_coef,
    )
    loss = out.loss
    upper = torch.zeros(())
    if extra_loss is not None:
        upper = extra_loss(net)
        loss = loss + upper
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    opt.step()
    return A2CStats(
        float(out.policy_loss.detach()),
        float(out.value_loss.detach()),
        float(out.entropy.detach()),
        float(upper.detach()),
    )


def reward_model_step(
    rm: nn.Module,
    opt: torch.optim.Optimizer,
    batch: PreferenceBatch,
    *,
    gen: torch.Generator,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> float:
    """Take one reward-model step on a minibatch: BT loss (+ λ·p̂ when ``penalty`` is given).

    Args:
        rm: reward model in train mode (dropout on).
        opt: its optimizer.
        batch: labelled segment pairs.
        gen: generator of the dropout masks.
        penalty: ``rm -> scalar`` λ·p̂(φ) added to the loss (PBRL), or None.

    Returns:
        The minibatch's BT loss before the step.
    """
    r1_BH = rm_reward(rm, batch.obs1_BH, batch.act1_BH, generator=gen)
    r2_BH = rm_reward(rm, batch.obs2_BH, batch.act2_BH, generator=gen)
    loss_bt = bt_loss(r1_BH, r2_BH, batch.y_B)
    loss = loss_bt if penalty is None else loss_bt + penalty(rm)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss_bt.detach())


# -------------------------------------------------------------------------------------------------
# The learner: every piece of state a checkpoint must hold
# -------------------------------------------------------------------------------------------------


class RLHFLearner:
    """Nets, optimizers, preference buffer, generators, counters and metric accumulators of one trial.

    Args:
        problem: the RLHF problem.
        cfg: the method config.
        seed: the trial seed.
        obs_shape: one observation's shape.
        num_actions: |A|.
    """

    def __init__(
        self,
        problem: RLHFProblem,
        cfg: RLHFConfig,
        *,
        seed: int,
        obs_shape: tuple[int, ...],
        num_actions: int,
    ) -> None:
        """Build everything from the seed (nothing is drawn from global RNGs)."""
        self.problem, self.cfg = problem, cfg
        self.use_upper, self.use_penalty = couplings(cfg)
        self.learns_reward = cfg.mode != "a2c_oracle"
        kind = problem.net_kind
        ac_kw = ac_kwargs(problem, cfg)
        lrs = {_game_key(k): v for k, v in cfg.lr_by_game.items()}
        self.lr = float(lrs.get(_game_key(problem.lr_key), cfg.lr))

        def rmsprop(net: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.RMSprop(
                net.parameters(), lr=self.lr, alpha=cfg.rms_alpha, eps=cfg.rms_eps
            )

        self.agent = make_actor_critic(
            kind, obs_shape, num_actions, generator=generator(seed, "init", "agent"), **ac_kw
        )
        self.agent_opt = rmsprop(self.agent)
        self.oracle: nn.Module | None = None
        self.oracle_opt: torch.optim.Optimizer | None = None
        if self.use_penalty:  # π̂* starts as a copy of the initial agent
            self.oracle = deepcopy(self.agent)
            self.oracle_opt = rmsprop(self.oracle)
        self.rm: nn.Module | None = None
        self.rm_opt: torch.optim.Optimizer | None = None
        self.buffer: PreferenceBuffer | None = None
        if self.learns_reward:
            self.schedule = PreferenceSchedule(
                initial_pairs=cfg.initial_pairs,
                warmup_epochs=cfg.warmup_epochs,
                pairs_per_epoch=cfg.pairs_per_epoch,
                buffer_size=cfg.buffer_size,
                segment_length=cfg.segment_length,
                batch_size=cfg.rm_batch_size,
            )
            rm_kw = _net_kwargs(kind, cfg, cfg.rm_hidden)
            self.rm = make_reward_model(
                kind,
                obs_shape,
                num_actions,
                dropout_p=cfg.rm_dropout,
                generator=generator(seed, "init", "rm"),
                **rm_kw,
            )
            self.rm.eval()
            self.rm_opt = torch.optim.Adam(self.rm.parameters(), lr=cfg.rm_lr)
            self.buffer = PreferenceBuffer(
                cfg.segment_length,
                obs_shape,
                obs_dtype=torch.uint8 if problem.obs_dtype == "uint8" else torch.float32,
                capacity=cfg.buffer_size,
                frame_stack=obs_shape[0] if kind == "atari" else 0,
            )
        self.teacher = SyntheticTeacher(mode=cfg.teacher_mode, error_rate=cfg.teacher_error_rate)
        self.rms = RunningMeanStd()
        self.gens = {
            "pairs": generator(seed, "rlhf", "pairs"),
            "teacher": generator(seed, "rlhf", "teacher"),
            "rm": generator(seed, "rlhf", "rm"),
        }
        self.window: list[Rollout] = []  # the agent's last rollouts, new pairs are cut from them
        self.oracle_window: list[Rollout] = []  # the oracle's last rollouts (penalty samples)
        self.window_chunks = math.ceil(cfg.pair_window_steps / cfg.n_steps)
        self.c: dict[str, Any] = {  # counters and metric accumulators (all plain Python)
            "agent_steps": 0,
            "oracle_steps": 0,
            "oracle_version": 0,
            "labels_used": 0,
            "rm_epochs": 0,
            "next_log": cfg.log_every_steps,
            "episode_returns": [],
            "episode_frames": [],
            "heldout_correct": 0,
            "heldout_count": 0,
            "heldout_pred": [],
            "heldout_true": [],
            "penalty_sum": 0.0,
            "penalty_count": 0,
            "rm_bt_loss": None,
            "last": {},
        }

    # --- rewards ---------------------------------------------------------------------------------

    @torch.no_grad()
    def learned_reward(self, roll: Rollout, *, update_stats: bool) -> torch.Tensor:
        """Return r̃_φ(s_t, a_t) (T, N), normalised to std ``reward_std`` (dropout off)."""
        assert self.rm is not None
        r_TN = rm_reward(self.rm, roll.obs_TN, roll.actions_TN)
        if update_stats:
            self.rms.update(r_TN)
        return normalize_rewards(
            r_TN, mean=self.rms.mean, std=self.rms.std, target_std=self.cfg.reward_std
        )

    def true_reward(self, roll: Rollout) -> torch.Tensor:
        """Return the true reward the A2C oracle trains on (sign-clipped if configured)."""
        return roll.rewards_TN.sign() if self.cfg.clip_true_reward else roll.rewards_TN

    # --- episodes --------------------------------------------------------------------------------

    def record(self, roll: Rollout) -> None:
        """Count the agent's env steps and keep the returns of its finished episodes."""
        self.c["agent_steps"] += roll.num_steps
        frames = self.c["agent_steps"] * self.problem.frames_per_step
        self.c["episode_returns"].extend(roll.episode_returns)
        self.c["episode_frames"].extend([frames] * len(roll.episode_returns))

    def push_window(self, roll: Rollout, *, oracle: bool = False) -> None:
        """Append a rollout to the agent's (or oracle's) window of the last ``pair_window_steps``."""
        if oracle:
            self.oracle_window = [*self.oracle_window, roll][-self.window_chunks :]
        else:
            self.window = [*self.window, roll][-self.window_chunks :]

    # --- upper level: preferences and the reward model -------------------------------------------

    def label_pairs(
        self, roll: Rollout, num_pairs: int
    ) -> tuple[SegmentPairs, torch.Tensor] | None:
        """Cut ``num_pairs`` segment pairs from a rollout and label them with the synthetic teacher."""
        H = self.cfg.segment_length
        if roll.dones_TN.shape[0] < H or not valid_segment_starts(roll.dones_TN, H).any():
            return None
        pairs = sample_segment_pairs(
            obs_TN=roll.obs_TN,
            actions_TN=roll.actions_TN,
            true_rewards_TN=roll.rewards_TN,
            done_TN=roll.dones_TN,
            num_pairs=num_pairs,
            H=H,
            generator=self.gens["pairs"],
        )
        y_B = self.teacher(pairs.ret1_B, pairs.ret2_B, generator=self.gens["teacher"])
        assert self.buffer is not None
        self.buffer.add(pairs, y_B)
        self.c["labels_used"] += num_pairs
        return pairs, y_B

    @torch.no_grad()
    def heldout_eval(self, pairs: SegmentPairs, y_B: torch.Tensor) -> torch.Tensor:
        """Score fresh pairs with r_φ before training on them; return the per-pair BT losses ℓ_B."""
        assert self.rm is not None
        r1_BH = rm_reward(self.rm, pairs.obs1_BH, pairs.act1_BH)
        r2_BH = rm_reward(self.rm, pairs.obs2_BH, pairs.act2_BH)
        z_B = r1_BH.sum(1) - r2_BH.sum(1)
        strict = y_B != 0.5
        self.c["heldout_correct"] += int(((z_B > 0) == (y_B > 0.5))[strict].sum())
        self.c["heldout_count"] += int(strict.sum())
        self.c["heldout_pred"].extend(torch.cat([r1_BH.sum(1), r2_BH.sum(1)]).tolist())
        self.c["heldout_true"].extend(torch.cat([pairs.ret1_B, pairs.ret2_B]).tolist())
        return bt_loss(r1_BH, r2_BH, y_B, reduction="none")

    def reward_epoch(self, penalty: Callable[[nn.Module], torch.Tensor] | None) -> None:
        """One reward-learning epoch over the buffer (capped at ``rm_epoch_batches`` minibatches)."""
        assert self.rm is not None and self.rm_opt is not None and self.buffer is not None
        self.rm.train()
        losses = []
        for i, batch in enumerate(self.buffer.epoch(self.cfg.rm_batch_size, self.gens["rm"])):
            if self.cfg.rm_epoch_batches and i >= self.cfg.rm_epoch_batches:
                break
            losses.append(
                reward_model_step(self.rm, self.rm_opt, batch, gen=self.gens["rm"], penalty=penalty)
            )
        self.rm.eval()
        self.c["rm_epochs"] += 1
        self.c["rm_bt_loss"] = float(np.mean(losses))

    def penalty_fn(
        self, oracle_roll: Rollout, agent_roll: Rollout, lam: float
    ) -> Callable[[nn.Module], torch.Tensor]:
        """Return rm ↦ λ·p̂(φ) on the latest oracle and agent samples (normalisation stats fixed)."""
        gamma, rms, std = self.problem.gamma, self.rms, self.cfg.reward_std

        def penalty(rm: nn.Module) -> torch.Tensor:
            g = self.gens["rm"]
            r_hat = rm_reward(rm, oracle_roll.obs_TN, oracle_roll.actions_TN, generator=g).reshape(
                -1
            )
            r_agent = rm_reward(rm, agent_roll.obs_TN, agent_roll.actions_TN, generator=g).reshape(
                -1
            )
            r_hat = normalize_rewards(r_hat, mean=rms.mean, std=rms.std, target_std=std)
            r_agent = normalize_rewards(r_agent, mean=rms.mean, std=rms.std, target_std=std)
            # p̂⁺ = max(p̂, 0): when the oracle looks worse than the agent, the agent is the better
            # best-response estimate and the penalty (≥ 0 by definition) has no gradient.
            p_hat = value_gap_surrogate(r_hat, r_agent, gamma=gamma).clamp(min=0.0)
            return lam * (1.0 - gamma) * p_hat  # per-step units, like the A2C loss

        return penalty

    # --- checkpoint ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return a deep snapshot of all learner state (later training never mutates it)."""

        def net(m: nn.Module | None) -> dict[str, torch.Tensor] | None:
            return None if m is None else {k: v.detach().clone() for k, v in m.state_dict().items()}

        def opt(o: torch.optim.Optimizer | None) -> dict[str, Any] | None:
            return None if o is None else deepcopy(o.state_dict())

        return {
            "agent": net(self.agent),
            "agent_opt": opt(self.agent_opt),
            "oracle": net(self.oracle),
            "oracle_opt": opt(self.oracle_opt),
            "rm": net(self.rm),
            "rm_opt": opt(self.rm_opt),
            "buffer": None if self.buffer is None else self.buffer.state_dict(),
            "rms": self.rms.state_dict(),
            "gens": {k: g.get_state() for k, g in self.gens.items()},
            "window": [vars(r).copy() for r in self.window],  # rollout tensors are never mutated
            "oracle_window": [vars(r).copy() for r in self.oracle_window],
            "counters": deepcopy(self.c),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        self.agent.load_state_dict(state["agent"])
        self.agent_opt.load_state_dict(deepcopy(state["agent_opt"]))
        for m, o, key in ((self.oracle, self.oracle_opt, "oracle"), (self.rm, self.rm_opt, "rm")):
            if m is not None and o is not None:
                m.load_state_dict(state[key])
                o.load_state_dict(deepcopy(state[key + "_opt"]))
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])
        self.rms.load_state_dict(state["rms"])
        for k, g in self.gens.items():
            g.set_state(state["gens"][k])
        self.window = [Rollout(**r) for r in state["window"]]
        self.oracle_window = [Rollout(**r) for r in state["oracle_window"]]
        if not self.problem.env_restorable:
            # The envs are re-seeded on resume (ale-py cannot restore them).
            self.break_window()
        self.c = deepcopy(state["counters"])

    def break_window(self) -> None:
        """Mark an episode end after the window's last step: the next fragment does not continue it
        (re-seeded envs after an Atari resume or a replaced rollout worker), so no segment crosses."""
        if not self.window:
            return
        last = self.window[-1]
        dones_TN = last.dones_TN.clone()
        dones_TN[-1] = True
        self.window[-1] = Rollout(**{**vars(last), "dones_TN": dones_TN})

    # --- metrics ---------------------------------------------------------------------------------

    def metrics_row(self, k: int, *, lam_c: float, a2c: A2CStats, sps: float) -> dict[str, Any]:
        """Return the metrics row after ``k`` updates and reset the since-last-row accumulators."""
        c = self.c
        frames = c["agent_steps"] * self.problem.frames_per_step
        row: dict[str, Any] = {"iter": k, "env_frames": frames, "perf/env_frames": frames}
        rets = c["episode_returns"]
        if rets:
            row["rl/episode_return"] = float(np.mean(rets[-self.cfg.return_window :]))
            row["rl/best_episode_return"] = float(np.max(rets))
        row["rl/episodes"] = len(rets)
        row["lower/policy_loss"] = a2c.policy_loss
        row["lower/value_loss"] = a2c.value_loss
        row["lower/entropy"] = a2c.entropy
        if self.learns_reward:
            last = c["last"]
            if c["heldout_count"]:
                last["rm/accuracy"] = c["heldout_correct"] / c["heldout_count"]
            pred, true = np.array(c["heldout_pred"]), np.array(c["heldout_true"])
            if len(pred) > 2 and pred.std() > 0 and true.std() > 0:
                last["rm/return_corr"] = float(np.corrcoef(pred, true)[0, 1])
            row.update(last)
            row["rm/labels_used"] = c["labels_used"]
            row["rm/epochs"] = c["rm_epochs"]
            row["rm/bt_loss"] = c["rm_bt_loss"]
            c["heldout_correct"] = c["heldout_count"] = 0
            c["heldout_pred"], c["heldout_true"] = [], []
        if self.use_penalty:
            if c["penalty_count"]:
                row["penalty/value"] = c["penalty_sum"] / c["penalty_count"]
            row["perf/oracle_env_frames"] = c["oracle_steps"] * self.problem.frames_per_step
            c["penalty_sum"], c["penalty_count"] = 0.0, 0
        if self.use_upper or self.use_penalty:
            row["upper/coef"] = lam_c
        if self.use_upper:
            row["upper/score_loss"] = a2c.upper_loss
        row["perf/env_steps_per_s"] = sps
        return {
            k_: v
            for k_, v in row.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        }


# -------------------------------------------------------------------------------------------------
# The loop
# -------------------------------------------------------------------------------------------------


def _rollout_factory(runner: RolloutRunner | None) -> Callable[[RolloutSpec], RolloutSource]:
    """Return the runner's ``make_rollouts`` (e.g. a Ray rollout-worker group) or local rollouts."""
    return runner.make_rollouts if runner is not None else LocalRollouts


def start_collect(
    source: RolloutSource, policy_state: Mapping[str, torch.Tensor], version: int
) -> Callable[[], Rollout]:
    """Start collecting a fragment; return the function that waits for it (``collect_async``)."""
    return source.collect_async(policy_state, version)


def _initial_pairs(L: RLHFLearner, agent_src: RolloutSource) -> None:
    """Label ``initial_pairs`` pairs from the initial policy and warm the reward model up (BT only)."""
    cfg = L.cfg
    chunks = [
        agent_src.collect(L.agent.state_dict(), 0)
        for _ in range(math.ceil(cfg.initial_rollout_steps / cfg.n_steps))
    ]
    for roll in chunks:
        L.record(roll)
        L.push_window(roll)
    if L.label_pairs(cat_time(chunks), cfg.initial_pairs) is None:
        raise ValueError(
            "method.initial_rollout_steps: no segment of method.segment_length steps fits inside "
            "one episode of the initial rollout; collect more steps or shorten the segments"
        )
    t0 = last = time.perf_counter()
    for i in range(cfg.warmup_epochs):
        L.reward_epoch(penalty=None)
        now = time.perf_counter()
        if now - last >= WARMUP_PROGRESS_S or i + 1 == cfg.warmup_epochs:  # hours on CPU for Atari
            last = now
            print(
                f"    reward-model warm-up: epoch {i + 1}/{cfg.warmup_epochs}, "
                f"BT loss {L.c['rm_bt_loss']:.4f} ({now - t0:.0f}s)",
                flush=True,
            )


def run(
    problem: RLHFProblem,
    cfg: RLHFConfig,
    *,
    seed: int,
    sink: MetricSink,
    runner: RolloutRunner | None = None,
    ckpt: Checkpointer | None = None,
) -> Result:
    """Train for ``cfg.total_env_steps`` agent env steps in the chosen mode; return the final metrics.

    Args:
        problem: built by ``problems.rlhf.build``.
        cfg: the method config.
        seed: the trial seed.
        sink: receives a metrics row every ``log_every_steps`` agent steps and at the end.
        runner: None (local envs) or an object whose ``make_rollouts(spec) -> RolloutSource`` runs
            the env shards elsewhere (a Ray rollout-worker group).
        ckpt: resume from its last state and save every ``ckpt.every`` A2C updates and at the end.

    Returns:
        ``Result`` with the last metrics row and ``final_state`` = every finished episode's true
        return and the agent frame count at which it ended.
    """
    make_source = _rollout_factory(runner)
    ac_kw = ac_kwargs(problem, cfg)
    agent_src = make_source(RolloutSpec(problem, "agent", seed, cfg.n_steps, ac_kw))
    oracle_src: RolloutSource | None = None
    try:
        if couplings(cfg)[1]:
            oracle_src = make_source(RolloutSpec(problem, "oracle", seed, cfg.n_steps, ac_kw))
        L = RLHFLearner(
            problem,
            cfg,
            seed=seed,
            obs_shape=tuple(agent_src.obs_shape),
            num_actions=agent_src.num_actions,
        )
        return _train(L, agent_src, oracle_src, sink=sink, ckpt=ckpt)
    finally:
        agent_src.close()
        if oracle_src is not None:
            oracle_src.close()


def _train(
    L: RLHFLearner,
    agent_src: RolloutSource,
    oracle_src: RolloutSource | None,
    *,
    sink: MetricSink,
    ckpt: Checkpointer | None,
) -> Result:
    """The training loop of ``run`` (see the module docstring for the order of the steps)."""
    cfg, gamma = L.cfg, L.problem.gamma
    num_updates = cfg.num_updates(agent_src.num_envs)
    st = start_state(ckpt, {})
    if "learner" in st:
        L.load_state_dict(st["learner"])
        agent_src.load_state_dict(st["agent_src"])
        if oracle_src is not None:
            oracle_src.load_state_dict(st["oracle_src"])
    elif L.learns_reward:
        # --- upper level, start: initial pairs from the initial policy, reward-model warm-up ---
        _initial_pairs(L, agent_src)
    row: dict[str, Any] = dict(st.get("row", {}))
    t0, steps0 = time.perf_counter(), L.c["agent_steps"] + L.c["oracle_steps"]
    a2c = A2CStats(math.nan, math.nan, math.nan, math.nan)
    for k in range(st["k"], num_updates):
        c_k = upper_coef(
            cfg.upper_coef,
            decay=cfg.upper_coef_decay,
            every=cfg.upper_coef_decay_every,
            num_updates=k,
        )

        # --- lower level: the agent's rollout and its rewards r̃_φk (or the true reward) ---
        # The agent's and the oracle's first fragment are independent: on Ray both are collected at
        # once on their own actors (locally ``start_collect`` defers the work to the wait, same numbers).
        wait_agent = start_collect(agent_src, L.agent.state_dict(), k)
        wait_oracle = None
        if oracle_src is not None:
            assert L.oracle is not None
            if not cfg.oracle_warm_start:
                L.oracle.load_state_dict(L.agent.state_dict())
            L.c["oracle_version"] += 1
            wait_oracle = start_collect(oracle_src, L.oracle.state_dict(), L.c["oracle_version"])
        roll = wait_agent()
        if agent_src.restarted:
            L.break_window()
        L.record(roll)
        L.push_window(roll)
        r_TN = L.learned_reward(roll, update_stats=True) if L.learns_reward else L.true_reward(roll)

        # --- lower level, PBRL: oracle best response π̂* ≈ argmax V_φk by inner A2C steps ---
        if oracle_src is not None and wait_oracle is not None:
            _oracle_steps(L, oracle_src, wait_oracle, r_TN)

        # --- upper level: label new pairs, then a reward-model epoch on f (+ λ·p̂) ---
        upper_term = (
            _upper_step(L, c_k) if L.learns_reward and (k + 1) % cfg.rm_every == 0 else None
        )

        # --- policy step: A2C on r̃_φk (+ c·∇_θ f, the segment score function) ---
        a2c = a2c_step(
            L.agent,
            L.agent_opt,
            roll,
            r_TN,
            gamma=gamma,
            cfg=cfg,
            extra_loss=upper_term,
            continuing=cfg.continuing and L.learns_reward,
        )

        # --- bookkeeping: metrics row, checkpoint ---
        k_done = k + 1
        if L.c["agent_steps"] >= L.c["next_log"] or k_done == num_updates:
            while L.c["next_log"] <= L.c["agent_steps"]:
                L.c["next_log"] += cfg.log_every_steps
            dt = max(time.perf_counter() - t0, 1e-9)
            sps = (L.c["agent_steps"] + L.c["oracle_steps"] - steps0) / dt
            row = L.metrics_row(k_done, lam_c=c_k, a2c=a2c, sps=sps)
            sink.log(row)
        if ckpt is not None and (k_done % ckpt.every == 0 or k_done == num_updates):
            state = {
                "learner": L.state_dict(),
                "agent_src": agent_src.state_dict(),
                "oracle_src": None if oracle_src is None else oracle_src.state_dict(),
                "row": row,
            }
            maybe_checkpoint(ckpt, k_done, num_updates, state)
    final_state = {
        "episode_returns": np.asarray(L.c["episode_returns"], dtype=np.float64),
        "episode_frames": np.asarray(L.c["episode_frames"], dtype=np.int64),
    }
    return Result(x=torch.zeros(0), y=torch.zeros(0), metrics=row, final_state=final_state)


def _oracle_steps(
    L: RLHFLearner,
    oracle_src: RolloutSource,
    wait_first: Callable[[], Rollout],
    r_TN: torch.Tensor,
) -> None:
    """PBRL: ``oracle_steps`` A2C steps of π̂* on r̃_φ (its first fragment is already under way)."""
    cfg, gamma = L.cfg, L.problem.gamma
    assert L.oracle is not None and L.oracle_opt is not None
    wait = wait_first
    for i in range(cfg.oracle_steps):
        if i:
            L.c["oracle_version"] += 1
            wait = start_collect(oracle_src, L.oracle.state_dict(), L.c["oracle_version"])
        oracle_roll = wait()
        L.c["oracle_steps"] += oracle_roll.num_steps
        L.push_window(oracle_roll, oracle=True)
        r_hat_TN = L.learned_reward(oracle_roll, update_stats=False)
        a2c_step(
            L.oracle,
            L.oracle_opt,
            oracle_roll,
            r_hat_TN,
            gamma=gamma,
            cfg=cfg,
            continuing=cfg.continuing,
        )
    L.c["penalty_sum"] += float(
        value_gap_surrogate(r_hat_TN.reshape(-1), r_TN.reshape(-1), gamma=gamma)
    )
    L.c["penalty_count"] += 1


def _upper_step(L: RLHFLearner, c_k: float) -> Callable[[nn.Module], torch.Tensor] | None:
    """Label new pairs and run one reward-model epoch; return the policy's score term (or None)."""
    cfg = L.cfg
    upper_term = None
    fresh = L.label_pairs(cat_time(L.window), cfg.pairs_per_epoch) if cfg.pairs_per_epoch else None
    if fresh is not None:
        ell_B = L.heldout_eval(*fresh)
        if L.use_upper:
            upper_term = _score_term(fresh[0], ell_B, c_k)
    penalty = (
        L.penalty_fn(cat_time(L.oracle_window), cat_time(L.window), 1.0 / c_k)
        if L.use_penalty
        else None
    )
    L.reward_epoch(penalty)
    return upper_term


def _score_term(
    pairs: SegmentPairs, ell_B: torch.Tensor, c: float
) -> Callable[[nn.Module], torch.Tensor]:
    """Return net ↦ c·L_score(θ) on the freshly labelled pairs (see ``core.a2c.segment_score_loss``)."""

    def term(net: nn.Module) -> torch.Tensor:
        logits1, _ = net(pairs.obs1_BH)
        logits2, _ = net(pairs.obs2_BH)
        logp1 = torch.log_softmax(logits1, -1).gather(-1, pairs.act1_BH.unsqueeze(-1)).squeeze(-1)
        logp2 = torch.log_softmax(logits2, -1).gather(-1, pairs.act2_BH.unsqueeze(-1)).squeeze(-1)
        return c * segment_score_loss(logp1, logp2, ell_B)

    return term
