"""The problem and loop registries: one registration each, everything else a view of them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pbrl_dist.algos import ALGO_SPECS, ALGOS, METHOD_SCHEMAS
from pbrl_dist.cadence import Timer, due
from pbrl_dist.catalog import LOGGED_METRICS
from pbrl_dist.problems import COMPATIBLE, PROBLEMS, ProblemSpec, register_problem
from pbrl_dist.problems.registry import ProblemTargetError, resolve_target
from pbrl_dist.report.confirm import problem_default_metric
from pbrl_dist.report.figures import FIGURES

BUILTIN = {"stackelberg", "incentive", "shaping", "atari_rlhf", "toy_rlhf", "gym_rlhf"}


def test_builtins_are_registered_and_the_old_tables_are_views() -> None:
    assert set(PROBLEMS) >= BUILTIN
    assert COMPATIBLE["incentive"] == ("pbrl_ni", "metagrad", "start_line")
    assert (
        "penalty/ni" in LOGGED_METRICS["incentive"] and "rm/accuracy" in LOGGED_METRICS["toy_rlhf"]
    )
    assert {"fig1_stackelberg.png", "fig3_incentive.png", "shaping_chain.png"} <= {
        FIGURES[n][0] for n in FIGURES
    }
    assert "gym_rlhf" not in FIGURES
    assert problem_default_metric("stackelberg") == ("upper/leader_return", "max")
    assert set(ALGOS) == set(METHOD_SCHEMAS) == set(ALGO_SPECS)
    assert {"pbrl", "indep_pg", "pbrl_ni", "metagrad", "start_line", "rlhf"} <= set(ALGOS)


@dataclass
class _Cfg:
    name: str = "unit_toy"
    n: int = 2


def test_a_registered_problem_shows_up_in_every_view(monkeypatch: pytest.MonkeyPatch) -> None:
    from pbrl_dist.problems import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave no trace
    spec = ProblemSpec(
        name="unit_toy",
        config=_Cfg,
        build=lambda cfg: cfg,
        algos=("pbrl",),
        metrics={"upper/score": "", "lower/gap": ""},
        higher_is_better=("upper/score",),
        progress=("upper/score",),
    )
    register_problem(spec)
    register_problem(spec)  # again: fine
    assert PROBLEMS["unit_toy"][0] is _Cfg and COMPATIBLE["unit_toy"] == ("pbrl",)
    assert "upper/objective" in LOGGED_METRICS["unit_toy"]  # the loop's own metrics join in
    assert problem_default_metric("unit_toy") == ("upper/score", "max")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"name": "not an id"}, "identifier"),
        ({"config": dict}, "dataclass"),
        ({"name": "other_name"}, "needs a field name"),
        ({"progress": ("nope/x",)}, "not in metrics"),
        ({"algos": ()}, "algos"),
    ],
)
def test_a_spec_that_breaks_the_protocol_is_refused(change: dict, says: str) -> None:
    base = dict(
        name="unit_toy", config=_Cfg, build=lambda c: c, algos=("pbrl",), metrics={"a/b": ""}
    )
    with pytest.raises(TypeError, match=says):
        ProblemSpec(**(base | change)).validate()


def test_targets_that_do_not_resolve_say_why_in_one_line() -> None:
    with pytest.raises(ProblemTargetError, match="does not import"):
        resolve_target("surely_not_a_module_123:SPEC")
    with pytest.raises(ProblemTargetError, match=r"not a pbrl_dist\.problems\.ProblemSpec"):
        resolve_target("pbrl_dist.problems.stackelberg:StackelbergConfig")
    assert resolve_target("pbrl_dist.problems.stackelberg:SPEC") is not None
    assert resolve_target("pbrl_dist.problems.stackelberg") is None  # a module that registers


def test_cadence() -> None:
    assert [k for k in range(1, 26) if due(k, 10, 25)] == [10, 20, 25]
    assert [k for k in range(1, 6) if due(k, 0, 5)] == [5]
    t = iter([0.0, 1.0, 5.0, 6.0, 11.0])
    timer = Timer(5.0, clock=lambda: next(t))
    assert [timer.ready(), timer.ready(), timer.ready(), timer.ready()] == [
        False,
        True,
        False,
        True,
    ]
