"""Ctrl-C on ``pbrl sweep`` is never a result: exit 130, the count, the exact resume command; resuming
with that command (no file, no overrides retyped) finishes the sweep with the numbers of ``pbrl run``.
Also ``pbrl show`` and ``pbrl --version`` (provenance a user reads before and after running).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sweeps" / "demo_fig1.yaml"


def _env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


TUNE_HINTS = (
    "Tuner.restore",  # pbrl prints its own resume command
    "Failed to fetch metrics",  # one line per unfinished trial after Ctrl-C
    "Configuration for experiment",  # the settings box (pbrl prints the trial count)
    "TensorBoard",  # not installed
    "View detailed results here",
)


@pytest.mark.ray
@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("sig", "group"),
    [
        # A terminal's Ctrl-C goes to the whole foreground process group: pbrl, Ray's processes it
        # started and the trials' W&B writers (offline here) all get it. A trial caught finishing
        # must not be taken for one stopped by a scheduler (there is none): it is run again.
        pytest.param(signal.SIGINT, True, id="ctrl-c"),
        # A scheduler's preemption; ray.init's own C++ handler would abort (134) if pbrl did not
        # put its Python one back.
        pytest.param(signal.SIGTERM, False, id="sigterm", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_on_pbrl_sweep_exits_130_and_the_printed_command_resumes_it(
    tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    out = tmp_path / "demo"
    overrides = ["method.num_iters=400", "dist.checkpoint_every=100"]
    cmd = [sys.executable, "-m", "pbrl_dist.cli", "sweep", str(DEMO), "--smoke", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "WANDB_MODE": "offline"} if group else _env(),
        cwd=tmp_path,
        start_new_session=group,  # its own group, as a shell gives a foreground job
    )
    assert proc.stdout is not None
    t0 = time.time()
    for line in proc.stdout:  # Ctrl-C once the first trial has finished, the others still running
        if line.startswith("[1/5]"):
            break
        assert time.time() - t0 < 300, "no trial finished"
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest[-2000:] + err[-2000:]
    assert not list(out.glob("*/stopped.json")), "a trial cut by Ctrl-C was marked stopped"
    assert "trials finished (" not in rest  # no "all done" summary, no report
    # One pbrl line per event: none of Tune's hints that repeat or contradict pbrl's own lines.
    for hint in TUNE_HINTS:
        assert hint not in rest + err, hint
    assert not (out / "report").exists()
    (msg,) = [x for x in err.splitlines() if "interrupted:" in x]
    finished = int(msg.split("interrupted: ")[1].split("/")[0])
    assert 1 <= finished < 5 and msg.endswith("trials finished; nothing was reported.")
    (hint,) = [x for x in err.splitlines() if x.startswith("resume with: ")]
    resume = shlex.split(hint.removeprefix("resume with: "))
    assert resume == ["pbrl", "sweep", "--resume", "--out", str(out)]
    rec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert rec["overrides"] == overrides and rec["smoke"] is True

    # The user runs the printed command as it is: file, --smoke and overrides come from sweep.yaml.
    done = subprocess.run(
        [sys.executable, "-m", "pbrl_dist.cli", *resume[1:]],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "5/5 trials finished (0 errored)" in done.stdout
    for hint in TUNE_HINTS:
        assert hint not in done.stdout + done.stderr, hint
    # This launch's progress lines count on from the trials already finished (not from zero).
    counts = [x.split("]")[0] for x in done.stdout.splitlines() if x.startswith("[")]
    (line,) = [x for x in done.stdout.splitlines() if ": resuming 5 trials from " in x]
    found = int(line.rsplit("(", 1)[1].split()[0])  # a trial may have ended after the count
    assert finished <= found < 5
    assert counts and counts[0] == f"[{found + 1}/5" and counts[-1] == "[5/5", counts

    ref = tmp_path / "ref"
    assert main(["run", str(DEMO), "--smoke", "--out", str(ref), *overrides]) == 0
    names = sorted(p.parent.name for p in ref.glob("*/result.json"))
    assert len(names) == 5  # 2 PBRL methods x 2 lam, and indep_pg (it does not read lam)
    for name in names:
        got = (out / name / "metrics.jsonl").read_text()
        want = (ref / name / "metrics.jsonl").read_text()
        strip = [
            {k: v for k, v in json.loads(x).items() if not k.startswith("perf/")}
            for x in got.splitlines()
        ]
        strip_ref = [
            {k: v for k, v in json.loads(x).items() if not k.startswith("perf/")}
            for x in want.splitlines()
        ]
        assert strip == strip_ref, name
        assert json.loads((out / name / "result.json").read_text())["status"] == "complete"


def test_pbrl_show_prints_resolved_configs_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            ["show", str(DEMO), "--smoke", "--trial", "pbrl_value__lam=20.0__s0", "method.lr_x=0.3"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("# --- trial pbrl_value__lam=20.0__s0")
    cfg = yaml.safe_load(text)
    assert (
        cfg["method"]["lr_x"] == 0.3
        and cfg["method"]["lam"] == 20.0
        and cfg["method"]["num_iters"] == 100
    )
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert main(["show", str(DEMO), "--trial", "nope"]) == 2
    assert "--trial nope: no such trial" in capsys.readouterr().err


def test_pbrl_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("pbrl_dist ")


def test_a_results_folder_records_its_provenance(tmp_path: Path, tiny_sweep: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(tiny_sweep), "--out", str(out), "method.lam=5"]) == 0
    rec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert rec["overrides"] == ["method.lam=5"] and rec["smoke"] is False
    assert rec["source"] == str(tiny_sweep) and len(rec["launch_id"]) == 12
    assert {"python", "pbrl_dist", "ray", "torch", "wandb"} <= set(rec["versions"])
    assert "command" in rec and "git_commit" in rec and rec["host"]
    assert (out / ".pbrl_results").exists()


def test_run_no_report_leaves_the_report_to_pbrl_report(tmp_path: Path, tiny_sweep: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(tiny_sweep), "--out", str(out), "--no-report"]) == 0
    assert list(out.glob("*/result.json")) and not (out / "report").exists()
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "summary.csv").exists()
