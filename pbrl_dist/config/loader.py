"""Load a sweep file into validated trial configs, or fail with one message naming the field.

Layers, merged in this order onto the typed schema (later wins):

    file (problem, method, dist, logging, seed) → methods[<name>] → smoke (same keys) →
    smoke.methods[<name>] → CLI ``key=value`` overrides → grid point → seed

Nothing is written and nothing runs until every trial of the sweep has been built and validated.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import itertools
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import BooleanNode, DictConfig, FloatNode, IntegerNode, OmegaConf, StringNode
from omegaconf.errors import OmegaConfBaseException

from pbrl_dist.algos.registry import algo_specs
from pbrl_dist.cadence import Timer
from pbrl_dist.config.schema import CHOICES, SweepBlock, TrialConfig
from pbrl_dist.problems.registry import (
    ProblemTargetError,
    absolute_target,
    get_problem,
    problem_specs,
    resolve_target,
)

TOP_KEYS = (
    "name",
    "description",
    "seed",
    "problem",
    "method",
    "methods",
    "dist",
    "logging",
    "sweep",
    "smoke",
)
TRIAL_KEYS = ("seed", "problem", "method", "dist", "logging")


class ConfigError(ValueError):
    """Bad input: the message names the field and what is allowed."""


@dataclass
class TrialSpec:
    """One fully resolved trial."""

    name: str
    cfg: TrialConfig
    container: dict[str, Any]

    def to_yaml(self) -> str:
        """Return the resolved config as YAML (top-level ``problem:``, ``method:``, ``seed:``):
        exactly ``yaml.safe_dump(container, sort_keys=False)``, built from cached pieces."""
        return dump_yaml(self.container)

    def __reduce_ex__(self, protocol: Any) -> Any:
        """A trial of a user's problem (``problem.target``) travels as plain data: the process that
        unpickles it (a Tune trial, a Ray worker) re-imports the target and re-types the config, so
        the user's module need not be importable by name there."""
        prob = self.container.get("problem")
        if isinstance(prob, dict) and "target" in prob:
            return (_rebuild_spec, (self.name, self.container))
        return super().__reduce_ex__(protocol)


def _rebuild_spec(name: str, container: dict[str, Any]) -> TrialSpec:
    merged = _merge_typed([{k: v for k, v in container.items() if k in TRIAL_KEYS}], "")
    merged.exp = str(container.get("exp", "default"))
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, TrialConfig)
    return TrialSpec(name=name, cfg=obj, container=container)


_SCALARS = (str, int, float, bool, type(None))
_LINE_BREAKS = re.compile("[\n\r\x85\u2028\u2029]")
_PIECES: dict[tuple[Any, ...], str | None] = {}
_NESTED = object()  # the piece of a key whose value is a mapping: ``key:`` alone


def dump_yaml(data: dict[str, Any]) -> str:
    """``yaml.safe_dump(data, sort_keys=False)``, fast for a resolved trial config.

    PyYAML's pure-Python emitter takes milliseconds per trial config (a minute for 10⁴ trials). A
    block mapping of text keys and scalars is, line for line, the emitter's text for each
    ``key: value`` at its depth, which depends only on (depth, key, value): each piece is made once
    by ``yaml.safe_dump`` itself and cached. Anything else (lists, empty or shared mappings, other
    types, long or multi-line keys) is dumped whole by ``yaml.safe_dump``."""
    out: list[str] = []
    if type(data) is dict and data and _emit(data, 0, out, set()):
        return "".join(out)
    return yaml.safe_dump(data, sort_keys=False)


def _emit(node: dict[Any, Any], depth: int, out: list[str], seen: set[int]) -> bool:
    seen.add(id(node))
    pieces = _PIECES
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            if not value or id(value) in seen:
                return False
            piece = _piece(depth, key, _NESTED)
            if piece is None:
                return False
            out.append(piece)
            if not _emit(value, depth + 1, out, seen):
                return False
            continue
        if kind not in _SCALARS:
            return False
        # a float by its repr where equal values are written differently (0.0 and -0.0; NaN)
        text = repr(value) if kind is float and (value == 0.0 or value != value) else value
        cache_key = (depth, key, kind, text)
        piece = pieces[cache_key] if cache_key in pieces else _piece(depth, key, value)
        if piece is None:
            return False
        out.append(piece)
    return True


def _piece(depth: int, key: Any, value: Any) -> str | None:
    """The lines ``yaml.safe_dump`` writes for ``key: value`` at ``depth`` (``key:`` alone for a
    mapping value), or None when they cannot be cut out of a document exactly; cached under the
    key ``_emit`` looks up."""
    nested = value is _NESTED
    kind = dict if nested else type(value)
    text = repr(value) if kind is float and (value == 0.0 or value != value) else value
    cache_key = (depth, key, kind, None if nested else text)
    if cache_key in _PIECES:
        return _PIECES[cache_key]
    piece = None
    if type(key) is str and len(key) <= 100 and not _LINE_BREAKS.search(key):
        doc: Any = {key: {"x": 0} if nested else value}
        for _ in range(depth):
            doc = {"p": doc}  # parents at the same indentation as the real ones
        out = yaml.safe_dump(doc, sort_keys=False)
        lines = out.splitlines(keepends=True)
        body = lines[depth : len(lines) - 1 if nested else len(lines)]
        if (
            body
            and not out.endswith("...\n")
            and all(line == "  " * i + "p:\n" for i, line in enumerate(lines[:depth]))
            and (not nested or lines[-1] == "  " * (depth + 1) + "x: 0\n")
        ):
            piece = "".join(body)
    if len(_PIECES) > 200_000:
        _PIECES.clear()
    _PIECES[cache_key] = piece
    return piece


@dataclass
class Sweep:
    """A loaded sweep file: its name, the expanded trials and the (smoke-merged) sweep block."""

    name: str
    path: Path
    trials: list[TrialSpec]
    block: dict[str, Any]
    raw: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # e.g. an axis an override replaced


def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _choose(value: Any, allowed: Iterable[str]) -> str:
    """``'x' is not allowed; did you mean 'y'? choose one of ...`` (the hint only for a near miss)."""
    allowed = [str(a) for a in allowed]
    near = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"{value!r} is not allowed; {hint}choose one of {', '.join(allowed)}"


MAX_FILE_BYTES = 1 << 20
MAX_ALIASES = 200
MAX_NODES = 100_000


