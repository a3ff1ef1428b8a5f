"""The upper level's reward model r_φ: synthetic labels, Bradley–Terry epochs, the value penalty.

``RewardModelTrainer`` holds r_φ, its Adam optimizer, the preference buffer, the synthetic teacher,
the running statistics that normalise r_φ into the agent's reward r̃_φ, and the generators of the
segment draws, the teacher and the dropout masks / minibatch order (each from the trial seed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import nn

from pbrl_dist.core.a2c import value_gap_surrogate
from pbrl_dist.core.preference import (
    PreferenceBatch,
    SegmentPairs,
    SyntheticTeacher,
    bt_loss,
    normalize_rewards,
    sample_segment_pairs_and_rewards,
    valid_segment_starts,
)
from pbrl_dist.core.types import generator
from pbrl_dist.executors.shards import Rollout
from pbrl_dist.nets import make_reward_model, reward
from pbrl_dist.rlhf.a2c import grad_norm_ratio
from pbrl_dist.rlhf.buffer import PreferenceBuffer, RunningMeanStd
from pbrl_dist.rlhf.config import RLHFConfig
from pbrl_dist.rlhf.stats import RewardModelStats, load_into, state_of

PenaltyFn = Callable[[nn.Module], torch.Tensor]


def teacher_of(cfg: RLHFConfig) -> SyntheticTeacher:
    """Return the synthetic teacher ``method.teacher_*`` describes (B-Pref's six teachers and mixes)."""
    return SyntheticTeacher(
        mode=cfg.teacher_mode,
        temperature=1.0 / cfg.teacher_beta,
        error_rate=cfg.teacher_error_rate,
        gamma=cfg.teacher_gamma,
        skip=cfg.teacher_skip,
        equal=cfg.teacher_equal,
    )


class WithAbsorbing(nn.Module):
    """r_φ extended by the absorbing state that follows an episode end (``method.absorbing``).

    ``forward(obs) -> (*B, |A| + 1)``: the net's r_φ(s, ·) and, as one more action column, the learned
    scalar r_φ(absorbing), the same for every s; so ``nets.reward(rm, obs, actions)`` reads absorbing
    steps (action |A|) like any other step. Kostrikov et al. 2019 (DAC): without it, episode ends are
    worth 0 to the agent, a value the preferences never set.
    """

    def __init__(self, net: nn.Module) -> None:
        """Wrap ``net``; r_φ(absorbing) starts at 0."""
        super().__init__()
        self.net = net
        self.absorbing = nn.Parameter(torch.zeros(()))

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return (*B, |A| + 1) rewards."""
        r = self.net(obs, generator)
        return torch.cat([r, self.absorbing.to(r.dtype).expand(*r.shape[:-1], 1)], -1)


def reward_model_step(
    rm: nn.Module,
    opt: torch.optim.Optimizer,
    batch: PreferenceBatch,
    *,
    gen: torch.Generator,
    penalty: PenaltyFn | None = None,
    on_grad_ratio: Callable[[float], None] | None = None,
) -> float:
    """Take one reward-model step on a minibatch: BT loss (+ λ·p̂ when ``penalty`` is given).

    Args:
        rm: reward model in train mode (dropout on).
        opt: its optimizer.
        batch: labelled segment pairs.
        gen: generator of the dropout masks.
        penalty: ``rm -> scalar`` λ·p̂(φ) added to the loss (PBRL), or None.
        on_grad_ratio: with ``penalty``, receives ‖∇_φ λ·p̂‖ / ‖∇_φ BT‖ of this minibatch (measured
            by two extra backward passes; the step itself is unchanged, bit for bit).

    Returns:
        The minibatch's BT loss before the step.
    """
    r1_BH = reward(rm, batch.obs1_BH, batch.act1_BH, generator=gen)
    r2_BH = reward(rm, batch.obs2_BH, batch.act2_BH, generator=gen)
    loss_bt = bt_loss(r1_BH, r2_BH, batch.y_B)
    loss = loss_bt
    if penalty is not None:
        pen = penalty(rm)
        ratio = None if on_grad_ratio is None else grad_norm_ratio(pen, loss_bt, rm)
        if on_grad_ratio is not None and ratio is not None:
            on_grad_ratio(ratio)
        loss = loss_bt + pen
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss_bt.detach())


def absorbing_reward(rm: nn.Module) -> torch.Tensor:
    """r_φ(absorbing) of a ``WithAbsorbing`` reward model (raw, before normalisation)."""
    if not isinstance(rm, WithAbsorbing):
        raise TypeError(f"rm: expected a WithAbsorbing reward model, got {type(rm).__name__}")
    return rm.absorbing


class RewardModelTrainer:
    """r_φ and everything that trains it (module docstring).

    Args:
        cfg: the loop's config.
        net_kind: the problem's net family ("atari", "grid", "mlp").
        obs_dtype: "uint8" (frames, grids: stored as bytes in the buffer) or "float32".
        gamma: discount γ of the value penalty.
        seed: the trial seed.
        obs_shape: one observation's shape.
        num_actions: |A|.
        net_kwargs: extra constructor kwargs (compute dtype, MLP widths).
    """

    def __init__(
        self,
        cfg: RLHFConfig,
        *,
        net_kind: str,
        obs_dtype: str,
        gamma: float,
        seed: int,
        obs_shape: tuple[int, ...],
        num_actions: int,
        net_kwargs: Mapping[str, Any],
    ) -> None:
        """Build r_φ (eval mode), its optimizer, the buffer and the generators from the seed."""
        self.cfg, self.gamma = cfg, float(gamma)
        self.rm: nn.Module = make_reward_model(
            net_kind,
            obs_shape,
            num_actions,
            dropout_p=cfg.rm_dropout,
            generator=generator(seed, "init", "rm"),
            **net_kwargs,
        )
        # absorbing steps of a segment carry the action index |A| (see ``WithAbsorbing``)
        self.absorb_action = num_actions if cfg.absorbing else None
        if cfg.absorbing:
            self.rm = WithAbsorbing(self.rm)
        self.rm.eval()
        self.opt = torch.optim.Adam(self.rm.parameters(), lr=cfg.rm_lr)
        self.buffer = PreferenceBuffer(
            cfg.segment_length,
            obs_shape,
            obs_dtype=torch.uint8 if obs_dtype == "uint8" else torch.float32,
            capacity=cfg.buffer_size,
            frame_stack=obs_shape[0] if net_kind == "atari" else 0,
            absorb_action=self.absorb_action,
        )
        self.teacher = teacher_of(cfg)
        self.rms = RunningMeanStd()
        self.gens = {
            "pairs": generator(seed, "rlhf", "pairs"),
            "teacher": generator(seed, "rlhf", "teacher"),
            "rm": generator(seed, "rlhf", "rm"),
        }
        self.stats = RewardModelStats(queries_skipped=0 if cfg.teacher_skip > 0 else None)

    # --- the agent's reward ----------------------------------------------------------------------

    def normalized(self, r: torch.Tensor) -> torch.Tensor:
        """Return r̃ = reward_std·(r − μ)/σ with the running statistics (fixed here)."""
        return normalize_rewards(
            r, mean=self.rms.mean, std=self.rms.std, target_std=self.cfg.reward_std
        )

    def with_end_value(
        self, rm: nn.Module, r_tilde: torch.Tensor, dones: torch.Tensor
    ) -> torch.Tensor:
        """Add, on each step that ends an episode, what the absorbing state after it is worth.

        Math:
            r̃'_t = r̃_φ(s_t, a_t) + 1{done_t}·γ/(1 − γ)·r̃_φ(absorbing)
        so that Σ_t γ^t r̃'_t is the return of the episode followed by the absorbing state forever
        (the A2C step does not bootstrap past an episode end). Unchanged without ``method.absorbing``.
        """
        if self.absorb_action is None:
            return r_tilde
        end = self.gamma / (1.0 - self.gamma) * self.normalized(absorbing_reward(rm))
        return r_tilde + dones.to(r_tilde.dtype) * end

    @torch.no_grad()
    def learned_reward(self, roll: Rollout, *, update_stats: bool) -> torch.Tensor:
        """Return r̃_φ(s_t, a_t) (T, N) of a rollout (dropout off); fold r_φ into the statistics.

        With ``method.absorbing``, episode-ending steps also carry the absorbing state's value.
        """
        r_TN = reward(self.rm, roll.obs_TN, roll.actions_TN)
        if update_stats:
            self.rms.update(r_TN)
        return self.with_end_value(self.rm, self.normalized(r_TN), roll.dones_TN)

    # --- labels ----------------------------------------------------------------------------------

    def label_pairs(
        self, roll: Rollout, num_pairs: int
    ) -> tuple[SegmentPairs, torch.Tensor] | None:
        """Cut ``num_pairs`` segment pairs from a rollout, label them, add them to the buffer.

        Returns:
            (pairs, labels y_B) of the queries the teacher answered (all of them unless
            ``method.teacher_skip``: then possibly fewer, even none), or None when no segment fits
            inside one episode of the rollout (with ``method.absorbing``: only when the rollout is
            shorter than a segment).
        """
        H = self.cfg.segment_length
        if roll.dones_TN.shape[0] < H:
            return None
        if self.absorb_action is None and not valid_segment_starts(roll.dones_TN, H).any():
            return None
        pairs, rew_2BH = sample_segment_pairs_and_rewards(
            obs_TN=roll.obs_TN,
            actions_TN=roll.actions_TN,
            true_rewards_TN=roll.rewards_TN,
            done_TN=roll.dones_TN,
            num_pairs=num_pairs,
            H=H,
            generator=self.gens["pairs"],
            absorb_action=self.absorb_action,
        )
        answered_B, y_B = self.teacher.label(
            rew_2BH[:num_pairs],
            rew_2BH[num_pairs:],
            pairs.ret1_B,
            pairs.ret2_B,
            generator=self.gens["teacher"],
        )
        if not bool(answered_B.all()):  # the skip teacher left some queries unanswered
            self.stats.queries_skipped = (self.stats.queries_skipped or 0) + int(
                (~answered_B).sum()
            )
            pairs = SegmentPairs(
                *(getattr(pairs, f.name)[answered_B] for f in fields(SegmentPairs))
            )
        if len(pairs):
            self.buffer.add(pairs, y_B)
        self.stats.labels_used += len(pairs)
        return pairs, y_B

    @torch.no_grad()
    def heldout_eval(self, pairs: SegmentPairs, y_B: torch.Tensor) -> torch.Tensor:
        """Score fresh pairs with r_φ before training on them; return the per-pair BT losses ℓ_B."""
        r1_BH = reward(self.rm, pairs.obs1_BH, pairs.act1_BH)
        r2_BH = reward(self.rm, pairs.obs2_BH, pairs.act2_BH)
        pred1, pred2 = r1_BH.sum(1), r2_BH.sum(1)
        self.stats.add_heldout(
            pred1 - pred2,
            y_B,
            torch.cat([pred1, pred2]),
            torch.cat([pairs.ret1_B, pairs.ret2_B]),
        )
        return bt_loss(r1_BH, r2_BH, y_B, reduction="none")

    # --- training --------------------------------------------------------------------------------

    def epoch(self, penalty: PenaltyFn | None) -> None:
        """One reward-learning epoch over the buffer (capped at ``rm_epoch_batches`` minibatches)."""
        cfg = self.cfg
        self.rm.train()
        losses = []
        for i, batch in enumerate(self.buffer.epoch(cfg.rm_batch_size, self.gens["rm"])):
            if cfg.rm_epoch_batches and i >= cfg.rm_epoch_batches:
                break
            # the gradient-norm ratio of the two terms, on the epoch's first minibatch
            measure = self.stats.penalty_grad_ratio.append if i == 0 else None
            losses.append(
                reward_model_step(
                    self.rm,
                    self.opt,
                    batch,
                    gen=self.gens["rm"],
                    penalty=penalty,
                    on_grad_ratio=measure,
                )
            )
        self.rm.eval()
        self.stats.epochs += 1
        self.stats.bt_loss = float(np.mean(losses))

    @torch.no_grad()
    def value_gap(self, oracle_roll: Rollout, agent_roll: Rollout) -> float:
        """Return p̂ = V_φ(π̂*) − V_φ(π_θ) on the two rollouts as r_φ stands (dropout off, no draw):
        what the penalty's clamp will see, without the dropout noise of the training pass."""
        r_hat = self.learned_reward(oracle_roll, update_stats=False).reshape(-1)
        r_agent = self.learned_reward(agent_roll, update_stats=False).reshape(-1)
        return float(value_gap_surrogate(r_hat, r_agent, gamma=self.gamma))

    def penalty_fn(
        self, oracle_roll: Rollout, agent_roll: Rollout, lam: float, *, p_hat_now: float = 0.0
    ) -> PenaltyFn:
        """Return rm ↦ λ·(1 − γ)·max(p̂(φ), 0) on the latest oracle and agent samples.

        p̂ = V_φ(π̂*) − V_φ(π_θ) estimated from the two windows (``core.a2c.value_gap_surrogate``),
        with the normalisation statistics held fixed; per-step units, like the A2C loss. When the
        oracle looks worse than the agent, the agent is the better best-response estimate and the
        penalty (≥ 0 by definition) has no gradient.

        With ``method.penalty_batch`` B > 0 each reward-model step uses B samples drawn from each
        window (the ``rm`` generator) instead of the whole windows: a stochastic gradient of p̂, and
        the clamp is decided once per epoch by ``p_hat_now``, p̂ on the whole windows before the
        epoch (dropout off): λ·(1 − γ)·p̂_B(φ) if ``p_hat_now`` > 0, else no penalty. A per-minibatch
        clamp on B samples would switch on noise.
        """
        gamma, g, batch = self.gamma, self.gens["rm"], self.cfg.penalty_batch

        def rewards(rm: nn.Module, r: Rollout) -> torch.Tensor:
            obs, act, done = r.obs_TN, r.actions_TN, r.dones_TN
            if batch:
                n = act.numel()
                idx = torch.randint(n, (batch,), generator=g)
                obs = obs.reshape(n, *obs.shape[2:])[idx]
                act, done = act.reshape(n)[idx], done.reshape(n)[idx]
            r_tilde = self.normalized(reward(rm, obs, act, generator=g))
            return self.with_end_value(rm, r_tilde, done).reshape(-1)

        def penalty(rm: nn.Module) -> torch.Tensor:
            r_hat, r_agent = rewards(rm, oracle_roll), rewards(rm, agent_roll)
            p_hat = value_gap_surrogate(r_hat, r_agent, gamma=gamma)
            if batch:
                return lam * (1.0 - gamma) * p_hat * float(p_hat_now > 0)
            return lam * (1.0 - gamma) * p_hat.clamp(min=0.0)

        return penalty

    # --- checkpoint ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return a deep snapshot (net, optimizer, buffer, statistics, generators, counters)."""
        return {
            "rm": {k: v.detach().clone() for k, v in self.rm.state_dict().items()},
            "rm_opt": deepcopy(self.opt.state_dict()),
            "buffer": self.buffer.state_dict(),
            "rms": self.rms.state_dict(),
            "gens": {k: g.get_state() for k, g in self.gens.items()},
            "stats": state_of(self.stats),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        self.rm.load_state_dict(state["rm"])
        self.opt.load_state_dict(deepcopy(state["rm_opt"]))
        self.buffer.load_state_dict(state["buffer"])
        self.rms.load_state_dict(state["rms"])
        for k, g in self.gens.items():
            g.set_state(state["gens"][k])
        self.stats = load_into(RewardModelStats, state["stats"])
