"""``AlgoSpec.validate``: a loop's spec names only fields of its schema, and the schema has the methods
every method block has (``MethodCfg``: ``checks``, ``outer_iters``)."""

from __future__ import annotations

import dataclasses

import pytest

from pbrl_dist.algos.base import MethodConfig, Result
from pbrl_dist.algos.registry import AlgoSpec, algo_specs


def _run(*args: object, **kwargs: object) -> Result:
    raise AssertionError("not run")


@dataclasses.dataclass(frozen=True)
class _Bare:
    name: str = "bare"
    algo: str = "bare"
    num_iters: int = 3


def test_every_builtin_schema_has_the_method_block_methods() -> None:
    for spec in algo_specs().values():
        spec.validate()
    assert MethodConfig(num_iters=7).outer_iters(None) == 7


def test_a_schema_without_checks_or_outer_iters_is_refused() -> None:
    spec = AlgoSpec(name="bare", run=_run, schema=_Bare, reads=frozenset({"num_iters"}))
    with pytest.raises(TypeError, match=r"schema _Bare lacks checks\(\), outer_iters\(\)"):
        spec.validate()


def test_a_spec_naming_a_field_its_schema_lacks_is_refused() -> None:
    spec = AlgoSpec(name="x", run=_run, schema=MethodConfig, reads=frozenset({"no_such_field"}))
    with pytest.raises(TypeError, match="no_such_field not fields of MethodConfig"):
        spec.validate()