MAX_DEPTH = 16  # nesting of mappings/lists; the deepest real sweep file has 5 (sweep.scheduler.x)
MAX_NAME = 64  # characters of a method name (it names trial folders, with the grid values)
MAX_TRIAL_NAME = 200  # characters of a trial name (a folder name; most filesystems allow 255 bytes)


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses more than ``MAX_ALIASES`` aliases (a "billion laughs" file), nesting
    deeper than ``MAX_DEPTH`` and a key given twice in one mapping (YAML would keep the last silently)."""

    aliases = 0
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name)")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    raise _Duplicate(f"a key may not be a list or mapping (got {key!r})", key_node)
                if key in seen:
                    raise _Duplicate(f"key {key!r} is given twice in one mapping", key_node)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _Duplicate(Exception):
    def __init__(self, msg: str, node: Any) -> None:
        self.msg, self.mark = msg, node.start_mark


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise _fail(str(path), "no such sweep file")
    if not path.is_file():
        raise _fail(str(path), "is not a file (a sweep file is one YAML file)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise _fail(str(path), f"larger than {MAX_FILE_BYTES >> 20} MiB; not a sweep file")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise _fail(str(path), f"cannot be read as UTF-8 text ({type(e).__name__})") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as e:
        raise _fail(str(path), f"malformed YAML: {str(e).splitlines()[0]} ({_mark(e)})") from None
    except _TooDeep as e:
        raise _fail(
            str(path), f"nested deeper than {MAX_DEPTH} levels ({_at(e.mark)}); not a sweep file"
        ) from None
    except _Duplicate as e:
        raise _fail(str(path), f"{e.msg} ({_at(e.mark)})") from None
    except RecursionError:
        raise _fail(str(path), "nested too deeply to read; not a sweep file") from None
    if not isinstance(data, dict):
        raise _fail(str(path), "a sweep file must be a YAML mapping at the top level")
    if _expanded_size(data, MAX_NODES) > MAX_NODES:
        raise _fail(
            str(path),
            f"expands to more than {MAX_NODES} values (YAML aliases nested in aliases?); not a sweep file",
        )
    return data


def _expanded_size(node: Any, budget: int) -> int:
    """Values in ``node`` with aliases expanded, counting no further than ``budget`` + 1."""
    seen, stack = 0, [node]
    while stack and seen <= budget:
        cur = stack.pop()
        seen += 1
        if isinstance(cur, dict):
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return seen


def _mark(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return (
        f"line {mark.line + 1}, column {mark.column + 1}"
        if mark is not None
        else "position unknown"
    )


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key=value`` strings (values as YAML scalars/lists) into (dotted key, value) pairs."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise _fail(f"override {item!r}", "expected key=value, e.g. method.lam=10")
        key, text = item.split("=", 1)
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise _fail(f"override {item!r}", "the key must be a dotted name like method.lam")
        if key.split(".")[0] not in TOP_KEYS:
            raise _fail(key, f"unknown top-level key; allowed: {', '.join(TOP_KEYS)}")
        try:
            value = yaml.load(text, Loader=_BoundedLoader) if text else ""
        except yaml.YAMLError:
            value = text
        except (_TooDeep, RecursionError):
            raise _fail(key, f"the value is nested deeper than {MAX_DEPTH} levels") from None
        except _Duplicate as e:
            raise _fail(key, e.msg) from None
        out.append((key, value))
    return out


def _dotted_to_nested(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        node = out
        axis = next((b for b in ("grid", "search") if key.startswith(f"sweep.{b}.")), None)
        if axis is not None:  # grid and search axes are dotted config keys themselves
            parents, leaf = ["sweep", axis], key[len(f"sweep.{axis}.") :]
        else:
            *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise _fail(key, "conflicts with another override of its parent")
        node[leaf] = value
    return out


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _check_top(data: dict[str, Any], where: str) -> None:
    """The top level of a sweep file (``where`` = ``""``) or of its ``smoke:`` block (``"smoke."``):
    known keys, each holding the kind of node it must (a mapping, a name, an integer)."""
    for k, v in data.items():
        if not isinstance(k, str) or k not in TOP_KEYS:
            raise _fail(f"{where}{k}", f"unknown top-level key; allowed: {', '.join(TOP_KEYS)}")
        if k in ("problem", "method", "dist", "logging", "sweep", "methods", "smoke"):
            if v is not None and not isinstance(v, dict):
                raise _fail(f"{where}{k}", f"must be a mapping of keys to values (got {_kind(v)})")
            for sub in v or {}:
                if not isinstance(sub, str):
                    raise _fail(f"{where}{k}.{sub}", "keys must be names (text), not numbers")
        if k == "methods":
            for mname, mcfg in (v or {}).items():
                _check_method_name(mname, f"{where}methods.{mname}")
                if mcfg is not None and not isinstance(mcfg, dict):
                    raise _fail(
                        f"{where}methods.{mname}",
                        f"must be a mapping of method fields (got {_kind(mcfg)})",
                    )
        if k in ("name", "description") and v is not None and not isinstance(v, str):
            raise _fail(f"{where}{k}", f"must be text (got {_kind(v)})")
        if k == "seed":
            raise _fail(
                f"{where}seed",
                "the seeds of a sweep are its seed axis sweep.seeds (e.g. sweep.seeds=[3]); "
                "a single seed: would be ignored, so it is refused",
            )
        if k == "smoke" and where:
            raise _fail("smoke.smoke", "a smoke: block cannot hold another smoke: block")


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return f"a list {_short(v)}"
    return f"{type(v).__name__} {_short(v)}"


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_method_name(mname: Any, where: str) -> None:
    if not isinstance(mname, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", mname):
        raise _fail(
            where,
            f"{_short(mname)} is not a method name (letters, digits, _ . + -; it names trial "
            "folders)",
        )
    if len(mname) > MAX_NAME:
        raise _fail(where, f"a method name is at most {MAX_NAME} characters (got {len(mname)})")


def _last(layers: list[dict[str, Any]], block: str, key: str) -> Any:
    value = None
    for layer in layers:
        node = layer.get(block)
        if isinstance(node, dict) and key in node:
            value = node[key]
    return value


def _target(layers: list[dict[str, Any]]) -> str | None:
    """The trial's ``problem.target`` (the last layer that sets it), or None."""
    target = _last(layers, "problem", "target")
    if target is not None and (not isinstance(target, str) or not target):
        raise _fail(
            "problem.target", f"must be a non-empty string like pkg.module:SPEC (got {target!r})"
        )
    return target


