"""Incentive-design loops: PBRL-NI drives ψ down, the start line sits at the equilibrium, resume is exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pbrl_dist.algos import incentive
from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.incentive import IncentiveProblem, make_game
from pbrl_dist.testing import MemoryCheckpointer

CFG = MethodConfig(lam=5.0, lr_x=0.1, lr_y=0.1, num_iters=120, log_every=40)


@pytest.fixture(scope="module")
def problem() -> IncentiveProblem:
    return IncentiveProblem(
        make_game(
            num_states=4, num_actions1=3, num_actions2=3, gamma=0.8, tau=0.1, cost_coef=0.0, game=5
        )
    )


def _psi0(problem: IncentiveProblem) -> float:
    x, a, b = problem.init_params(0, CFG.init_scale)
    return problem.metrics(x, a, b)["lower/ni_gap"]


@pytest.mark.parametrize("oracle", ["exact", "pmd", "pg"])
def test_pbrl_ni_shrinks_the_ni_gap(problem: IncentiveProblem, oracle: str) -> None:
    cfg = dataclasses.replace(
        CFG, oracle=oracle, oracle_steps=3 if oracle != "exact" else 50, oracle_lr=1.0
    )
    sink = ListSink()
    res = incentive.run_pbrl_ni(problem, cfg, seed=0, sink=sink)
    assert [r["iter"] for r in sink.rows] == [40, 80, 120]
    assert res.metrics["lower/ni_gap"] < 0.1 * _psi0(problem)


def test_start_line_is_the_equilibrium(problem: IncentiveProblem) -> None:
    res = incentive.run_start_line(problem, CFG, seed=0, sink=ListSink())
    assert abs(res.metrics["lower/ni_gap"]) < 1e-9


def test_metagrad_players_approach_equilibrium(problem: IncentiveProblem) -> None:
    cfg = dataclasses.replace(CFG, lr_x=1.0, lr_y=1.0)
    res = incentive.run_metagrad(problem, cfg, seed=0, sink=ListSink())
    assert res.metrics["lower/ni_gap"] < 0.2 * _psi0(problem)


@pytest.mark.parametrize("fn", [incentive.run_pbrl_ni, incentive.run_metagrad])
def test_resume_is_exact(problem: IncentiveProblem, fn) -> None:
    cfg = dataclasses.replace(CFG, num_iters=30, log_every=10)
    ref = fn(problem, cfg, seed=1, sink=ListSink())
    ck = MemoryCheckpointer(every=10, crash_after=10)
    with pytest.raises(RuntimeError):
        fn(problem, cfg, seed=1, sink=ListSink(), ckpt=ck)
    res = fn(problem, cfg, seed=1, sink=ListSink(), ckpt=ck)
    assert torch.equal(res.x, ref.x) and torch.equal(res.y, ref.y)


def test_pbrl_ni_mc_estimator_shrinks_the_gap(problem: IncentiveProblem) -> None:
    cfg = dataclasses.replace(
        CFG, estimator="mc", mc_batch=24, mc_horizon=5, mc_chunk=12, num_iters=150
    )
    res = incentive.run_pbrl_ni(problem, cfg, seed=0, sink=ListSink())
    assert res.metrics["lower/ni_gap"] < 0.3 * _psi0(problem)
