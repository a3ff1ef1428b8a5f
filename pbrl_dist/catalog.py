"""The catalog: every built-in problem and loop, registered in one place, and the views that join them.

Importing this module registers the built-in ``ProblemSpec``s (``problems/``: stackelberg, incentive,
shaping, the RLHF problems) and ``AlgoSpec``s (``algos/``: pbrl, indep_pg, pbrl_ni, metagrad,
start_line; ``rlhf/``: rlhf). Each registers itself in its own module; the registries
(``problems/registry.py``, ``algos/registry.py``) import none of them, so no import runs upward
(DESIGN.md §2). ``config/`` imports this module before anything reads a registry, so the loader,
``launch/``, ``report/`` and the CLI always see the built-ins; other code calls ``load()``.

The views here read both registries, which is why they live above both:

- ``LOGGED_METRICS``: ``problem.name`` → every metric key its rows can carry (``iter`` aside): the
  problem's own metrics and those its loops add. What a scheduler may compare.
- ``describe_metric(key)``: the meaning of a metric key (``metrics.METRICS``, else the problem that
  declares it).
"""

from __future__ import annotations

import pbrl_dist.algos.incentive
import pbrl_dist.algos.indep_pg
import pbrl_dist.algos.pbrl
import pbrl_dist.problems.incentive
import pbrl_dist.problems.rlhf
import pbrl_dist.problems.shaping
import pbrl_dist.problems.stackelberg
import pbrl_dist.rlhf
from pbrl_dist.algos.registry import algo_specs
from pbrl_dist.metrics import METRICS
from pbrl_dist.problems.registry import ProblemSpec, RegistryView, problem_specs

BUILTIN_MODULES = (
    pbrl_dist.problems.stackelberg,
    pbrl_dist.problems.incentive,
    pbrl_dist.problems.shaping,
    pbrl_dist.problems.rlhf,
    pbrl_dist.algos.pbrl,
    pbrl_dist.algos.indep_pg,
    pbrl_dist.algos.incentive,
    pbrl_dist.rlhf,
)
"""The modules whose import registers a built-in problem or loop."""


def load() -> None:
    """Make sure every built-in problem and loop is registered (importing this module did it)."""


def logged_metrics(spec: ProblemSpec) -> tuple[str, ...]:
    """The metric keys a problem's rows can carry: its own and those of every loop it runs with."""
    algos = algo_specs()
    keys: dict[str, None] = dict.fromkeys(spec.metrics)
    for algo in spec.algos:
        if algo in algos:
            keys.update(dict.fromkeys(algos[algo].metrics))
    return tuple(keys)


LOGGED_METRICS: RegistryView = RegistryView(logged_metrics)


def describe_metric(key: str) -> str | None:
    """The meaning of a metric key: ``METRICS``, else the ``ProblemSpec.metrics`` of the problem that
    declares it (a user's problem documents its own metrics there)."""
    if key in METRICS:
        return METRICS[key]
    for spec in problem_specs().values():
        if spec.metrics.get(key):
            return spec.metrics[key]
    return None


__all__ = ["BUILTIN_MODULES", "LOGGED_METRICS", "describe_metric", "load", "logged_metrics"]