def _schema_for(layers: list[dict[str, Any]]) -> tuple[TrialConfig, str | None]:
    """Pick the problem schema by ``problem.name`` (after importing ``problem.target``, if any) and
    the method schema by ``method.algo``; return them with the target."""
    target = _target(layers)
    name = _last(layers, "problem", "name")
    if target is not None:
        try:
            spec = resolve_target(target)
        except ProblemTargetError as e:
            raise _fail("problem.target", str(e)) from None
        if spec is not None and name is None:
            name = spec.name
    allowed = ", ".join(problem_specs())
    if name is None:
        raise _fail("problem.name", f"missing; allowed: {allowed}")
    problem = get_problem(name)
    if problem is None:
        where = f" (registered after importing problem.target {target})" if target else ""
        raise _fail("problem.name", _choose(name, problem_specs()) + where)
    algo = _last(layers, "method", "algo") or "pbrl"
    if algo not in algo_specs():
        raise _fail("method.algo", _choose(algo, algo_specs()))
    cfg = TrialConfig(problem=problem.config(), method=algo_specs()[algo].schema())
    return cfg, target


def _without_target(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for layer in layers:
        prob = layer.get("problem")
        if isinstance(prob, dict) and "target" in prob:
            layer = {**layer, "problem": {k: v for k, v in prob.items() if k != "target"}}
        out.append(layer)
    return out


def _merge_typed(layers: list[dict[str, Any]], where: str) -> DictConfig:
    """Merge ``layers`` onto the schema they pick; ``problem.target`` (not a schema field) is kept
    aside: ``typed_container`` puts it back into the resolved config."""
    schema, _ = _schema_for(layers)
    base = OmegaConf.structured(schema)
    try:
        for layer in _without_target(layers):
            base = OmegaConf.merge(base, {k: v for k, v in layer.items() if k in TRIAL_KEYS})
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        first = str(e).splitlines()[0]
        allowed = _allowed_keys(base, key) if "not in" in first else ""
        raise _fail(f"{where}{key}", first + allowed) from None
    return base


def typed_container(merged: DictConfig, target: str | None) -> dict[str, Any]:
    """The resolved config as plain data, with ``problem.target`` (right after ``name``) if given.

    Interpolations (``${method.lr_x}``, ``${oc.env:X}``) are resolved here, once, at launch: the
    container is what the trial runs and what its ``config.yaml`` records."""
    try:
        container = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        raise _fail(key, f"cannot be resolved: {str(e).splitlines()[0]}") from None
    assert isinstance(container, dict)
    if target is not None:
        prob = container["problem"]
        container["problem"] = {"name": prob["name"], "target": target} | prob
    return cast(dict[str, Any], container)


def _allowed_keys(cfg: DictConfig, full_key: str) -> str:
    parent = ".".join(full_key.split(".")[:-1])
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig):
        return f"; allowed: {', '.join(str(k) for k in node)}"
    return ""


def validate(cfg: TrialConfig) -> None:
    """Check ranges and choices; raise ``ConfigError`` naming the first bad field."""
    flat = {
        f"{section}.{name}": getattr(obj, name)
        for section, obj in (
            ("method", cfg.method),
            ("dist", cfg.dist),
            ("logging", cfg.logging),
            ("problem", cfg.problem),
        )
        for name in _field_names(type(obj))
    }
    _check_choices_and_finite(flat, _method_choices(cfg))
    _check_backend(cfg)
    # Generic rule for counts of any section (a user's problem gets it too): num_* ≥ 1.
    for key, v in flat.items():
        if isinstance(v, bool) or not isinstance(v, int) or v > 0:
            continue
        may_be_zero = key in ("dist.num_oracles", "dist.num_rollout_workers")
        if key.split(".")[-1].startswith("num_") and (v < 0 or not may_be_zero):
            raise _fail(
                key, f"must be a {'non-negative' if may_be_zero else 'positive'} integer (got {v})"
            )
    checks: list[tuple[str, bool, str]] = [
        ("dist.num_oracles", cfg.dist.num_oracles >= 0, "must be ≥ 0")
    ]
    checks += [
        ("dist.cpus_per_trial", cfg.dist.cpus_per_trial > 0, "must be > 0"),
        ("dist.cpus_per_worker", cfg.dist.cpus_per_worker >= 0, "must be ≥ 0"),
        ("dist.checkpoint_every", cfg.dist.checkpoint_every > 0, "must be > 0"),
        ("dist.actor_timeout_s", cfg.dist.actor_timeout_s > 0, "must be > 0"),
    ]
    checks += cfg.method.checks()  # every method schema has them (algos.registry.MethodCfg)
    if hasattr(cfg.problem, "checks"):
        checks += cfg.problem.checks()
    # Generic rules for the conventional names of any problem (a user's too): discount, temperature.
    if hasattr(cfg.problem, "gamma"):
        checks.append(("problem.gamma", 0 <= cfg.problem.gamma < 1, "must be in [0, 1)"))
    if hasattr(cfg.problem, "tau"):
        checks.append(("problem.tau", cfg.problem.tau >= 0, "must be ≥ 0"))
    spec = get_problem(cfg.problem.name)
    allowed = spec.algos if spec is not None else None
    if allowed is not None and cfg.method.algo not in allowed:
        checks.append(
            (
                "method.algo",
                False,
                f"does not run on problem {cfg.problem.name}; use {', '.join(allowed)}",
            )
        )
    estimator = getattr(cfg.method, "estimator", None)
    if spec is not None and spec.estimators is not None and estimator not in spec.estimators:
        reads = (
            algo_specs()[cfg.method.algo].fields_read(cfg.method)
            if cfg.method.algo in algo_specs()
            else set()
        )
        if "estimator" in reads:
            checks.append(
                (
                    "method.estimator",
                    False,
                    f"problem {cfg.problem.name} supports {', '.join(spec.estimators)} only",
                )
            )
    algo = algo_specs().get(cfg.method.algo)
    if algo is not None and algo.checks is not None:
        checks += algo.checks(cfg)  # the loop's rules coupling method, problem and dist
    for key, ok, msg in checks:
        if not ok:
            got = OmegaConf.select(OmegaConf.structured(cfg), key)
            raise _fail(key, f"{msg} (got {got})")


def _method_choices(cfg: TrialConfig) -> dict[str, tuple[str, ...]]:
    """Allowed values of the method fields the trial's algo reads, from the loop's own registries."""
    spec = algo_specs().get(cfg.method.algo)
    if spec is None:
        return {}
    reads = spec.fields_read(cfg.method)
    return {f"method.{k}": tuple(v) for k, v in spec.choices.items() if k in reads}


