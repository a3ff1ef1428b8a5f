"""Trial specs after loading: re-typing a resolved config with changes, the Tune search block, resources.

No Ray here: ``pbrl sweep`` validates everything with these functions before Ray starts.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pbrl_dist.algos.registry import actor_counts
from pbrl_dist.config.loader import (
    _SCALARS,
    _SCHEMA_KEYS,
    ConfigError,
    Sweep,
    TrialSpec,
    _dotted_to_nested,
    _fresh,
    _get,
    _merge_typed,
    _put,
    _special,
    _target,
    _touches,
    typed_container,
    typed_leaf,
    typed_sweep_block,
    validate,
)
from pbrl_dist.config.schema import SweepBlock, TrialConfig

SEARCH_KINDS = ("choice", "uniform", "loguniform", "randint")
TRIAL_KEYS = ("seed", "problem", "method", "dist", "logging")


def spec_from_container(
    name: str, container: dict[str, Any], changes: dict[str, Any] | None = None
) -> TrialSpec:
    """Type and validate a resolved trial config (e.g. a ``config.yaml``) with dotted-key ``changes``.

    Raises ``ConfigError`` naming the field, like ``load_sweep``.
    """
    base = {k: v for k, v in container.items() if k in TRIAL_KEYS}
    layers = [base, _dotted_to_nested((changes or {}).items())]
    try:
        merged = _merge_typed(layers, "")
        merged.exp = str(container.get("exp", "default"))
        obj = OmegaConf.to_object(merged)
        assert isinstance(obj, TrialConfig)
        validate(obj)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{getattr(e, 'full_key', 'config')}: {str(e).splitlines()[0]}") from None
    return TrialSpec(name=name, cfg=obj, container=typed_container(merged, _target(layers)))


def respec(spec: TrialSpec, changes: dict[str, Any], *, name: str | None = None) -> TrialSpec:
    """Return ``spec`` with dotted-key ``changes`` applied, re-typed and re-validated (``ConfigError`` if bad)."""
    return spec_from_container(name or spec.name, spec.container, changes)


def typed_block(sweep: Sweep) -> SweepBlock:
    """Return the sweep's (smoke- and CLI-merged) ``sweep:`` block as a ``SweepBlock``."""
    return typed_sweep_block(sweep.block)


class QuickRespec:
    """``respec(t, {key: value}).cfg`` for many trials without omegaconf's merge per trial.

    A trial's config object with one scalar leaf set to the value as its node types it (once per
    schema), then ``validate``: what ``respec`` computes, in microseconds instead of tens of
    milliseconds (``check_search`` probes every trial of a 10⁴-trial sweep at every search endpoint).
    ``cfg`` answers None where that is not exactly ``respec`` (interpolations or missing values in the
    trial, an axis that picks the schema, a non-scalar leaf) and where the trial fails a check: the
    caller then calls ``respec``, which raises its own error.
    """

    def __init__(self) -> None:
        self.schemas: dict[tuple[type, type], Any] = {}
        self.typed: dict[tuple[type, type, str, type, str], tuple[Any, Any] | None] = {}
        self.plain: dict[int, bool] = {}

    def cfg(self, t: TrialSpec, key: str, value: Any) -> TrialConfig | None:
        """The validated config object of ``respec(t, {key: value})``, or None (see the class)."""
        if any(_touches(key, k) for k in _SCHEMA_KEYS):
            return None
        if id(t) not in self.plain:
            self.plain[id(t)] = not _special(t.container)
        try:
            if not self.plain[id(t)] or type(_get(t.container, key)) not in _SCALARS:
                return None
            group = (type(t.cfg.problem), type(t.cfg.method))
            memo = (*group, key, type(value), repr(value))
            if memo not in self.typed:
                if group not in self.schemas:
                    self.schemas[group] = OmegaConf.structured(t.cfg)
                self.typed[memo] = typed_leaf(self.schemas[group], key, value)
            typed = self.typed[memo]
            if typed is None:
                return None
            obj = _fresh(t.cfg)
            _put(obj, key, typed[1])
            validate(obj)
        except Exception:
            return None
        return obj


def check_search(sweep: Sweep, block: SweepBlock) -> None:
    """Validate ``sweep.search`` / ``num_samples`` / ``scheduler``; every trial at every search endpoint."""
    quick = QuickRespec()
    for key, spec in block.search.items():
        for v in _search_probes(key, spec, block):
            for t in sweep.trials:  # every value the search can produce is at least within these
                if quick.cfg(t, key, v) is not None:
                    continue  # exactly what respec gives, valid
                try:
                    respec(t, {key: v})
                except ConfigError as e:
                    raise ConfigError(
                        f"sweep.search.{key}: value {v!r} is invalid for trial {t.name}: {e}"
                    ) from None
    if block.num_samples < 1:
        raise ConfigError(f"sweep.num_samples: must be ≥ 1 (got {block.num_samples})")
    if block.num_samples > 1 and not block.search:
        raise ConfigError("sweep.num_samples: > 1 needs sweep.search axes (seeds are sweep.seeds)")
    _check_scheduler(block, sweep.trials)
    if block.max_failures < -1:
        raise ConfigError(
            f"sweep.max_failures: must be ≥ -1 (-1 = retry forever), got {block.max_failures}"
        )
    if block.max_concurrent_trials < 0:
        raise ConfigError(
            f"sweep.max_concurrent_trials: must be ≥ 0, got {block.max_concurrent_trials}"
        )


