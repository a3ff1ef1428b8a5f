"""One registration per method loop (``AlgoSpec``): its run function, its ``method:`` schema, the
fields it reads and their allowed values (taken from the loop's own registries).

The loader validates a trial's ``method:`` block against the spec of its ``method.algo``:

- a field listed in ``choices`` must hold one of those values (did-you-mean on a typo);
- a field set in the sweep (file, ``methods:``, ``smoke:``, command line or grid) that the trial's
  algo/mode does not read is an error naming it — unless it was set for *every* method of the file (the
  shared ``method:`` block, a ``method.*`` override or grid axis) and some other method of the sweep
  reads it (DESIGN.md §4, "Method fields").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from pbrl_dist.algos.base import Checkpointer, Result
from pbrl_dist.metrics import MetricSink


class MethodCfg(Protocol):
    """What every ``method:`` schema has (``algos.base.MethodConfig``, ``rlhf.RLHFConfig``, ...);
    ``register_algo`` refuses a schema without these methods."""

    name: str
    algo: str

    def checks(self) -> list[tuple[str, bool, str]]:
        """(dotted key, ok, message) for every range rule of the block (the loader reports the first
        that fails)."""
        ...

    def outer_iters(self, problem_cfg: Any) -> int:
        """The trial's outer iterations (``iter`` of its last metrics row and checkpoint)."""
        ...


class DistCfg(Protocol):
    """The ``dist:`` fields the actor counts read (``config.schema.DistConfig``)."""

    backend: str
    num_rollout_workers: int
    num_oracles: int


class Loop(Protocol):
    """A method loop, ``AlgoSpec.run``: runs ``cfg`` on ``problem`` from ``seed``, logs rows to
    ``sink``, hands its Monte Carlo / rollout work to ``runner`` (its own local one when None) and
    saves to / resumes from ``ckpt``; returns the final iterate and last metrics row.

    ``problem``, ``cfg`` and ``runner`` are the loop's own kinds (a ``BilevelProblem`` and a
    ``ChunkRunner`` for the tabular loops, an ``RLHFProblem`` and a ``RolloutRunner`` for ``rlhf``).
    """

    def __call__(
        self,
        problem: Any,
        cfg: Any,
        *,
        seed: int,
        sink: MetricSink,
        runner: Any = None,
        ckpt: Checkpointer | None = None,
    ) -> Result:
        """Run the loop."""
        ...