def _check_choices_and_finite(
    flat: dict[str, Any], method_choices: dict[str, tuple[str, ...]]
) -> None:
    for key, allowed in {**method_choices, **CHOICES}.items():
        if key in flat and flat[key] not in allowed:
            algo = f" (method.algo={flat.get('method.algo')})" if key.startswith("method.") else ""
            raise _fail(key, _choose(flat[key], allowed) + algo)
    for key, v in flat.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise _fail(key, f"must be a finite number (got {v})")


def _check_backend(cfg: TrialConfig) -> None:
    """Actor counts mean something only on the ray backend: say so instead of ignoring them."""
    d = cfg.dist
    if d.backend == "ray":
        return
    for key, n, idle in (
        ("dist.num_rollout_workers", d.num_rollout_workers, 1),
        ("dist.num_oracles", d.num_oracles, 0),
    ):
        if n > idle:
            raise _fail(
                key,
                f"{n} actors need dist.backend=ray (got dist.backend={d.backend}); "
                f"add dist.backend=ray or drop {key}",
            )


def _trial_name(method: str, point: dict[str, Any], container: dict[str, Any]) -> str:
    """``<method>__<leaf>=<value>...__s<seed>``, each value read from the resolved config that runs.

    A value is written as the grid gave it when the config holds that very value (``lam=20`` for
    ``lam: 20.0``, as names were always written); anything else would be a name that lies, and
    stops the load."""
    parts = [method]
    for key, given in point.items():
        ran: Any = container
        for part in key.split("."):
            ran = ran.get(part) if isinstance(ran, dict) else None
        if not _same_value(given, ran):
            raise _fail(
                f"sweep.grid.{key}", f"the trial runs {ran!r}, not the grid value {given!r}"
            )
        parts.append(f"{key.split('.')[-1]}={given}")
    parts.append(f"s{container['seed']}")
    return re.sub(r"[^\w=.,+-]", "_", "__".join(parts))


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    # YAML 1.1 reads 1e-3 as text, which omegaconf types as a float
    if isinstance(b, float) and isinstance(a, str):
        try:
            return float(a) == b
        except ValueError:
            return False
    return bool(a == b)


# --- Fast expansion -------------------------------------------------------------------------------
#
# ``_slow_trial`` is the definition of a trial: the schema picked by the layers, the eight layers
# merged onto it by omegaconf, resolved, typed and validated. That costs tens of milliseconds per
# trial (every ``OmegaConf.merge`` copies the whole config), minutes for 10⁴ trials. The trials of one
# method differ only in the grid point and the seed, which set leaf values; so ``_FastTrials`` merges
# the six shared layers once per method (the template), types each grid value once (the node's own
# conversion, or a merge onto the template), and builds each trial as the template's container and
# object with those leaves set, then runs the same ``validate`` and ``_trial_name``. Whatever it does
# not cover exactly (interpolations, missing values, an axis that picks the schema or overlaps
# another, a non-scalar value), and any trial that fails any check, goes through ``_slow_trial``,
# which then raises the very error it always raised.

FAST = True
"""Use the template path of ``load_sweep`` (tests compare both paths on every shipped sweep file)."""

_SCHEMA_KEYS = ("problem.name", "problem.target", "method.algo")
_UNSET = object()


def _special(node: Any) -> bool:
    """Whether plain data holds an interpolation (``${...}``) or omegaconf's missing value ``???``."""
    if isinstance(node, str):
        return "${" in node or node == "???"
    if isinstance(node, dict):
        return any(_special(k) or _special(v) for k, v in node.items())
    if isinstance(node, list | tuple):
        return any(_special(v) for v in node)
    return False


def _copy_plain(node: Any) -> Any:
    """A deep copy of a resolved container (dicts, lists and scalars; anything else by deepcopy)."""
    kind = type(node)
    if kind is dict:
        return {k: _copy_plain(v) for k, v in node.items()}
    if kind is list:
        return [_copy_plain(v) for v in node]
    if kind in _SCALARS:
        return node
    return copy.deepcopy(node)


_FIELD_NAMES: dict[Any, tuple[str, ...]] = {}


