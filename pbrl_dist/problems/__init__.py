"""Applications: each file builds x, the lower MDP map x ↦ M_τ(x), f and the exact metrics.

Each problem registers one ``ProblemSpec`` (``problems/registry.py``) in its own module: config
dataclass, builder, the ``method.algo`` values it runs with, its metrics and its figure. The mappings
below are read-only views of that registry (they follow it as user problems are registered):

- ``PROBLEMS``: ``problem.name`` → (config dataclass, builder);
- ``COMPATIBLE``: ``problem.name`` → the loops (``method.algo``) that run on it.

``LOGGED_METRICS`` (a problem's metrics and those its loops add) reads the loop registry too, so it
lives in ``pbrl_dist.catalog``, above both.
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

PROBLEMS: RegistryView = RegistryView(lambda s: (s.config, s.build))
COMPATIBLE: RegistryView = RegistryView(lambda s: s.algos)

__all__ = [
    "COMPATIBLE",
    "PROBLEMS",
    "ProblemSpec",
    "get_problem",
    "problem_specs",
    "register_problem",
    "resolve_target",
]
