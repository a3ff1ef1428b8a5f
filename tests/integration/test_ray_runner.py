"""The ray executor: same seed ⇒ same numbers as local, with 1 or 2 workers; dead workers are replaced."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny import small_stackelberg

from pbrl_dist.algos import indep_pg, pbrl
from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.core.oracles import ORACLES
from pbrl_dist.executors.protocols import OracleRequest
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.stackelberg import StackelbergProblem

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(300)]

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def problem() -> StackelbergProblem:
    return small_stackelberg(game=1)


MC = MethodConfig(
    estimator="mc",
    lam=20.0,
    lr_x=0.1,
    lr_y=0.1,
    num_iters=12,
    log_every=4,
    mc_batch=64,
    mc_chunk=16,
    mc_horizon=8,
)


@pytest.fixture(scope="module")
def runners(problem: StackelbergProblem) -> Iterator[dict[int, Any]]:
    """Runners with 1 worker, and with 2 workers + 2 oracle actors, shared by the module (actors start slowly)."""
    from pbrl_dist.executors.ray_chunks import RayChunkRunner

    out = {
        1: RayChunkRunner(problem, num_workers=1, cpus_per_worker=0.1),
        2: RayChunkRunner(problem, num_workers=2, num_oracles=2, cpus_per_worker=0.1),
    }
    yield out
    for r in out.values():
        r.shutdown()


def _run(problem: StackelbergProblem, cfg: MethodConfig, runner=None, sink=None):
    sink = sink if sink is not None else ListSink()
    run = pbrl.run if cfg.algo == "pbrl" else indep_pg.run
    return run(problem, cfg, seed=5, sink=sink, runner=runner), sink.rows


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(penalty="bellman", lam=100.0, mc_q_batch=4),
        dict(algo="indep_pg", lr_x=0.5, lr_y=0.5),
    ],
    ids=["value", "bellman", "indep_pg"],
)
def test_local_and_ray_1_or_2_workers_give_bitwise_equal_runs(
    problem: StackelbergProblem, runners: dict[int, Any], kw: dict
) -> None:
    cfg = dataclasses.replace(MC, **kw)
    ref, ref_rows = _run(problem, cfg)
    for workers, runner in runners.items():
        v0 = runner.version
        res, rows = _run(problem, cfg, runner)  # with 2 oracle actors, PBRL's oracle runs remotely
        workers_info = runner.workers.info()
        assert rows == ref_rows, workers
        assert torch.equal(res.x, ref.x) and torch.equal(res.y, ref.y)
        # One broadcast per parameter set: each worker fetched each version at most once.
        assert all(w["deserialized"] <= runner.version + 1 for w in workers_info)
        assert runner.version - v0 >= cfg.num_iters


def test_a_killed_rollout_worker_is_replaced_and_the_numbers_do_not_change(
    problem: StackelbergProblem, runners: dict[int, Any]
) -> None:
    ref, ref_rows = _run(problem, MC)
    runner = runners[2]
    before = runner.restarts

    class KillAt:
        """Sink that kills rollout worker 0 after the row of iteration 4 (mid-trial)."""

        def __init__(self) -> None:
            self.rows: list[dict] = []

        def log(self, row: dict) -> None:
            self.rows.append(dict(row))
            if row["iter"] == 4:
                ray.kill(runner.workers.handles[0], no_restart=True)

    res, rows = _run(problem, MC, runner, KillAt())
    assert runner.restarts == before + 1
    assert len({a.pid for a in runner.actors() if a.kind == "rollout"}) == 2
    assert rows == ref_rows
    assert torch.equal(res.x, ref.x) and torch.equal(res.y, ref.y)


def test_oracle_actors_solve_in_parallel_like_the_local_oracle(
    problem: StackelbergProblem, runners: dict[int, Any]
) -> None:
    x, _ = problem.init_params(0, 0.5)
    P, r = problem.lower_mdp(x)
    kw = dict(num_steps=50, step_size=1.0, tol=1e-10)
    z = torch.zeros(5, 3, dtype=torch.float64)
    reqs = [
        OracleRequest("exact", P, r, problem.rho_S, problem.gamma, problem.tau, z, kw),
        OracleRequest(
            "pmd", P, r, problem.rho_S, problem.gamma, problem.tau, z, kw | {"num_steps": 5}
        ),
    ]
    got = runners[2].solve_many(reqs)
    want = [
        ORACLES[q.name](q.P_SAS, q.r_SA, q.rho_S, q.gamma, q.tau, q.logits0_SA, **q.kwargs)
        for q in reqs
    ]
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert len({a.pid for a in runners[2].actors() if a.kind == "oracle"}) == 2


def test_pbrl_run_with_the_ray_backend_matches_local(tiny_sweep: Path, tmp_path: Path) -> None:
    """``pbrl run`` with dist.backend=ray uses the running Ray; files are identical to local."""
    from pbrl_dist.cli import main

    common = ["method.estimator=mc", "method.num_iters=12", "method.log_every=4"]
    assert main(["run", str(tiny_sweep), "--out", str(tmp_path / "local"), *common]) == 0
    assert (
        main(
            [
                "run",
                str(tiny_sweep),
                "--out",
                str(tmp_path / "ray"),
                *common,
                "dist.backend=ray",
                "dist.cpus_per_worker=0.5",
            ]
        )
        == 0
    )
    assert ray.is_initialized()  # the module's runtime was used, not shut down
    a = (tmp_path / "local" / "pbrl_value__s0" / "metrics.jsonl").read_text()
    b = (tmp_path / "ray" / "pbrl_value__s0" / "metrics.jsonl").read_text()
    assert a == b and a.count("\n") == 3


def test_an_exact_gradient_trial_on_ray_starts_oracle_actors_only(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dist.num_rollout_workers=2 on an exact-gradient sweep: one note before the run, the trial starts
    no rollout worker (its progress line says ``ray 0w+1o``), and its rows equal the local run's."""
    from pbrl_dist.cli import main

    common = ["method.num_iters=12", "method.log_every=4", "logging.progress_every_s=0"]
    assert main(["run", str(tiny_sweep), "--out", str(tmp_path / "local"), *common]) == 0
    capsys.readouterr()
    ray_args = ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=1"]
    argv = ["run", str(tiny_sweep), "--out", str(tmp_path / "ray"), *common, *ray_args]
    assert main([*argv, "dist.cpus_per_worker=0.5"]) == 0
    out = capsys.readouterr().out
    assert out.count("dist.num_rollout_workers=2: no work in 1 of 1 trials") == 1
    progress = [ln for ln in out.splitlines() if " it (" in ln]
    assert progress and all("pbrl_value__s0 [ray 0w+1o]: " in ln for ln in progress), progress
    a = (tmp_path / "local" / "pbrl_value__s0" / "metrics.jsonl").read_text()
    b = (tmp_path / "ray" / "pbrl_value__s0" / "metrics.jsonl").read_text()
    assert a == b and a.count("\n") == 3