def _field_names(cls: Any) -> tuple[str, ...]:
    """The field names of a dataclass (``dataclasses.fields`` is slow in a loop over 10⁴ trials)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@functools.cache
def _copies_by_dict(cls: Any) -> bool:
    """Whether ``copy.copy`` of a ``cls`` instance is a new instance with the same ``__dict__``."""
    return (
        not hasattr(cls, "__slots__")
        and not hasattr(cls, "__copy__")
        and not hasattr(cls, "__setstate__")
        and cls.__reduce_ex__ is object.__reduce_ex__  # type: ignore[comparison-overlap]
        and cls.__reduce__ is object.__reduce__  # type: ignore[comparison-overlap]
        and cls.__getstate__ is object.__getstate__  # type: ignore[comparison-overlap]
    )


def _fresh(obj: Any) -> Any:
    """A copy of a typed config object with nothing mutable shared with ``obj``."""
    cls = type(obj)
    if cls in _SCALARS:
        return obj
    if dataclasses.is_dataclass(cls):
        if _copies_by_dict(cls):
            new = cls.__new__(cls)
            new.__dict__.update(obj.__dict__)
        else:
            new = copy.copy(obj)
        for name in _field_names(cls):
            v = getattr(obj, name)
            if type(v) not in _SCALARS:
                object.__setattr__(new, name, _fresh(v))
        return new
    return _copy_plain(obj)


def _put(node: Any, key: str, value: Any) -> None:
    """Set dotted ``key`` in a container (dicts) or a config object (dataclasses, dicts); the
    parents must exist (``KeyError`` else)."""
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    if isinstance(node, dict):
        if leaf not in node:
            raise KeyError(key)
        node[leaf] = value
    elif dataclasses.is_dataclass(node) and leaf in _field_names(type(node)):
        object.__setattr__(node, leaf, value)
    else:
        raise KeyError(key)


def _get(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _node_at(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node._get_node(part)
    return node


def typed_leaf(cfg: DictConfig, key: str, value: Any) -> tuple[Any, Any] | None:
    """(resolved-container value, config-object value) of merging ``{key: value}`` onto ``cfg``, for
    a scalar leaf; None where that is not a plain scalar or the merge fails (the caller then takes
    the full merge, which raises its own error). ``cfg`` holds no interpolation."""
    if isinstance(value, str) and ("${" in value or value == "???"):
        return None
    node, kind = _node_at(cfg, key), type(value)
    if isinstance(node, FloatNode) and kind in (int, float):
        try:
            return float(value), float(value)
        except OverflowError:  # an int beyond a float: omegaconf's own error, the full way
            return None
    if (
        (isinstance(node, IntegerNode) and kind is int)
        or (isinstance(node, StringNode) and kind is str)
        or (isinstance(node, BooleanNode) and kind is bool)
    ):
        return value, value
    if node is None or kind not in _SCALARS:
        return None
    try:  # another node type or a value it converts: omegaconf's own merge, once per value
        probe = OmegaConf.merge(cfg, _dotted_to_nested([(key, value)]))
        plain, obj = _get(OmegaConf.to_container(probe), key), _get(OmegaConf.to_object(probe), key)
    except Exception:
        return None
    if type(plain) not in _SCALARS or type(obj) not in _SCALARS or plain != obj:
        return None
    return plain, obj


@dataclass
class _Template:
    """The six shared layers of a method merged once: typed config, resolved container, object."""

    cfg: DictConfig
    container: dict[str, Any]
    obj: TrialConfig
    typed: dict[tuple[str, type, str], tuple[Any, Any] | None] = field(default_factory=dict)


class _FastTrials:
    """Trials of a sweep built from one template per method (see the note above ``FAST``)."""

    def __init__(self, exp: str, axes: Sequence[str]) -> None:
        self.exp = exp
        self.templates: dict[str, _Template | None] = {}
        # an axis that picks the schema or overlaps another axis: every trial the full way
        self.enabled = not any(_touches(a, s) for a in axes for s in _SCHEMA_KEYS) and not any(
            _touches(a, b) for a, b in itertools.combinations(axes, 2)
        )

    def trial(
        self, mname: str, layers: list[dict[str, Any]], point: dict[str, Any], seed: Any
    ) -> tuple[str, TrialConfig, dict[str, Any]] | None:
        """``(name, config object, container)`` as ``_slow_trial`` gives them, or None."""
        if not self.enabled or type(seed) is not int:
            return None
        tpl = self.templates.get(mname, _UNSET)
        if tpl is _UNSET:
            tpl = self.templates[mname] = self._template(layers[:6])
        if tpl is None:
            return None
        assert isinstance(tpl, _Template)
        leaves = []
        for key, value in point.items():
            memo = (key, type(value), repr(value))
            if memo not in tpl.typed:
                tpl.typed[memo] = typed_leaf(tpl.cfg, key, value)
            typed = tpl.typed[memo]
            if typed is None:
                return None
            leaves.append((key, typed))
        container, obj = _copy_plain(tpl.container), _fresh(tpl.obj)
        try:
            for key, (plain, value) in leaves:
                _put(container, key, plain)
                _put(obj, key, value)
            container["seed"] = seed
            object.__setattr__(obj, "seed", seed)
            validate(obj)
            name = _trial_name(mname, point, container)
        except Exception:
            return None
        return name, obj, container

    def _template(self, layers: list[dict[str, Any]]) -> _Template | None:
        try:
            schema, target = _schema_for(layers)
            cfg = OmegaConf.structured(schema)
            for layer in _without_target(layers):
                cfg = OmegaConf.merge(cfg, {k: v for k, v in layer.items() if k in TRIAL_KEYS})
            cfg.exp = self.exp
            if _special(OmegaConf.to_container(cfg, resolve=False)):
                return None
            _check_plain_names(cfg)
            container = typed_container(cfg, target)
            obj = OmegaConf.to_object(cfg)
        except Exception:
            return None
        if not isinstance(obj, TrialConfig) or "seed" not in container:
            return None
        return _Template(cfg=cfg, container=container, obj=obj)


def _slow_trial(
    layers: list[dict[str, Any]],
    exp: str,
    mname: str,
    point: dict[str, Any],
    path: Path,
    where: str,
) -> tuple[str, TrialConfig, dict[str, Any]]:
    """One trial the full way: merge every layer onto its schema, resolve, type, validate, name."""
    try:
        merged = _merge_typed(layers, "")
        merged.exp = exp
        _check_plain_names(merged)
        container = typed_container(merged, _target(layers))
        obj = OmegaConf.to_object(merged)
        assert isinstance(obj, TrialConfig)
        validate(obj)
        name = _trial_name(mname, point, container)
    except OmegaConfBaseException as e:
        raise _fail(getattr(e, "full_key", "config"), str(e).splitlines()[0]) from None
    except ConfigError as e:
        raise ConfigError(f"{e} [in {path.name}, trial {where}]") from None
    return name, obj, container


class _Progress:
    """``pbrl: expanding N trials … k/N`` on stderr every 2 s, once the expansion has taken 2 s."""

    def __init__(
        self, total: int, every_s: float = 2.0, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.total, self.done, self.shown = total, 0, -1
        self.timer = Timer(every_s, clock)

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.timer.ready():
            self.line()

    def end(self) -> None:
        """The last count, when a progress line was shown and it said less."""
        if 0 <= self.shown < self.done:
            self.line()

    def line(self) -> None:
        self.shown = self.done
        print(
            f"pbrl: expanding {self.total} trials … {self.done}/{self.total}",
            file=sys.stderr,
            flush=True,
        )


def _sweep_block(
    data: dict[str, Any], smoke_block: dict[str, Any], cli: dict[str, Any]
) -> tuple[dict[str, Any], SweepBlock, list[str]]:
    block_dict = _deep_merge(
        _deep_merge(data.get("sweep") or {}, smoke_block.get("sweep") or {}), cli.get("sweep") or {}
    )
    layers = [
        ("the sweep file", data),
        ("its smoke: block", smoke_block),
        ("the command line", cli),
    ]
    block_dict, notes = _replace_axes(layers, block_dict)
    _check_size_early(block_dict)
    try:
        block = typed_sweep_block(block_dict)
    except OmegaConfBaseException as e:
        raise _fail(f"sweep.{getattr(e, 'full_key', '')}", str(e).splitlines()[0]) from None
    for key, values in block.grid.items():
        if key == "seed":
            raise _fail(
                "sweep.grid.seed",
                "the seed axis is sweep.seeds (e.g. sweep.seeds=[1,2]), not a grid axis",
            )
        if key.split(".")[0] not in TRIAL_KEYS:
            raise _fail(f"sweep.grid.{key}", f"must start with one of {', '.join(TRIAL_KEYS)}")
        if not isinstance(values, list) or not values:
            raise _fail(f"sweep.grid.{key}", "must be a non-empty list of values")
    if "seed" in block.search:
        raise _fail("sweep.search.seed", "the seed axis is sweep.seeds, not a search axis")
    if not block.seeds:
        raise _fail("sweep.seeds", "must be a non-empty list of integers")
    if block.max_trials < 1:
        raise _fail("sweep.max_trials", f"must be ≥ 1 (got {block.max_trials})")
    if block.trials not in ("group", "seed"):
        raise _fail(
            "sweep.trials",
            f"{block.trials!r} is not allowed; choose group (one Tune trial = a configuration over "
            "its seeds) or seed (one Tune trial per seed)",
        )
    if block.aggregate not in ("mean", "iqm"):
        raise _fail("sweep.aggregate", f"{block.aggregate!r} is not allowed; choose mean or iqm")
    file_grid = (data.get("sweep") or {}).get("grid") or {}
    for key in block.group_over:
        # An axis a later layer replaced by one value (smoke block, command line) groups nothing.
        if key not in block.grid and key not in file_grid:
            raise _fail(
                "sweep.group_over",
                f"{key!r} is not a grid axis of this sweep (grid: {', '.join(block.grid) or 'none'});"
                " only grid values can join a group",
            )
    return block_dict, block, notes


_LONG_LIST = 64


def _long_plain_list(v: Any) -> bool:
    """A list longer than ``_LONG_LIST`` of scalars omegaconf keeps as they are in a ``list[Any]``
    (no interpolation, no missing value)."""
    return (
        type(v) is list
        and len(v) > _LONG_LIST
        and all(
            type(x) in (int, float, bool, type(None))
            or (type(x) is str and "${" not in x and x != "???")
            for x in v
        )
    )


def typed_sweep_block(block: dict[str, Any]) -> SweepBlock:
    """``OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepBlock), block))``, the same
    object and the same errors, without omegaconf typing each item of a long seed list or grid axis
    (about 0.5 ms an item: 10⁴ seeds took seconds). A long list of plain ints (``seeds``) or plain
    scalars (a grid axis, ``list[Any]``) is typed as its first item and put back whole, which is
    what omegaconf gives for it."""
    stand_in, seeds, grid = dict(block), block.get("seeds"), block.get("grid")
    long_seeds = None
    if isinstance(seeds, list) and _long_plain_list(seeds) and all(type(x) is int for x in seeds):
        long_seeds = seeds
        stand_in["seeds"] = seeds[:1]
    long_axes: dict[str, list[Any]] = {}
    if isinstance(grid, dict):
        long_axes = {k: v for k, v in grid.items() if _long_plain_list(v)}
        if long_axes:
            stand_in["grid"] = {k: v[:1] if k in long_axes else v for k, v in grid.items()}
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepBlock), stand_in))
    assert isinstance(obj, SweepBlock)
    if long_seeds is not None:
        obj.seeds = list(long_seeds)
    for k, v in long_axes.items():
        obj.grid[k] = list(v)
    return obj


def _check_size_early(block: dict[str, Any]) -> None:
    """Refuse an oversized grid before omegaconf sees it (typing 10⁴ list items alone takes minutes)."""
    grid, seeds = block.get("grid"), block.get("seeds", [0])
    if not isinstance(grid, dict) or not isinstance(seeds, list):
        return  # the typed check that follows names the field
    cap = block.get("max_trials", SweepBlock.max_trials)
    sizes = [len(v) for v in grid.values() if isinstance(v, list)]
    count = math.prod(sizes) * max(len(seeds), 1)
    if isinstance(cap, int) and count > cap:
        raise _fail(
            "sweep",
            f"at least {count} trials (grid × seeds) is more than sweep.max_trials={cap}; "
            "raise sweep.max_trials if you mean it",
        )


def _methods(*layers: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each method's own ``methods.<name>`` entries, one per layer (file, smoke, command line), in the
    order of first appearance. Without ``methods:`` the sweep has one method, named by ``method.name``."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for layer in layers:
        for mname in layer.get("methods") or {}:
            methods.setdefault(mname, [])
    if not methods:
        name = (layers[0].get("method") or {}).get("name", "method")
        _check_method_name(name, "method.name")
        methods = {name: []}
    for mname, per_layer in methods.items():
        per_layer.extend(dict((layer.get("methods") or {}).get(mname) or {}) for layer in layers)
    return methods


def _absolute_targets(layer: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Make a relative ``problem.target: file.py:ATTR`` absolute (against the sweep file's folder), so
    that the resolved config names the same file from any working directory or trial process."""
    prob = layer.get("problem")
    if isinstance(prob, dict) and isinstance(prob.get("target"), str):
        return {**layer, "problem": {**prob, "target": absolute_target(prob["target"], base_dir)}}
    return layer


