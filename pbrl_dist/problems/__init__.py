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

# Deep RLHF (Figure 2): an Atari game, any gymnasium env with discrete actions, or the toy gridworld.
PROBLEMS["atari_rlhf"] = (rlhf.AtariRLHFConfig, rlhf.build)
PROBLEMS["toy_rlhf"] = (rlhf.ToyRLHFConfig, rlhf.build)
PROBLEMS["gym_rlhf"] = (rlhf.GymRLHFConfig, rlhf.build)
COMPATIBLE["atari_rlhf"] = ("rlhf",)
COMPATIBLE["toy_rlhf"] = ("rlhf",)
COMPATIBLE["gym_rlhf"] = ("rlhf",)

# The metric keys each problem's rows can carry (``iter`` aside): what a scheduler may compare and what
# `pbrl sweep` checks `sweep.scheduler.metric` against before anything runs. A test runs every sweep
# file's smoke block and checks that its rows use only these keys.
_TABULAR_PENALTIES = ("upper/objective", "penalty/value", "penalty/bellman", "lower/oracle_err")
_RLHF = (
    "env_frames",
    "perf/env_frames",
    "perf/env_steps_per_s",
    "perf/oracle_env_frames",
    "rl/episode_return",
    "rl/best_episode_return",
    "rl/episodes",
    "rm/accuracy",
    "rm/return_corr",
    "rm/labels_used",
    "rm/epochs",
    "rm/bt_loss",
    "lower/policy_loss",
    "lower/value_loss",
    "lower/entropy",
    "upper/coef",
    "upper/score_loss",
    "penalty/value",
)
LOGGED_METRICS: dict[str, tuple[str, ...]] = {
    "stackelberg": ("upper/leader_return", "lower/gap", *_TABULAR_PENALTIES, "perf/iter_per_s"),
    "incentive": (
        "upper/designer_return",
        "lower/ni_gap",
        "penalty/ni",
        "upper/objective",
        "perf/iter_per_s",
    ),
    "shaping": (
        "upper/task_return",
        "lower/gap",
        "upper/retrain_shaped_return",
        "upper/retrain_sparse_return",
        *_TABULAR_PENALTIES,
        "perf/iter_per_s",
    ),
    "atari_rlhf": _RLHF,
    "toy_rlhf": _RLHF,
    "gym_rlhf": _RLHF,
}
