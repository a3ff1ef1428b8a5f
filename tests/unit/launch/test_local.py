"""``launch/local.py`` (``pbrl run``): the launch id and W&B run ids across ``--resume``, and a run
interrupted by Ctrl-C that resumes bitwise, with a corrupt checkpoint named by its path.

``main([...])`` runs the command in this process; a subprocess is used where a signal is the point.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main

PBRL = str(Path(sys.executable).parent / "pbrl")
TRIAL = "pbrl_value__s0"


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _launch_id(out: Path) -> str:
    return str(yaml.safe_load((out / "sweep.yaml").read_text(encoding="utf-8"))["launch_id"])


def test_local_resume_keeps_launch_id_and_wandb_run_ids_fresh_launch_gets_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.launch import wandb_sink

    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1]")
    out = tmp_path / "out"
    real_open = wandb_sink.open_wandb
    seen: list[tuple[str, str]] = []  # (trial, the W&B run id it opened)
    interrupt = {"at": 2}

    def spy(spec: Any, trial_dir: Path, *, launch_id: str, **kw: Any) -> Any:
        seen.append((spec.name, wandb_sink.run_id(launch_id, spec.name)))
        if len(seen) == interrupt["at"]:
            raise KeyboardInterrupt  # Ctrl-C in the 2nd trial
        return real_open(spec, trial_dir, launch_id=launch_id, **kw)

    monkeypatch.setattr(wandb_sink, "open_wandb", spy)
    assert main(["run", str(sweep), "--out", str(out)]) == 130
    first = _launch_id(out)
    assert [t for t, _ in seen] == ["pbrl_value__s0", "pbrl_value__s1"]
    interrupt["at"] = 0
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert _launch_id(out) == first
    # the resumed launch reopens the interrupted trial's W&B run (trial 1 was complete: skipped)
    assert seen[2] == seen[1]
    assert seen[1][1] == wandb_sink.run_id(first, "pbrl_value__s1")

    assert main(["run", str(sweep), "--out", str(tmp_path / "other")]) == 0
    assert _launch_id(tmp_path / "other") != first
    assert main(["run", str(sweep), "--out", str(out), "--overwrite"]) == 0
    assert _launch_id(out) != first
    capsys.readouterr()


def test_local_run_interrupted_resumes_bitwise_and_a_corrupt_checkpoint_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_sweep_file(tmp_path)
    size = ["method.num_iters=1000", "dist.checkpoint_every=10", "method.log_every=20"]
    state = tmp_path / "out" / TRIAL / "checkpoint" / "state.pt"
    for _attempt in range(3):
        run = subprocess.Popen(
            [PBRL, "run", "tiny.yaml", "--out", "out", *size],
            cwd=tmp_path,
            stdout=(tmp_path / "run.out").open("wb"),
            stderr=(tmp_path / "run.err").open("wb"),
        )
        try:
            deadline = time.monotonic() + 90
            while not state.exists():
                assert run.poll() is None, (tmp_path / "run.err").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 90 s"
                time.sleep(0.01)
            alive = run.poll() is None
            run.send_signal(signal.SIGINT)  # Ctrl-C mid-trial, after its first checkpoint
            rc = run.wait(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
        if alive:
            break
        # This test was held off the CPU until the 4-second run had ended (a loaded CI machine):
        # the Ctrl-C never reached it. Start again; a signal that reached a live run is judged below.
        shutil.rmtree(tmp_path / "out")
    err = (tmp_path / "run.err").read_text()
    out_tail = (tmp_path / "run.out").read_text()[-1500:]
    assert alive, "the run ended before every Ctrl-C, 3 times"
    assert rc == 130, f"a live run ignored Ctrl-C: rc={rc}\n{err}\n{out_tail}"
    assert "interrupted" in err
    assert "resume with: pbrl run --resume --out out" in err.splitlines()
    assert not (tmp_path / "out" / TRIAL / "result.json").exists()
    assert state.exists()
    shutil.copytree(tmp_path / "out", tmp_path / "corrupt")

    # the printed command, as the user would paste it
    printed = err.split("resume with: ")[-1].strip().splitlines()[0]
    argv = shlex.split(printed)
    assert argv[0] == "pbrl"
    resumed = subprocess.run(
        [PBRL, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from iteration" in resumed.stdout

    monkeypatch.chdir(tmp_path)
    assert main(["run", "tiny.yaml", "--out", "ref", *size]) == 0  # never interrupted
    ref = (tmp_path / "ref" / TRIAL / "metrics.jsonl").read_bytes()
    assert (tmp_path / "out" / TRIAL / "metrics.jsonl").read_bytes() == ref

    bad = tmp_path / "corrupt" / TRIAL / "checkpoint" / "state.pt"
    bad.write_bytes(b"\x00garbage, not a torch file" * 7)
    capsys.readouterr()
    assert main(["run", "--resume", "--out", "corrupt"]) == 2
    msg = capsys.readouterr().err
    assert str(Path("corrupt") / TRIAL / "checkpoint" / "state.pt") in msg
    assert "--restart-corrupt" in msg
    assert not (tmp_path / "corrupt" / TRIAL / "result.json").exists()
    assert main(["run", "--resume", "--restart-corrupt", "--out", "corrupt"]) == 0
    assert (tmp_path / "corrupt" / TRIAL / "metrics.jsonl").read_bytes() == ref
    capsys.readouterr()
