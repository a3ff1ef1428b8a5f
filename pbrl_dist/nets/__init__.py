"""Neural networks (``nn.Module`` only; imports nothing but torch).

Two families with identical interfaces:

* actor-critic: ``forward(obs) -> (logits_BA, value_B)``;
* reward model: ``forward(obs, generator=None) -> r_BA`` (r_x(s, ·) for every action); dropout is
  active in ``train()`` mode only. ``reward(rm, obs, actions)`` picks r_x(s, a) of the taken actions
  (one function for every family).

``kind`` = "atari" (uint8 (4, 84, 84) frames, conv nets), "grid" (channels-last (H, W, C) grids and
images of gymnasium envs, conv nets sized from the shape) or "mlp" (float (D,) vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pbrl_dist.nets.atari import AtariActorCritic, AtariRewardModel
from pbrl_dist.nets.grid import GridActorCritic, GridRewardModel
from pbrl_dist.nets.mlp import (
    COMPUTE_DTYPES,
    MLPActorCritic,
    MLPRewardModel,
    dropout,
    orthogonal_init_,
)
from pbrl_dist.nets.normalize import ObsNormalized

ACTOR_CRITICS: dict[str, type[nn.Module]] = {
    "atari": AtariActorCritic,
    "grid": GridActorCritic,
    "mlp": MLPActorCritic,
}
REWARD_MODELS: dict[str, type[nn.Module]] = {
    "atari": AtariRewardModel,
    "grid": GridRewardModel,
    "mlp": MLPRewardModel,
}


def _first_arg(kind: str, obs_shape: Sequence[int]) -> Any:
    shape = tuple(int(s) for s in obs_shape)
    if kind == "mlp":
        if len(shape) != 1:
            raise ValueError(
                f"obs_shape: kind 'mlp' needs a 1-D observation shape (D,), got {shape}"
            )
        return shape[0]
    return shape


def _with_compute_dtype(net: nn.Module, compute_dtype: str) -> nn.Module:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype: expected one of {sorted(COMPUTE_DTYPES)}, got {compute_dtype!r}"
        )
    net.compute_dtype = COMPUTE_DTYPES[compute_dtype]  # type: ignore[assignment]
    return net


def reward(
    rm: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return r_x(s, a) of the taken actions: (*B, *obs_shape), (*B,) → (*B,) (any reward model)."""
    r_BA: torch.Tensor = rm(obs, generator)
    return r_BA.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def make_actor_critic(
    kind: str,
    obs_shape: Sequence[int],
    num_actions: int,
    *,
    compute_dtype: str = "float32",
    normalize_obs: bool = False,
    **kw: Any,
) -> nn.Module:
    """Build an actor-critic of the given kind.

    Args:
        kind: "atari", "grid" or "mlp".
        obs_shape: shape of one observation ((C, H, W), (H, W, C) or (D,)).
        num_actions: |A|.
        compute_dtype: "float32", or "bfloat16" to run ``forward`` under autocast (parameters and
            outputs stay float32).
        normalize_obs: wrap the net in ``ObsNormalized`` (running observation statistics held as
            buffers; not for "atari", whose nets scale their uint8 frames themselves).
        **kw: passed to the class (e.g. ``hidden``, ``generator``).

    Returns:
        The module; ``forward(obs) -> (logits_BA, value_B)``.
    """
    if kind not in ACTOR_CRITICS:
        raise ValueError(f"kind: expected one of {sorted(ACTOR_CRITICS)}, got {kind!r}")
    if kw.get("separate") and kind != "mlp":
        raise ValueError(f"ac_separate_trunks: MLP nets only (this problem's nets are {kind!r})")
    net = ACTOR_CRITICS[kind](_first_arg(kind, obs_shape), num_actions, **kw)
    net = _with_compute_dtype(net, compute_dtype)
    if normalize_obs:
        if kind == "atari":
            raise ValueError("normalize_obs: the atari nets scale their uint8 frames themselves")
        return ObsNormalized(net, tuple(int(s) for s in obs_shape))
    return net


def make_reward_model(
    kind: str,
    obs_shape: Sequence[int],
    num_actions: int,
    *,
    compute_dtype: str = "float32",
    **kw: Any,
) -> nn.Module:
    """Build a reward model r_x(s, ·) of the given kind.

    Args:
        kind: "atari", "grid" or "mlp".
        obs_shape: shape of one observation ((C, H, W), (H, W, C) or (D,)).
        num_actions: |A|.
        compute_dtype: "float32" or "bfloat16" (as for ``make_actor_critic``).
        **kw: passed to the class (``dropout_p``, ``leaky_slope``, ``batchnorm``, ``generator``…).

    Returns:
        The module; ``forward(obs, generator=None) -> r_BA``.
    """
    if kind not in REWARD_MODELS:
        raise ValueError(f"kind: expected one of {sorted(REWARD_MODELS)}, got {kind!r}")
    net = REWARD_MODELS[kind](_first_arg(kind, obs_shape), num_actions, **kw)
    return _with_compute_dtype(net, compute_dtype)


__all__ = [
    "ACTOR_CRITICS",
    "COMPUTE_DTYPES",
    "REWARD_MODELS",
    "AtariActorCritic",
    "AtariRewardModel",
    "GridActorCritic",
    "GridRewardModel",
    "MLPActorCritic",
    "MLPRewardModel",
    "ObsNormalized",
    "dropout",
    "make_actor_critic",
    "make_reward_model",
    "orthogonal_init_",
    "reward",
]
