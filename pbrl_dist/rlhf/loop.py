"""The deep-RLHF loop: A2C oracle, DRLHF (Christiano et al. 2017) and PBRL, read top to bottom in ``_train``.

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
    3. PBRL: the oracle π̂* takes ``oracle_steps`` A2C steps on r̃_φk with its own envs (every
       ``oracle_every`` iterations);
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

Pieces: ``config.py`` (the method schema), ``a2c.py`` (one A2C trainer for the agent and the oracle),
``reward_model.py`` (r_φ, labels, BT epochs, the penalty), ``buffer.py`` (preference buffer, reward
statistics), ``stats.py`` (typed counters); env shards and rollout sources are in ``executors/shards.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pbrl_dist.algos.base import Checkpointer, Result, maybe_checkpoint, start_state
from pbrl_dist.cadence import Timer, due
from pbrl_dist.core.a2c import segment_score_loss, upper_coef, value_gap_surrogate
from pbrl_dist.core.preference import SegmentPairs
from pbrl_dist.core.types import generator
from pbrl_dist.executors.shards import (
    LocalRollouts,
    Rollout,
    RolloutSource,
    RolloutSpec,
    cat_time,
)
from pbrl_dist.metrics import MetricSink
from pbrl_dist.nets import make_actor_critic
from pbrl_dist.problems.rlhf import RLHFProblem
from pbrl_dist.rlhf.a2c import A2CStats, A2CTrainer
from pbrl_dist.rlhf.config import RLHFConfig, agent_lr, couplings
from pbrl_dist.rlhf.evalset import eval_scores, reference_pairs
from pbrl_dist.rlhf.reward_model import PenaltyFn, RewardModelTrainer, absorbing_reward
from pbrl_dist.rlhf.stats import (
    CouplingStats,
    EpisodeLog,
    PenaltyStats,
    Progress,
    ReturnNormalizer,
    load_into,
    state_of,
)

if TYPE_CHECKING:
    from pbrl_dist.executors.protocols import RolloutRunner

WARMUP_PROGRESS_S = 30.0  # seconds between progress lines of the reward-model warm-up


def _net_kwargs(kind: str, cfg: RLHFConfig, hidden: Sequence[int]) -> dict[str, Any]:
    """Return a network's constructor kwargs: compute dtype, and widths for MLPs (conv nets are fixed)."""
    kw: dict[str, Any] = {"compute_dtype": cfg.compute_dtype}
    if kind == "mlp":
        kw["hidden"] = tuple(hidden)
    return kw


def ac_kwargs(problem: RLHFProblem, cfg: RLHFConfig) -> dict[str, Any]:
    """Return the actor-critic's constructor kwargs (rollout workers build the same net from them)."""
    kw = _net_kwargs(problem.net_kind, cfg, cfg.ac_hidden)
    if cfg.normalize_obs:
        kw["normalize_obs"] = True
    if cfg.ac_separate_trunks:
        kw["separate"] = True
    return kw


# -------------------------------------------------------------------------------------------------
# The learner: every piece of state a checkpoint must hold
# -------------------------------------------------------------------------------------------------


