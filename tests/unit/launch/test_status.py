"""``pbrl status DIR`` (``launch/status.py``): every trial's state, the counts, the best so far, the ETA.

The folders are real: one ``pbrl run`` of the tiny sweep with λ = 20 (complete) and λ = 1e308
(diverges) on seeds 0 and 1, copied per test and then changed the way a running, interrupted, failed
or not-yet-started trial leaves its folder. The lock is held, where a test needs a live driver, by
this process through the project's own ``hold_lock``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _tiny import TINY

from pbrl_dist.cli import main
from pbrl_dist.launch.results import LOCK, MARKER, hold_lock
from pbrl_dist.launch.status import (
    FINAL,
    MANY,
    WIDTH,
    format_status,
    read_status,
    status_command,
)

MIXED = TINY.replace("  seeds: [0]", "  seeds: [0, 1]\n  grid:\n    method.lam: [20.0, 1.0e308]")
METRIC = "upper/leader_return"  # the stackelberg problem's default (report --confirm-seeds)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``pbrl run``: 2 complete and 2 diverged trials (exit 3)."""
    where = tmp_path_factory.mktemp("status")
    sweep = where / "mixed.yaml"
    sweep.write_text(MIXED, encoding="utf-8")
    out = where / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == 3
    return out


@pytest.fixture
def out(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(base, dst, symlinks=True)
    return dst


def _record(out: Path) -> dict[str, Any]:
    return yaml.safe_load((out / "sweep.yaml").read_text(encoding="utf-8"))


def _result(tdir: Path) -> dict[str, Any]:
    return json.loads((tdir / "result.json").read_text(encoding="utf-8"))


def _by_status(out: Path, status: str) -> list[Path]:
    names = _record(out)["trials"]
    return [out / n for n in names if _result(out / n).get("status") == status]


def _make_unfinished(tdir: Path, keep_rows: int, now: float, started_s_ago: float) -> int:
    """Leave ``tdir`` as a trial cut after ``keep_rows`` rows; return the iterations done."""
    (tdir / "result.json").unlink()
    (tdir / "final_state.npz").unlink(missing_ok=True)
    lines = (tdir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[:keep_rows]
    (tdir / "metrics.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    os.utime(tdir / "config.yaml", (now - started_s_ago, now - started_s_ago))
    os.utime(tdir / "metrics.jsonl", (now, now))
    return int(json.loads(lines[-1])["iter"])


def test_read_status_counts_finished_diverged_and_pending_trials_of_the_record(out: Path) -> None:
    complete, diverged = _by_status(out, "complete"), _by_status(out, "diverged")
    assert len(complete) == 2 and len(diverged) == 2
    shutil.rmtree(complete[1])  # named in sweep.yaml, no folder: not started
    st = read_status(out)
    states = {t.name: t for t in st.trials}
    assert [t.name for t in st.trials] == _record(out)["trials"]  # the record's order
    assert st.counts() == {"finished": 1, "diverged": 2, "pending": 1}
    done = states[complete[0].name]
    final = _result(complete[0])["final"]
    assert (done.state, done.done, done.total) == ("finished", final["iter"], 40)
    assert done.value == pytest.approx(final[METRIC])
    pend = states[complete[1].name]
    assert (pend.state, pend.done, pend.total) == ("pending", 0, 40)  # total of a similar trial
    for tdir in diverged:
        res = _result(tdir)
        t = states[tdir.name]
        assert t.state == "diverged" and t.done == res["iter"]
        assert t.detail == f"{res['metric']} = nan at iteration {res['iter']}"
        assert t.value is None  # a diverged trial's numbers are not a best
    text = format_status(st)
    assert "4 trials: 1 finished, 2 diverged, 1 pending" in text
    assert f"best {METRIC} (max) so far: pbrl_value {final[METRIC]:.4g}" in text
    assert "resume with: pbrl run --resume --out" in text  # pending, and nobody runs it
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_read_status_failed_trial_of_pbrl_run_shows_its_one_line_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that raises under ``pbrl run`` leaves ``failed.json`` with its reason; a later launch
    that runs it again removes it."""
    import pbrl_dist.launch.trial as trial

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    real = trial.build_problem

    def boom(spec: Any) -> Any:  # after the trial wrote its config.yaml, as a real failure would
        raise RuntimeError("rollout worker 3 lost (node gone)\nsecond line")

    monkeypatch.setattr(trial, "build_problem", boom)
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == 1
    st = read_status(out)
    (t,) = st.trials
    reason = "RuntimeError: rollout worker 3 lost (node gone)"
    assert (t.state, t.detail) == ("failed", reason)
    assert st.counts()["failed"] == 1
    line = next(x for x in format_status(st).splitlines() if x.startswith(t.name))
    assert line.split()[1] == "failed" and line.endswith(reason)
    monkeypatch.setattr(trial, "build_problem", real)
    assert main(["run", "--resume", "--out", str(out), "--no-report"]) == 0
    assert not (out / t.name / "failed.json").exists()
    assert read_status(out).counts() == {"finished": 1}


def test_read_status_stopped_by_the_scheduler(out: Path) -> None:
    tdir = _by_status(out, "complete")[0]
    k = _make_unfinished(tdir, 2, time.time(), 5)
    (tdir / "stopped.json").write_text(json.dumps({"status": "stopped", "iter": k}))
    t = next(t for t in read_status(out).trials if t.name == tdir.name)
    assert (t.state, t.done) == ("stopped", k)
    assert t.detail == f"stopped by the scheduler at iteration {k}"


def test_read_status_tune_error_of_the_last_attempt_is_a_failure(out: Path) -> None:
    tdir = _by_status(out, "complete")[0]
    now = time.time()
    _make_unfinished(tdir, 2, now - 5, 5)
    tune = out / "_tune" / "tiny"
    rec = _record(out)
    (out / "sweep.yaml").write_text(
        yaml.safe_dump({**rec, "runner": "tune", "tune_path": str(tune)})
    )
    attempt = {"time": now - 10, "pid": 1, "trial_id": "ab12c_00001", "restored_from": None}
    (tdir / "tune_attempts.jsonl").write_text(json.dumps(attempt) + "\n")
    os.utime(tdir / "tune_attempts.jsonl", (now - 10, now - 10))
    err = tune / f"{tdir.name}_ab12c_00001" / "error.txt"
    err.parent.mkdir(parents=True)
    err.write_text("Traceback (most recent call last):\n  File x\nValueError: lr went negative\n")
    t = next(t for t in read_status(out).trials if t.name == tdir.name)
    assert (t.state, t.detail) == ("failed", "ValueError: lr went negative")
    # a retry that wrote rows after the error: not failed (interrupted here: no driver)
    os.utime(err, (now - 8, now - 8))
    t = next(t for t in read_status(out).trials if t.name == tdir.name)
    assert t.state == "interrupted"


def test_read_status_running_trial_under_a_held_lock_has_progress_rate_and_eta(out: Path) -> None:
    running, waiting = _by_status(out, "complete")
    shutil.rmtree(waiting)
    with hold_lock(out, "run"):
        now = time.time()
        done = _make_unfinished(running, 2, now, started_s_ago=10.0)
        st = read_status(out, now=now)
        assert st.driver.alive and f"pid {os.getpid()}" in st.driver.holder
        t = next(t for t in st.trials if t.name == running.name)
        assert (t.state, t.done, t.total) == ("running", done, 40)
        assert t.rate == pytest.approx(done / 10.0, rel=1e-6)
        assert st.counts() == {"running": 1, "diverged": 2, "pending": 1}
        left = (40 - done) + 40  # the running trial's rest and the pending trial
        want = left / (done / 10.0)
        text = format_status(st)
        assert f"ETA {round(want)}s: {left} iterations left" in text
        assert f"{done}/40" in next(x for x in text.splitlines() if x.startswith(running.name))
        assert not st.settled


def test_read_status_tests_the_lock_and_never_keeps_it(out: Path) -> None:
    running = _by_status(out, "complete")[0]
    _make_unfinished(running, 2, time.time(), 10)
    assert (out / LOCK).exists()  # the finished run's lock file, naming this (live) process
    st = read_status(out)
    assert not st.driver.alive  # the pid lives, but nobody holds the flock
    assert next(t for t in st.trials if t.name == running.name).state == "interrupted"
    with hold_lock(out, "run"):  # the status left no lock behind
        assert read_status(out).driver.alive


def test_read_status_trial_of_an_earlier_launch_is_pending_until_the_live_driver_resumes_it(
    out: Path,
) -> None:
    tdir = _by_status(out, "complete")[0]
    done = _make_unfinished(tdir, 2, time.time() - 100, 10)  # written before this driver began
    with hold_lock(out, "run"):
        t = next(t for t in read_status(out).trials if t.name == tdir.name)
    assert (t.state, t.done, t.detail) == ("pending", done, f"resumes after iteration {done}")


def test_find_driver_on_another_host_is_judged_by_recent_writes(out: Path) -> None:
    tdir = _by_status(out, "complete")[0]
    (out / LOCK).write_text("pbrl sweep (host head-node-7, pid 1, since 2026-01-01 00:00:00)\n")
    now = time.time()
    os.utime(out / LOCK, (now - 60, now - 60))  # the driver took the lock before the trial wrote
    _make_unfinished(tdir, 2, now - 20, 10)
    st = read_status(out, now=now)
    assert st.driver.alive and "not visible from here" in st.driver.note
    assert next(t for t in st.trials if t.name == tdir.name).state == "running"
    st = read_status(out, now=now + 3600)  # silent for an hour: gone
    assert not st.driver.alive
    assert next(t for t in st.trials if t.name == tdir.name).state == "interrupted"


def test_read_status_search_counts_samples_not_drawn_yet(out: Path) -> None:
    rec = _record(out)
    rec["sweep"] = {**rec["sweep"], "num_samples": 3}
    (out / "sweep.yaml").write_text(yaml.safe_dump(rec), encoding="utf-8")
    st = read_status(out)
    assert len(st.trials) == 3 * len(rec["trials"])
    assert st.counts()["pending"] == 2 * len(rec["trials"])
    assert {t.detail for t in st.trials if t.state == "pending"} == {"a sample not drawn yet"}


def test_format_status_many_trials_shows_only_those_neither_finished_nor_pending(out: Path) -> None:
    rec = _record(out)
    extra = [f"pbrl_value__lam=20.0__s{i}" for i in range(10, 10 + MANY)]
    (out / "sweep.yaml").write_text(yaml.safe_dump({**rec, "trials": rec["trials"] + extra}))
    st = read_status(out)
    text = format_status(st).splitlines()
    shown = [x for x in text if x.startswith("pbrl_value__")]
    assert len(shown) == 2 and all(x.split()[1] == "diverged" for x in shown)
    assert f"({len(st.trials) - 2} finished or pending trials not shown)" in text
    assert f"{len(st.trials)} trials: 2 finished, 2 diverged, {MANY} pending" in text


def test_status_command_watch_prints_until_every_trial_is_final(out: Path) -> None:
    running = _by_status(out, "complete")[0]
    res = (running / "result.json").read_bytes()
    _make_unfinished(running, 2, time.time(), 10)
    stream, naps = io.StringIO(), []

    def finish(seconds: float) -> None:  # between two prints the trial completes
        naps.append(seconds)
        (running / "result.json").write_bytes(res)

    with hold_lock(out, "run"):
        assert status_command(out, watch=0.5, stream=stream, sleep=finish) == 0
    text = stream.getvalue()
    assert naps == [0.5] and text.count("--- ") == 2
    first, second = text.split("--- ")[1:]
    assert "1 running" in first and "4 trials: 2 finished, 2 diverged" in second
    assert all(t.state in FINAL for t in read_status(out).trials)


def test_status_command_watch_ctrl_c_stops_quietly(out: Path) -> None:
    _make_unfinished(_by_status(out, "complete")[0], 2, time.time(), 10)
    stream = io.StringIO()

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    with hold_lock(out, "run"):
        assert status_command(out, watch=5, stream=stream, sleep=ctrl_c) == 0
    assert stream.getvalue().rstrip().endswith("pbrl status: stopped watching")


def test_cli_status_prints_the_table_and_refuses_a_folder_pbrl_did_not_write(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    got = capsys.readouterr().out
    assert "4 trials: 2 finished, 2 diverged" in got
    assert "all trials are in a final state" in got
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    assert main(["status", str(plain)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pbrl: error: {plain}: not a pbrl results folder (no {MARKER})"
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]  # nothing written
    assert main(["status", str(out), "--watch"]) == 0  # every trial final: one print
    assert capsys.readouterr().out.count("4 trials:") == 1
    assert main(["status", str(out), "--watch", "0"]) == 2
    assert "--watch 0.0: must be a number of seconds > 0" in capsys.readouterr().err
