"""Tune's experiment state, kept resumable when a write of it fails (a full disk, a kill mid-copy).

Tune writes ``experiment_state-<session>.json`` with a plain ``open("w")`` and copies its state files
into ``OUT/_tune/<name>/`` non-atomically, so a full disk leaves them truncated, and a later
``Tuner.restore`` either dies (``EOFError`` on a cut pickle) or silently starts over. pbrl keeps
its own copy:

* ``snapshot(path)``, called by the sweep's progress callback as the sweep runs, checks the newest
  state set (``tuner.pkl``, the newest ``experiment_state-*.json`` and ``basic-variant-state-*.json``)
  is whole (JSON that parses; pickles whose opcodes parse to their STOP, read without loading them)
  and copies it atomically into ``path/.pbrl_verified/``;
* ``repair(path)``, before ``--resume`` restores, checks the same files; a damaged one is put back
  from the verified copy, else the damaged session's files are set aside so that Tune restores an
  older whole session, else the sweep restarts its grid (complete trials are kept, not run again).
"""

from __future__ import annotations

import contextlib
import json
import pickletools
import time
from pathlib import Path
from typing import Any, Self

from ray import tune
from ray.tune.experiment import Trial

from pbrl_dist.safe_io import UnsafePath, atomic_write_bytes

VERIFIED = ".pbrl_verified"
TUNER = "tuner.pkl"
EXPERIMENT = "experiment_state-"
SEARCH = "basic-variant-state-"


def _pickle_whole(path: Path) -> bool:
    """True if ``path`` holds one whole pickle (its opcodes parse to STOP; nothing is loaded)."""
    try:
        data = path.read_bytes()
        if not data:
            return False
        for _ in pickletools.genops(data):
            pass
    except Exception:
        return False
    return True


def _state_whole(path: Path) -> bool:
    """True if ``path`` is a whole Tune experiment state (JSON with trial and runner data)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "trial_data" in state and "runner_data" in state


def _newest(folder: Path, prefix: str) -> Path | None:
    files = sorted(folder.glob(f"{prefix}*.json"))  # Tune restores the last name (a timestamp)
    return files[-1] if files else None


def _whole(path: Path) -> bool:
    return _state_whole(path) if path.name.startswith(EXPERIMENT) else _pickle_whole(path)


def _state_set(folder: Path) -> list[Path]:
    """The files Tune restores from ``folder``: tuner.pkl, the newest search and experiment states."""
    files = [folder / TUNER]
    files += [p for p in (_newest(folder, SEARCH), _newest(folder, EXPERIMENT)) if p is not None]
    return files


def _signature(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for p in files:
        with contextlib.suppress(OSError):
            st = p.stat()
            sig.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(sig)


class Snapshots:
    """Keep ``path/.pbrl_verified`` a copy of Tune's newest whole state (at most every ``every_s``)."""

    def __init__(self, path: Path, every_s: float = 2.0) -> None:
        """Snapshots of the Tune experiment folder ``path``."""
        self.path, self.every_s = path, every_s
        self._last = 0.0
        self._sig: tuple[tuple[str, int, int], ...] = ()

    def maybe(self) -> None:
        """Take a snapshot if ``every_s`` has passed since the last try."""
        if time.monotonic() - self._last >= self.every_s:
            self.now()

    def now(self) -> bool:
        """Copy Tune's state set if it changed and every file of it is whole; True if copied.

        Best effort: a failure (a full disk) leaves the previous verified copy whole, and the sweep
        goes on.
        """
        self._last = time.monotonic()
        files = _state_set(self.path)
        sig = _signature(files)
        if (
            sig == self._sig
            or len(sig) < len(files)
            or not any(p.name.startswith(EXPERIMENT) for p in files)
        ):
            return False
        try:
            blobs = {p.name: p.read_bytes() for p in files}
        except OSError:
            return False
        if not all(_whole(p) for p in files):
            return False  # Tune is writing it right now, or a write failed: keep the last copy
        dest = self.path / VERIFIED
        try:
            dest.mkdir(exist_ok=True)
            for p in files:  # the experiment state last: it names the checkpoints to restore
                atomic_write_bytes(dest / p.name, blobs[p.name], root=self.path)
            for old in dest.glob("*.*"):  # an older session's (the damaged/ folder stays)
                if old.name not in blobs and old.is_file():
                    old.unlink()
        except (OSError, UnsafePath):
            return False
        self._sig = sig
        return True


def _set_aside(path: Path, bad: list[Path]) -> None:
    """Move damaged state files out of Tune's sight (kept for a post-mortem), never delete them."""
    aside = path / VERIFIED / "damaged"
    aside.mkdir(parents=True, exist_ok=True)
    for p in bad:
        with contextlib.suppress(OSError):
            p.replace(aside / p.name)


def _referenced_checkpoints(state_file: Path) -> list[tuple[str, str]]:
    """(trial id, checkpoint folder name) of each trial's last reported checkpoint in a state file."""
    refs = []
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        for trial_json, meta_json in state.get("trial_data") or []:
            trial_id = json.loads(trial_json).get("trial_id")
            last = json.loads(meta_json).get("last_result") or {}
            name = last.get("checkpoint_dir_name")
            if isinstance(trial_id, str) and isinstance(name, str) and "/" not in name:
                refs.append((trial_id, name))
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    return refs


