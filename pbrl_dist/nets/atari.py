"""Atari actor-critic and reward predictor (MATH.md §7.2; PROPOSAL sizes where the paper is silent).

Both take uint8 stacked frames (…, C=4, 84, 84) and scale them by 1/255 inside ``forward``.

* ``AtariActorCritic``: conv 8×8/4 ×32 → 4×4/2 ×64 → 3×3/1 ×64 → 3×3/1 ×64 → FC 512, all ReLU;
  policy head FC → |A| logits, critic head FC → 1. Orthogonal init (√2 trunk, 0.01 policy, 1 value).
  (Nature-CNN plus one extra 3×3 layer, honouring the paper's "4 conv layers".)
* ``AtariRewardModel``: Christiano et al.'s predictor: conv 7×7/3, 5×5/2, 3×3/1, 3×3/1 with 16
  filters each, ReLU (or leaky), FC 64, dropout p between the FC layers, FC → |A| = r_x(s, ·);
  optional BatchNorm after each conv (off by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pbrl_dist.nets.mlp import activation, as_output, compute_context, dropout, orthogonal_init_


def _conv_stack(
    in_channels: int,
    spec: Sequence[tuple[int, int, int]],
    *,
    leaky_slope: float,
    batchnorm: bool,
    generator: torch.Generator | None,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for kernel, stride, filters in spec:
        layers.append(
            orthogonal_init_(nn.Conv2d(c, filters, kernel, stride), math.sqrt(2), generator)
        )
        if batchnorm:
            layers.append(nn.BatchNorm2d(filters))
        layers.append(activation(leaky_slope))
        c = filters
    layers.append(nn.Flatten())
    return nn.Sequential(*layers)


def frames_to_float(obs: torch.Tensor, obs_shape: Sequence[int]) -> torch.Tensor:
    """Return (B, C, H, W) floating frames / 255 in channels-last memory (NHWC strides).

    Channels-last makes oneDNN's convolution backward faster on CPU (the 4-channel first conv's
    backward: 15 → 6 ms for 80 frame stacks, one thread; a whole A2C step 1.35×, a reward-model
    minibatch 1.87×: ``benchmarks/bench_nets.py``), and converting the layout while the frames are
    still 1 byte each is cheaper than converting floats. uint8 frames give exactly ``obs.float() / 255``;
    floating frames keep their dtype (float64 for gradient checks).
    """
    x = obs.reshape(-1, *obs_shape).contiguous(memory_format=torch.channels_last)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)  # a fresh float tensor: dividing in place is safe
    return x / 255.0


def _flat_size(conv: nn.Module, obs_shape: Sequence[int]) -> int:
    with torch.no_grad():
        was_training = conv.training
        conv.eval()
        n = conv(torch.zeros(1, *obs_shape)).shape[1]
        conv.train(was_training)
    return int(n)


class AtariActorCritic(nn.Module):
    """Shared conv base + FC, policy head (|A| logits) and value head (MATH.md §7.2 PROPOSAL).

    Conv weights are kept channels-last (see ``frames_to_float``); ``state_dict`` values are the same.

    Args:
        obs_shape: (C, H, W) of one observation, e.g. (4, 84, 84).
        num_actions: |A|.
        hidden: width of the FC layer (512).
        conv_spec: (kernel, stride, filters) per conv layer.
        generator: generator for the orthogonal initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32  # or bfloat16 (nets.make_*, autocast)
    CONV_SPEC: tuple[tuple[int, int, int], ...] = ((8, 4, 32), (4, 2, 64), (3, 1, 64), (3, 1, 64))

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        hidden: int = 512,
        conv_spec: Sequence[tuple[int, int, int]] = CONV_SPEC,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        self.obs_shape = tuple(int(s) for s in obs_shape)
        if len(self.obs_shape) != 3:
            raise ValueError(f"obs_shape: expected (C, H, W), got {self.obs_shape}")
        self.num_actions = int(num_actions)
        self.conv = _conv_stack(
            self.obs_shape[0], conv_spec, leaky_slope=0.0, batchnorm=False, generator=generator
        )
        n_flat = _flat_size(self.conv, self.obs_shape)
        self.fc = nn.Sequential(
            orthogonal_init_(nn.Linear(n_flat, hidden), math.sqrt(2), generator), nn.ReLU()
        )
        self.policy_head = orthogonal_init_(nn.Linear(hidden, self.num_actions), 0.01, generator)
        self.value_head = orthogonal_init_(nn.Linear(hidden, 1), 1.0, generator)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy logits and state values.

        Args:
            obs: (*B, C, H, W) uint8 frames (any dtype with values in [0, 255]).

        Returns:
            (logits_BA (*B, |A|), value_B (*B,)).
        """
        lead = obs.shape[:-3]
        x = frames_to_float(obs, self.obs_shape)
        with compute_context(self.compute_dtype, obs.device):
            z = self.fc(self.conv(x))
            logits = self.policy_head(z).reshape(*lead, self.num_actions)
            value = self.value_head(z).reshape(lead)
        return as_output(logits), as_output(value)


class AtariRewardModel(nn.Module):
    """Christiano et al.'s Atari reward predictor r_x(s, ·) ∈ ℝ^|A|.

    Args:
        obs_shape: (C, H, W) of one observation.
        num_actions: |A|.
        filters: filters in every conv layer (16).
        hidden: width of the FC layer (64).
        dropout_p: dropout between the FC layers (PROPOSAL 0.5).
        leaky_slope: 0 for ReLU (paper), e.g. 0.01 for Christiano's leaky ReLU.
        batchnorm: BatchNorm2d after each conv (off by default).
        generator: generator for the initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32  # or bfloat16 (nets.make_*, autocast)
    KERNELS_STRIDES: tuple[tuple[int, int], ...] = ((7, 3), (5, 2), (3, 1), (3, 1))

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        filters: int = 16,
        hidden: int = 64,
        dropout_p: float = 0.5,
        leaky_slope: float = 0.0,
        batchnorm: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p: must be in [0, 1), got {dropout_p}")
        self.obs_shape = tuple(int(s) for s in obs_shape)
        if len(self.obs_shape) != 3:
            raise ValueError(f"obs_shape: expected (C, H, W), got {self.obs_shape}")
        self.num_actions = int(num_actions)
        self.dropout_p = float(dropout_p)
        spec = [(k, s, filters) for k, s in self.KERNELS_STRIDES]
        self.conv = _conv_stack(
            self.obs_shape[0],
            spec,
            leaky_slope=leaky_slope,
            batchnorm=batchnorm,
            generator=generator,
        )
        n_flat = _flat_size(self.conv, self.obs_shape)
        self.fc = orthogonal_init_(nn.Linear(n_flat, hidden), math.sqrt(2), generator)
        self.act = activation(leaky_slope)
        self.out = orthogonal_init_(nn.Linear(hidden, self.num_actions), 1.0, generator)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return r_x(s, ·) for every action.

        Args:
            obs: (*B, C, H, W) uint8 frames.
            generator: generator for the dropout mask in train mode (None = global RNG).

        Returns:
            r_BA: (*B, |A|).
        """
        lead = obs.shape[:-3]
        x = frames_to_float(obs, self.obs_shape)
        with compute_context(self.compute_dtype, obs.device):
            h = self.act(self.fc(self.conv(x)))
            h = dropout(h, self.dropout_p, training=self.training, generator=generator)
            out = self.out(h).reshape(*lead, self.num_actions)
        return as_output(out)
