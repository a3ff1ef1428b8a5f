"""Lanes: a group of tabular trials run as one batched computation gives every lane its solo bits.

Every comparison is exact (``==`` / ``torch.equal``, tolerance 0): each lane's logged rows, final
parameters, final metrics and ``final_state`` arrays against the same trial run alone through the
registered loop (``ALGOS[algo](problem, cfg, seed=...)``, as ``launch/trial.py`` runs it), at the
default oracle settings, so lanes whose solvers stop at different iterations are covered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from pbrl_dist.algos import ALGOS
from pbrl_dist.algos.base import MethodConfig, Result
from pbrl_dist.algos.lanes import LaneSplit, batch_reason, lane_row, run_lanes
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.incentive import IncentiveConfig
from pbrl_dist.problems.shaping import ShapingConfig
from pbrl_dist.problems.shaping import build as build_shaping
from pbrl_dist.problems.stackelberg import StackelbergConfig, StackelbergProblem, stack_problems
from pbrl_dist.problems.stackelberg import build as build_stackelberg
from pbrl_dist.testing import MemoryCheckpointer

GAMES = (0, 1, 2)
SEEDS = (0, 1)
LANES = [(g, s) for g in GAMES for s in SEEDS]  # 3 games × 2 seeds, games and seeds mixed


def stackelberg_cfg(game: int, **kw: Any) -> StackelbergConfig:
    sizes = {"num_states": 10, "num_leader_actions": 5, "num_follower_actions": 5}
    return StackelbergConfig(game=game, **{**sizes, **kw})


def stackelberg(game: int) -> StackelbergProblem:
    return build_stackelberg(stackelberg_cfg(game))


def shaping(game: int) -> Any:
    return build_shaping(ShapingConfig(num_states=6, retrain_iters=10, game=game))


PBRL_VALUE = MethodConfig(algo="pbrl", penalty="value", lam=20.0, lr_x=0.125, lr_y=0.125)
PBRL_BELLMAN = MethodConfig(
    name="pbrl_bellman", algo="pbrl", penalty="bellman", lam=200.0, lr_x=0.05, lr_y=0.05
)
INDEP_PG = MethodConfig(name="indep_pg", algo="indep_pg", lr_x=0.125, lr_y=0.125)


def solo(problem: Any, cfg: MethodConfig, seed: int) -> tuple[Result, list[dict[str, Any]]]:
    sink = ListSink()
    return ALGOS[cfg.algo](problem, cfg, seed=seed, sink=sink), sink.rows


def assert_lane_is_solo(
    lane: Result, rows: list[dict[str, Any]], alone: Result, alone_rows: list[dict[str, Any]]
) -> None:
    assert rows == alone_rows
    assert lane.x is not None and alone.x is not None and lane.y is not None and alone.y is not None
    assert torch.equal(lane.x, alone.x) and torch.equal(lane.y, alone.y)
    assert lane.metrics == alone.metrics
    assert lane.final_state.keys() == alone.final_state.keys()
    for key, arr in alone.final_state.items():
        assert np.array_equal(lane.final_state[key], arr), key


@pytest.mark.parametrize(
    ("make", "cfg"),
    [
        (stackelberg, PBRL_VALUE),
        (stackelberg, PBRL_BELLMAN),
        (stackelberg, INDEP_PG),
        (stackelberg, dataclasses.replace(PBRL_VALUE, oracle="vi", num_iters=40)),
        (stackelberg, dataclasses.replace(PBRL_VALUE, oracle="pmd", oracle_lr=10.0, num_iters=40)),
        (shaping, dataclasses.replace(PBRL_VALUE, lr_x=0.1, lr_y=0.1)),
        (shaping, dataclasses.replace(INDEP_PG, lr_x=0.1, lr_y=0.1)),
    ],
    ids=["pbrl_value", "pbrl_bellman", "indep_pg", "pbrl_vi", "pbrl_pmd", "shaping", "shaping_pg"],
)
def test_run_lanes_gives_every_lane_its_solo_bits(make: Any, cfg: MethodConfig) -> None:
    cfg = dataclasses.replace(cfg, num_iters=min(cfg.num_iters, 120), log_every=20)
    sinks = [ListSink() for _ in LANES]
    lanes = run_lanes([make(g) for g, _ in LANES], cfg, [s for _, s in LANES], sinks=sinks)
    assert len(lanes) == len(LANES)
    for (game, seed), lane, sink in zip(LANES, lanes, sinks, strict=True):
        alone, alone_rows = solo(make(game), cfg, seed)
        assert [r["iter"] for r in sink.rows] == list(range(20, cfg.num_iters + 1, 20))
        assert_lane_is_solo(lane, sink.rows, alone, alone_rows)


def test_run_lanes_resumes_bitwise_from_the_batched_checkpoint() -> None:
    cfg = dataclasses.replace(PBRL_VALUE, num_iters=100, log_every=10)
    problems = [stackelberg(g) for g, _ in LANES]
    seeds = [s for _, s in LANES]
    ck = MemoryCheckpointer(every=30, crash_after=60)
    before = [ListSink() for _ in LANES]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_lanes(problems, cfg, seeds, sinks=before, ckpt=ck)
    assert ck.saved is not None and ck.saved["k"] == 60
    assert ck.saved["x"].shape[0] == len(LANES)  # one state, all lanes
    after = [ListSink() for _ in LANES]
    lanes = run_lanes(problems, cfg, seeds, sinks=after, ckpt=ck)
    for (game, seed), lane, b, a in zip(LANES, lanes, before, after, strict=True):
        alone, alone_rows = solo(stackelberg(game), cfg, seed)
        rows = [r for r in b.rows if r["iter"] <= 60] + a.rows
        assert_lane_is_solo(lane, rows, alone, alone_rows)


class NaNStart(StackelbergProblem):
    """A Stackelberg problem whose leader starts from NaN logits (its lane goes NaN at once)."""

    def init_params(self, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().init_params(seed, scale)
        return torch.full_like(x, float("nan")), y


@pytest.mark.parametrize("cfg", [PBRL_VALUE, PBRL_BELLMAN], ids=["value", "bellman"])
def test_a_nan_lane_leaves_the_other_lanes_bits_alone(cfg: MethodConfig) -> None:
    cfg = dataclasses.replace(cfg, num_iters=40, log_every=10)
    bad = 1
    problems = [
        NaNStart(stackelberg(g).game) if i == bad else stackelberg(g)
        for i, (g, _) in enumerate(LANES)
    ]
    sinks = [ListSink() for _ in LANES]
    lanes = run_lanes(problems, cfg, [s for _, s in LANES], sinks=sinks, stack=stack_problems)
    assert [r["iter"] for r in sinks[bad].rows] == [10, 20, 30, 40]  # logged although NaN
    assert all(np.isnan(r["lower/gap"]) for r in sinks[bad].rows)
    for i, ((game, seed), lane, sink) in enumerate(zip(LANES, lanes, sinks, strict=True)):
        if i != bad:
            alone, alone_rows = solo(stackelberg(game), cfg, seed)
            assert_lane_is_solo(lane, sink.rows, alone, alone_rows)


def test_lane_split_forwards_each_lane_its_row_and_every_lane_despite_a_raising_sink() -> None:
    class Raising(ListSink):
        def log(self, row: Any) -> None:
            super().log(row)
            raise ValueError("sink 0 failed")

    sinks = [Raising(), ListSink(), ListSink()]
    row = {"iter": 5, "a": [1.0, float("nan"), 3.0], "b": [[1, 2], [3, 4], [5, 6]], "c": "x"}
    with pytest.raises(ValueError, match="sink 0 failed"):
        LaneSplit(sinks).log(row)
    assert [s.rows for s in sinks] == [
        [{"iter": 5, "a": 1.0, "b": [1, 2], "c": "x"}],
        [{"iter": 5, "a": row["a"][1], "b": [3, 4], "c": "x"}],
        [{"iter": 5, "a": 3.0, "b": [5, 6], "c": "x"}],
    ]
    assert np.isnan(sinks[1].rows[0]["a"])
    assert lane_row({"iter": 1, "v": [7.0]}, 0, 1) == {"iter": 1, "v": 7.0}
    assert lane_row({"iter": 1, "v": [7.0, 8.0]}, 0, 3) == {"iter": 1, "v": [7.0, 8.0]}


def test_batch_reason() -> None:
    cfgs = [stackelberg_cfg(g) for g in GAMES]
    assert batch_reason("stackelberg", cfgs, PBRL_VALUE) is None
    assert batch_reason("stackelberg", cfgs, INDEP_PG) is None
    assert batch_reason("stackelberg", cfgs[:1], PBRL_BELLMAN) is None  # one lane is fine
    assert batch_reason("shaping", [ShapingConfig(game=g) for g in GAMES], PBRL_VALUE) is None
    mc = batch_reason("stackelberg", cfgs, dataclasses.replace(PBRL_VALUE, estimator="mc"))
    assert mc is not None and "method.estimator=mc" in mc
    ni = MethodConfig(algo="pbrl_ni")
    nostack = batch_reason("incentive", [IncentiveConfig(game=g) for g in GAMES], ni)
    assert nostack is not None and "no ProblemSpec.stack" in nostack
    sizes = batch_reason("stackelberg", [*cfgs, stackelberg_cfg(0, num_states=6)], PBRL_VALUE)
    assert sizes is not None and "game sizes differ" in sizes
    tau = batch_reason("stackelberg", [*cfgs, stackelberg_cfg(0, tau=0.2)], PBRL_VALUE)
    assert tau is not None and "gamma/tau differ" in tau
    kappa = batch_reason("shaping", [ShapingConfig(), ShapingConfig(shaping_scale=1.0)], PBRL_VALUE)
    assert kappa is not None and "problem.shaping_scale differs" in kappa
    assert batch_reason("no_such_problem", cfgs, PBRL_VALUE) is not None
