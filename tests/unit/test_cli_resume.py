"""``cli.py``: ``pbrl run --resume`` when the sweep file recorded in ``sweep.yaml`` has moved."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_cli_resume_after_the_sweep_file_moved_names_it_and_takes_the_new_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--resume` reads the sweep file recorded in sweep.yaml; when it has moved (a repository
    reorganised, another working directory) the error names both and the command that works."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweeps").mkdir()
    sweep = tiny_sweep_file(tmp_path / "sweeps")
    assert main(["run", "sweeps/tiny.yaml", "--out", "out", "--no-report"]) == 0
    (tmp_path / "sweeps" / "variants").mkdir()
    moved = sweep.rename(tmp_path / "sweeps" / "variants" / "tiny.yaml")
    capsys.readouterr()
    assert main(["run", "--resume", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert "records the sweep file sweeps/tiny.yaml, which is not there" in err
    assert "pass it: pbrl run PATH/TO/SWEEP.yaml --resume --out out" in err
    assert main(["run", str(moved), "--resume", "--out", "out", "--no-report"]) == 0
    assert "pbrl_value__s0: complete already, skipped" in capsys.readouterr().out
