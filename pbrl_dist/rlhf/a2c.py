"""One synchronous A2C trainer, used for the agent π_θ and for PBRL's oracle π̂*.

Loss and returns: ``core/a2c.py`` (Mnih et al. 2016, n-step returns). RMSprop with the config's
α, ε; gradient-norm clipping at ``max_grad_norm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pbrl_dist.core.a2c import a2c_loss, nstep_returns
from pbrl_dist.executors.shards import Rollout
from pbrl_dist.nets import ObsNormalized
from pbrl_dist.rlhf.config import RLHFConfig


@dataclass
class A2CStats:
    """Scalars of one A2C update."""

    policy_loss: float
    value_loss: float
    entropy: float
    upper_loss: float
    upper_grad_ratio: float | None = None


def grad_norm_ratio(num: torch.Tensor, den: torch.Tensor, net: nn.Module) -> float | None:
    """Return ‖∇ num‖ / ‖∇ den‖ over ``net``'s parameters (graphs kept; nothing accumulated), or
    None when ∇ den = 0 (a diagnostic, never a NaN that would read as a diverged trial)."""
    params = [p for p in net.parameters() if p.requires_grad]

    def norm(t: torch.Tensor) -> float:
        if not t.requires_grad:
            return 0.0
        grads = torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)
        zero = torch.zeros((), dtype=torch.float64)
        return float(
            torch.sqrt(sum(((g.double() ** 2).sum() for g in grads if g is not None), zero))
        )

    d = norm(den)
    return norm(num) / d if d > 0 else None


class A2CTrainer:
    """An actor-critic ``net`` and its RMSprop.

    Args:
        net: actor-critic, ``forward(obs) -> (logits, value)``.
        cfg: the loop's config (A2C coefficients).
        lr: learning rate.
        gamma: discount γ.
    """

    def __init__(self, net: nn.Module, cfg: RLHFConfig, *, lr: float, gamma: float) -> None:
        """Wrap the net; build its optimizer."""
        self.net, self.cfg, self.gamma = net, cfg, float(gamma)
        self.opt = torch.optim.RMSprop(
            net.parameters(), lr=lr, alpha=cfg.rms_alpha, eps=cfg.rms_eps
        )

    def copy(self, lr: float | None = None) -> A2CTrainer:
        """Return a trainer on a deep copy of the net with a fresh optimizer (PBRL's π̂* start), at
        learning rate ``lr`` (default: this trainer's)."""
        lr = self.opt.param_groups[0]["lr"] if lr is None else lr
        return A2CTrainer(deepcopy(self.net), self.cfg, lr=lr, gamma=self.gamma)

    def weights(self) -> Mapping[str, torch.Tensor]:
        """Return the live parameters (``state_dict``) the rollout sources act with."""
        return self.net.state_dict()

    def step(
        self,
        roll: Rollout,
        rewards_TN: torch.Tensor,
        *,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        continuing: bool = False,
    ) -> A2CStats:
        """Take one A2C step on an on-policy rollout with the given rewards.

        Args:
            roll: the rollout of the net's current weights.
            rewards_TN: (T, N) rewards the step optimises (true, clipped or r̃_φ).
            extra_loss: ``net -> scalar`` added to the loss (PBRL's c·score term).
            continuing: bootstrap across episode ends (``RLHFConfig.continuing``).

        Returns:
            ``A2CStats``.
        """
        net, cfg = self.net, self.cfg
        if roll.graph is not None:  # the acting passes' outputs, graph kept (``ShardGroup.bind``)
            logits_TNA, values_TN = roll.graph
            with torch.no_grad():
                _, bootstrap_N = net(roll.last_obs_N)
        else:
            obs = torch.cat([roll.obs_TN, roll.last_obs_N.unsqueeze(0)])
            logits, values = net(obs)
            logits_TNA, values_TN, bootstrap_N = logits[:-1], values[:-1], values[-1].detach()
        dones_TN = torch.zeros_like(roll.dones_TN) if continuing else roll.dones_TN
        returns_TN = nstep_returns(rewards_TN, dones_TN, bootstrap_N, gamma=self.gamma)
        out = a2c_loss(
            logits_TNA,
            values_TN,
            roll.actions_TN,
            returns_TN,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
        )
        loss = out.loss
        upper = torch.zeros(())
        ratio = None
        if extra_loss is not None:
            upper = extra_loss(net)
            ratio = grad_norm_ratio(upper, out.loss, net)  # ‖∇θ c·score‖ / ‖∇θ A2C‖
            loss = loss + upper
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        self.opt.step()
        if isinstance(net, ObsNormalized):  # after the step: a fragment is acted on and learned
            net.update(roll.obs_TN)  # from with the same statistics
        return A2CStats(
            float(out.policy_loss.detach()),
            float(out.value_loss.detach()),
            float(out.entropy.detach()),
            float(upper.detach()),
            ratio,
        )

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Return deep copies of (net state, optimizer state)."""
        net = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return net, deepcopy(self.opt.state_dict())

    def load_state_dict(self, net: Mapping[str, torch.Tensor], opt: Mapping[str, Any]) -> None:
        """Restore from ``state_dict()``."""
        self.net.load_state_dict(net)
        self.opt.load_state_dict(deepcopy(dict(opt)))