def test_a_runner_without_rollout_workers_refuses_chunks(problem: StackelbergProblem) -> None:
    from pbrl_dist.executors.protocols import Chunk, McRequest
    from pbrl_dist.executors.ray_chunks import RayChunkRunner

    runner = RayChunkRunner(problem, num_workers=0, num_oracles=1, cpus_per_worker=0.1)
    try:
        assert [a.kind for a in runner.actors()] == ["oracle"]
        x, y = problem.init_params(0, 0.5)
        with pytest.raises(RuntimeError, match="started no rollout workers"):
            runner.run_chunks(McRequest(x, y, None, ("joint",), (Chunk(0, 1),), horizon=2))
    finally:
        runner.shutdown()


def test_ni_best_responses_on_oracle_actors_match_local(runners: dict[int, Any]) -> None:
    """PBRL-NI sends its two best responses to the oracle actors in one call; numbers equal the local run."""
    from pbrl_dist.algos.incentive import run_pbrl_ni
    from pbrl_dist.problems.incentive import IncentiveProblem
    from pbrl_dist.problems.incentive import make_game as make_incentive

    inc = IncentiveProblem(
        make_incentive(
            num_states=4, num_actions1=3, num_actions2=3, gamma=0.8, tau=0.1, cost_coef=0.0, game=3
        )
    )
    cfg = MethodConfig(
        lam=5.0, lr_x=0.1, lr_y=0.1, num_iters=8, log_every=4, oracle="pmd", oracle_steps=3
    )
    local = run_pbrl_ni(inc, cfg, seed=0, sink=ListSink())
    remote = run_pbrl_ni(inc, cfg, seed=0, sink=ListSink(), runner=runners[2])
    assert torch.equal(local.x, remote.x) and torch.equal(local.y, remote.y)
    assert local.metrics == remote.metrics
