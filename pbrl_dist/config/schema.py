"""Config schemas (plain dataclasses; omegaconf turns them into typed, closed configs).

A trial's resolved config has the top-level keys ``exp``, ``seed``, ``problem``, ``method``, ``dist``,
``logging``. The problem schema is chosen by ``problem.name`` from ``pbrl_dist.problems.PROBLEMS``; the
method schema is ``algos.base.MethodConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pbrl_dist.algos.base import MethodConfig


@dataclass
class DistConfig:
    """Where the trial's work runs.

    Attributes:
        backend: ``local`` (everything in the learner process) or ``ray`` (rollout-worker and oracle actors).
        num_rollout_workers: Monte Carlo / env-stepping actors per trial (ray backend).
        num_oracles: best-response oracle actors per trial (ray backend).
        cpus_per_trial: CPUs reserved for the learner bundle.
        cpus_per_worker: CPUs reserved per rollout worker / oracle bundle.
    """

    backend: str = "local"
    num_rollout_workers: int = 1
    num_oracles: int = 0
    cpus_per_trial: float = 1.0
    cpus_per_worker: float = 1.0


@dataclass
class LoggingConfig:
    """Logging.

    Attributes:
        wandb: ``offline`` (default, no account needed), ``online`` or ``disabled``.
        project: W&B project.
        progress_every_s: seconds between progress lines of a running trial.
    """

    wandb: str = "offline"
    project: str = "pbrl_dist"
    progress_every_s: float = 10.0


@dataclass
class TrialConfig:
    """One trial: a problem instance, a method, a seed."""

    exp: str = "default"
    seed: int = 0
    problem: Any = None
    method: Any = field(default_factory=MethodConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


@dataclass
class SweepBlock:
    """The ``sweep:`` block: an explicit seed axis and a grid over dotted config keys."""

    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)


CHOICES: dict[str, tuple[str, ...]] = {
    "method.penalty": ("value", "bellman"),
    "method.estimator": ("exact", "mc"),
    "method.oracle": ("exact", "vi", "pmd", "pg"),
    "dist.backend": ("local", "ray"),
    "logging.wandb": ("offline", "online", "disabled"),
}
