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
from typing import Any


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
    """

    name: str
    run: Callable[..., Any]
    schema: type
    reads: frozenset[str] | Callable[[Any], frozenset[str]]
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()

    def fields_read(self, cfg: Any) -> frozenset[str]:
        """Return the fields of ``cfg`` (this schema) the loop reads; ``name`` and ``algo`` always."""
        base = self.reads(cfg) if callable(self.reads) else self.reads
        return frozenset(base) | {"name", "algo"}

    def validate(self) -> None:
        """Raise ``TypeError`` when the spec names fields its schema lacks."""
        names = {f.name for f in fields(self.schema)}
        static = self.reads if not callable(self.reads) else frozenset()
        bad = [f for f in (*static, *self.choices) if f not in names]
        if bad:
            raise TypeError(
                f"algo {self.name}: {', '.join(bad)} not fields of {self.schema.__name__}"
            )


_ALGOS: dict[str, AlgoSpec] = {}


def register_algo(spec: AlgoSpec) -> AlgoSpec:
    """Add ``spec`` to the registry and return it."""
    spec.validate()
    _ALGOS[spec.name] = spec
    return spec


def algo_specs() -> dict[str, AlgoSpec]:
    """Every registered loop by ``method.algo``."""
    import pbrl_dist.algos  # noqa: F401  (registers the built-ins)

    return _ALGOS


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
