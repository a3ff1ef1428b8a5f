"""Config schemas (plain dataclasses; omegaconf turns them into typed, closed configs).

A trial's resolved config has the top-level keys ``exp``, ``seed``, ``problem``, ``method``, ``dist``,
``logging``. The problem schema is chosen by ``problem.name`` from the problem registry
(``problems/registry.py``), the method schema by ``method.algo`` from the loop registry
(``algos/registry.py``), which also holds the allowed values of the method fields.
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
        cpus_per_trial: CPUs reserved for the learner bundle; the learner runs that many torch threads.
        cpus_per_worker: CPUs reserved per rollout worker / oracle bundle.
        placement_strategy: how a trial's bundles (learner, workers, oracles) are placed on nodes:
            ``PACK`` (default: as few nodes as possible), ``SPREAD``, ``STRICT_PACK``, ``STRICT_SPREAD``.
        checkpoint_every: a Tune trial saves a checkpoint every this many outer iterations (and at the end).
        actor_timeout_s: the longest one call to a rollout-worker or oracle actor may take (seconds, from
            the call's issue; ray backend): an actor that has not answered by then is hung, killed and
            replaced like a dead one (a warning line comes at half of it). Far above any legitimate call.
    """

    backend: str = "local"
    num_rollout_workers: int = 1
    num_oracles: int = 0
    cpus_per_trial: float = 1.0
    cpus_per_worker: float = 1.0
    placement_strategy: str = "PACK"
    checkpoint_every: int = 200
    actor_timeout_s: float = 60.0


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
class SchedulerBlock:
    """``sweep.scheduler``: how ``pbrl sweep`` (Tune) stops trials early; ``pbrl run`` ignores it.

    Attributes:
        name: ``fifo`` (run every trial to the end, the default) or ``asha`` (asynchronous successive
            halving on ``metric``, judged at outer iterations ``grace_period``·``reduction_factor``^i).
        metric: the reported metric ASHA compares, e.g. ``upper/leader_return``.
        mode: ``max`` or ``min``.
        grace_period: outer iterations every trial runs before it can be stopped.
        reduction_factor: ASHA keeps 1/reduction_factor of the trials at each rung.
        max_t: the last rung in outer iterations (0 = the largest ``method.num_iters`` of the sweep).
    """

    name: str = "fifo"
    metric: str = "upper/leader_return"
    mode: str = "max"
    grace_period: int = 100
    reduction_factor: int = 3
    max_t: int = 0


@dataclass
class SweepBlock:
    """The ``sweep:`` block: an explicit seed axis and a grid over dotted config keys.

    The remaining fields are used by ``pbrl sweep`` (Ray Tune) only:

    Attributes:
        search: random axes over dotted config keys, sampled ``num_samples`` times per grid trial, e.g.
            ``{method.lr_x: {loguniform: [0.01, 0.5]}, method.lam: {choice: [5, 20]}}``; the kinds are
            ``choice`` (list of values), ``uniform`` / ``loguniform`` ([low, high]), ``randint`` ([low, high)).
        num_samples: samples of the ``search`` axes per grid trial (needs ``search``).
        search_seed: seed of the ``search`` sampler: the same sweep file draws the same settings on
            every launch (change it for a fresh draw).
        scheduler: early stopping (``fifo`` or ``asha``).
        max_failures: Tune retries a failed trial this many times from its last checkpoint.
        max_concurrent_trials: cap on trials running at once (0 = as many as the resources allow).
        max_trials: refuse a sweep that expands to more trials than this (a typo in a grid can make
            millions; both ``pbrl run`` and ``pbrl sweep``).
        trials: what one Tune trial is (``pbrl sweep`` only): ``group`` (default) — one configuration
            over all of its seeds (and the ``group_over`` grid values), so that search and ASHA see
            the across-seed aggregate and stop whole configurations; ``seed`` — one seed per Tune
            trial. Every seed keeps its own folder either way, with the same numbers.
        group_over: grid keys (e.g. ``problem.game``) whose values join a configuration's group like
            seeds do: instances a report averages over.
        aggregate: what a group reports to Tune each step: the ``mean`` of its seeds' metrics, or
            their interquartile mean (``iqm``).
    """

    seeds: list[int] = field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    num_samples: int = 1
    search_seed: int = 0
    scheduler: SchedulerBlock = field(default_factory=SchedulerBlock)
    max_failures: int = 2
    max_concurrent_trials: int = 0
    max_trials: int = 10_000
    trials: str = "group"
    group_over: list[str] = field(default_factory=list)
    aggregate: str = "mean"


CHOICES: dict[str, tuple[str, ...]] = {  # registry-backed method fields: algos/registry.py
    "dist.backend": ("local", "ray"),
    "dist.placement_strategy": ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
    "logging.wandb": ("offline", "online", "disabled"),
}