def _search_probes(key: str, spec: Any, block: SweepBlock) -> list[Any]:
    """Check one ``sweep.search`` axis; return the values that bound what it can sample."""
    where = f"sweep.search.{key}"
    if key.split(".")[0] not in TRIAL_KEYS or key == "seed":
        raise ConfigError(f"{where}: must be a dotted config key under {', '.join(TRIAL_KEYS[1:])}")
    if key in block.grid:
        raise ConfigError(f"{where}: the key is also a grid axis; use one or the other")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            f"{where}: must be one of {{kind: values}} with kind in {', '.join(SEARCH_KINDS)}"
        )
    ((kind, values),) = spec.items()
    if kind not in SEARCH_KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; allowed: {', '.join(SEARCH_KINDS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: must be a non-empty list")
    if kind == "choice":
        return list(values)
    if len(values) != 2 or not all(finite(v) for v in values):
        raise ConfigError(f"{where}.{kind}: must be [low, high] finite numbers")
    lo, hi = values
    if not lo < hi:
        raise ConfigError(f"{where}.{kind}: needs low < high (got {lo}, {hi})")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}.loguniform: needs low > 0 (got {lo})")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{where}.randint: needs integers (got {values})")
    return [lo, hi - 1] if kind == "randint" else [lo, hi]


def _check_scheduler(block: SweepBlock, trials: list[TrialSpec]) -> None:
    sch = block.scheduler
    if sch.name not in ("fifo", "asha"):
        raise ConfigError(
            f"sweep.scheduler.name: {sch.name!r} is not allowed; choose one of fifo, asha"
        )
    if sch.mode not in ("max", "min"):
        raise ConfigError(
            f"sweep.scheduler.mode: {sch.mode!r} is not allowed; choose one of max, min"
        )
    if sch.name == "asha":
        if sch.grace_period < 1 or sch.reduction_factor < 2 or sch.max_t < 0:
            raise ConfigError(
                "sweep.scheduler: needs grace_period ≥ 1, reduction_factor ≥ 2 and max_t ≥ 0"
            )
        for t in trials:
            logged = trial_metrics(t)
            if sch.metric not in logged:
                raise ConfigError(
                    f"sweep.scheduler.metric: {sch.metric!r} is not logged by trial {t.name} "
                    f"(problem {t.cfg.problem.name}, algo {t.cfg.method.algo}); "
                    f"choose one of {', '.join(logged)}"
                )


def trial_metrics(t: TrialSpec) -> tuple[str, ...]:
    """The metric keys a trial's rows carry: its problem's own and those its loop adds.

    A loop that declares several ``penalty/<p>`` keys logs only the one its ``method.penalty`` names.
    """
    from pbrl_dist.algos import ALGO_SPECS
    from pbrl_dist.problems import get_problem

    spec = get_problem(t.cfg.problem.name)
    keys: dict[str, None] = dict.fromkeys(spec.metrics if spec is not None else ())
    algo = ALGO_SPECS.get(t.cfg.method.algo)
    added = tuple(algo.metrics) if algo is not None else ()
    penalties = [k for k in added if k.startswith("penalty/")]
    own = f"penalty/{getattr(t.cfg.method, 'penalty', '')}"
    if len(penalties) > 1:
        added = tuple(k for k in added if not k.startswith("penalty/") or k == own)
    keys.update(dict.fromkeys(added))
    return tuple(keys)


def search_trial_name(base: str, sample: dict[str, Any], trial_id: str) -> str:
    """Name of a sampled trial: the grid trial's name, the sampled values, and Tune's trial id."""
    parts = [base] + [f"{k.split('.')[-1]}={_short(v)}" for k, v in sample.items()] + [trial_id]
    return re.sub(r"[^\w=.,+-]", "_", "__".join(parts))


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Bundles:
    """A trial's resource bundles: the learner's, then one per rollout worker and oracle actor."""

    bundles: tuple[dict[str, float], ...]
    strategy: str

    @property
    def total_cpus(self) -> float:
        """CPUs the whole trial reserves."""
        return sum(b.get("CPU", 0.0) for b in self.bundles)


def trial_bundles(cfg: TrialConfig) -> Bundles:
    """Return the placement-group bundles of one trial (learner; workers and oracles with ``backend=ray``)."""
    d = cfg.dist
    learner = {"CPU": float(d.cpus_per_trial)}
    n = sum(actor_counts(cfg.method, d))  # no bundle for actors the trial gives no work
    if n == 0 or d.cpus_per_worker <= 0:
        return Bundles((learner,), d.placement_strategy)
    return Bundles(
        (learner, *({"CPU": float(d.cpus_per_worker)} for _ in range(n))), d.placement_strategy
    )


