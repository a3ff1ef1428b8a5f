"""Observation normalisation as part of the policy net (as Stable-Baselines3's ``VecNormalize`` does it
for rl-zoo's A2C, but held in the net so that the statistics travel with the weights).

``ObsNormalized(net)`` feeds ``net`` with clip((s − μ) / √(σ² + ε), ±clip). μ, σ² and the count are
buffers: they are in ``state_dict``, so rollout workers act with exactly the learner's statistics, and a
checkpoint holds them. Only ``update`` changes them (the A2C trainer calls it after each step on the
fragment it stepped on: a fragment is acted on and learned from with the same statistics).
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8
CLIP = 10.0


class ObsNormalized(nn.Module):
    """``net`` behind a running observation normaliser.

    Args:
        net: the wrapped module (its ``forward(obs, *rest)`` receives the normalised observation).
        obs_shape: one observation's shape.
        clip: normalised observations are clipped to [−clip, clip] (rl-zoo: 10).
    """

    obs_mean: torch.Tensor
    obs_var: torch.Tensor
    obs_count: torch.Tensor

    def __init__(self, net: nn.Module, obs_shape: tuple[int, ...], clip: float = CLIP) -> None:
        """Start with μ = 0, σ² = 1 and count 0 (the first ``update`` replaces them)."""
        super().__init__()
        self.net, self.clip = net, float(clip)
        self.register_buffer("obs_mean", torch.zeros(obs_shape, dtype=torch.float64))
        self.register_buffer("obs_var", torch.ones(obs_shape, dtype=torch.float64))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """The wrapped net's autocast dtype (``nets.COMPUTE_DTYPES``)."""
        return getattr(self.net, "compute_dtype", None)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Return clip((obs − μ) / √(σ² + ε), ±clip) in float32."""
        z = (obs.to(torch.float64) - self.obs_mean) / torch.sqrt(self.obs_var + EPS)
        return z.clamp(-self.clip, self.clip).to(torch.float32)

    def forward(self, obs: torch.Tensor, *rest: object) -> object:
        """The wrapped net on the normalised observation."""
        return self.net(self.normalize(obs), *rest)

    @torch.no_grad()
    def update(self, obs_B: torch.Tensor) -> None:
        """Fold a batch of observations (*B, *obs_shape) into μ, σ² (parallel Welford merge)."""
        x = obs_B.reshape(-1, *tuple(self.obs_mean.shape)).to(torch.float64)
        n = float(x.shape[0])
        if n == 0:
            return
        mean_b, var_b = x.mean(0), x.var(0, unbiased=False)
        total = self.obs_count + torch.tensor(n, dtype=torch.float64)
        delta = mean_b - self.obs_mean
        new_mean = self.obs_mean + delta * n / total
        m2 = self.obs_var * self.obs_count + var_b * n + delta**2 * self.obs_count * n / total
        self.obs_mean.copy_(new_mean)
        self.obs_var.copy_(m2 / total)
        self.obs_count.copy_(total)
