"""Conv nets for channels-last grids and images (gymnasium envs: MinAtar's 10×10×C, RGB frames).

Observations are (*B, H, W, C), uint8 (bool cells stored as 0/255, pixels 0–255; scaled by 1/255) or
float. The conv trunk is sized from the shape (``grid_conv_spec``):

* while the smaller side is above 20 cells, a 4×4 stride-2 conv with 32 filters halves it (a 210×160
  frame becomes 104×79, 51×38, 24×18);
* then Young & Tian's MinAtar layer: a 3×3 stride-1 conv with 16 filters (a 10×10 grid: exactly their
  network, conv 16 → FC 128).

``GridActorCritic``: trunk → FC ``hidden`` (128) → policy head (|A| logits) and value head; orthogonal
init like the other families. ``GridRewardModel``: trunk → FC ``hidden`` (64) → dropout → FC → |A|.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pbrl_dist.nets.atari import _conv_stack, _flat_size
from pbrl_dist.nets.mlp import activation, as_output, compute_context, dropout, orthogonal_init_


def grid_conv_spec(height: int, width: int) -> list[tuple[int, int, int]]:
    """Return (kernel, stride, filters) per conv layer for an H×W grid (module docstring)."""
    spec: list[tuple[int, int, int]] = []
    h, w = int(height), int(width)
    while min(h, w) > 20:
        spec.append((4, 2, 32))
        h, w = (h - 4) // 2 + 1, (w - 4) // 2 + 1
    if min(h, w) >= 3:
        spec.append((3, 1, 16))
    else:  # a 1- or 2-cell side: a 1×1 conv keeps the shape
        spec.append((1, 1, 16))
    return spec


def _to_nchw(obs: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(*B, H, W, C) → (B, C, H, W) float (a channels-last view: no copy of the cells)."""
    x = obs.reshape(-1, *shape).permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float() if x.dtype == torch.bool else x


def _check_shape(obs_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in obs_shape)
    if len(shape) != 3:
        raise ValueError(f"obs_shape: expected (H, W, C), got {shape}")
    return shape  # type: ignore[return-value]


class GridActorCritic(nn.Module):
    """Conv trunk sized from (H, W, C) + FC, policy head and value head.

    Args:
        obs_shape: (H, W, C) of one observation.
        num_actions: |A|.
        hidden: width of the FC layer (128, Young & Tian).
        generator: generator for the orthogonal initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32  # or bfloat16 (nets.make_*, autocast)

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        hidden: int = 128,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        self.obs_shape = _check_shape(obs_shape)
        self.num_actions = int(num_actions)
        h, w, c = self.obs_shape
        self.conv = _conv_stack(
            c, grid_conv_spec(h, w), leaky_slope=0.0, batchnorm=False, generator=generator
        )
        n_flat = _flat_size(self.conv, (c, h, w))
        self.fc = orthogonal_init_(nn.Linear(n_flat, hidden), math.sqrt(2), generator)
        self.policy_head = orthogonal_init_(nn.Linear(hidden, self.num_actions), 0.01, generator)
        self.value_head = orthogonal_init_(nn.Linear(hidden, 1), 1.0, generator)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy logits (*B, |A|) and values (*B,) for (*B, H, W, C) observations."""
        lead = obs.shape[: obs.dim() - 3]
        with compute_context(self.compute_dtype, obs.device):
            z = torch.relu(self.fc(self.conv(_to_nchw(obs, self.obs_shape))))
            logits = self.policy_head(z).reshape(*lead, self.num_actions)
            value = self.value_head(z).reshape(lead)
        return as_output(logits), as_output(value)


class GridRewardModel(nn.Module):
    """Reward predictor r_x(s, ·) ∈ ℝ^|A| on grids: conv trunk, FC, dropout, FC → |A|.

    Args:
        obs_shape: (H, W, C) of one observation.
        num_actions: |A|.
        hidden: width of the FC layer (64).
        dropout_p: dropout between the FC layers.
        leaky_slope: 0 for ReLU, else LeakyReLU slope.
        generator: generator for the initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        hidden: int = 64,
        dropout_p: float = 0.5,
        leaky_slope: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p: must be in [0, 1), got {dropout_p}")
        self.obs_shape = _check_shape(obs_shape)
        self.num_actions = int(num_actions)
        self.dropout_p = float(dropout_p)
        h, w, c = self.obs_shape
        self.conv = _conv_stack(
            c, grid_conv_spec(h, w), leaky_slope=leaky_slope, batchnorm=False, generator=generator
        )
        n_flat = _flat_size(self.conv, (c, h, w))
        self.fc = orthogonal_init_(nn.Linear(n_flat, hidden), math.sqrt(2), generator)
        self.act = activation(leaky_slope)
        self.out = orthogonal_init_(nn.Linear(hidden, self.num_actions), 1.0, generator)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return r_x(s, ·) (*B, |A|) for (*B, H, W, C) observations (dropout in train mode only)."""
        lead = obs.shape[: obs.dim() - 3]
        with compute_context(self.compute_dtype, obs.device):
            h = self.act(self.fc(self.conv(_to_nchw(obs, self.obs_shape))))
            h = dropout(h, self.dropout_p, training=self.training, generator=generator)
            out = self.out(h).reshape(*lead, self.num_actions)
        return as_output(out)