def _algo_mode(t: TrialSpec) -> str:
    return _algo_label(t.cfg)


def _algo_label(cfg: TrialConfig) -> str:
    """``rlhf in mode drlhf`` / ``pbrl``: the trial's loop, as the unread-field errors name it."""
    mode = getattr(cfg.method, "mode", None)
    return cfg.method.algo + (f" in mode {mode}" if mode is not None else "")


def _check_unread(
    trials: list[TrialSpec], set_by: dict[str, tuple[set[str], set[str]]], path: Path
) -> None:
    """A method field set in the sweep that the trial's algo/mode does not read is an error.

    ``set_by[trial] = (fields set in the method's own methods.<name> entry, fields set for every
    method: the shared method: block, smoke method:, method.* overrides, grid and search axes)``. An own field
    is an error when the trial does not read it; a shared one only when no trial of the sweep reads it.
    """
    specs = algo_specs()
    reads = {t.name: specs[t.cfg.method.algo].fields_settable(t.cfg.method) for t in trials}
    anyone = set().union(*reads.values()) if reads else set()
    for t in trials:
        own, shared = set_by[t.name]
        for key in sorted(own | shared):
            if key in reads[t.name] or (key not in own and key in anyone):
                continue
            if key in own:
                by = f"algo {_algo_mode(t)}"
                where = f"set in methods.{t.cfg.method.name}"
            else:
                by = f"algo {', '.join(sorted({_algo_mode(u) for u in trials}))}"
                where = "set for every method of the sweep, and none of them reads it"
            raise ConfigError(
                f"method.{key}: not read by {by} ({where}), so it would do nothing; remove it, "
                f"or set it only for the methods that read it [in {path.name}, trial {t.name}]"
            )


