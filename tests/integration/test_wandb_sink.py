"""W&B through ``pbrl run``: one run per trial (group/name/tags/config/dir), offline, never fatal.

Ids, the sweep's mode decision and offline files of ``open_wandb`` itself: tests/unit/launch/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbrl_dist.cli import main

wandb = pytest.importorskip("wandb")

FILES = ("config.yaml", "metrics.jsonl", "final_state.npz", "result.json")


class FakeRun:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs, self.logged, self.finished = kwargs, [], None

    def log(self, row: dict, step: int | None = None) -> None:
        self.logged.append((step, row))

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
    assert kw["mode"] == "offline" and kw["group"] == "tiny" and kw["name"] == "pbrl_value__s0"
    assert kw["tags"] == ["pbrl_value", "stackelberg"]
    assert kw["dir"] == str(out / "pbrl_value__s0")
    assert kw["config"]["method"]["lam"] == 20.0 and kw["config"]["seed"] == 0
    assert kw["id"] != runs[1].kwargs["id"]
    assert [s for s, _ in runs[0].logged] == [10, 20, 30, 40] and runs[0].finished == 0
    assert "upper/leader_return" in runs[0].logged[-1][1]


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
