"""Applications: each file builds x, the lower MDP map x ↦ M_τ(x), f and the exact metrics.

``PROBLEMS`` maps the config's ``problem.name`` to (config dataclass, builder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pbrl_dist.problems import incentive, rlhf, shaping, stackelberg

PROBLEMS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "stackelberg": (stackelberg.StackelbergConfig, stackelberg.build),
    "incentive": (incentive.IncentiveConfig, incentive.build),
    "shaping": (shaping.ShapingConfig, shaping.build),
}

# Which loops (method.algo) can run on which problem.
COMPATIBLE: dict[str, tuple[str, ...]] = {
    "stackelberg": ("pbrl", "indep_pg"),
    "incentive": ("pbrl_ni", "metagrad", "start_line"),
    "shaping": ("pbrl", "indep_pg"),
}

# Deep RLHF (Figure 2): an Atari game, or the toy gridworld that runs the same code path.
PROBLEMS["atari_rlhf"] = (rlhf.AtariRLHFConfig, rlhf.build)
PROBLEMS["toy_rlhf"] = (rlhf.ToyRLHFConfig, rlhf.build)
COMPATIBLE["atari_rlhf"] = ("rlhf",)
COMPATIBLE["toy_rlhf"] = ("rlhf",)
