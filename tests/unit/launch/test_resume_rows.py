"""No row lost, anywhere (issue #20, point 4): kills and ``--resume``, driven through ``pbrl``.

``pbrl run`` is started as a subprocess through ``KILLER``, which SIGKILLs it at a chosen point (right
after the metrics row of an iteration is written, or right after the checkpoint of an iteration is
saved). After the kills and a ``--resume``, ``metrics.jsonl`` must equal an undisturbed run's byte for
byte, and the trial's W&B history (every launch's offline ``run-<id>.wandb``, read back record by
record) must hold each step once, strictly increasing, with the undisturbed run's values.

``docs/results/minatar_rlhf/pbrl__env_id=MinAtar_SpaceInvaders-v1__s5/metrics.jsonl`` once had no
rows between iterations 1480 and 2730 (re-run in full on 2026-12-07, RESULTS.md): an attempt resumed
from an older checkpoint cut the rows after it, and a later attempt resumed from a newer checkpoint
left on disk, past the cut.
``test_truncate_metrics_never_resumes_past_rows_an_earlier_attempt_cut`` plays that sequence.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from _tiny import tiny_sweep_file

from pbrl_dist.config.loader import load_sweep
from pbrl_dist.launch import tune_trainable
from pbrl_dist.launch.groups import Group
from pbrl_dist.launch.wandb_sink import _log_records, run_files

pytestmark = pytest.mark.chaos

TRIAL = "pbrl_value__s0"
SIZE = ["method.num_iters=60", "dist.checkpoint_every=20", "method.log_every=10"]

KILLER = """\
import os, signal, sys
from pbrl_dist import metrics
from pbrl_dist.launch import checkpoints

AT, WHEN = int(os.environ.get("KILL_AT", "-1")), os.environ.get("KILL_WHEN", "")
log, save = metrics.JsonlSink.log, checkpoints.FileCheckpointer.save


def log_then_die(self, row):
    log(self, row)
    if WHEN == "row" and row.get("iter") == AT:
        os.kill(os.getpid(), signal.SIGKILL)


def save_then_die(self, state):
    save(self, state)
    if WHEN == "ckpt" and state["k"] == AT:
        os.kill(os.getpid(), signal.SIGKILL)


metrics.JsonlSink.log, checkpoints.FileCheckpointer.save = log_then_die, save_then_die
from pbrl_dist.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def where(tmp_path: Path) -> Path:
    tiny_sweep_file(tmp_path, wandb="offline")
    (tmp_path / "killer.py").write_text(KILLER, encoding="utf-8")
    return tmp_path


