"""``launch/results.py``: ``--overwrite`` removes only a folder that pbrl wrote (its marker
``.pbrl_results`` and nothing else of the user's), never ``.``, a parent of the working directory or a git
checkout; a refusal is one ``pbrl: error:`` line, exit 2, and touches nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _cli import refused
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main

TRIAL = "pbrl_value__s0"


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_results_overwrite_refuses_a_users_folder_without_marker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    err = refused(capsys, ["run", str(sweep), "--out", str(out), "--overwrite"])
    assert "--overwrite refused" in err and ".pbrl_results" in err
    assert (out / "data.csv").read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"]


def test_results_overwrite_refuses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "thesis.tex").write_text("chapter 1", encoding="utf-8")
    err = refused(capsys, ["run", str(sweep), "--out", ".", "--overwrite"])
    assert "working directory" in err
    assert (tmp_path / "thesis.tex").read_text(encoding="utf-8") == "chapter 1"
    assert sweep.exists()


def test_results_overwrite_refuses_a_parent_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    parent = tmp_path / "project"
    (parent / "code").mkdir(parents=True)
    (parent / "notes.md").write_text("keep", encoding="utf-8")
    monkeypatch.chdir(parent / "code")
    err = refused(capsys, ["run", str(sweep), "--out", "..", "--overwrite"])
    assert "holds the working directory" in err
    assert (parent / "notes.md").exists() and (parent / "code").is_dir()


def test_results_overwrite_refuses_a_git_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (repo / "train.py").write_text("print(1)\n", encoding="utf-8")
    err = refused(capsys, ["run", str(sweep), "--out", str(repo), "--overwrite"])
    assert "git checkout" in err
    assert (repo / ".git" / "HEAD").exists() and (repo / "train.py").exists()


def test_results_overwrite_replaces_a_pbrl_folder_but_not_once_the_user_dropped_a_file_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out)]) == 0
    assert (out / ".pbrl_results").exists()  # pbrl's marker: the folder is pbrl's
    # only pbrl's entries: allowed, and the trial's result is replaced
    assert main(["run", str(sweep), "--out", str(out), "--overwrite", "method.lam=10"]) == 0
    assert yaml.safe_load((out / TRIAL / "config.yaml").read_text())["method"]["lam"] == 10
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    (out / "notes.txt").write_text("what I saw", encoding="utf-8")
    err = refused(capsys, ["run", str(sweep), "--out", str(out), "--overwrite"])
    assert "notes.txt" in err and "--overwrite refused" in err
    assert (out / "notes.txt").read_text(encoding="utf-8") == "what I saw"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == sorted([*before, "notes.txt"])
    assert yaml.safe_load((out / TRIAL / "config.yaml").read_text())["method"]["lam"] == 10
