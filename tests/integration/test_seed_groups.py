"""Seed groups in ``pbrl sweep``: one Tune trial is one configuration over all of its seeds.

Each test drives the CLI as a user does (``pbrl sweep`` / ``pbrl run``) and reads the files pbrl
writes. Numbers are compared exactly: a member of a group has the rows of the same trial run alone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from pbrl_dist.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = ROOT / "sweeps"
SMALL_ACTORS = ["dist.cpus_per_trial=0.5", "dist.cpus_per_worker=0.25"]
RAY = ["dist.backend=ray", "dist.num_rollout_workers=2", "dist.num_oracles=1", *SMALL_ACTORS]


def _rows(trial_dir: Path) -> list[dict[str, Any]]:
    """The trial's metrics rows without the timing fields (``perf/``), which differ run to run."""
    rows = [json.loads(x) for x in (trial_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [_numbers(r) for r in rows]


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("perf/")}


def _trials(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/config.yaml"))


def _attempts(trial_dir: Path) -> list[dict[str, Any]]:
    lines = (trial_dir / "tune_attempts.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x]


def _configurations(out: Path) -> dict[str, list[str]]:
    """Trial folders by their resolved config less the seed: the configurations that ran."""
    by: dict[str, list[str]] = defaultdict(list)
    for name in _trials(out):
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        cfg.pop("seed")
        by[json.dumps(cfg, sort_keys=True)].append(name)
    return dict(by)


def _same_as_run(out: Path, ref: Path) -> list[str]:
    """Assert every trial of ``ref`` (``pbrl run``) is in ``out`` with the same rows and final."""
    names = _trials(ref)
    assert names and _trials(out) == names
    for name in names:
        assert _rows(out / name) == _rows(ref / name), name
        got = json.loads((out / name / "result.json").read_text())
        want = json.loads((ref / name / "result.json").read_text())
        assert got["status"] == want["status"] == "complete", name
        assert _numbers(got["final"]) == _numbers(want["final"]), name
    return names


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_tabular_group_runs_its_seeds_and_games_as_lanes_with_the_numbers_of_pbrl_run(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """3 seeds × 2 games of one configuration: one Tune trial, one batched computation, and every
    member's rows and final numbers bitwise those of ``pbrl run``."""
    args = [
        str(tiny_sweep),
        "sweep.seeds=[0,1,2]",
        "sweep.grid.problem.game=[0,1]",
        "sweep.group_over=[problem.game]",
        *(RAY if backend == "ray" else []),
    ]
    out, ref = tmp_path / "sweep", tmp_path / "run"
    assert main(["sweep", *args, "--out", str(out), "--no-report"]) == 0
    said = capsys.readouterr().out
    assert main(["run", *args, "--out", str(ref), "--no-report"]) == 0
    names = _same_as_run(out, ref)
    assert len(names) == 6
    assert "sweep tiny: 1/1 groups finished (0 errored)" in said
    assert "6 runs in 1 Tune trial" in said and "pbrl_value (6 runs) done" in said
    for name in names:  # one Tune trial ran every member once, in one batch
        [attempt] = _attempts(out / name)
        assert attempt["restored_from"] is None and attempt.get("batch_lanes") == 6
    rec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert rec["trial_unit"] == "group" and rec["group_over"] == ["problem.game"]


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_toy_rlhf_group_runs_its_seeds_side_by_side_with_the_numbers_of_pbrl_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """Deep RL: a group's seeds run as parallel members of one Tune trial (threads, each with its
    own runner); every seed's rows equal the seed run alone, on both backends."""
    args = [
        str(SWEEPS / "rlhf_toy.yaml"),
        "--smoke",
        "sweep.seeds=[0,1]",
        "problem.env_shards=2",
        # one env worker per member (its own Ray actor): 6 actors, each a process importing torch
        *(
            ["dist.backend=ray", "dist.num_rollout_workers=1", *SMALL_ACTORS]
            if backend == "ray"
            else []
        ),
    ]
    out, ref = tmp_path / "sweep", tmp_path / "run"
    assert main(["sweep", *args, "--out", str(out), "--no-report"]) == 0
    said = capsys.readouterr().out
    assert main(["run", *args, "--out", str(ref), "--no-report"]) == 0
    names = _same_as_run(out, ref)
    assert len(names) == 6  # 3 methods × 2 seeds
    assert "sweep rlhf_toy: 3/3 groups finished (0 errored)" in said
    assert said.count("(2 seeds) done") == 3
    if backend == "ray":  # every member used its own Ray actors, inside the group's placement group
        for name in names:
            kinds = {
                a["kind"]
                for e in _attempts(out / name)
                for a in e.get("actors") or e.get("actors_at_end") or []
            }
            assert kinds, name


def test_a_search_samples_a_configuration_once_for_all_its_seeds(tmp_path: Path) -> None:
    """``fig1_search``: 3 samples × 3 seeds = 3 configurations of 3 seeds with equal settings, and
    the report counts n = 3 for each one it reports."""
    out = tmp_path / "search"
    args = [
        str(SWEEPS / "fig1_search.yaml"),
        "--smoke",
        "sweep.seeds=[0,1,2]",
        "sweep.num_samples=3",
        "sweep.scheduler.name=fifo",
    ]
    assert main(["sweep", *args, "--out", str(out)]) == 0
    configs = _configurations(out)
    assert sorted(len(v) for v in configs.values()) == [3, 3, 3]
    for names in configs.values():  # the seeds of a configuration are 0, 1, 2
        seeds = sorted(yaml.safe_load((out / n / "config.yaml").read_text())["seed"] for n in names)
        assert seeds == [0, 1, 2]
    summary = pd.read_csv(out / "report" / "summary.csv")
    rows = summary[summary["metric"] == "upper/leader_return"]
    assert len(rows) == 3 and (rows["n"] == 3).all()


ASHA = [
    "sweep.seeds=[0,1,2]",
    "sweep.scheduler.name=asha",
    "sweep.scheduler.metric=upper/leader_return",
    "sweep.scheduler.mode=max",
    "sweep.scheduler.grace_period=20",
    "sweep.max_concurrent_trials=1",
    "method.log_every=10",
]


def test_asha_stops_whole_configurations_where_single_seed_trials_lose_seeds(
    tmp_path: Path,
) -> None:
    """The same ASHA sweep: with single-seed trials ASHA stops some seeds of a configuration and
    keeps others; with groups every configuration is either complete on all 3 seeds or stopped on
    all 3, and the report's n is 3 for every configuration it reports."""
    path = str(SWEEPS / "demo_fig1.yaml")
    single, grouped = tmp_path / "single", tmp_path / "grouped"
    assert main(["sweep", path, "--smoke", *ASHA, "sweep.trials=seed", "--out", str(single)]) == 0
    assert main(["sweep", path, "--smoke", *ASHA, "--out", str(grouped)]) == 0

    def ends(out: Path) -> list[set[str]]:
        return [
            {"stopped" if (out / n / "stopped.json").exists() else "complete" for n in names}
            for names in _configurations(out).values()
        ]

    assert {"stopped", "complete"} in ends(single)  # the case: single-seed ASHA splits a group
    got = ends(grouped)
    assert len(got) == 5 and all(len(e) == 1 for e in got)  # 2 PBRL x 2 lam, and indep_pg
    assert {"stopped"} in got and {"complete"} in got
    summary = pd.read_csv(grouped / "report" / "summary.csv")
    rows = summary[summary["metric"] == "upper/leader_return"]
    assert len(rows) == got.count({"complete"}) and (rows["n"] == 3).all()


@pytest.mark.parametrize("estimator", ["exact", "mc"], ids=["lanes", "side-by-side"])
def test_a_group_that_fails_resumes_from_its_checkpoint_with_every_seed_exact(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: str
) -> None:
    """The test hook FAIL_ONCE_ENV raises in the group's checkpoint save after iteration 20; Tune
    restarts the group there, and every seed's rows equal ``pbrl run``'s."""
    from pbrl_dist.launch.tune_trainable import FAIL_ONCE_ENV

    monkeypatch.setenv(FAIL_ONCE_ENV, "20")
    args = [str(tiny_sweep), "sweep.seeds=[0,1]", f"method.estimator={estimator}"]
    out, ref = tmp_path / "sweep", tmp_path / "run"
    assert main(["sweep", *args, "--out", str(out), "--no-report"]) == 0
    monkeypatch.delenv(FAIL_ONCE_ENV)
    assert main(["run", *args, "--out", str(ref), "--no-report"]) == 0
    for name in _same_as_run(out, ref):
        assert [a.get("restored_from") for a in _attempts(out / name)] == [None, 20], name


FAULTY = '''\
"""The Stackelberg problem, except that seed 1 cannot start (a user's problem that fails on one seed).

Seed 1 fails only once seed 0 has finished (its result.json is in DONE), so that the group has a
complete member when it fails.
"""
import dataclasses
import time
from pathlib import Path

from pbrl_dist.problems.stackelberg import SPEC as BASE
from pbrl_dist.problems.stackelberg import StackelbergConfig, StackelbergProblem, build


@dataclasses.dataclass
class FaultyConfig(StackelbergConfig):
    name: str = "faulty_seed"


class Faulty(StackelbergProblem):
    def init_params(self, seed, scale):
        if seed == 1:
            done, t0 = Path(DONE), time.monotonic()
            while not done.exists() and time.monotonic() - t0 < 120:
                time.sleep(0.05)
            raise RuntimeError("seed 1 cannot start")
        return super().init_params(seed, scale)


def make(cfg):
    return Faulty(build(cfg).game)


SPEC = dataclasses.replace(
    BASE, name="faulty_seed", config=FaultyConfig, build=make, stack=None, figure=None
)
'''


def test_a_member_that_fails_fails_its_whole_group(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed 1 fails, seed 0 completes: the group fails (exit 1), both members are marked failed,
    and the report never shows the configuration over seed 0 alone."""
    from pbrl_dist.report.tables import trial_status

    out = tmp_path / "out"
    done = out / "pbrl_value__s0" / "result.json"
    (tmp_path / "faulty.py").write_text(f"DONE = {str(done)!r}\n{FAULTY}", encoding="utf-8")
    text = tiny_sweep.read_text().replace(
        "  name: stackelberg\n", "  name: faulty_seed\n  target: faulty.py:SPEC\n"
    )
    tiny_sweep.write_text(text, encoding="utf-8")
    args = [str(tiny_sweep), "sweep.seeds=[0,1]", "sweep.max_failures=0", "--out", str(out)]
    assert main(["sweep", *args, "--no-report"]) == 1
    said = capsys.readouterr().out
    assert "seed 1 cannot start" in said
    s0, s1 = out / "pbrl_value__s0", out / "pbrl_value__s1"
    assert (s0 / "result.json").exists() and not (s1 / "result.json").exists()
    for d in (s0, s1):
        failed = json.loads((d / "failed.json").read_text())
        assert failed["group"] == "pbrl_value" and "seed 1 cannot start" in failed["error"]
        assert trial_status(d)[0] == "failed"
    main(["report", str(out)])
    said = "".join(capsys.readouterr())
    assert "2 in a failed seed group" in said
    assert (
        not (out / "report" / "summary.csv").exists()
        or "pbrl_value" not in (out / "report" / "summary.csv").read_text()
    )


@pytest.mark.parametrize(
    "args",
    [
        # 3 methods × 2 seeds each time: batched lanes, and deep RL members side by side
        [str(SWEEPS / "demo_fig1.yaml"), "--smoke", "sweep.grid.method.lam=[20.0]"],
        [str(SWEEPS / "rlhf_toy.yaml"), "--smoke", "problem.env_shards=2"],
    ],
    ids=["lanes", "side-by-side"],
)
def test_every_member_of_a_group_logs_its_own_wandb_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Offline W&B: one run per seed, in the seed's folder, holding exactly its metrics rows."""
    from pbrl_dist.launch.wandb_sink import history_steps

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    assert main(["sweep", *args, "sweep.seeds=[0,1]", "--out", str(out), "--no-report"]) == 0
    names = _trials(out)
    assert len(names) == 6
    ids = set()
    for name in names:
        [run] = (out / name / "wandb").glob("offline-run-*/run-*.wandb")
        ids.add(run.stem)
        assert history_steps(run) == [r["iter"] for r in _rows(out / name)], name
    assert len(ids) == 6
