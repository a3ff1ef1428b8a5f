"""``cli.py``: a reader that goes away (``pbrl show ... | head``) neither crashes a command nor stops
its work. The command runs as its own process with stdout on a pipe whose reading end is already
closed, so its first write fails with EPIPE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main

ROOT = Path(__file__).resolve().parents[2]
PBRL = str(Path(sys.executable).parent / "pbrl")


def _with_stdout_closed(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    r, w = os.pipe()
    os.close(r)  # nobody will ever read: every write to stdout is EPIPE
    try:
        env = {**os.environ, "WANDB_MODE": "disabled"}
        return subprocess.run(
            [PBRL, *argv],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
            timeout=300,
        )
    finally:
        os.close(w)


def test_cli_show_into_a_closed_pipe_exits_0_without_a_traceback(tmp_path: Path) -> None:
    proc = _with_stdout_closed(
        ["show", str(ROOT / "sweeps" / "demo_fig1.yaml"), "--smoke"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "trials of demo_fig1" in proc.stderr  # the count still reaches stderr


def test_cli_report_into_a_closed_pipe_still_writes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1]")
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == 0
    assert not (out / "report").exists()
    proc = _with_stdout_closed(["report", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert (out / "report" / "summary.csv").stat().st_size > 0
    figures = list((out / "figures").glob("*.png"))
    assert figures and all(f.stat().st_size > 0 for f in figures)


def test_report_says_how_many_planned_trials_have_not_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report of a running sweep counts the trials the record names but no folder holds yet."""
    import shutil

    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1, 2]")
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "have not started" not in capsys.readouterr().out
    shutil.rmtree(out / "pbrl_value__s2")  # as if the sweep had not reached it yet
    assert main(["report", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"1 of the 3 planned trials have not started; `pbrl status {out}`" in said
