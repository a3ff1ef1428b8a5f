"""MLP actor-critic and reward model (same interfaces as the Atari nets), plus shared helpers.

Helpers used by both families:

* ``orthogonal_init_``: orthogonal weights with a chosen gain and zero biases, explicit generator.
* ``dropout``: inverted dropout whose mask can come from an explicit ``torch.Generator`` (the
  ``nn.Dropout`` module can only use the global RNG).

All ``forward`` methods accept any number of leading batch dimensions (e.g. (B, H, …) segments or
(T, N, …) rollouts) and return outputs with the same leading dimensions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

import torch
from torch import nn

_Layer = TypeVar("_Layer", nn.Linear, nn.Conv2d)


def orthogonal_init_(
    module: _Layer, gain: float, generator: torch.Generator | None = None
) -> _Layer:
    """Set a Linear/Conv2d layer to orthogonal weights times ``gain`` and zero bias (in place).

    Args:
        module: ``nn.Linear`` or ``nn.Conv2d``.
        gain: scale of the orthogonal matrix (√2 for ReLU layers, 0.01 policy head, 1 value head).
        generator: torch generator for the draw (None = global RNG).

    Returns:
        The same module.
    """
    with torch.no_grad():
        nn.init.orthogonal_(module.weight, gain=gain, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    return module


def dropout(
    h: torch.Tensor, p: float, *, training: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Inverted dropout: zero each unit with probability p and scale the rest by 1/(1 − p).

    Args:
        h: activations.
        p: drop probability in [0, 1).
        training: apply dropout only when True (identity otherwise).
        generator: generator on ``h``'s device for the mask (None = global RNG).

    Returns:
        Tensor like ``h``.
    """
    if not training or p == 0.0:
        return h
    keep = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) >= p
    return h * keep.to(h.dtype) / (1.0 - p)


COMPUTE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def compute_context(dtype: torch.dtype, device: torch.device) -> AbstractContextManager[object]:
    """Return the context a network's ``forward`` runs in: bf16 autocast, or nothing for float32.

    Parameters, gradients and optimizer state stay float32 either way (mixed precision); only the
    matmuls and convolutions run in bfloat16 (AVX512-BF16 / AMX on CPUs, tensor cores on GPUs).
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def as_output(t: torch.Tensor) -> torch.Tensor:
    """Return a network output in float32 when it was computed in a low-precision dtype."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def activation(leaky_slope: float) -> nn.Module:
    """Return ReLU when ``leaky_slope`` is 0, else LeakyReLU(leaky_slope)."""
    return nn.ReLU() if leaky_slope == 0.0 else nn.LeakyReLU(leaky_slope)


class MLPActorCritic(nn.Module):
    """Actor-critic with a shared tanh MLP trunk, a policy head (|A| logits) and a value head; or,
    with ``separate``, one trunk for the policy and another for the value (Stable-Baselines3's
    ``MlpPolicy``: pi = vf = [64, 64]).

    ``compute_dtype`` (set by ``nets.make_actor_critic``) is float32 or bfloat16 (autocast).

    Args:
        obs_dim: observation size D.
        num_actions: |A|.
        hidden: trunk widths.
        separate: a second trunk of the same widths for the value head.
        generator: generator for the orthogonal initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        *,
        hidden: Sequence[int] = (64, 64),
        separate: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        self.obs_dim, self.num_actions = int(obs_dim), int(num_actions)

        def trunk() -> nn.Sequential:
            layers: list[nn.Module] = []
            d = self.obs_dim
            for w in hidden:
                layers += [orthogonal_init_(nn.Linear(d, w), math.sqrt(2), generator), nn.Tanh()]
                d = w
            return nn.Sequential(*layers)

        d = int(hidden[-1]) if hidden else self.obs_dim
        self.trunk = trunk()
        self.policy_head = orthogonal_init_(nn.Linear(d, self.num_actions), 0.01, generator)
        self.value_trunk = trunk() if separate else None  # (after the policy: same policy draws)
        self.value_head = orthogonal_init_(nn.Linear(d, 1), 1.0, generator)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return policy logits and state values.

        Args:
            obs: (*B, D) float observations.

        Returns:
            (logits_BA (*B, |A|), value_B (*B,)).
        """
        lead = obs.shape[:-1]
        with compute_context(self.compute_dtype, obs.device):
            x = obs.reshape(-1, self.obs_dim).float()
            z = self.trunk(x)
            z_v = z if self.value_trunk is None else self.value_trunk(x)
            logits = self.policy_head(z).reshape(*lead, self.num_actions)
            value = self.value_head(z_v).reshape(lead)
        return as_output(logits), as_output(value)


class MLPRewardModel(nn.Module):
    """Reward predictor r_x(s, ·) ∈ ℝ^|A| as an MLP with dropout between the FC layers.

    Args:
        obs_dim: observation size D.
        num_actions: |A| (one predicted reward per action).
        hidden: widths of the hidden FC layers.
        dropout_p: dropout probability after every hidden layer (Christiano: 0.5).
        leaky_slope: 0 for ReLU, else LeakyReLU slope.
        generator: generator for the initialisation (None = global RNG).
    """

    compute_dtype: torch.dtype = torch.float32

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        *,
        hidden: Sequence[int] = (64, 64),
        dropout_p: float = 0.5,
        leaky_slope: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the layers."""
        super().__init__()
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p: must be in [0, 1), got {dropout_p}")
        self.obs_dim, self.num_actions = int(obs_dim), int(num_actions)
        self.dropout_p = float(dropout_p)
        gain = math.sqrt(2)
        self.hidden = nn.ModuleList()
        d = self.obs_dim
        for w in hidden:
            self.hidden.append(orthogonal_init_(nn.Linear(d, w), gain, generator))
            d = w
        self.act = activation(leaky_slope)
        self.out = orthogonal_init_(nn.Linear(d, self.num_actions), 1.0, generator)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return r_x(s, ·) for every action.

        Args:
            obs: (*B, D) float observations.
            generator: generator for the dropout masks in train mode (None = global RNG).

        Returns:
            r_BA: (*B, |A|).
        """
        lead = obs.shape[:-1]
        with compute_context(self.compute_dtype, obs.device):
            h = obs.reshape(-1, self.obs_dim).float()
            for layer in self.hidden:
                h = dropout(
                    self.act(layer(h)), self.dropout_p, training=self.training, generator=generator
                )
            out = self.out(h).reshape(*lead, self.num_actions)
        return as_output(out)