def _leaves(node: Any, prefix: str = "") -> set[str]:
    """Dotted keys of the values set in a nested mapping (``{method: {lam: 5}}`` → ``method.lam``)."""
    if not isinstance(node, dict) or not node:
        return {prefix} if prefix else set()
    out: set[str] = set()
    for k, v in node.items():
        out |= _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _touches(key: str, axis: str) -> bool:
    """Whether setting ``key`` sets (part of) ``axis`` or the other way round."""
    return key == axis or key.startswith(axis + ".") or axis.startswith(key + ".")


def _layer_keys(layer: dict[str, Any]) -> tuple[set[str], dict[str, str]]:
    """(dotted keys a layer sets for every method, ``method.k`` → ``methods.<name>.k`` set for one)."""
    shared = _leaves({k: v for k, v in layer.items() if k in TRIAL_KEYS})
    own: dict[str, str] = {}
    for mname, mcfg in (layer.get("methods") or {}).items():
        for k in mcfg or {}:
            own.setdefault(f"method.{k}", f"methods.{mname}.{k}")
    return shared, own


def _axes_of(layer: dict[str, Any]) -> dict[str, str]:
    """Keys a layer's ``sweep:`` block sweeps: key → ``grid`` or ``search``."""
    block = layer.get("sweep") or {}
    out: dict[str, str] = {}
    for kind in ("grid", "search"):
        axes = block.get(kind) if isinstance(block, dict) else None
        if isinstance(axes, dict):
            for key in axes:
                if key in out:
                    raise _fail(f"sweep.{kind}.{key}", "is both a grid and a search axis; keep one")
                out[str(key)] = kind
    return out


def _check_plain_names(merged: DictConfig) -> None:
    """``logging.project`` names the W&B project: written out, never taken from the environment."""
    logging = OmegaConf.to_container(merged.logging, resolve=False)
    project = logging.get("project") if isinstance(logging, dict) else None
    if "${" in str(project):
        raise _fail(
            "logging.project",
            f"{project!r}: a W&B project name is written out, not interpolated (it would carry "
            "an environment value into W&B)",
        )