def _pbrl(where: Path, argv: list[str], kill: tuple[int, str] | None = None) -> Any:
    """Run ``pbrl ARGV`` in ``where``, SIGKILLed at ``kill`` = (iteration, "row" | "ckpt")."""
    # WANDB_SERVICE: a W&B service this pytest worker started must not be shared (pbrl drops it too)
    drop = ("WANDB_MODE", "WANDB_SERVICE", "KILL_AT", "KILL_WHEN")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if kill is not None:
        env.update(KILL_AT=str(kill[0]), KILL_WHEN=kill[1])
    proc = subprocess.run(
        [sys.executable, "killer.py", *argv, "--no-report"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if kill is not None:
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _reference(where: Path) -> Path:
    """An undisturbed run of the same trial."""
    _pbrl(where, ["run", "tiny.yaml", "--out", "ref", *SIZE])
    return where / "ref" / TRIAL


def _iters(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [int(json.loads(x)["iter"]) for x in lines]


def _wandb_history(trial_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every history row of the trial's W&B run, over all its launches in order: (step, values)."""
    from wandb.proto import wandb_internal_pb2 as pb

    [rid] = {p.name.split("-", 3)[3] for p in (trial_dir / "wandb").glob("offline-run-*")}
    rows = []
    for f in run_files(trial_dir, rid):
        for raw in _log_records(f):
            rec = pb.Record()
            rec.ParseFromString(raw)
            if rec.WhichOneof("record_type") == "history":
                values = {
                    "/".join(i.nested_key) or i.key: json.loads(i.value_json)
                    for i in rec.history.item
                }
                kept = {k: v for k, v in values.items() if not k.startswith("_")}
                rows.append((int(rec.history.step.num), kept))
    return rows


def test_run_trial_killed_twice_resumes_row_for_row_and_wandb_logs_each_step_once(
    where: Path,
) -> None:
    ref = _reference(where)
    _pbrl(where, ["run", "tiny.yaml", "--out", "out", *SIZE], kill=(30, "row"))
    _pbrl(where, ["run", "--resume", "--out", "out"], kill=(40, "ckpt"))
    last = _pbrl(where, ["run", "--resume", "--out", "out"])
    assert "resuming from iteration 40" in last.stdout
    got = where / "out" / TRIAL
    assert (got / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()

    history = _wandb_history(got)
    steps = [s for s, _ in history]
    assert len(list((got / "wandb").glob("offline-run-*"))) == 3  # one per launch, one run id
    assert steps == _iters(got)  # each step once, strictly increasing, none missing
    assert history == _wandb_history(ref)  # the undisturbed run's values, step for step


def test_truncate_metrics_never_resumes_past_rows_an_earlier_attempt_cut(where: Path) -> None:
    """The seed-5 hole: a newer checkpoint is left on disk while an attempt that resumed from an
    older one cut metrics.jsonl back; resuming from the newer one skipped the cut rows."""
    ref = _reference(where)
    state = where / "out" / TRIAL / "checkpoint" / "state.pt"
    _pbrl(where, ["run", "tiny.yaml", "--out", "out", *SIZE], kill=(20, "ckpt"))
    shutil.copy(state, where / "older.pt")
    _pbrl(where, ["run", "--resume", "--out", "out"], kill=(40, "ckpt"))
    shutil.copy(state, where / "newer.pt")
    assert _iters(where / "out" / TRIAL) == [10, 20, 30, 40]
    # An attempt resumes from the older checkpoint (Tune's stale record) and dies after row 30 ...
    shutil.copy(where / "older.pt", state)
    _pbrl(where, ["run", "--resume", "--out", "out"], kill=(30, "row"))
    assert _iters(where / "out" / TRIAL) == [10, 20, 30]
    # ... and the next one finds the newer checkpoint (Tune's search of the trial's folder).
    shutil.copy(where / "newer.pt", state)
    assert torch.load(state, weights_only=False)["k"] == 40
    last = _pbrl(where, ["run", "--resume", "--out", "out"])
    assert "lacks rows the checkpoint at iteration 40 had logged" in last.stdout
    got = where / "out" / TRIAL
    assert _iters(got) == _iters(ref)
    assert (got / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
    assert [s for s, _ in _wandb_history(got)] == _iters(ref)


def test_damage_names_lost_rows_and_resume_repairs_the_trial(where: Path) -> None:
    """A complete trial whose metrics.jsonl lost rows in the middle (as the committed seed-5 one
    did) is not whole: ``--resume`` says which rows and runs it again."""
    _pbrl(where, ["run", "tiny.yaml", "--out", "out", *SIZE])
    metrics = where / "out" / TRIAL / "metrics.jsonl"
    whole = metrics.read_bytes()
    lines = whole.decode().splitlines(keepends=True)
    iters = [json.loads(x)["iter"] for x in lines]
    metrics.write_text("".join(lines[:1] + lines[3:]), encoding="utf-8")  # rows 2 and 3 gone
    again = _pbrl(where, ["run", "--resume", "--out", "out"])
    assert (
        f"repairing (metrics.jsonl has no rows between iteration {iters[0]} and {iters[3]}"
        in again.stdout
    )
    assert metrics.read_bytes() == whole


def _fake_storage(monkeypatch: pytest.MonkeyPatch, trial_fs_path: Path) -> None:
    """Play a Tune session that recorded no checkpoint, with ``trial_fs_path`` as its folder."""
    storage = SimpleNamespace(trial_fs_path=str(trial_fs_path))
    context = SimpleNamespace(get_storage=lambda: storage)
    monkeypatch.setattr(tune_trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune_trainable.tune, "get_context", lambda: context)


@pytest.mark.parametrize(
    ("rows", "saved", "resumed"),
    [
        ([10, 20, 30], (20, 40), 20),  # an attempt cut the rows after 20: 40 would skip them
        ([10, 20, 30, 40], (20, 40), 40),  # whole: the newest checkpoint
        ([10, 20, 50, 60], (20, 60), 20),  # rows 30, 40 lost before the last checkpoint
    ],
)
def test_tune_reporter_restores_the_newest_checkpoint_metrics_jsonl_reaches(
    where: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[int],
    saved: tuple[int, ...],
    resumed: int,
) -> None:
    spec = load_sweep(str(where / "tiny.yaml"), overrides=SIZE).trials[0]
    trial_dir, storage = where / "out" / spec.name, where / "tune_trial"
    trial_dir.mkdir(parents=True)
    lines = "".join(json.dumps({"iter": k, "upper/leader_return": 1.0}) + "\n" for k in rows)
    (trial_dir / "metrics.jsonl").write_text(lines, encoding="utf-8")
    for i, k in enumerate(saved):
        (storage / f"checkpoint_{i:06d}").mkdir(parents=True)
        torch.save({"k": k, "row": {"iter": k}}, storage / f"checkpoint_{i:06d}" / "state.pt")
    _fake_storage(monkeypatch, storage)
    states = tune_trainable.GroupReporter(Group(spec.name, (spec,)), [trial_dir]).restore()
    assert states is not None and states[0]["k"] == resumed


SITE = """\
import os

if os.environ.get("PBRL_TEST_KILL_AT"):  # SIGKILL the first process that writes this row
    import signal
    import sys
    import time
    from pathlib import Path

    from pbrl_dist import metrics

    _at, _mark = int(os.environ["PBRL_TEST_KILL_AT"]), Path(os.environ["PBRL_TEST_KILL_MARK"])
    _log = metrics.JsonlSink.log
    _reported = []  # checkpoints this Tune trial process has handed to tune.report

    def _watch_reports():
        # the trainable's reporter thread reports checkpoints while the members compute on: note them
        mod = sys.modules.get("pbrl_dist.launch.tune_trainable")
        if mod is None or getattr(mod.GroupReporter, "_watched", False):
            return
        report = mod.GroupReporter._report

        def noted(self, row, checkpoint=None):
            report(self, row, checkpoint)
            if checkpoint is not None:
                _reported.append(row.get("iter"))

        mod.GroupReporter._report, mod.GroupReporter._watched = noted, True

    def _log_then_die(self, row):
        _watch_reports()
        _log(self, row)
        if row.get("iter") == _at and not _mark.exists():
            # die between checkpoints: once the one before this row is reported (under load the
            # reporter can lag the members by more than the rows between checkpoint and kill)
            deadline = time.monotonic() + 120
            while not _reported and time.monotonic() < deadline:
                time.sleep(0.01)
            _mark.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    metrics.JsonlSink.log = _log_then_die
"""


def _sweep_env(where: Path, **extra: str) -> dict[str, str]:
    drop = (
        "WANDB_MODE",
        "WANDB_SERVICE",
        "RAY_ADDRESS",
        "PBRL_TEST_KILL_AT",
        "PBRL_TEST_KILL_MARK",
    )
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **extra}


@pytest.mark.ray
@pytest.mark.parametrize(
    "seeds",
    # a group of one seed takes the same path with one lane; `make chaos` runs it too
    [pytest.param("[0]", marks=pytest.mark.slow), "[0,1]"],
    ids=["one-seed", "seed-group"],
)
def test_tune_trainable_killed_mid_trial_keeps_every_row_and_wandb_step(
    where: Path, seeds: str
) -> None:
    """A Tune trial process SIGKILLed between checkpoints (rows 10-30 written, checkpoint at 20)
    is retried by Tune from its checkpoint: metrics.jsonl and W&B equal an undisturbed run's. With
    two seeds the trial is a group (two batched lanes) and is killed as soon as one member writes
    row 30: every seed resumes from the group checkpoint at 20 with its rows intact."""
    tiny_sweep_file(where, seeds=seeds, wandb="offline")
    _pbrl(where, ["run", "tiny.yaml", "--out", "ref", *SIZE])
    site = where / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE, encoding="utf-8")
    mark = where / "killed"
    env = _sweep_env(
        where,
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        PBRL_TEST_KILL_AT="30",
        PBRL_TEST_KILL_MARK=str(mark),
    )
    pbrl = str(Path(sys.executable).parent / "pbrl")
    proc = subprocess.run(
        [pbrl, "sweep", "tiny.yaml", "--out", "out", "--no-report", *SIZE],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    names = sorted(p.name for p in (where / "ref").iterdir() if (p / "config.yaml").exists())
    assert len(names) == seeds.count(",") + 1 and TRIAL in names
    for name in names:
        got, ref = where / "out" / name, where / "ref" / name
        starts = [
            json.loads(x)
            for x in (got / "tune_attempts.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        assert mark.read_text() == str(starts[0]["pid"])  # the first attempt was the one killed
        assert [s.get("restored_from") for s in starts if "pid" in s] == [None, 20]
        assert (got / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
        assert [s for s, _ in _wandb_history(got)] == _iters(ref)
        assert _wandb_history(got) == _wandb_history(ref)


@pytest.mark.ray
@pytest.mark.slow  # ~3 min: `make chaos` runs it; the double kill of `pbrl run` above is in `make test`
def test_tune_sweep_driver_killed_twice_resumes_row_for_row_and_wandb_step_for_step(
    where: Path,
) -> None:
    """``pbrl sweep`` SIGKILLed (its whole process group: driver, Ray, trial, W&B) twice mid-trial,
    then ``--resume``: metrics.jsonl and the W&B history equal an undisturbed run's. W&B loses the
    rows it had not written yet at each kill; the next launch logs them from metrics.jsonl."""
    size = ["method.num_iters=1500", "dist.checkpoint_every=50", "method.log_every=10"]
    _pbrl(where, ["run", "tiny.yaml", "--out", "ref", *size])
    ref = where / "ref" / TRIAL
    metrics = where / "out" / TRIAL / "metrics.jsonl"
    pbrl = str(Path(sys.executable).parent / "pbrl")

    def launch(argv: list[str], kill_at_rows: int | None) -> int:
        with (where / "sweep.log").open("ab") as log:
            proc = subprocess.Popen(
                [pbrl, *argv, "--no-report"],
                cwd=where,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_sweep_env(where),
            )
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                rows = len(metrics.read_text().splitlines()) if metrics.exists() else 0
                if kill_at_rows is not None and rows >= kill_at_rows:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
            return proc.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    first = launch(["sweep", "tiny.yaml", "--out", "out", *size], 40)
    second = launch(["sweep", "--resume", "--out", "out"], 90)
    said = (where / "sweep.log").read_text(errors="replace")[-3000:]
    assert first == second == -signal.SIGKILL, said  # both kills came mid-trial
    assert launch(["sweep", "--resume", "--out", "out"], None) == 0, said
    got = where / "out" / TRIAL
    assert metrics.read_bytes() == (ref / "metrics.jsonl").read_bytes()
    assert [s for s, _ in _wandb_history(got)] == _iters(ref)
    assert _wandb_history(got) == _wandb_history(ref)
