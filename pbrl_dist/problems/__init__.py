"""Applications: each file builds x, the lower MDP map x ↦ M_τ(x), f and the exact metrics.

Each problem registers one ``ProblemSpec`` (``problems/registry.py``) in its own module: config
dataclass, builder, the ``method.algo`` values it runs with, its metrics and its figure. The mappings
below are read-only views of that registry (they follow it as user problems are registered):

- ``PROBLEMS``: ``problem.name`` → (config dataclass, builder);
- ``COMPATIBLE``: ``problem.name`` → the loops (``method.algo``) that run on it;
- ``LOGGED_METRICS``: ``problem.name`` → every metric key its rows can carry (``iter`` aside): the
  problem's own metrics and those its loops add. What a scheduler may compare and what `pbrl sweep`
  checks ``sweep.scheduler.metric`` against; a test checks every sweep file's smoke rows against it.
"""

from __future__ import annotations

from pbrl_dist.problems import incentive, rlhf, shaping, stackelberg  # noqa: F401  (register)
from pbrl_dist.problems.registry import (
    ProblemSpec,
    RegistryView,
    get_problem,
    problem_specs,
    register_problem,
    resolve_target,
)


def logged_metrics(spec: ProblemSpec) -> tuple[str, ...]:
    """The metric keys a problem's rows can carry: its own and those of every loop it runs with."""
    from pbrl_dist.algos import ALGO_SPECS

    keys: dict[str, None] = dict.fromkeys(spec.metrics)
    for algo in spec.algos:
        if algo in ALGO_SPECS:
            keys.update(dict.fromkeys(ALGO_SPECS[algo].metrics))
    return tuple(keys)


PROBLEMS: RegistryView = RegistryView(lambda s: (s.config, s.build))
COMPATIBLE: RegistryView = RegistryView(lambda s: s.algos)
LOGGED_METRICS: RegistryView = RegistryView(logged_metrics)

__all__ = [
    "COMPATIBLE",
    "LOGGED_METRICS",
    "PROBLEMS",
    "ProblemSpec",
    "get_problem",
    "logged_metrics",
    "problem_specs",
    "register_problem",
    "resolve_target",
]