def _replace_axes(
    layers: list[tuple[str, dict[str, Any]]], block: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Apply the one rule for values against axes, over the layers file → smoke → command line.

    A value set in a later layer for a key that an earlier layer grids or searches over **replaces
    that axis** (the trials run the value); a later layer's axis replaces an earlier value or axis.
    Within one layer the axis beats a value (a file may give a default and grid it). Refused, naming
    the key: a ``methods.<name>`` value for a key that the same or an earlier layer sweeps for every
    method (the axis would override it silently).
    Returns the sweep block without the replaced axes and one note per replaced axis."""
    # key → (grid | search, index of the layer that sweeps it)
    axes: dict[str, tuple[str, int]] = {}
    replaced: dict[str, str] = {}
    owns: list[tuple[int, str, str]] = []  # (layer index, method.k, methods.<name>.k)
    for i, (where, layer) in enumerate(layers):
        shared, own = _layer_keys(layer)
        mine = _axes_of(layer)
        for key, kind in mine.items():
            if key in axes and axes[key][0] != kind:
                replaced[key] = (
                    f"{key}: the sweep.{kind} axis of {where} replaces the sweep.{axes[key][0]} "
                    f"axis of {layers[axes[key][1]][0]}"
                )
            else:
                replaced.pop(key, None)
            axes[key] = (kind, i)
        for key in [a for a in axes if a not in mine and any(_touches(k, a) for k in shared)]:
            kind, j = axes.pop(key)
            replaced[key] = (
                f"{key}: the value set in {where} replaces the sweep.{kind} axis of {layers[j][0]}"
            )
        owns += [(i, key, f) for key, f in own.items()]
    for i, key, fname in owns:
        for axis, (kind, j) in axes.items():
            if _touches(key, axis) and i >= j:
                raise _fail(
                    fname,
                    f"{axis} is swept (sweep.{kind} in {layers[j][0]}) for every method, which "
                    f"would override this value; to run one value, replace the axis with "
                    f"{axis}=VALUE, or remove the axis",
                )
    out = dict(block)
    for kind in ("grid", "search"):
        if isinstance(out.get(kind), dict):
            out[kind] = {k: v for k, v in out[kind].items() if axes.get(k, ("", 0))[0] == kind}
    return out, list(replaced.values())


def _check_grid_read(trials: list[TrialSpec], block: SweepBlock, path: Path) -> None:
    """A grid axis over a method field that no trial of the sweep reads is an error: every method
    would drop it (``_drop_unread_axes``), and the values asked for would never run. (A field a method
    may set without reading it, ``AlgoSpec.settable``, still needs a reader to be swept.)"""
    specs = algo_specs()
    reads = set().union(*(specs[t.cfg.method.algo].fields_read(t.cfg.method) for t in trials))
    for key in (k for k in block.grid if k.startswith("method.")):
        if key.split(".", 1)[1] not in reads:
            raise ConfigError(
                f"sweep.grid.{key}: no method of the sweep reads it "
                f"({', '.join(sorted({_algo_mode(t) for t in trials}))}), so its values would never "
                f"run; remove the axis, or sweep it with a method that reads it [in {path.name}]"
            )


def _check_searched(trials: list[TrialSpec], block: SweepBlock, path: Path) -> None:
    """A search axis over a method field one method of the sweep does not read is an error: each of
    that method's samples would run the same trial, recording a value it never used (a grid axis is
    dropped for such a method instead; a search draws per Tune trial, so it cannot be)."""
    axes = [k for k in block.search if k.startswith("method.")]
    if not axes:
        return
    specs = algo_specs()
    first = {t.cfg.method.name: t for t in reversed(trials)}
    for key in axes:
        for mname, t in first.items():
            if key.split(".", 1)[1] not in specs[t.cfg.method.algo].fields_read(t.cfg.method):
                raise ConfigError(
                    f"sweep.search.{key}: method {mname} (algo {_algo_mode(t)}) does not read it, "
                    "so its samples would be copies of one run; search it in a sweep of the methods "
                    f"that read it [in {path.name}]"
                )


def _drop_unread_axes(
    mname: str, cfg: TrialConfig, point: dict[str, Any], method_axes: list[str], notes: list[str]
) -> dict[str, Any]:
    """``point`` without the method axes that ``cfg``'s loop does not read (``point`` itself when it
    reads them all), with a note for each dropped axis.

    Such an axis would run the same trial once per value, each run recording a value it never used;
    the method runs once instead, without that axis (its value is the method's own).
    """
    reads = algo_specs()[cfg.method.algo].fields_read(cfg.method)
    unread = [k for k in method_axes if k.split(".")[1] not in reads]
    if not unread:
        return point
    algo = _algo_label(cfg)
    for k in unread:
        note = (
            f"sweep.grid.{k}: method {mname} (algo {algo}) does not read it, so it runs once, not "
            "once per value"
        )
        if note not in notes:
            notes.append(note)
    return {k: v for k, v in point.items() if k not in unread}


def _expand(
    methods: dict[str, list[dict[str, Any]]],
    block: SweepBlock,
    shared_layers: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    *,
    exp: str,
    path: Path,
    count: int,
    notes: list[str],
) -> tuple[list[TrialSpec], dict[str, tuple[set[str], set[str]]]]:
    """Every trial of the sweep (methods × grid points × seeds, method-major) and, per trial, the
    method fields set for it alone and for every method (``_check_unread``'s ``set_by``).

    ``shared_layers`` are the file's, the smoke block's and the command line's trial keys; a grid
    axis over a ``method.*`` field a method does not read is dropped for that method
    (``_drop_unread_axes``, with a note in ``notes``).
    """
    base, smoke_base, cli_base = shared_layers
    keys = list(block.grid)
    trials: list[TrialSpec] = []
    set_by: dict[str, tuple[set[str], set[str]]] = {}
    fast = _FastTrials(exp, keys) if FAST else None
    progress = _Progress(count)
    shared_base = {k for lay in (base, smoke_base, cli_base) for k in lay.get("method") or {}}
    shared_base |= {k.split(".", 1)[1] for k in block.search if k.startswith("method.")}
    method_axes = [k for k in keys if k.startswith("method.")]
    shared = shared_base | {k.split(".", 1)[1] for k in method_axes}

    def build(
        mname: str, own: list[dict[str, Any]], point: dict[str, Any], seed: Any
    ) -> tuple[str, TrialConfig, dict[str, Any]]:
        file_own, smoke_own, cli_own = own
        # Specific beats shared within a layer; a later layer beats an earlier one.
        layers = [
            base,
            {"method": {"name": mname, **file_own}},
            smoke_base,
            {"method": smoke_own},
            cli_base,
            {"method": cli_own},
            _dotted_to_nested(point.items()),
            {"seed": seed},
        ]
        built = fast.trial(mname, layers, point, seed) if fast is not None else None
        if built is not None:
            return built
        parts = [mname, *(f"{k.split('.')[-1]}={v}" for k, v in point.items()), f"s{seed}"]
        where = re.sub(r"[^\w=.,+-]", "_", "__".join(parts))
        return _slow_trial(layers, exp, mname, point, path, where)

    for mname, own in methods.items():
        own_keys = set().union(*own)
        reduced_seen: set[str] = set()
        for combo in itertools.product(*(block.grid[k] for k in keys)):
            point = dict(zip(keys, combo, strict=True))
            first: tuple[str, TrialConfig, dict[str, Any]] | None = None
            if method_axes:
                first = build(mname, own, point, block.seeds[0])
                reduced = _drop_unread_axes(mname, first[1], point, method_axes, notes)
                if reduced is not point:
                    point, first = reduced, None
                    if repr(sorted(point.items())) in reduced_seen:
                        progress.step(len(block.seeds))
                        continue
                    reduced_seen.add(repr(sorted(point.items())))
            for seed in block.seeds:
                if first is not None and seed == block.seeds[0]:
                    name, obj, container = first
                else:
                    name, obj, container = build(mname, own, point, seed)
                if len(name) > MAX_TRIAL_NAME:
                    raise _fail(
                        "sweep.grid",
                        f"trial name {name[:40]}... has {len(name)} characters; it names a folder "
                        f"(at most {MAX_TRIAL_NAME}): shorten the method name or the grid values",
                    )
                trials.append(TrialSpec(name=name, cfg=obj, container=container))
                # every method axis, dropped or not: one that no method reads is still refused
                set_by[name] = (set(own_keys), shared)
                progress.step()
    progress.end()
    return trials, set_by


def load_sweep(path: str | Path, *, smoke: bool = False, overrides: Sequence[str] = ()) -> Sweep:
    """Read, merge and validate a sweep file; return every trial, or raise ``ConfigError``."""
    path = Path(path)
    data = _read_yaml(path)
    _check_top(data, "")
    smoke_block: dict[str, Any] = {}
    if smoke:
        if not isinstance(data.get("smoke"), dict):
            raise _fail("smoke", f"--smoke given but {path} has no smoke: block")
        smoke_block = data["smoke"]
        _check_top(smoke_block, "smoke.")
    cli = _dotted_to_nested(parse_overrides(overrides))
    _check_top(cli, "")

    block_dict, block, notes = _sweep_block(data, smoke_block, cli)
    methods = _methods(data, smoke_block, cli)

    base = _absolute_targets({k: v for k, v in data.items() if k in TRIAL_KEYS}, path.parent)
    smoke_base = _absolute_targets(
        {k: v for k, v in smoke_block.items() if k in TRIAL_KEYS}, path.parent
    )
    cli_base = _absolute_targets({k: v for k, v in cli.items() if k in TRIAL_KEYS}, None)
    exp = str(cli.get("name") or data.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_=-][A-Za-z0-9_.=-]*", exp) or ".." in exp:
        raise _fail(
            "name",
            f"{exp!r} is not a plain name (letters, digits, _ . = -, not starting with a dot, no "
            "'..'): it names folders (Tune state, W&B group), so it may not be a path",
        )
    count = len(methods) * len(block.seeds) * math.prod(len(v) for v in block.grid.values())
    if count > block.max_trials:
        raise _fail(
            "sweep",
            f"{count} trials (methods × grid × seeds) is more than sweep.max_trials={block.max_trials}; "
            "raise sweep.max_trials if you mean it",
        )
    trials, set_by = _expand(
        methods, block, (base, smoke_base, cli_base), exp=exp, path=path, count=count, notes=notes
    )
    _check_unread(trials, set_by, path)
    _check_grid_read(trials, block, path)
    _check_searched(trials, block, path)
    # Seed-major order: every method and grid point of the first seed, then of the next, so a sweep
    # that stops part-way (Ctrl-C, a session limit) has compared the methods on the same seeds.
    by_seed: dict[int, list[TrialSpec]] = {}
    for t in trials:
        by_seed.setdefault(t.cfg.seed, []).append(t)
    trials = [t for seed in block.seeds for t in by_seed.get(seed, [])]
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise _fail("sweep", "two trials resolve to the same name; make the grid values distinct")
    return Sweep(name=exp, path=path, trials=trials, block=block_dict, raw=data, notes=notes)
