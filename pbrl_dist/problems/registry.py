"""One registration per problem: its config, builder, methods, metrics and figure (``ProblemSpec``).

Every problem, built-in or a user's, is a ``ProblemSpec`` passed to ``register_problem``; the loader, the
trial driver, the sweep checks, ``pbrl report`` and the progress line all read it from here. A problem
outside the package is named in a sweep file by ``problem.target`` (``pkg.module:ATTR``, ``pkg.module``,
or a file ``path/to/file.py:ATTR`` relative to the sweep file) or by an entry point in the group
``pbrl_dist.problems``; ``resolve_target`` imports it (also inside Ray / Tune trial processes, which
re-import it from the trial config's ``problem.target``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "pbrl_dist.problems"


class ProblemTargetError(ValueError):
    """``problem.target`` does not import or does not name a ``ProblemSpec``."""


@dataclass(frozen=True)
class ProblemSpec:
    """Everything the platform needs to know about one bilevel problem.

    Attributes:
        name: the registry key, ``problem.name`` in sweep files (also the config dataclass's ``name``).
        config: the ``problem:`` block's dataclass (fields with defaults, a ``name`` field; optionally
            ``checks() -> [(dotted key, ok, message)]`` for range rules).
        build: ``build(config) -> problem object`` (for the tabular loops: ``problems.base.BilevelProblem``).
        algos: the ``method.algo`` values that run on it.
        metrics: every metric key its rows can carry (``iter`` aside) → meaning; what ASHA may compare.
        higher_is_better: those of ``metrics`` where larger is better (the others: smaller is better).
        progress: metrics the progress line prints and the default figure draws; the first one is the
            default metric of ``pbrl report --confirm-seeds``.
        figure: ``(file name, draw)`` with ``draw(curves, path) -> path`` or ``"module:function"`` naming
            it; None draws ``progress`` against the iteration (``report.figures.progress_figure``).
        estimators: the ``method.estimator`` values the problem supports (e.g. ``("exact",)`` for a
            problem without Monte Carlo rollouts); None = every value the loop knows. Checked with the
            rest of the config, before anything runs.
        memory_floor: ``memory_floor(problem_cfg, method_cfg) -> (bytes, dotted key)``: a lower bound of
            the memory one trial holds and the field that drives it (a trial whose floor exceeds the
            memory there is refused before anything starts); None: no floor is known.
        stack: ``stack(problems) -> problem``: one batched problem (leading dimension = lanes, in the
            order given) from solo problems of the same sizes, e.g. one per seed and ``problem.game``
            of a group (``algos.lanes``). Every exact computation of the batched problem must give
            lane i exactly the bits (``torch.equal``) that ``problems[i]`` gives alone, and its
            metrics are lists over the lanes. Raises ``ValueError`` with a one-line reason when the
            problems cannot share a batch (sizes, γ or τ differ). None: the problem is never batched.
    """

    name: str
    config: type
    build: Callable[[Any], Any]
    algos: tuple[str, ...]
    metrics: Mapping[str, str]
    higher_is_better: tuple[str, ...] = ()
    progress: tuple[str, ...] = ()
    figure: tuple[str, Callable[..., Any] | str] | None = None
    estimators: tuple[str, ...] | None = None
    memory_floor: Callable[[Any, Any], tuple[int, str]] | None = None
    stack: Callable[[list[Any]], Any] | None = None
    source: str = field(default="", compare=False)

    def validate(self) -> None:
        """Raise ``TypeError`` when the spec does not satisfy the protocol."""
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise TypeError(f"name must be an identifier (got {self.name!r})")
        if not dataclasses.is_dataclass(self.config) or not isinstance(self.config, type):
            raise TypeError(f"config must be a dataclass type (got {self.config!r})")
        names = {f.name: f for f in dataclasses.fields(self.config)}
        if "name" not in names or names["name"].default != self.name:
            raise TypeError(
                f"config {self.config.__name__} needs a field name: str = {self.name!r}"
            )
        if not callable(self.build):
            raise TypeError("build must be callable: build(config) -> problem")
        if self.stack is not None and not callable(self.stack):
            raise TypeError("stack must be callable: stack(problems) -> problem, or None")
        if not self.algos or not all(isinstance(a, str) for a in self.algos):
            raise TypeError("algos must name at least one method.algo")
        unknown = [m for m in (*self.higher_is_better, *self.progress) if m not in self.metrics]
        if unknown:
            raise TypeError(f"{', '.join(unknown)} not in metrics")


_REGISTRY: dict[str, ProblemSpec] = {}
_TARGETS: dict[str, ProblemSpec | None] = {}
_entry_points_loaded = False


def register_problem(spec: ProblemSpec) -> ProblemSpec:
    """Add ``spec`` to the registry (again with the same spec is fine) and return it."""
    spec.validate()
    old = _REGISTRY.get(spec.name)
    if old is not None and old != spec and old.config.__qualname__ != spec.config.__qualname__:
        raise ValueError(f"problem {spec.name!r} is already registered by {old.config.__module__}")
    _REGISTRY[spec.name] = spec
    return spec


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # one broken plug-in must not take the built-ins down
            print(f"pbrl: entry point {ep.name} ({ep.value}) did not load: {e}", file=sys.stderr)
            continue
        if isinstance(obj, ProblemSpec) and obj.name not in _REGISTRY:
            register_problem(obj)


def problem_specs() -> dict[str, ProblemSpec]:
    """Return every registered problem (built-ins, entry points, imported targets) by name.

    The built-ins registered themselves: importing this module runs ``pbrl_dist/problems/__init__.py``
    first, which imports them.
    """
    _load_entry_points()
    return _REGISTRY


def get_problem(name: str) -> ProblemSpec | None:
    """Return the registered problem ``name``, or None."""
    return problem_specs().get(name)


def _import_file(path: Path) -> Any:
    key = "pbrl_user_" + path.stem + "_" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    try:  # Ray actors that receive this module's objects get them by value, not by import
        import ray.cloudpickle as rcp

        rcp.register_pickle_by_value(module)
    except Exception:
        pass
    return module


def absolute_target(target: str, base_dir: Path | None) -> str:
    """Return ``target`` with a relative ``file.py`` part made absolute against ``base_dir``."""
    mod, sep, attr = target.partition(":")
    if mod.endswith(".py") and not Path(mod).is_absolute():
        cands = [Path(mod)] if base_dir is None else [base_dir / mod, Path(mod)]
        path = next((p for p in cands if p.is_file()), cands[0])
        return str(path.resolve()) + sep + attr
    return target


def resolve_target(target: str) -> ProblemSpec | None:
    """Import ``target`` and return the ``ProblemSpec`` it names (None: a module that registers some).

    Raises ``ProblemTargetError`` with one line when it does not import or is not a ``ProblemSpec``.
    """
    if target in _TARGETS:
        return _TARGETS[target]
    mod_name, _, attr = target.partition(":")
    if not mod_name:
        raise ProblemTargetError(f"{target!r} is not module:ATTR, module or file.py:ATTR")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ProblemTargetError(f"{target!r}: no such file {path}")
            module = _import_file(path)
        else:
            module = importlib.import_module(mod_name)
    except ProblemTargetError:
        raise
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        raise ProblemTargetError(
            f"{target!r} does not import ({type(e).__name__}: {first}); is its folder on "
            "PYTHONPATH (also for Ray workers), or give a file: path/to/file.py:ATTR"
        ) from None
    spec: ProblemSpec | None = None
    if attr:
        obj = getattr(module, attr, None)
        if obj is None:
            raise ProblemTargetError(f"{target!r}: module {mod_name} has no attribute {attr!r}")
        if not isinstance(obj, ProblemSpec):
            raise ProblemTargetError(
                f"{target!r} is a {type(obj).__name__}, not a pbrl_dist.problems.ProblemSpec"
            )
        try:
            spec = register_problem(dataclasses.replace(obj, source=target))
        except (TypeError, ValueError) as e:
            raise ProblemTargetError(f"{target!r}: the ProblemSpec is not valid: {e}") from None
    _TARGETS[target] = spec
    return spec


class RegistryView(Mapping[str, Any]):
    """A read-only mapping ``problem name → f(spec)`` that follows the registry as it grows."""

    def __init__(self, get: Callable[[ProblemSpec], Any]) -> None:
        """Derive each value from a ``ProblemSpec`` with ``get``."""
        self._get = get

    def __getitem__(self, name: str) -> Any:
        spec = get_problem(name)
        if spec is None:
            raise KeyError(name)
        return self._get(spec)

    def __iter__(self) -> Iterator[str]:
        return iter(list(problem_specs()))

    def __len__(self) -> int:
        return len(problem_specs())
