"""Checks shared by the loader tests: a trial's name agrees with the config it runs."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import OmegaConf

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
    axes = {k.split(".")[-1]: k for k in sweep.block.get("grid") or {}}
    for t in sweep.trials:
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
