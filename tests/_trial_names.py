"""Checks shared by the loader tests: a trial's name agrees with the config it runs; two loads give
the same trials."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import yaml
from omegaconf import OmegaConf

from pbrl_dist.algos.registry import algo_specs
from pbrl_dist.config.loader import Sweep


def at(container: dict[str, Any], key: str) -> Any:
    node: Any = container
    for part in key.split("."):
        node = node[part]
    return node


def _equal(named: str, value: Any) -> bool:
    """A name's text ``named`` stands for the config's ``value`` (characters a folder name cannot hold
    are written as ``_``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return named == re.sub(r"[^\w=.,+-]", "_", str(value))
    return float(named) == float(value)


def check_names_agree(sweep: Sweep) -> None:
    """Every part of every trial name equals the resolved config that the trial runs."""
    grid = list(sweep.block.get("grid") or {})
    specs = algo_specs()
    for t in sweep.trials:
        # a method axis the trial's loop does not read is not one of its axes (it runs once)
        reads = specs[t.cfg.method.algo].fields_read(t.cfg.method)
        axes = {
            k.split(".")[-1]: k
            for k in grid
            if not k.startswith("method.") or k.split(".", 1)[1] in reads
        }
        method, *parts, seed = t.name.split("__")
        assert method == t.container["method"]["name"] == t.cfg.method.name, t.name
        assert seed == f"s{t.container['seed']}" and t.cfg.seed == t.container["seed"], t.name
        assert len(parts) == len(axes), t.name
        for part in parts:
            leaf, named = part.split("=", 1)
            assert _equal(named, at(t.container, axes[leaf])), (t.name, axes[leaf])
        ran = OmegaConf.to_container(OmegaConf.structured(t.cfg))
        assert isinstance(ran, dict)
        recorded = dict(t.container)
        recorded["problem"] = {k: v for k, v in recorded["problem"].items() if k != "target"}
        assert ran == recorded, t.name  # config.yaml is what runs


def strictly_equal(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` hold the same values of the same types (``20`` and ``20.0`` differ), through
    dicts (in the same key order), lists and dataclasses; NaN equals NaN."""
    assert type(a) is type(b), (where, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), (where, list(a), list(b))
        for k in a:
            strictly_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            strictly_equal(x, y, f"{where}[{i}]")
    elif dataclasses.is_dataclass(a):
        strictly_equal(vars(a), vars(b), where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), (where, a, b)
    else:
        assert a == b, (where, a, b)


def check_same_trials(sweep: Sweep, reference: Sweep) -> None:
    """``sweep`` has exactly the trials of ``reference`` (names, order, containers, typed configs,
    ``config.yaml`` text), the same sweep block and the same notes."""
    assert [t.name for t in sweep.trials] == [t.name for t in reference.trials]
    strictly_equal(sweep.block, reference.block)
    assert sweep.notes == reference.notes and sweep.name == reference.name
    for t, ref in zip(sweep.trials, reference.trials, strict=True):
        strictly_equal(t.container, ref.container, t.name)
        strictly_equal(t.cfg, ref.cfg, t.name)
        assert t.cfg == ref.cfg, t.name
        assert t.to_yaml() == yaml.safe_dump(ref.container, sort_keys=False), t.name
        assert t.cfg is not ref.cfg and t.container is not ref.container
