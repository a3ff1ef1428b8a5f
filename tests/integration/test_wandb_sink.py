"""W&B through ``pbrl run``: one run per trial (group/name/tags/config/dir), offline, never fatal;
what real offline runs hold (group per launch, flat config, x axis, summary), read back from their
record logs, for a tabular sweep, an RL sweep and a resumed launch.

Ids, the sweep's mode decision and offline files of ``open_wandb`` itself: tests/unit/launch/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbrl_dist.cli import main

wandb = pytest.importorskip("wandb")

FILES = ("config.yaml", "metrics.jsonl", "final_state.npz", "result.json")


class FakeRun:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs, self.logged, self.finished = kwargs, [], None
        self.axes: list[tuple[str, str | None]] = []
        self.summary: dict[str, Any] = {}

    def log(self, row: dict, step: int | None = None) -> None:
        self.logged.append((step, row))

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.axes.append((name, step_metric))

    def finish(self, exit_code: int = 0) -> None:
        self.finished = exit_code


def test_wandb_init_failure_leaves_complete_local_results(
    tiny_sweep: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")

    def broken(**_: Any) -> None:
        raise RuntimeError("no W&B today\nsecond line")

    monkeypatch.setattr(wandb, "init", broken)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(tiny_sweep),
                "--out",
                str(out),
                "logging.wandb=offline",
                "sweep.seeds=[0,1]",
            ]
        )
        == 0
    )
    said = [x for x in capsys.readouterr().out.splitlines() if "W&B could not start" in x]
    assert len(said) == 2  # one line per trial
    assert "RuntimeError: no W&B today" in said[0] and "second line" not in said[0]
    for name in ("pbrl_value__s0", "pbrl_value__s1"):
        assert all((out / name / f).exists() for f in FILES)
        assert json.loads((out / name / "result.json").read_text())["final"]["iter"] == 40


def test_one_run_per_trial_with_group_tags_config_in_the_trial_folder(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE")
    runs: list[FakeRun] = []

    def fake_init(**kwargs: Any) -> FakeRun:
        runs.append(FakeRun(kwargs))
        return runs[-1]

    monkeypatch.setattr(wandb, "init", fake_init)
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(tiny_sweep),
                "--out",
                str(out),
                "logging.wandb=offline",
                "sweep.seeds=[0,1]",
            ]
        )
        == 0
    )
    assert len(runs) == 2
    kw = runs[0].kwargs
    launch = yaml.safe_load((out / "sweep.yaml").read_text())["launch_id"]
    assert kw["mode"] == "offline" and kw["name"] == "pbrl_value__s0"
    assert kw["group"] == runs[1].kwargs["group"] == f"tiny/full-{launch[:8]}"
    assert kw["job_type"] == "pbrl_value"
    assert kw["tags"] == ["pbrl_value", "stackelberg", "full", "exact"]
    assert kw["dir"] == str(out / "pbrl_value__s0")
    assert kw["config"]["method.lam"] == 20.0 and kw["config"]["seed"] == 0
    assert kw["config"]["swept"] == ["seed"] and kw["config"]["launch.overrides"] == (
        "logging.wandb=offline sweep.seeds=[0,1]"
    )
    assert kw["id"] != runs[1].kwargs["id"]
    assert runs[0].axes == [("iter", None), ("*", "iter")]
    assert [s for s, _ in runs[0].logged] == [10, 20, 30, 40] and runs[0].finished == 0
    assert "upper/leader_return" in runs[0].logged[-1][1]
    assert runs[0].summary == {"status": "complete"}


def test_real_offline_run_lands_in_the_trial_folder(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    assert main(["run", str(tiny_sweep), "--out", str(out), "logging.wandb=offline"]) == 0
    runs = list((out / "pbrl_value__s0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    # The report ignores W&B's own files (wandb/.../files/config.yaml).
    assert main(["report", str(out)]) == 0


def test_two_launches_of_the_same_sweep_get_different_run_ids(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE")
    ids: list[str] = []

    def fake_init(**kwargs: Any) -> FakeRun:
        ids.append(kwargs["id"])
        return FakeRun(kwargs)

    monkeypatch.setattr(wandb, "init", fake_init)
    for out in ("a", "b"):
        args = ["run", str(tiny_sweep), "--out", str(tmp_path / out), "logging.wandb=offline"]
        assert main(args) == 0
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(i.startswith("pbrl_value__s0-") for i in ids)


# ---- what a real offline run holds: read back from its run-<id>.wandb record log ----------------

ROOT = Path(__file__).resolve().parents[2]


def read_run(run_file: Path) -> dict[str, Any]:
    """The run record (group, job type, tags, notes, config), the ``define_metric`` records, the
    history rows and the summary of one offline ``run-<id>.wandb`` file, as W&B wrote them."""
    from wandb.proto import wandb_internal_pb2 as pb

    from pbrl_dist.launch.wandb_sink import _log_records

    def items(repeated: Any) -> dict[str, Any]:
        return {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in repeated}

    out: dict[str, Any] = {"metrics": [], "history": [], "summary": {}}
    for raw in _log_records(run_file):
        rec = pb.Record()  # type: ignore[attr-defined]
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
            out.update(
                id=run.run_id,
                group=run.run_group,
                job_type=run.job_type,
                tags=list(run.tags),
                notes=run.notes,
                config=items(run.config.update),
            )
        elif kind == "metric":
            m = rec.metric
            out["metrics"].append((m.name or m.glob_name, m.step_metric))
        elif kind == "history":
            out["history"].append(items(rec.history.item))
        elif kind == "summary":
            out["summary"].update(items(rec.summary.update))
    return out


def the_run(trial_dir: Path) -> dict[str, Any]:
    (run_file,) = (trial_dir / "wandb").glob("offline-run-*/run-*.wandb")
    return read_run(run_file)


def recorded(out: Path) -> dict[str, Any]:
    return yaml.safe_load((out / "sweep.yaml").read_text(encoding="utf-8"))


def test_a_tabular_run_has_its_launch_group_flat_swept_config_and_iter_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    args = ["run", str(ROOT / "sweeps/demo_fig1.yaml"), "--smoke", "--out", str(out)]
    assert main([*args, "method.num_iters=20", "method.log_every=10", "--no-report"]) == 0
    record = recorded(out)
    launch = record["launch_id"]
    trial = out / "pbrl_bellman__lam=200.0__s0"
    run = the_run(trial)
    assert run["group"] == f"demo_fig1/smoke-{launch[:8]}"
    assert run["job_type"] == "pbrl_bellman"
    assert run["tags"] == ["pbrl_bellman", "stackelberg", "smoke", "exact"]
    assert run["notes"] == record["command"]  # the command that launched it
    cfg = run["config"]
    assert cfg["method.lam"] == 200.0 and cfg["method.penalty"] == "bellman"
    assert cfg["problem.tau"] == 0.1 and cfg["seed"] == 0 and "method" not in cfg
    assert cfg["swept"] == ["method.name", "method.lam"]  # 2 PBRL methods x 2 lambdas, indep_pg
    assert cfg["launch.kind"] == "smoke" and cfg["launch.id"] == launch
    assert cfg["launch.overrides"] == "method.num_iters=20 method.log_every=10"
    assert run["metrics"] == [("iter", ""), ("*", "iter")]
    assert [h["iter"] for h in run["history"]] == [10, 20]
    final = json.loads((trial / "result.json").read_text())["final"]
    assert run["summary"]["status"] == "complete"
    assert run["summary"]["upper/leader_return"] == pytest.approx(final["upper/leader_return"])
    # Every trial of the launch shares the group; each is its own job type.
    runs = [the_run(d) for d in sorted(out.iterdir()) if (d / "wandb").is_dir()]
    assert len(runs) == 5 and {r["group"] for r in runs} == {run["group"]}
    assert {r["job_type"] for r in runs} == {"pbrl_value", "pbrl_bellman", "indep_pg"}


def test_an_rl_run_is_drawn_against_env_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    args = ["run", str(ROOT / "sweeps/rlhf_toy.yaml"), "--smoke", "--out", str(out)]
    assert main([*args, "method.total_env_steps=1000", "--no-report"]) == 0
    run = the_run(out / "pbrl__s0")
    assert run["group"] == f"rlhf_toy/smoke-{recorded(out)['launch_id'][:8]}"
    assert run["job_type"] == "pbrl" and run["tags"] == ["pbrl", "toy_rlhf", "smoke"]
    assert run["metrics"] == [("env_frames", ""), ("*", "env_frames")]
    assert [h["env_frames"] for h in run["history"]] == [500, 1000]
    assert run["config"]["method.mode"] == "pbrl" and run["config"]["swept"] == ["method.name"]
    assert run["summary"]["status"] == "complete" and run["summary"]["env_frames"] == 1000


def test_a_resumed_launch_continues_its_runs_in_the_same_group(
    tiny_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pbrl_dist.launch import wandb_sink

    monkeypatch.setenv("WANDB_MODE", "offline")
    tiny_sweep.write_text(tiny_sweep.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    real_log = wandb_sink.WandbSink.log

    def ctrl_c_in_s1(self: wandb_sink.WandbSink, row: Any) -> None:
        if self.run.name == "pbrl_value__s1" and row.get("iter") == 20:
            raise KeyboardInterrupt
        real_log(self, row)

    monkeypatch.setattr(wandb_sink.WandbSink, "log", ctrl_c_in_s1)
    out = tmp_path / "out"
    assert main(["run", str(tiny_sweep), "--out", str(out), "logging.wandb=offline"]) == 130
    monkeypatch.setattr(wandb_sink.WandbSink, "log", real_log)
    assert main(["run", "--resume", "--out", str(out)]) == 0
    launch = recorded(out)["launch_id"]
    rid = wandb_sink.run_id(launch, "pbrl_value__s1")
    first, second = (read_run(f) for f in wandb_sink.run_files(out / "pbrl_value__s1", rid))
    assert first["id"] == second["id"] == rid
    assert first["group"] == second["group"] == the_run(out / "pbrl_value__s0")["group"]
    assert second["group"] == f"tiny/full-{launch[:8]}"
    assert first["config"]["swept"] == ["seed"] and first["config"]["launch.kind"] == "full"
    assert first["summary"]["status"] == "interrupted" and second["summary"]["status"] == "complete"
    steps = [h["iter"] for h in first["history"] + second["history"]]
    assert steps == [10, 20, 30, 40]
