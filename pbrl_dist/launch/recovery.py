"""Recovery, kept apart from the main path: what lets a stopped, killed or damaged run go on exactly.

- **Is a trial done?** ``final_result`` / ``completed_result`` / ``diverged_result`` read a trial's
  ``result.json`` only when its ``config.yaml`` is this very config (or an older pbrl's, lacking only
  settings added since at their defaults: ``new_defaults_only``); ``damage`` says why files that should
  be whole are not.
- **Resuming a trial:** ``truncate_metrics`` / ``cut_rows`` make ``metrics.jsonl`` agree with the
  checkpoint a trial resumes from (``metrics_cover``), or start it afresh (``FreshStart``) when the rows
  before the checkpoint are lost.
- **Resuming a sweep:** ``check_resume`` decides whether ``--resume`` may continue a results folder with
  these trials.
- **Reaping:** processes of embedded Rays whose pbrl driver was killed are stopped only from the
  user's registry of the sessions pbrl itself started (``remember_session``, ``reap_leftovers``), never
  from anything in a results folder.

``trial``, ``local``, ``tune_sweep``, ``tune_trainable`` and ``status`` (the main path) call these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pbrl_dist.algos.base import Checkpointer
from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec
from pbrl_dist.launch.results import read_record
from pbrl_dist.launch.specs import fingerprint
from pbrl_dist.safe_io import atomic_write_text

RESULT = "result.json"


# --- Is a trial done, and whole? -----------------------------------------------------------------


def cut_rows(path: Path, state: dict[str, Any] | None) -> None:
    """Make metrics.jsonl agree with the state the run resumes from (none: start afresh)."""
    if state is None:
        path.unlink(missing_ok=True)
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if (row := _row(line)) is not None and row.get("iter", 0) <= state["k"]
    ]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def completed_result(spec: TrialSpec, trial_dir: Path) -> dict[str, Any] | None:
    """The trial's ``result.json`` if it completed with this very config, else None (a diverged
    trial is not complete: see ``final_result``).

    A config written by an older pbrl counts as this very config when all it lacks is settings added
    since, at their defaults (they change nothing in what ran; ``new_defaults_only``).
    """
    done = final_result(spec, trial_dir)
    return done if done is not None and done.get("status", "complete") == "complete" else None


def diverged_result(spec: TrialSpec, trial_dir: Path) -> dict[str, Any] | None:
    """The trial's ``result.json`` if it diverged with this very config (a final state: ``--resume``
    does not run it again), else None."""
    done = final_result(spec, trial_dir)
    return done if done is not None and done.get("status") == "diverged" else None


def diverged_line(done: dict[str, Any]) -> str:
    """``diverged: lower/gap = nan at iteration 10`` for a diverged trial's ``result.json``."""
    metric = str(done.get("metric"))
    value = (done.get("final") or {}).get(metric)
    return f"diverged: {metric} = {value} at iteration {done.get('iter')}"


