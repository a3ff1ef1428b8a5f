"""The ``pbrl sweep`` driver killed with SIGKILL mid-sweep; ``--resume`` finishes without re-running.

Three trials run one at a time (``sweep.max_concurrent_trials=1``). The driver (and its embedded Ray,
all in the subprocess's own process group) is killed once trial 0 has finished and trial 1 is halfway.
``pbrl sweep --resume`` must then finish trials 1 and 2, leave trial 0 alone (same ``result.json``, one
attempt), and every trial's files must equal an uninterrupted ``pbrl run``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbrl_dist.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.chaos, pytest.mark.timeout(420)]

NAMES = [f"pbrl_value__game={g}__s0" for g in range(3)]
ARGS = [
    "sweep.grid.problem.game=[0,1,2]",
    "sweep.max_concurrent_trials=1",
    "method.num_iters=1500",
    "method.log_every=50",
    "dist.checkpoint_every=250",
]


def _last_iter(path: Path) -> int:
    if not path.exists():
        return 0
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    return json.loads(lines[-1])["iter"] if lines else 0


def _sweep(tiny_sweep: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pbrl_dist.cli",
            "sweep",
            str(tiny_sweep),
            "--out",
            str(out),
            *ARGS,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the driver and the Ray it started
    )


# (trial running at the kill, its iteration at least): the default suite kills mid-sweep; `make chaos`
# (-m chaos, slow included) also kills at four random points (seeded, so a failure can be re-run).
_rng = random.Random(20261130)
KILL_POINTS = [
    pytest.param((1, 600), id="mid-sweep"),
    *(
        pytest.param((at, it), id=f"random-trial{at}-iter{it}", marks=pytest.mark.slow)
        for at, it in ((_rng.randrange(3), _rng.randrange(100, 1200, 50)) for _ in range(4))
    ),
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_driver_sigkill_then_resume(
    tiny_sweep: Path, tmp_path: Path, point: tuple[int, int]
) -> None:
    at, min_iter = point
    out, ref = tmp_path / "tune", tmp_path / "local"
    proc = _sweep(tiny_sweep, out)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if (
                all((out / n / "result.json").exists() for n in NAMES[:at])
                and _last_iter(out / NAMES[at] / "metrics.jsonl") >= min_iter
            ):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "the sweep ended before it could be killed:\n" + proc.stdout.read()
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = _last_iter(out / NAMES[at] / "metrics.jsonl")
    assert min_iter <= killed_at < 1500
    assert not any((out / n / "result.json").exists() for n in NAMES[at:])
    stamps = {n: (out / n / "result.json").stat().st_mtime_ns for n in NAMES[:at]}

    resumed = _sweep(tiny_sweep, out, "--resume")
    try:
        log, _ = resumed.communicate(timeout=240)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
            resumed.wait()
    assert resumed.returncode == 0, log[-4000:]

    for n, stamp in stamps.items():  # finished before the kill: not run again
        assert (out / n / "result.json").stat().st_mtime_ns == stamp
    attempts = {
        n: [json.loads(x) for x in (out / n / "tune_attempts.jsonl").read_text().splitlines()]
        for n in NAMES
    }
    assert all(len(attempts[n]) == 1 for n in NAMES[:at])
    assert len(attempts[NAMES[at]]) == 2  # resumed from the newest checkpoint on disk
    restored = attempts[NAMES[at]][1]["restored_from"]
    assert restored is not None and restored % 250 == 0
    assert 250 * (killed_at // 250) - 250 <= restored <= killed_at, (restored, killed_at)
    assert all(len(attempts[n]) == 1 for n in NAMES[at + 1 :])

    assert main(["run", str(tiny_sweep), "--out", str(ref), *ARGS]) == 0
    for n in NAMES:
        assert (out / n / "metrics.jsonl").read_text() == (ref / n / "metrics.jsonl").read_text(), n
        got = json.loads((out / n / "result.json").read_text())["final"]
        assert got == json.loads((ref / n / "result.json").read_text())["final"]

    # Damage after the fact: a deleted final_state.npz, a truncated result.json, a deleted folder.
    (out / NAMES[0] / "final_state.npz").unlink()
    res2 = out / NAMES[1] / "result.json"
    res2.write_text(res2.read_text()[:20])
    import shutil

    shutil.rmtree(out / NAMES[2])
    again = _sweep(tiny_sweep, out, "--resume")
    log, _ = again.communicate(timeout=240)
    assert again.returncode == 0, log[-4000:]
    repaired = [x for x in log.splitlines() if x.startswith("repairing ")]
    assert len(repaired) == 3, log[-4000:]
    for n in NAMES:
        assert (out / n / "metrics.jsonl").read_text() == (ref / n / "metrics.jsonl").read_text(), n
        got = json.loads((out / n / "result.json").read_text())["final"]
        assert got == json.loads((ref / n / "result.json").read_text())["final"]
        assert (out / n / "final_state.npz").exists()