def _placeholders(path: Path, state_file: Path) -> int:
    """Give each checkpoint an older state names, that Tune has deleted since, an empty folder.

    Tune would refuse to restore such a trial ("does not exist on storage anymore"); from an empty
    folder the pbrl trainable resumes at the newest checkpoint left in the trial's folder
    (``TuneReporter.restore``), or from scratch. Returns how many were made.
    """
    made = 0
    for trial_id, name in _referenced_checkpoints(state_file):
        head, _, digits = name.rpartition("_")
        if not digits.isdigit():
            continue
        # Tune's record of a trial's checkpoint can lag its last result by a save or two.
        wanted = [
            f"{head}_{j:0{len(digits)}d}" for j in range(max(0, int(digits) - 4), int(digits) + 1)
        ]
        for tdir in path.glob(f"*_{trial_id}"):
            if not tdir.is_dir() or tdir.is_symlink():
                continue
            for ckpt in wanted:
                with contextlib.suppress(OSError):
                    if not (tdir / ckpt).exists():
                        (tdir / ckpt).mkdir()
                        made += 1
    return made


def repair(path: Path) -> tuple[bool, str | None]:
    """Make Tune's state in ``path`` restorable before ``--resume``; return (restorable, note).

    ``restorable`` False: nothing whole is left to restore (``tuner.pkl`` or every experiment state
    is damaged and no verified copy exists): the caller starts the grid afresh in the same folder.
    ``note``: one line saying what was damaged and what was done, or None when all was whole.
    """
    for err in path.glob("*/error.pkl"):  # a trial's error, cut: Tune's results cannot load it
        if not _pickle_whole(err):
            with contextlib.suppress(OSError):
                err.unlink()
    files = _state_set(path)
    bad = [p for p in files if not p.exists() or not _whole(p)]
    if not bad:
        state = _newest(path, EXPERIMENT)
        if state is not None:  # a plain kill: whole files that name checkpoints rotated away
            _placeholders(path, state)
        return True, None
    names = ", ".join(p.name for p in bad)
    good = path / VERIFIED
    copy = _state_set(good) if good.is_dir() else []
    if copy and all(p.exists() and _whole(p) for p in copy):
        keep = {p.name for p in copy}
        # Newer sessions than the copy's are the damaged ones: out of the way, then the copy back.
        _set_aside(path, [p for p in files if p.name not in keep and p in bad])
        for prefix in (EXPERIMENT, SEARCH):
            newest = _newest(good, prefix)
            for p in path.glob(f"{prefix}*.json"):
                if newest is not None and p.name > newest.name:
                    _set_aside(path, [p])
        for p in copy:
            atomic_write_bytes(path / p.name, p.read_bytes(), root=path)
        state = _newest(path, EXPERIMENT)
        if state is not None:
            _placeholders(path, state)
        when = time.strftime("%H:%M:%S", time.localtime(max(p.stat().st_mtime for p in copy)))
        return True, (
            f"Tune's state was damaged ({names}; e.g. a full disk); "
            f"restored pbrl's verified copy of {when}"
        )
    # No whole copy: set the damaged files aside; Tune then restores an older whole session.
    while True:
        files = _state_set(path)
        bad = [p for p in files if p.name != TUNER and p.exists() and not _whole(p)]
        if not bad:
            break
        _set_aside(path, bad)
    tuner_ok = _pickle_whole(path / TUNER)
    state = _newest(path, EXPERIMENT)
    if tuner_ok and state is not None:
        _placeholders(path, state)
        return (
            True,
            f"Tune's state was damaged ({names}); resuming from its older state {state.name}",
        )
    return False, (
        f"Tune's state was damaged ({names}) and nothing whole is left; starting the grid again in "
        "the same folder (complete trials are kept, unfinished ones start over)"
    )


_THIS_LAUNCH: dict[str, tune.Callback] = {}


def this_launch(kind: str) -> tune.Callback:
    """This launch's callback of ``kind`` (``LaunchCallback.install``), else one that does nothing."""
    return _THIS_LAUNCH.get(kind) or tune.Callback()


class LaunchCallback(tune.Callback):
    """A callback that belongs to one launch of a sweep.

    Tune pickles its callbacks into the experiment's ``tuner.pkl`` and ``Tuner.restore`` unpickles
    them, so a resumed sweep would run the first launch's copies (counting from zero, printing to a
    gone console). A launch callback pickles as a reference, "this launch's callback of my kind":
    ``install`` it before the ``Tuner`` is made or restored and every copy Tune makes is it.
    """

    kind = ""

    def install(self) -> Self:
        """Make this the callback of its kind that Tune's copies stand for; return it."""
        _THIS_LAUNCH[self.kind] = self
        return self

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (this_launch, (self.kind,))


class SnapshotCallback(LaunchCallback):
    """Keeps ``path/.pbrl_verified`` current (``Snapshots``) as the sweep runs."""

    kind = "snapshot"

    def __init__(self, path: Path) -> None:
        """Snapshots of the Tune experiment folder ``path``."""
        self.snaps = Snapshots(path)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.snaps.maybe()

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.snaps.now()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.snaps.now()