def final_result(spec: TrialSpec, trial_dir: Path) -> dict[str, Any] | None:
    """The trial's ``result.json`` if it reached a final state (complete or diverged) with this very
    config, else None."""
    res, cfg = trial_dir / RESULT, trial_dir / "config.yaml"
    try:
        text = cfg.read_text(encoding="utf-8")
        if text != spec.to_yaml() and new_defaults_only(text, spec) is None:
            return None
        done = json.loads(res.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if isinstance(done, dict) and "final" in done else None


_NO_DEFAULT = object()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _default_of(cfg: Any, key: str) -> Any:
    """The schema default of a dotted config key (``method.lr``), or a sentinel when it has none."""
    *path, leaf = key.split(".")
    obj = cfg
    for part in path:
        obj = getattr(obj, part, None)
    for f in dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ():
        if f.name == leaf:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return _NO_DEFAULT


def new_defaults_only(old_yaml: str, spec: TrialSpec) -> list[str] | None:
    """The settings ``spec`` has that a config written by an older pbrl lacks, if each is at its
    default and nothing else differs; else None (an empty list: the same config)."""
    old = _flat(yaml.safe_load(old_yaml) or {})
    new = _flat(yaml.safe_load(spec.to_yaml()) or {})
    added = []
    for key in set(old) | set(new):
        if old.get(key, _NO_DEFAULT) == new.get(key, _NO_DEFAULT):
            continue
        if key in old or new[key] != _default_of(spec.cfg, key):
            return None
        added.append(key)
    return sorted(added)


class FreshStart:
    """A checkpointer that saves as ``inner`` does but restores nothing (start from scratch)."""

    def __init__(self, inner: Checkpointer) -> None:
        self.inner, self.every = inner, inner.every

    def restore(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        self.inner.save(state)


def truncate_metrics(path: Path, ckpt: Checkpointer | None, name: str) -> Checkpointer | None:
    """Make metrics.jsonl agree with the state the trial resumes from; return the checkpointer to use.

    Rows past the checkpoint (written before a crash) are dropped. A checkpoint that metrics.jsonl
    does not reach (``metrics_cover``: the file is gone, or lost rows the checkpoint had logged, e.g.
    an earlier attempt cut it back to an older checkpoint) cannot give back the curve before it: the
    trial starts over, and says why. (This is how a resumed trial once lost 100k steps of rows.)
    """
    state = ckpt.restore() if ckpt is not None else None
    if state is not None and not metrics_cover(path, state):
        why = (
            "metrics.jsonl is gone"
            if not path.exists()
            else f"metrics.jsonl lacks rows the checkpoint at iteration {state['k']} had logged"
        )
        print(
            f"    {name}: {why}, so the rows before iteration {state['k']} cannot be recovered; "
            "starting the trial from scratch",
            flush=True,
        )
        assert ckpt is not None
        ckpt, state = FreshStart(ckpt), None
    cut_rows(path, state)
    return ckpt


def metrics_cover(path: Path, state: dict[str, Any]) -> bool:
    """Whether ``path`` (metrics.jsonl) holds every row logged up to the checkpoint ``state``.

    Every loop logs a row before it checkpoints and keeps its last logged row in the state
    (``state["row"]``); the file covers the checkpoint when its last whole row at or before
    iteration ``k`` is that row (none when the loop had logged none). A state without ``row`` (a
    loop that does not keep it) is taken as covered when the file exists.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    if "row" not in state:
        return True
    want = (state.get("row") or {}).get("iter")
    iters = [
        int(row["iter"])
        for row in map(_row, lines)
        if row is not None and isinstance(row.get("iter"), int) and row["iter"] <= int(state["k"])
    ]
    return (iters[-1] if iters else None) == want and lost_rows(iters) is None


def lost_rows(iters: Sequence[int]) -> tuple[int, int] | None:
    """Two neighbouring logged iterations with at least one row lost between them, else None.

    Rows come at a steady spacing (every ``log_every`` iterations, or a steady number of env steps);
    only the last may come early (the run's end). A gap of twice the smallest spacing or more is
    lost rows.
    """
    pairs = list(itertools.pairwise(iters))
    if len(pairs) < 2:
        return None
    spacing = min(b - a for a, b in pairs[:-1])
    return next(((a, b) for a, b in pairs if spacing > 0 and b - a >= 2 * spacing), None)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The whole rows of a metrics.jsonl (none when it is missing)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [r for r in map(_row, lines) if r is not None]


def _row(line: str) -> dict[str, Any] | None:
    """One metrics row, or None for an empty or partly written line (a crash mid-write)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def damage(spec: TrialSpec, trial_dir: Path) -> str | None:
    """Why a trial that should be complete is not whole, or None when every file checks out.

    Checks: the folder, ``result.json`` (readable, this very config), ``final_state.npz`` (loads),
    ``metrics.jsonl`` (every line whole, iterations increasing from the start with no gap of two
    rows' spacing or more, ending where the result says).
    """
    if not trial_dir.is_dir():
        return "its folder is missing"
    done = completed_result(spec, trial_dir)
    if done is None:
        return "result.json is missing, unreadable or for another config"
    try:
        with np.load(trial_dir / "final_state.npz") as z:
            list(z.keys())
    except Exception:
        return "final_state.npz is missing or unreadable"
    try:
        lines = (trial_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "metrics.jsonl is missing"
    rows = [_row(x) for x in lines if x.strip()]
    if not rows or any(r is None or not isinstance(r.get("iter"), int) for r in rows):
        return "metrics.jsonl is empty or has a damaged line"
    iters = [int(r["iter"]) for r in rows if r is not None]
    steps = sorted(b - a for a, b in itertools.pairwise(iters))
    if any(d <= 0 for d in steps):
        return "metrics.jsonl rows are out of order"
    if steps and iters[0] > steps[len(steps) // 2]:
        return f"metrics.jsonl starts at iteration {iters[0]}: its first rows are missing"
    gap = lost_rows(iters)
    if gap is not None:
        return f"metrics.jsonl has no rows between iteration {gap[0]} and {gap[1]} (rows are lost)"
    final_iter = done["final"].get("iter")
    if isinstance(final_iter, int) and iters[-1] != final_iter:
        return f"metrics.jsonl ends at iteration {iters[-1]} but result.json at {final_iter}"
    return None


# --- Resuming a sweep -----------------------------------------------------------------------------


def _same_but_new_defaults(sweep: Sweep, out: Path, record: dict[str, Any]) -> list[str] | None:
    """Settings a newer pbrl added at their defaults, if that is all that differs from the recorded
    run (same trial names; every started trial's config.yaml equal but for them); else None."""
    if list(record.get("trials") or []) != [t.name for t in sweep.trials]:
        return None
    added: set[str] = set()
    for t in sweep.trials:
        path = out / t.name / "config.yaml"
        if not path.exists():
            continue
        keys = new_defaults_only(path.read_text(encoding="utf-8"), t)
        if keys is None:
            return None
        added.update(keys)
    return sorted(added)


def check_resume(sweep: Sweep, out: Path) -> dict[str, Any]:
    """Return ``out``'s record if ``--resume`` may continue it with these trials, else ``ConfigError``.

    A run recorded by an older pbrl resumes when the only difference is settings added since, at their
    defaults (they change nothing in what was run); this is said in one line.
    """
    record = read_record(out)
    fp = record.get("fingerprint")
    if (
        fp is not None
        and fp != fingerprint(sweep.trials)
        and (added := _same_but_new_defaults(sweep, out, record))
    ):
        print(
            f"--resume: the run in {out} predates {', '.join(added)}; resuming with "
            f"{'it' if len(added) == 1 else 'them'} at the default",
            flush=True,
        )
        return record
    if fp not in (None, fingerprint(sweep.trials)):
        raise ConfigError(
            f"--resume: the trials differ from the run in {out} (sweep file, --smoke or key=value "
            "overrides changed, or an interpolation such as ${oc.env:X} resolves differently now); "
            "pass the same ones as the first run (or none: the recorded ones are used), or start a "
            "new --out"
        )
    return record


# --- Reaping what a killed driver left ---------------------------------------------------------------


SESSION_FILE = ".ray_session"
"""A note in the results folder of the Ray session its driver runs: for people, never read by pbrl."""


def _registry() -> Path:
    """Per-user records of the embedded Ray sessions pbrl started (one JSON file each).

    The only thing that decides what ``reap_leftovers`` may kill: it lies outside every results
    folder, in the user's own state folder (``PBRL_STATE_DIR`` or ``~/.cache/pbrl_dist``).
    """
    root = os.environ.get("PBRL_STATE_DIR") or str(Path.home() / ".cache" / "pbrl_dist")
    return Path(root) / "ray_sessions"


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def remember_session(out: Path) -> None:
    """Record the session of the Ray this process started, in the user's registry (``_registry``).

    The record names the session folder this process got from its own ``ray.init``, the driver's
    pid and kernel start time, the host and the boot: together they prove that pbrl started that
    session, and tell a dead driver from a live one (or a reused pid). ``out`` gets a note for
    people (``SESSION_FILE``) that pbrl never reads.
    """
    import json
    import platform

    from pbrl_dist.launch.ray_session import started_session  # imports Ray: only once it runs

    session = started_session()
    if session is None:
        return
    with contextlib.suppress(Exception):
        record = {
            "session": session,
            "driver_pid": os.getpid(),
            "driver_start": _start_time(os.getpid()),
            "host": platform.node(),
            "boot_id": _boot_id(),
        }
        reg = _registry()
        reg.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = reg / f".{Path(session).name}.tmp"
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(reg / Path(session).name)
        (out / SESSION_FILE).write_text(session + "\n", encoding="utf-8")


def forget_session(out: Path) -> None:
    """The Ray this process started was shut down cleanly: drop its record (and the note in ``out``)."""
    with contextlib.suppress(OSError):
        for rec in _registry().iterdir():
            r = _read_record(rec)
            if r is not None and r["driver_pid"] == os.getpid():
                rec.unlink(missing_ok=True)
    (out / SESSION_FILE).unlink(missing_ok=True)


def _read_record(path: Path) -> dict[str, Any] | None:
    """A registry record, or None when it is not one pbrl wrote (then it never decides anything)."""
    import json

    try:
        r = json.loads(path.read_text(encoding="utf-8"))
        session, pid = str(r["session"]), int(r["driver_pid"])
        start = r["driver_start"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    name = Path(session).name
    if not (name.startswith("session_") and name.endswith(f"_{pid}") and path.name == name):
        return None  # Ray names the session of a head it starts after the starting process
    if not isinstance(start, int):
        return None
    return {**r, "session": session, "driver_pid": pid}


def reap_leftovers(out: Path) -> int:
    """Kill what is left of embedded Rays whose pbrl driver was killed; return how many processes.

    Ray's agents outlive a SIGKILLed driver (re-parented to init). Only the user's registry
    (``_registry``, outside every results folder) names candidates; ``out`` (and any file in it) plays
    no part. A session is reaped only when its record proves pbrl started it (written by that driver,
    on this host and boot) and that driver is gone (no process with its pid and start time); a
    process belongs to it when its command line or one of its open files names that session folder.
    """
    reg = _registry()
    try:
        st = reg.stat()
    except OSError:
        return 0
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return 0  # a registry others could write decides nothing
    import platform

    killed = 0
    for path in sorted(reg.iterdir()):
        if path.name.startswith("."):
            continue
        rec = _read_record(path)
        if rec is None:
            continue
        if rec.get("host") != platform.node():
            continue  # another machine's (a shared home): not ours to judge
        if rec.get("boot_id") != _boot_id():
            path.unlink(missing_ok=True)  # its processes ended with that boot
            continue
        pid = rec["driver_pid"]
        if pid == os.getpid() or _start_time(pid) == rec["driver_start"]:
            continue  # its driver is alive
        killed += _reap(rec["session"])
        path.unlink(missing_ok=True)
    return killed


def _reap(session: str) -> int:
    """Stop every process of a dead pbrl driver's Ray session and remove its folder."""
    killed = 0
    for pid in _pids_using(session):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}").stat().st_uid != os.getuid():
                continue  # never another user's process
            os.kill(pid, signal.SIGKILL)
            killed += 1
    shutil.rmtree(session, ignore_errors=True)
    return killed


def _pids_using(session: str) -> list[int]:
    """Processes whose command line or open files mention ``session`` (Linux /proc; else none)."""
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if session in (d / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(d.name))
                continue
            for fd in (d / "fd").iterdir():
                if os.readlink(fd).startswith(session):
                    found.append(int(d.name))
                    break
        except OSError:
            continue
    return found