class RLHFLearner:
    """The agent, PBRL's oracle π̂*, the reward model, the rollout windows and the counters of a trial.

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
        net = make_actor_critic(
            problem.net_kind,
            obs_shape,
            num_actions,
            generator=generator(seed, "init", "agent"),
            **ac_kwargs(problem, cfg),
        )
        self.agent = A2CTrainer(net, cfg, lr=agent_lr(cfg, problem.lr_key), gamma=problem.gamma)
        # π̂* starts as a copy of the initial agent
        self.oracle = self.agent.copy(lr=cfg.oracle_lr or None) if self.use_penalty else None
        self.rm = (
            RewardModelTrainer(
                cfg,
                net_kind=problem.net_kind,
                obs_dtype=problem.obs_dtype,
                gamma=problem.gamma,
                seed=seed,
                obs_shape=obs_shape,
                num_actions=num_actions,
                net_kwargs=_net_kwargs(problem.net_kind, cfg, cfg.rm_hidden),
            )
            if self.learns_reward
            else None
        )
        # the common evaluation set of r_φ (the same for every method and seed; rebuilt on resume)
        self.eval_pairs = (
            reference_pairs(
                problem,
                num_pairs=cfg.rm_eval_pairs,
                H=cfg.segment_length,
                absorb_action=self.rm.absorb_action,
            )
            if self.rm is not None and cfg.rm_eval_pairs > 0
            else None
        )
        self.window: list[Rollout] = []  # the agent's last rollouts, new pairs are cut from them
        self.oracle_window: list[Rollout] = []  # the oracle's last rollouts (penalty samples)
        self.window_chunks = math.ceil(cfg.pair_window_steps / cfg.n_steps)
        # p̂ and the penalty read the last penalty_window_steps of both (default: the pairs' window)
        self.penalty_chunks = math.ceil(
            (cfg.penalty_window_steps or cfg.pair_window_steps) / cfg.n_steps
        )
        self.progress = Progress(next_log=cfg.log_every_steps)
        self.episodes = EpisodeLog()
        self.oracle_episodes = EpisodeLog()  # π̂*'s finished games (true return), PBRL's oracle
        self.penalty = PenaltyStats()
        self.coupling = CouplingStats()
        self.return_norm = ReturnNormalizer()  # a2c_oracle with method.normalize_reward

    # --- the agent's rewards ---------------------------------------------------------------------

    def rewards(self, roll: Rollout) -> torch.Tensor:
        """Return what the agent's A2C step optimises: r̃_φ, or the true reward (sign-clipped if set)."""
        if self.rm is not None:
            return self.rm.learned_reward(roll, update_stats=True)
        if self.cfg.normalize_reward:
            return self.return_norm(roll.rewards_TN, roll.dones_TN, gamma=self.problem.gamma)
        return roll.rewards_TN.sign() if self.cfg.clip_true_reward else roll.rewards_TN

    # --- episodes and windows --------------------------------------------------------------------

    def record(self, roll: Rollout) -> None:
        """Count the agent's env steps and keep the returns of its finished episodes."""
        self.progress.agent_steps += roll.num_steps
        frames = self.progress.agent_steps * self.problem.frames_per_step
        self.episodes.add(roll.episode_returns, frames)

    def push_window(self, roll: Rollout, *, oracle: bool = False) -> None:
        """Append a rollout to the agent's (or oracle's) window of the last ``pair_window_steps``."""
        roll = roll.without_graph()  # windows are checkpointed and outlive the A2C step
        if oracle:
            self.oracle_window = [*self.oracle_window, roll][-self.penalty_chunks :]
        else:
            keep = max(self.window_chunks, self.penalty_chunks)
            self.window = [*self.window, roll][-keep:]

    def break_window(self) -> None:
        """Mark an episode end after the window's last step: the next fragment does not continue it
        (re-seeded envs after an Atari resume or a replaced rollout worker), so no segment crosses.

        With ``method.absorbing`` segments may contain episode ends (and would read this seam as the
        game ending), so the window is emptied instead: new pairs wait for fresh steps.
        """
        if not self.window:
            return
        if self.cfg.absorbing and self.learns_reward:
            self.window = []
            return
        last = self.window[-1]
        dones_TN = last.dones_TN.clone()
        dones_TN[-1] = True
        self.window[-1] = Rollout(**{**vars(last), "dones_TN": dones_TN})

    # --- checkpoint ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return a deep snapshot of all learner state (later training never mutates it)."""
        agent, agent_opt = self.agent.state_dict()
        oracle, oracle_opt = self.oracle.state_dict() if self.oracle is not None else (None, None)
        return {
            "agent": agent,
            "agent_opt": agent_opt,
            "oracle": oracle,
            "oracle_opt": oracle_opt,
            "reward_model": None if self.rm is None else self.rm.state_dict(),
            "window": [vars(r).copy() for r in self.window],  # rollout tensors are never mutated
            "oracle_window": [vars(r).copy() for r in self.oracle_window],
            "counters": {
                "progress": state_of(self.progress),
                "episodes": state_of(self.episodes),
                "oracle_episodes": state_of(self.oracle_episodes),
                "penalty": state_of(self.penalty),
                "coupling": state_of(self.coupling),
                "return_norm": state_of(self.return_norm),
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        self.agent.load_state_dict(state["agent"], state["agent_opt"])
        if self.oracle is not None:
            self.oracle.load_state_dict(state["oracle"], state["oracle_opt"])
        if self.rm is not None:
            self.rm.load_state_dict(state["reward_model"])
        self.window = [Rollout(**r) for r in state["window"]]
        self.oracle_window = [Rollout(**r) for r in state["oracle_window"]]
        if not self.problem.env_restorable:
            # The envs are re-seeded on resume (ale-py cannot restore them without replay).
            self.break_window()
        c = state["counters"]
        self.progress = load_into(Progress, c["progress"])
        self.episodes = load_into(EpisodeLog, c["episodes"])
        self.penalty = load_into(PenaltyStats, c["penalty"])
        # (checkpoints written before these counters existed start them empty)
        self.oracle_episodes = load_into(EpisodeLog, c.get("oracle_episodes", {}))
        self.coupling = load_into(CouplingStats, c.get("coupling", {}))
        self.return_norm = load_into(ReturnNormalizer, c.get("return_norm", {}))

    # --- metrics ---------------------------------------------------------------------------------

    def metrics_row(self, k: int, *, lam_c: float, a2c: A2CStats, sps: float) -> dict[str, Any]:
        """Return the metrics row after ``k`` updates (empties the since-last-row accumulators)."""
        p = self.progress
        frames = p.agent_steps * self.problem.frames_per_step
        row: dict[str, Any] = {"iter": k, "env_frames": frames, "perf/env_frames": frames}
        rets = self.episodes.returns
        if rets:
            row["rl/episode_return"] = float(np.mean(rets[-self.cfg.return_window :]))
            row["rl/best_episode_return"] = float(np.max(rets))
        row["rl/episodes"] = len(rets)
        row["lower/policy_loss"] = a2c.policy_loss
        row["lower/value_loss"] = a2c.value_loss
        row["lower/entropy"] = a2c.entropy
        if self.rm is not None:
            row.update(self.rm.stats.take())
            if self.eval_pairs is not None:
                row.update(eval_scores(self.rm.rm, self.eval_pairs))
            if self.rm.absorb_action is not None:
                with torch.no_grad():
                    row["rm/absorbing_reward"] = float(
                        self.rm.normalized(absorbing_reward(self.rm.rm))
                    )
        if self.use_penalty:
            row.update(self.penalty.take())
            row["perf/oracle_env_frames"] = p.oracle_steps * self.problem.frames_per_step
            oracle_rets = self.oracle_episodes.returns
            if oracle_rets:
                row["oracle/episode_return"] = float(
                    np.mean(oracle_rets[-self.cfg.return_window :])
                )
        if self.use_upper or self.use_penalty:
            row["upper/coef"] = lam_c
            row.update(self.coupling.take())
        row["perf/env_steps_per_s"] = sps
        # None means "not measured yet"; a NaN is a real value (a diverged loss) and is kept, so that
        # the trial ends as diverged instead of logging a row with the metric silently missing.
        return {k_: v for k_, v in row.items() if v is not None}


# -------------------------------------------------------------------------------------------------
# The loop
# -------------------------------------------------------------------------------------------------


def _rollout_factory(runner: RolloutRunner | None) -> Callable[[RolloutSpec], RolloutSource]:
    """Return the runner's ``make_rollouts`` (e.g. a Ray rollout-worker group) or local rollouts."""
    return runner.make_rollouts if runner is not None else LocalRollouts


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
        return and the agent frame count at which it ended (no upper-level variable x: r_φ is a net).
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
        if cfg.reuse_acting_graph:
            _bind(agent_src, L.agent.net)
            if oracle_src is not None and L.oracle is not None:
                _bind(oracle_src, L.oracle.net)
        return _train(L, agent_src, oracle_src, sink=sink, ckpt=ckpt)
    finally:
        agent_src.close()
        if oracle_src is not None:
            oracle_src.close()


def _bind(source: RolloutSource, net: nn.Module) -> None:
    """Let a local source act with the learner's ``net`` (``method.reuse_acting_graph``)."""
    if not isinstance(source, LocalRollouts):
        raise ValueError(
            "method.reuse_acting_graph: needs dist.backend=local (the rollouts run elsewhere)"
        )
    source.bind(net)


def _train(
    L: RLHFLearner,
    agent_src: RolloutSource,
    oracle_src: RolloutSource | None,
    *,
    sink: MetricSink,
    ckpt: Checkpointer | None,
) -> Result:
    """The training loop of ``run`` (see the module docstring for the order of the steps)."""
    cfg = L.cfg
    num_updates = cfg.num_updates(agent_src.num_envs)
    st = start_state(ckpt, {})
    if "learner" in st:
        L.load_state_dict(st["learner"])
        agent_src.load_state_dict(st["agent_src"])
        if oracle_src is not None:
            oracle_src.load_state_dict(st["oracle_src"])
    elif L.rm is not None:
        # --- upper level, start: initial pairs from the initial policy, reward-model warm-up ---
        _initial_pairs(L, agent_src)
    row: dict[str, Any] = dict(st.get("row", {}))
    t0, steps0 = time.perf_counter(), L.progress.agent_steps + L.progress.oracle_steps
    a2c = A2CStats(math.nan, math.nan, math.nan, math.nan)
    for k in range(st["k"], num_updates):
        c_k = upper_coef(
            cfg.upper_coef,
            decay=cfg.upper_coef_decay,
            every=cfg.decay_period(num_updates),
            num_updates=k,
        )

        # --- lower level: the agent's rollout and its rewards r̃_φk (or the true reward) ---
        # The agent's and the oracle's first fragment are independent: on Ray both are collected at
        # once on their own actors (locally ``collect_async`` defers the work to the wait, same numbers).
        wait_agent = agent_src.collect_async(L.agent.weights(), k)
        wait_oracle = _start_oracle(L, oracle_src) if k % cfg.oracle_every == 0 else None
        roll = wait_agent()
        if agent_src.restarted:
            L.break_window()
        L.record(roll)
        L.push_window(roll)
        r_TN = L.rewards(roll)

        # --- lower level, PBRL: oracle best response π̂* ≈ argmax V_φk by inner A2C steps ---
        if oracle_src is not None and wait_oracle is not None:
            _oracle_steps(L, oracle_src, wait_oracle, r_TN)

        # --- upper level: label new pairs, then a reward-model epoch on f (+ λ·p̂) ---
        upper_term = (
            _upper_step(L, c_k, oracle_src)
            if L.rm is not None and (k + 1) % cfg.rm_every == 0
            else None
        )

        # --- policy step: A2C on r̃_φk (+ c·∇_θ f, the segment score function) ---
        a2c = L.agent.step(
            roll, r_TN, extra_loss=upper_term, continuing=cfg.continuing and L.learns_reward
        )
        if upper_term is not None:
            L.coupling.score_loss.append(a2c.upper_loss)
            if a2c.upper_grad_ratio is not None:
                L.coupling.score_grad_ratio.append(a2c.upper_grad_ratio)

        # --- bookkeeping: metrics row, checkpoint ---
        k_done = k + 1
        p = L.progress
        if p.agent_steps >= p.next_log or k_done == num_updates:
            while p.next_log <= p.agent_steps:
                p.next_log += cfg.log_every_steps
            dt = max(time.perf_counter() - t0, 1e-9)
            sps = (p.agent_steps + p.oracle_steps - steps0) / dt
            row = L.metrics_row(k_done, lam_c=c_k, a2c=a2c, sps=sps)
            sink.log(row)
        if ckpt is not None and due(k_done, ckpt.every, num_updates):
            state = {
                "learner": L.state_dict(),
                "agent_src": agent_src.state_dict(),
                "oracle_src": None if oracle_src is None else oracle_src.state_dict(),
                "row": row,
            }
            maybe_checkpoint(ckpt, k_done, num_updates, state)
    final_state = {
        "episode_returns": np.asarray(L.episodes.returns, dtype=np.float64),
        "episode_frames": np.asarray(L.episodes.frames, dtype=np.int64),
    }
    return Result(x=None, y=None, metrics=row, final_state=final_state)


def _initial_pairs(L: RLHFLearner, agent_src: RolloutSource) -> None:
    """Label ``initial_pairs`` pairs from the initial policy and warm the reward model up (BT only)."""
    cfg, rm = L.cfg, L.rm
    assert rm is not None
    chunks = [
        agent_src.collect(L.agent.weights(), 0)
        for _ in range(math.ceil(cfg.initial_rollout_steps / cfg.n_steps))
    ]
    for roll in chunks:
        L.record(roll)
        L.push_window(roll)
    labelled = rm.label_pairs(cat_time(chunks), cfg.initial_pairs)
    if labelled is None:
        raise ValueError(
            "method.initial_rollout_steps: no segment of method.segment_length steps fits inside "
            "one episode of the initial rollout; collect more steps or shorten the segments"
        )
    if not len(labelled[0]):
        raise ValueError(
            f"method.teacher_skip={cfg.teacher_skip}: the teacher skipped all {cfg.initial_pairs} "
            "initial queries (no segment's true return is above ε_skip × their mean); lower it"
        )
    timer = Timer(WARMUP_PROGRESS_S)
    for i in range(cfg.warmup_epochs):
        rm.epoch(penalty=None)
        if timer.ready() or i + 1 == cfg.warmup_epochs:  # hours on CPU for Atari
            print(
                f"    reward-model warm-up: epoch {i + 1}/{cfg.warmup_epochs}, "
                f"BT loss {rm.stats.bt_loss:.4f} ({timer.elapsed():.0f}s)",
                flush=True,
            )


def _start_oracle(L: RLHFLearner, oracle_src: RolloutSource | None) -> Callable[[], Rollout] | None:
    """PBRL: start the oracle's first fragment of this iteration (restarted from the agent if set)."""
    if oracle_src is None or L.oracle is None:
        return None
    if not L.cfg.oracle_warm_start:
        L.oracle.net.load_state_dict(L.agent.weights())
    L.progress.oracle_version += 1
    return oracle_src.collect_async(L.oracle.weights(), L.progress.oracle_version)


def _oracle_steps(
    L: RLHFLearner,
    oracle_src: RolloutSource,
    wait_first: Callable[[], Rollout],
    r_TN: torch.Tensor,
) -> None:
    """PBRL: ``oracle_steps`` A2C steps of π̂* on r̃_φ (its first fragment is already under way)."""
    cfg, gamma, oracle, rm = L.cfg, L.problem.gamma, L.oracle, L.rm
    assert oracle is not None and rm is not None
    wait = wait_first
    for i in range(cfg.oracle_steps):
        if i:
            L.progress.oracle_version += 1
            wait = oracle_src.collect_async(oracle.weights(), L.progress.oracle_version)
        r_hat_TN = _oracle_step_on(L, wait())
    L.penalty.add(float(value_gap_surrogate(r_hat_TN.reshape(-1), r_TN.reshape(-1), gamma=gamma)))


def _resolve_oracle(L: RLHFLearner, oracle_src: RolloutSource) -> None:
    """PBRL, ``oracle_resolve_steps``: restart π̂* from the agent's current parameters and take that
    many A2C steps on r̃_φ as it stands: a look-ahead best response, re-solved before each reward
    epoch, whose fragments refill the oracle's window (what p̂ is measured on)."""
    cfg, oracle, rm = L.cfg, L.oracle, L.rm
    assert oracle is not None and rm is not None
    oracle.net.load_state_dict(L.agent.weights())
    for _ in range(cfg.oracle_resolve_steps):
        L.progress.oracle_version += 1
        _oracle_step_on(L, oracle_src.collect(oracle.weights(), L.progress.oracle_version))


def _oracle_step_on(L: RLHFLearner, roll: Rollout) -> torch.Tensor:
    """Count, record and window one oracle fragment, take π̂*'s A2C step on r̃_φ of it; return r̃_φ."""
    oracle, rm = L.oracle, L.rm
    assert oracle is not None and rm is not None
    L.progress.oracle_steps += roll.num_steps
    L.oracle_episodes.add(roll.episode_returns, L.progress.oracle_steps * L.problem.frames_per_step)
    L.push_window(roll, oracle=True)
    r_hat_TN = rm.learned_reward(roll, update_stats=False)
    oracle.step(roll, r_hat_TN, continuing=L.cfg.continuing)
    return r_hat_TN


def _upper_step(L: RLHFLearner, c_k: float, oracle_src: RolloutSource | None) -> PenaltyFn | None:
    """Label new pairs and run one reward-model epoch; return the policy's score term (or None)."""
    cfg, rm = L.cfg, L.rm
    assert rm is not None
    upper_term = None
    recent = cat_time(L.window[-L.window_chunks :])
    fresh = rm.label_pairs(recent, cfg.pairs_per_epoch) if cfg.pairs_per_epoch else None
    if fresh is not None and len(fresh[0]):  # (the skip teacher may answer none of them)
        ell_B = rm.heldout_eval(*fresh)
        if L.use_upper:
            upper_term = _score_term(fresh[0], ell_B, c_k)
    penalty = None
    if L.use_penalty:
        if cfg.oracle_resolve_steps and oracle_src is not None:
            _resolve_oracle(L, oracle_src)
        oracle_roll, agent_roll = cat_time(L.oracle_window), cat_time(L.window[-L.penalty_chunks :])
        p_hat_now = rm.value_gap(oracle_roll, agent_roll)  # p̂ before this epoch
        L.coupling.add_p_hat(p_hat_now)
        penalty = rm.penalty_fn(oracle_roll, agent_roll, 1.0 / c_k, p_hat_now=p_hat_now)
    rm.epoch(penalty)
    return upper_term


def _score_term(pairs: SegmentPairs, ell_B: torch.Tensor, c: float) -> PenaltyFn:
    """Return net ↦ c·L_score(θ) on the freshly labelled pairs (see ``core.a2c.segment_score_loss``)."""

    def term(net: nn.Module) -> torch.Tensor:
        logp1 = _segment_logp(net, pairs.obs1_BH, pairs.act1_BH)
        logp2 = _segment_logp(net, pairs.obs2_BH, pairs.act2_BH)
        return c * segment_score_loss(logp1, logp2, ell_B)

    return term


def _segment_logp(net: nn.Module, obs_BH: torch.Tensor, act_BH: torch.Tensor) -> torch.Tensor:
    """Return log π_θ(a_t | s_t) (B, H) of a segment's steps; 0 on absorbing steps (action |A|:
    after the episode ended, the policy took no action)."""
    logits, _ = net(obs_BH)
    num_actions = logits.shape[-1]
    taken = act_BH < num_actions
    logp = torch.log_softmax(logits, -1)
    logp = logp.gather(-1, act_BH.clamp(max=num_actions - 1).unsqueeze(-1)).squeeze(-1)
    return torch.where(taken, logp, torch.zeros_like(logp))