@dataclass(frozen=True)
class AlgoSpec:
    """A method loop as the platform sees it.

    Attributes:
        name: ``method.algo``.
        run: ``run(problem, cfg, *, seed, sink, runner, ckpt) -> Result``.
        schema: the dataclass that types and closes the ``method:`` block (may be shared by loops).
        reads: the schema fields the loop reads, or ``reads(cfg) -> fields`` when that depends on the
            config (e.g. RLHF's ``mode``).
        choices: schema field → allowed values, from the registries the loop dispatches on.
        metrics: metric keys the loop adds to the problem's own (``ProblemSpec.metrics``).
        actor_work: ``actor_work(cfg) -> (rollout workers, oracles)``: whether a config gives each kind
            of actor anything to do (default: rollout workers with a Monte Carlo ``estimator``, oracle
            actors when the loop reads ``oracle``). Actors without work are not started (``actor_counts``).
        checks: ``checks(trial_cfg) -> [(dotted key, ok, message)]``: the loop's rules that couple its
            ``method:`` block with the trial's ``problem:`` and ``dist:`` blocks (the loader reports the
            first that fails; the method block's own ranges are its schema's ``checks()``).
        settable: fields a sweep may set although this config does not read them, because another
            setting of the same file turns them on (the Monte Carlo sizes of a tabular loop: a file
            sets them once and switches ``estimator`` per method or from the command line). A grid
            axis over one still multiplies only the configs that read it.
        batchable: ``batchable(method_cfg) -> bool``: whether ``run`` on a batched problem
            (``ProblemSpec.stack``) gives every lane exactly the bits of its solo run, so the trials of
            a group can run as one computation (``algos.lanes``): the loop treats leading dimensions
            as independent problems and logs per-lane values as lists. None: never (e.g. a loop that
            logs ``float(...)`` of a whole batch).
    """

    name: str
    run: Loop
    schema: type
    reads: frozenset[str] | Callable[[Any], frozenset[str]]
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    actor_work: Callable[[Any], tuple[bool, bool]] | None = None
    checks: Callable[[Any], list[tuple[str, bool, str]]] | None = None
    batchable: Callable[[Any], bool] | None = None
    settable: frozenset[str] = frozenset()

    def gives_work(self, cfg: MethodCfg) -> tuple[bool, bool]:
        """Return (rollout workers, oracle actors): whether ``cfg`` (this schema) gives each work."""
        if self.actor_work is not None:
            return self.actor_work(cfg)
        read = self.fields_read(cfg)
        workers = "estimator" in read and getattr(cfg, "estimator", "exact") != "exact"
        return workers, "oracle" in read

    def fields_read(self, cfg: MethodCfg) -> frozenset[str]:
        """Return the fields of ``cfg`` (this schema) the loop reads; ``name`` and ``algo`` always."""
        base = self.reads(cfg) if callable(self.reads) else self.reads
        return frozenset(base) | {"name", "algo"}

    def fields_settable(self, cfg: MethodCfg) -> frozenset[str]:
        """Return the fields a sweep may set for ``cfg``: those it reads, and ``settable``."""
        return self.fields_read(cfg) | self.settable

    def validate(self) -> None:
        """Raise ``TypeError`` when the spec names fields its schema lacks, or the schema lacks the
        methods every method block has (``MethodCfg``)."""
        names = {f.name for f in fields(self.schema)}
        static = self.reads if not callable(self.reads) else frozenset()
        bad = [f for f in (*static, *self.choices, *self.settable) if f not in names]
        if bad:
            raise TypeError(
                f"algo {self.name}: {', '.join(bad)} not fields of {self.schema.__name__}"
            )
        lacking = [
            m for m in ("checks", "outer_iters") if not callable(getattr(self.schema, m, None))
        ]
        if lacking:
            methods = ", ".join(f"{m}()" for m in lacking)
            raise TypeError(
                f"algo {self.name}: its schema {self.schema.__name__} lacks {methods} "
                "(algos.registry.MethodCfg)"
            )


_ALGOS: dict[str, AlgoSpec] = {}


def register_algo(spec: AlgoSpec) -> AlgoSpec:
    """Add ``spec`` to the registry and return it."""
    spec.validate()
    _ALGOS[spec.name] = spec
    return spec


def algo_specs() -> dict[str, AlgoSpec]:
    """Every registered loop by ``method.algo``.

    The tabular loops registered themselves when ``pbrl_dist/algos/__init__.py`` ran (before this
    module); ``rlhf`` once ``pbrl_dist.rlhf`` or ``pbrl_dist.catalog`` is imported (``config/`` does).
    """
    return _ALGOS


def actor_counts(method_cfg: MethodCfg, dist_cfg: DistCfg) -> tuple[int, int]:
    """Return (rollout workers, oracle actors) a trial starts: the one place the counts are derived.

    None on ``dist.backend=local``; on ``ray``, ``dist.num_rollout_workers`` (0 means 1) and
    ``dist.num_oracles`` — each 0 when the trial's loop gives that kind no work (an exact gradient
    needs no rollout workers, a loop without a best-response oracle no oracle actors).
    """
    if dist_cfg.backend != "ray":
        return 0, 0
    workers, oracles = algo_specs()[method_cfg.algo].gives_work(method_cfg)
    return (
        max(1, dist_cfg.num_rollout_workers) if workers else 0,
        dist_cfg.num_oracles if oracles else 0,
    )


class AlgoView(Mapping[str, Any]):
    """Read-only ``method.algo → f(spec)`` view of the registry."""

    def __init__(self, get: Callable[[AlgoSpec], Any]) -> None:
        """Derive each value from an ``AlgoSpec`` with ``get``."""
        self._get = get

    def __getitem__(self, name: str) -> Any:
        return self._get(algo_specs()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(algo_specs()))

    def __len__(self) -> int:
        return len(algo_specs())
