"""``launch/recovery.py``, reaping: what pbrl may kill is decided by the user's registry of the sessions
pbrl itself started, never by a file in a results folder.

Stand-ins play Ray: a sleeping process whose command line names a session folder (``_pids_using``
finds Ray's processes exactly that way). The reaping verb is ``pbrl sweep --address`` at a closed
port: it reaps (holding the folder's lock) and then stops in one line before Ray would start.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _ray_head import free_port
from _tiny import ONE_TRIAL as TINY

from pbrl_dist.cli import main
from pbrl_dist.launch import recovery
from pbrl_dist.launch.recovery import SESSION_FILE, _boot_id, _start_time

pytestmark = pytest.mark.chaos


def _dead_pid() -> tuple[int, int]:
    """(pid, start time) of a process that has exited."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    start = _start_time(p.pid)
    assert start is not None
    p.wait()
    return p.pid, start


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen, Path]]]:
    made: list[tuple[subprocess.Popen, Path]] = []
    yield made
    for proc, _ in made:
        proc.kill()
        proc.wait()


def _ray_like(tmp_path: Path, made: list, pid: int) -> tuple[subprocess.Popen, Path]:
    """A session folder named like Ray's (ending in ``pid``) and a process whose cmdline names it."""
    session = tmp_path / "ray" / f"session_2026-12-07_00-00-00_000000_{pid}"
    (session / "logs").mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", str(session)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    made.append((proc, session))
    return proc, session


def _reap_by_cli(tmp_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY)
    capsys.readouterr()
    # As a fresh `pbrl` process: a Ray that an earlier in-process test of this pytest worker left
    # running would be reused (ensure_ray joins nothing when Ray is up) instead of --address.
    import ray

    ray.shutdown()
    rc = main(["sweep", str(sweep), "--out", str(out), "--address", f"127.0.0.1:{free_port()}"])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert "no Ray cluster answers there" in captured.err
    return captured.out


def test_reap_leftovers_a_planted_session_note_kills_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stand_ins: list,
) -> None:
    """A ``.ray_session`` planted in an otherwise empty folder, naming a live cluster whose starting
    process is gone (as after ``ray start``): the cluster lives on and its folder is untouched."""
    monkeypatch.setenv("PBRL_STATE_DIR", str(tmp_path / "state"))
    dead, _ = _dead_pid()
    victim, session = _ray_like(tmp_path, stand_ins, dead)
    out = tmp_path / "out"
    out.mkdir()
    (out / SESSION_FILE).write_text(f"{session}\n")
    # A record in the old format (a bare path) is no proof either.
    reg = tmp_path / "state" / "ray_sessions"
    reg.mkdir(parents=True)
    (reg / session.name).write_text(f"{session}\n")
    printed = _reap_by_cli(tmp_path, out, capsys)
    time.sleep(0.2)
    assert victim.poll() is None, "pbrl killed a process it did not start"
    assert (session / "logs").is_dir()
    assert "left behind" not in printed


def test_reap_leftovers_a_dead_pbrl_drivers_session_is_reaped_a_live_ones_is_not(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stand_ins: list,
) -> None:
    """The control: a record pbrl wrote for a driver that is gone reaps that session (and only it);
    a record whose driver lives (same pid and start time) keeps its session."""
    monkeypatch.setenv("PBRL_STATE_DIR", str(tmp_path / "state"))
    reg = tmp_path / "state" / "ray_sessions"
    reg.mkdir(parents=True, mode=0o700)
    dead, dead_start = _dead_pid()
    orphan, gone = _ray_like(tmp_path, stand_ins, dead)
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stand_ins.append((driver, tmp_path))
    live, kept = _ray_like(tmp_path, stand_ins, driver.pid)
    for pid, start, session in (
        (dead, dead_start, gone),
        (driver.pid, _start_time(driver.pid), kept),
    ):
        record = {
            "session": str(session),
            "driver_pid": pid,
            "driver_start": start,
            "host": platform.node(),
            "boot_id": _boot_id(),
        }
        (reg / session.name).write_text(json.dumps(record))
    printed = _reap_by_cli(tmp_path, tmp_path / "out", capsys)
    orphan.wait(timeout=10)
    assert "stopped 1 Ray processes left behind by a killed pbrl driver" in printed
    assert not gone.exists() and not (reg / gone.name).exists()
    assert live.poll() is None and (kept / "logs").is_dir() and (reg / kept.name).exists()


def test_remember_session_records_the_driver_outside_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``remember_session`` writes: the session pbrl's own ``ray.init`` gave, with the driver's
    pid and start time, in the user's registry; ``forget_session`` drops it."""

    from pbrl_dist.launch import ray_session

    session = str(tmp_path / f"session_2026-12-07_00-00-00_000000_{os.getpid()}")
    monkeypatch.setenv("PBRL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setitem(ray_session._STARTED, "session_dir", session)
    out = tmp_path / "out"
    out.mkdir()
    recovery.remember_session(out)
    (rec_path,) = (tmp_path / "state" / "ray_sessions").iterdir()
    rec = json.loads(rec_path.read_text())
    assert rec["driver_pid"] == os.getpid()
    assert rec["driver_start"] == _start_time(os.getpid())
    assert rec["session"] == session
    recovery.forget_session(out)
    assert list((tmp_path / "state" / "ray_sessions").iterdir()) == []
    assert not (out / SESSION_FILE).exists()
