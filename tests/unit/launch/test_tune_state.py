"""``tune_state``: a verified copy of Tune's state, and ``repair`` before ``pbrl sweep --resume``.

Issue #20 point 8: a full disk left Tune's state files truncated and every ``--resume`` died. Here the
files are Tune's in form only (JSON experiment state, pickled tuner and search states), so no Ray
runtime is needed; tests/integration/test_tune_state.py runs the real thing.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from pbrl_dist.launch.tune_state import VERIFIED, Snapshots, repair

pytestmark = pytest.mark.chaos


def _state(trial_id: str, ckpt: str) -> str:
    trial = json.dumps({"trial_id": trial_id})
    meta = json.dumps({"last_result": {"checkpoint_dir_name": ckpt, "iter": 20}})
    return json.dumps({"trial_data": [[trial, meta]], "runner_data": {}, "stats": {}})


def _tune_folder(path: Path, session: str = "2026-01-01_00-00-00") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (path / f"basic-variant-state-{session}.json").write_bytes(pickle.dumps({"search": 1}))
    (path / f"experiment_state-{session}.json").write_text(_state("abc_00000", "checkpoint_000003"))
    (path / "t0_abc_00000" / "checkpoint_000004").mkdir(parents=True)
    return path


def test_tune_state_repair_puts_back_the_verified_copy_of_truncated_files(tmp_path: Path) -> None:
    path = _tune_folder(tmp_path / "tiny")
    assert Snapshots(path).now()
    whole = {p.name: p.read_bytes() for p in path.glob("*.*") if p.is_file()}
    assert sorted((path / VERIFIED).iterdir()) and repair(path) == (True, None)
    # The disk filled up: Tune's files are cut.
    state = next(path.glob("experiment_state-*.json"))
    state.write_text(state.read_text()[:40])
    (path / "tuner.pkl").write_bytes(b"")
    restorable, note = repair(path)
    assert restorable and note is not None and "restored pbrl's verified copy" in note
    assert state.name in note and "tuner.pkl" in note
    assert {p.name: p.read_bytes() for p in path.glob("*.*") if p.is_file()} == whole
    # The checkpoints the state names, which Tune has since rotated away, exist again (empty), so
    # the trainable resumes from the newest one left (checkpoint_000004).
    assert (path / "t0_abc_00000" / "checkpoint_000003").is_dir()
    assert repair(path) == (True, None)


def test_tune_state_snapshot_never_copies_a_damaged_state(tmp_path: Path) -> None:
    path = _tune_folder(tmp_path / "tiny")
    snaps = Snapshots(path)
    assert snaps.now()
    good = (path / VERIFIED / "tuner.pkl").read_bytes()
    (path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 2})[:-3])  # cut mid-write
    assert not snaps.now()
    assert (path / VERIFIED / "tuner.pkl").read_bytes() == good


def test_tune_state_repair_without_a_copy_uses_an_older_session_else_restarts(
    tmp_path: Path,
) -> None:
    path = _tune_folder(tmp_path / "tiny", "2026-01-01_00-00-00")
    new = "2026-01-02_00-00-00"  # a later launch, cut by the full disk, no verified copy
    (path / f"experiment_state-{new}.json").write_text('{"trial_data": [[')
    (path / f"basic-variant-state-{new}.json").write_bytes(pickle.dumps({"s": 2})[:5])
    restorable, note = repair(path)
    assert restorable and note is not None and "older state" in note
    assert sorted(p.name for p in path.glob("experiment_state-*")) == [
        "experiment_state-2026-01-01_00-00-00.json"
    ]
    assert (path / VERIFIED / "damaged" / f"experiment_state-{new}.json").exists()  # kept aside
    # Nothing whole left at all: the grid starts again (complete trials are kept by pbrl).
    (path / "tuner.pkl").write_bytes(b"\x80")
    restorable, note = repair(path)
    assert not restorable and note is not None and "starting the grid again" in note


def test_launch_callback_unpickles_as_this_launchs_callback(tmp_path: Path) -> None:
    """Tune pickles callbacks into tuner.pkl; a restored copy is the resuming launch's own."""
    import copy

    from ray import tune

    from pbrl_dist.launch.tune_state import SnapshotCallback

    first = SnapshotCallback(tmp_path).install()
    stored = pickle.dumps([first])
    second = SnapshotCallback(tmp_path).install()  # the resuming launch
    (restored,) = pickle.loads(stored)
    assert restored is second and copy.deepcopy(second) is second
    from pbrl_dist.launch import tune_state

    tune_state._THIS_LAUNCH.clear()  # unpickled where no launch installed one: it does nothing
    (stray,) = pickle.loads(stored)
    assert type(stray) is tune.Callback