def check_fits(trials: list[TrialSpec], total_cpus: float, largest_node_cpus: float) -> None:
    """Raise one ``ConfigError`` if some trial needs more CPUs than the cluster (or a node) has."""
    for t in trials:
        b = trial_bundles(t.cfg)
        biggest = max(x.get("CPU", 0.0) for x in b.bundles)
        if b.total_cpus > total_cpus + 1e-9 or biggest > largest_node_cpus + 1e-9:
            d = t.cfg.dist
            raise ConfigError(
                f"dist: trial {t.name} needs {_cpus(b.total_cpus)} CPUs (cpus_per_trial={d.cpus_per_trial}"
                + (
                    f" + {len(b.bundles) - 1} actors × cpus_per_worker={d.cpus_per_worker}"
                    if len(b.bundles) > 1
                    else ""
                )
                + f") but the Ray cluster has {_cpus(total_cpus)} CPUs"
                + (
                    f" (largest node {_cpus(largest_node_cpus)})"
                    if biggest > largest_node_cpus
                    else ""
                )
                + "; lower dist.num_rollout_workers / dist.num_oracles / dist.cpus_per_* or add nodes"
            )


def _cpus(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def fingerprint(trials: list[TrialSpec]) -> str:
    """Return a short hash of every trial's resolved config (to check a resume runs the same sweep)."""
    h = hashlib.blake2b(digest_size=8)
    for t in trials:
        h.update(t.name.encode())
        h.update(t.to_yaml().encode())
    return h.hexdigest()


def asha_max_t(trials: list[TrialSpec], max_t: int) -> int:
    """Return ASHA's last rung: ``max_t`` or the largest outer-iteration count of the sweep."""
    from pbrl_dist.algos.base import outer_iters

    if max_t > 0:
        return max_t
    iters = [outer_iters(t.cfg) for t in trials]
    return max([*iters, 1])


def out_default(sweep: Sweep, smoke: bool) -> Path:
    """Default results folder: ``results/<sweep name>[_smoke]``."""
    return Path("results") / (sweep.name + ("_smoke" if smoke else ""))


def finite(v: Any) -> bool:
    """True for a finite real number."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


GIB = 1024**3


def memory_floor(cfg: TrialConfig) -> tuple[int, str]:
    """A lower bound of the bytes one trial holds, and the field that drives it, as the trial's
    problem says (``ProblemSpec.memory_floor``); ``(0, "")`` for a problem that names none."""
    from pbrl_dist.problems import get_problem

    spec = get_problem(cfg.problem.name)
    floor = spec.memory_floor if spec is not None else None
    return floor(cfg.problem, cfg.method) if floor is not None else (0, "")


def available_memory() -> int:
    """Bytes of memory available to new work here (MemAvailable; free pages where /proc is absent)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_bounds(trials: list[TrialSpec], *, local: bool) -> None:
    """Sizes and resources before anything starts: threads against CPUs, a trial's memory floor.

    ``local``: the learner runs on this machine (``pbrl run``), so ``dist.cpus_per_trial`` torch
    threads must exist here. Raises ``ConfigError`` naming the field and the trial.
    """
    cpus = os.cpu_count() or 1
    avail = available_memory()
    for t in trials:
        d = t.cfg.dist
        if local and d.cpus_per_trial > cpus:
            raise ConfigError(
                f"dist.cpus_per_trial: {d.cpus_per_trial:g} is more than the {cpus} CPUs here "
                f"(the learner runs that many torch threads) [trial {t.name}]"
            )
        need, field_ = memory_floor(t.cfg)
        if need > avail:
            raise ConfigError(
                f"{field_}: trial {t.name} needs at least {need / GIB:.3g} GiB but {avail / GIB:.3g} "
                "GiB of memory is available here; make it smaller"
            )


def idle_actor_notes(trials: list[TrialSpec]) -> list[str]:
    """One line per actor kind that ``dist:`` asks for but some trials give no work (not started)."""
    out = []
    ray_trials = [t for t in trials if t.cfg.dist.backend == "ray"]
    for i, (key, why) in enumerate(
        (
            ("dist.num_rollout_workers", "exact gradients, no Monte Carlo rollouts"),
            ("dist.num_oracles", "no best-response oracle"),
        )
    ):
        asked = [
            t for t in ray_trials if (t.cfg.dist.num_rollout_workers, t.cfg.dist.num_oracles)[i]
        ]
        idle = [t for t in asked if actor_counts(t.cfg.method, t.cfg.dist)[i] == 0]
        if idle:
            n = max((t.cfg.dist.num_rollout_workers, t.cfg.dist.num_oracles)[i] for t in idle)
            out.append(
                f"{key}={n}: no work in {len(idle)} of {len(trials)} trials ({why}, e.g. "
                f"{idle[0].name}): none started, no CPUs reserved"
            )
    return out


def sweep_notes(sweep: Sweep) -> list[str]:
    """What a launch says before anything starts: the loader's notes and idle actors."""
    return [*sweep.notes, *idle_actor_notes(sweep.trials)]
