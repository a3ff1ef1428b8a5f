"""``pbrl status DIR``: where a results folder stands, read without taking its lock.

Every trial's state, in one line each, then the counts, the best value so far of each method and an
ETA. The folder is only read: its lock (``.lock``) is never held, only tested (a non-blocking shared
``flock`` released at once, and only after the pid it names was found alive), so a running ``pbrl
run``, ``pbrl sweep`` or submitted job is never disturbed. States:

* **finished**: ``result.json`` says complete; **diverged**: it says diverged (metric, iteration);
  **failed**: it says failed (with a reason), or Tune's ``error.txt`` of the trial's last attempt is
  newer than anything the trial wrote since; **stopped**: ``stopped.json`` (a scheduler such as
  ASHA); these four are final.
* **running**: started in this launch of a live driver and not final (a ``pbrl run`` driver runs one
  trial at a time: its newest; a trial it started before that and left without a result failed).
* **interrupted**: started, not final, and no driver is running: ``--resume`` continues it.
* **pending**: named in ``sweep.yaml`` (``sweep.num_samples`` each for a search) and not started, or
  started by an earlier launch and not yet resumed by the live one.

Progress is the last metrics row's ``iter`` (iterations done) over the trial's total
(``algos.base.outer_iters`` of its ``config.yaml``); a pending trial's total is that of the started
trial of the same method whose name shares the most parts with it. The ETA divides the iterations
left (running and pending trials) by the running trials' summed rate (iterations since the attempt
started over the time to its last row), or, when none has a rate yet, by the rate of the finished
ones.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from pbrl_dist.config.loader import ConfigError
from pbrl_dist.launch.recovery import diverged_line, read_rows
from pbrl_dist.launch.results import FAILED, LOCK, MARKER, read_record
from pbrl_dist.metrics import scalar_metrics

FINAL = ("finished", "failed", "stopped", "diverged")
"""States a trial never leaves (without ``--resume`` of a failed one)."""
STATES = ("finished", "running", "interrupted", "failed", "stopped", "diverged", "pending")
"""Every state, in the order the counts line gives them."""
MANY = 40
"""Above this many trials, the table shows only those neither finished nor pending."""
WIDTH = 120
"""Widest line of the table."""
FRESH_S = 300.0
"""A driver on another host whose lock is not visible here counts as alive while the trials wrote
something this recently."""
ATTEMPTS = "tune_attempts.jsonl"  # launch/tune_trainable.py (not imported: it imports Ray)


@dataclass
class Driver:
    """The process holding the folder's lock, as far as this host can tell."""

    alive: bool
    holder: str = ""  # the lock file's text: "pbrl run (host H, pid P, since T)"
    since: float | None = None  # when it took the lock (epoch seconds)
    note: str = ""  # how liveness was judged, when not by the lock itself


@dataclass
class TrialState:
    """One trial's line."""

    name: str
    state: str
    method: str = ""
    done: int = 0  # iterations done (the last row's ``iter``)
    total: int | None = None
    detail: str = ""  # failed/diverged/stopped: why; pending: how many samples, or what resumes
    value: float | None = None  # the last value of the status metric
    rate: float | None = None  # iterations per second of a running trial
    wall_rate: float | None = None  # a finished trial's iterations per compute second
    started: bool = False
    guessed_total: bool = False  # a pending trial's total, taken from a similar trial


@dataclass
class Status:
    """What ``pbrl status`` prints."""

    out: Path
    name: str
    runner: str  # "local" (pbrl run) or "tune" (pbrl sweep / submit)
    driver: Driver
    trials: list[TrialState]
    metric: str | None = None
    mode: str | None = None
    now: float = field(default_factory=time.time)

    def counts(self) -> dict[str, int]:
        """{state: number of trials}, in ``STATES`` order, states with none left out."""
        n = {s: sum(t.state == s for t in self.trials) for s in STATES}
        return {s: c for s, c in n.items() if c}

    @property
    def settled(self) -> bool:
        """Every trial is in a final state."""
        return all(t.state in FINAL for t in self.trials)


def check_results_dir(out: Path) -> None:
    """``ConfigError`` unless ``out`` carries pbrl's marker."""
    if not (out / MARKER).is_file():
        raise ConfigError(f"{out}: not a pbrl results folder (no {MARKER})")


# ---- the driver ----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def _lock_held(path: Path) -> bool | None:
    """Whether some process holds ``path``'s flock (None: it cannot be tested). Never keeps it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return True if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _newest_write(out: Path) -> float | None:
    """The newest modification time of a trial's files (metrics rows, attempts, results)."""
    times = []
    for pattern in ("*/metrics.jsonl", f"*/{ATTEMPTS}", "*/result.json", "*/config.yaml"):
        for p in out.glob(pattern):
            with contextlib.suppress(OSError):
                times.append(p.stat().st_mtime)
    return max(times, default=None)


def find_driver(out: Path, now: float | None = None) -> Driver:
    """Who holds ``out``'s lock: tested, never taken (see the module's docstring)."""
    path = out / LOCK
    try:
        holder = path.read_text(encoding="utf-8").strip()
    except OSError:
        return Driver(alive=False)
    m = re.search(r"host (\S+), pid (\d+)", holder)
    host, pid = (m.group(1), int(m.group(2))) if m else (None, None)
    since = None  # the holder wrote the file when it took the lock; its mtime has no time zone
    with contextlib.suppress(OSError):
        since = path.stat().st_mtime
    here = host == platform.node()
    if here and pid is not None and not _pid_alive(pid):
        return Driver(alive=False, holder=holder, since=since)  # a dead holder holds no flock
    held = _lock_held(path)
    if held:
        return Driver(alive=True, holder=holder, since=since)
    if not here and host is not None:
        # A shared file system need not carry the lock to this host: judge by recent writes.
        newest = _newest_write(out)
        ago = (now or time.time()) - newest if newest is not None else None
        if ago is not None and ago < FRESH_S:
            note = f"its lock is not visible from here; the trials wrote {ago:.0f}s ago"
            return Driver(alive=True, holder=holder, since=since, note=note)
    return Driver(alive=False, holder=holder, since=since)


# ---- one trial ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _total_of(config_text: str) -> int | None:
    """A trial's total iterations from its ``config.yaml`` (None when unknown here)."""
    try:
        container = yaml.safe_load(config_text) or {}
    except yaml.YAMLError:
        return None
    method = container.get("method") or {}
    if isinstance(method.get("num_iters"), int):
        return int(method["num_iters"])
    if (container.get("problem") or {}).get("target"):
        return None  # a user's problem: its code is not imported just to count
    from pbrl_dist.algos.base import outer_iters
    from pbrl_dist.launch.specs import spec_from_container

    try:
        return outer_iters(spec_from_container("status", container).cfg)
    except Exception:
        return None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _last_attempt(tdir: Path) -> dict[str, Any] | None:
    """The last start recorded in ``tune_attempts.jsonl`` (a Tune trial), or None."""
    starts = [r for r in read_rows(tdir / ATTEMPTS) if "restored_from" in r or "skipped" in r]
    return starts[-1] if starts else None


def _tune_error(tdir: Path, tune_path: Path | None, attempt: dict[str, Any] | None) -> str | None:
    """The one-line error of the trial's last Tune attempt when it failed after its last write."""
    if tune_path is None or attempt is None or not attempt.get("trial_id"):
        return None
    errors = [p for p in tune_path.glob(f"*_{attempt['trial_id']}/error.txt") if p.is_file()]
    if not errors:
        return None
    err = max(errors, key=lambda p: p.stat().st_mtime)
    wrote = [p.stat().st_mtime for p in (tdir / "metrics.jsonl", tdir / ATTEMPTS) if p.exists()]
    if wrote and err.stat().st_mtime < max(wrote):
        return None  # retried since
    from pbrl_dist.launch.tune_sweep import error_line

    return error_line(err.read_text(encoding="utf-8", errors="replace"))


def _rate(tdir: Path, done: int, attempt: dict[str, Any] | None) -> float | None:
    """Iterations per second of the trial's current attempt, up to its last metrics row."""
    try:
        last = (tdir / "metrics.jsonl").stat().st_mtime
        t0, k0 = (tdir / "config.yaml").stat().st_mtime, 0
    except OSError:
        return None
    if attempt is not None and isinstance(attempt.get("time"), int | float):
        t0, k0 = float(attempt["time"]), int(attempt.get("restored_from") or 0)
    if last <= t0 or done <= k0:
        return None
    return (done - k0) / (last - t0)


def read_trial(tdir: Path, metric: str | None, tune_path: Path | None) -> TrialState:
    """The state of one started trial as its own files say it (``running`` stands for "not final")."""
    from pbrl_dist.report.tables import trial_status

    cfg_text = ""
    with contextlib.suppress(OSError):
        cfg_text = (tdir / "config.yaml").read_text(encoding="utf-8")
    try:
        cfg = yaml.safe_load(cfg_text) or {}
    except yaml.YAMLError:
        cfg = {}
    rows = read_rows(tdir / "metrics.jsonl")
    last = rows[-1] if rows else {}
    status, res = trial_status(tdir)
    t = TrialState(
        name=tdir.name,
        state="running",
        method=str((cfg.get("method") or {}).get("name", "")),
        done=int(last.get("iter", 0) or 0),
        total=_total_of(cfg_text) if cfg_text else None,
        started=True,
    )
    final = res.get("final") if res is not None else None
    if isinstance(final, dict) and isinstance(final.get("iter"), int):
        t.done = int(final["iter"])
    row = final if status == "complete" and isinstance(final, dict) else last
    if metric is not None and status != "diverged":
        t.value = scalar_metrics(row, finite_only=True).get(metric)
    if res is None and status != "complete":  # pbrl run writes why a trial raised
        with contextlib.suppress(OSError, ValueError):
            res = json.loads((tdir / FAILED).read_text(encoding="utf-8"))
            res = res if isinstance(res, dict) else None
    if res is not None and res.get("status") == "failed":
        t.state, t.detail = "failed", str(res.get("reason") or res.get("error") or "failed")
    elif status == "complete":
        t.state = "finished"
        wall = res.get("wall_s") if res is not None else None
        if isinstance(wall, int | float) and wall > 0 and t.done:
            t.wall_rate = t.done / float(wall)
    elif status == "diverged" and res is not None:
        t.state, t.detail = "diverged", diverged_line(res).removeprefix("diverged: ")
    elif status == "stopped":
        t.state, t.detail = "stopped", f"stopped by the scheduler at iteration {t.done}"
    else:
        attempt = _last_attempt(tdir)
        err = _tune_error(tdir, tune_path, attempt)
        if err is not None:
            t.state, t.detail = "failed", err
        else:
            t.rate = _rate(tdir, t.done, attempt)
    return t


def _activity(tdir: Path) -> float:
    times = [0.0]
    for name in ("config.yaml", "metrics.jsonl", ATTEMPTS):
        with contextlib.suppress(OSError):
            times.append((tdir / name).stat().st_mtime)
    return max(times)


# ---- the folder ---------------------------------------------------------------------------------


def _trial_dirs(out: Path) -> list[Path]:
    from pbrl_dist.report.tables import SKIP_DIRS

    return sorted(
        p
        for p in out.iterdir()
        if p.is_dir()
        and not p.is_symlink()
        and p.name not in SKIP_DIRS
        and not p.name.startswith(".")
        and (p / "config.yaml").is_file()
    )


def _similar_total(name: str, started: list[TrialState]) -> int | None:
    """The total of the started trial most like ``name`` (same method, most shared name parts)."""
    parts = set(name.split("__"))
    method = name.split("__")[0]
    same = [t for t in started if t.total is not None and t.name.split("__")[0] == method]
    pool = same or [t for t in started if t.total is not None]
    if not pool:
        return None
    best = max(pool, key=lambda t: len(parts & set(t.name.split("__"))))
    return best.total


def _default_metric(dirs: list[Path]) -> tuple[str, str] | None:
    """The problem's default (metric, mode) as ``pbrl report --confirm-seeds`` picks it."""
    from pbrl_dist.report.confirm import problem_default_metric

    names = set()
    for d in dirs:
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
            cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}
            names.add(str((cfg.get("problem") or {}).get("name")))
    return problem_default_metric(names.pop()) if len(names) == 1 else None


def read_status(out: Path, now: float | None = None) -> Status:
    """Read ``out`` (``ConfigError`` unless it is a pbrl results folder); write and lock nothing."""
    check_results_dir(out)
    now = time.time() if now is None else now
    try:
        record = read_record(out)
    except ConfigError:
        record = {}
    block = record.get("sweep") or {}
    samples = max(1, int(block.get("num_samples", 1) or 1)) if isinstance(block, dict) else 1
    tune_path = Path(record["tune_path"]) if record.get("tune_path") else None
    if tune_path is not None and not tune_path.is_dir():  # mounted elsewhere on this host
        tune_path = out / "_tune" / tune_path.name
    runner = str(record.get("runner", "local"))
    driver = find_driver(out, now)
    dirs = _trial_dirs(out)
    dm = _default_metric(dirs)
    metric, mode = dm if dm is not None else (None, None)
    found = {d.name: read_trial(d, metric, tune_path) for d in dirs}
    activity = {d.name: _activity(d) for d in dirs}

    # the record's order; a search's samples follow their grid trial; then folders it does not name
    names = [str(n) for n in record.get("trials") or []]
    trials: list[TrialState] = []
    for base in names:
        mine = [n for n in found if n == base or (samples > 1 and n.startswith(base + "__"))]
        trials += [found.pop(n) for n in sorted(mine)]
        detail = "a sample not drawn yet" if samples > 1 else ""
        trials += [
            TrialState(name=base, state="pending", method=base.split("__")[0], detail=detail)
            for _ in range(samples - len(mine))
        ]
    trials += list(found.values())

    started = [t for t in trials if t.started]
    for t in trials:
        if not t.started:
            t.total = _similar_total(t.name, started)
            t.guessed_total = t.total is not None
    live = [t for t in started if t.state == "running"]
    if not driver.alive:
        for t in live:
            t.state, t.rate = "interrupted", None
    else:
        since = driver.since
        earlier = [t for t in live if since is not None and activity[t.name] < since - 1]
        for t in earlier:  # not yet taken up by this launch
            t.state, t.rate = "pending", None
            t.detail = f"resumes after iteration {t.done}" if t.done else ""
        now_live = [t for t in live if t not in earlier]
        if runner == "local" and len(now_live) > 1:  # one at a time: the newest runs
            newest = max(now_live, key=lambda t: activity[t.name])
            for t in now_live:
                if t is not newest:
                    t.state, t.rate = "failed", None
                    t.detail = "ended without a result and the run went on (its output says why)"
    return Status(out, str(record.get("name", out.name)), runner, driver, trials, metric, mode, now)


# ---- the text -----------------------------------------------------------------------------------


def _short(v: float) -> str:
    from pbrl_dist.report.tables import short

    return short(float(v))


def _duration(secs: float) -> str:
    s = round(secs)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _progress(t: TrialState) -> str:
    total = "?" if t.total is None else str(t.total)
    if t.state == "pending" and not t.done:
        return f"-/{total}"
    return f"{t.done}/{total}"


def _cell(t: TrialState, metric: str | None) -> str:
    if t.detail:
        return t.detail
    if t.value is not None and metric is not None:
        return f"{metric.split('/')[-1]}={_short(t.value)}"
    return ""


def eta_line(st: Status) -> str:
    """``ETA 3m20s (...)``, or why there is none."""
    left = [t for t in st.trials if t.state in ("running", "pending", "interrupted")]
    if not left:
        return "all trials are in a final state"
    if not st.driver.alive:
        verb = "run" if st.runner == "local" else "sweep"
        return (
            f"ETA unknown: no driver is running; resume with: pbrl {verb} --resume --out {st.out}"
        )
    unknown = sum(t.total is None for t in left)
    if unknown:
        return f"ETA unknown: the total iterations of {unknown} trials are not known here"
    todo = float(sum(max(0, (t.total or 0) - t.done) for t in left))
    running = [t for t in left if t.state == "running"]
    rates = [t.rate for t in running if t.rate]
    if rates:
        rate = sum(rates)
        since = [st.now - _last_row_time(st.out / t.name) for t in running if t.rate]
        # iterations done since each running trial's last row, at its rate
        todo = max(0.0, todo - sum(r * max(0.0, s) for r, s in zip(rates, since, strict=True)))
        how = f"{rate:.3g} it/s over {len(rates)} running trial{'s' * (len(rates) > 1)}"
    else:
        walls = [t.wall_rate for t in st.trials if t.wall_rate]
        if not walls:
            return "ETA unknown: no rate yet (no metrics row since the start, no finished trial)"
        rate = sum(walls) / len(walls) * max(1, len(running))
        how = f"{rate:.3g} it/s, from the finished trials"
    guessed = " (pending totals from similar trials)" if any(t.guessed_total for t in left) else ""
    return f"ETA {_duration(todo / rate)}: {int(todo)} iterations left at {how}{guessed}"


def _last_row_time(tdir: Path) -> float:
    try:
        return (tdir / "metrics.jsonl").stat().st_mtime
    except OSError:
        return time.time()


def best_line(st: Status) -> str | None:
    """``best upper/leader_return (max) so far: pbrl_value 3.317, ...`` (None without a metric)."""
    if st.metric is None:
        return None
    best: dict[str, float] = {}
    pick = max if st.mode == "max" else min
    for t in st.trials:
        if t.value is not None and math.isfinite(t.value) and t.method:
            best[t.method] = pick(best.get(t.method, t.value), t.value)
    if not best:
        return f"best {st.metric} ({st.mode}) so far: no values yet"
    shown = ", ".join(f"{m} {_short(v)}" for m, v in best.items())
    return f"best {st.metric} ({st.mode}) so far: {shown}"


def format_status(st: Status, width: int = WIDTH) -> str:
    """The table, the counts, the best values and the ETA, no line wider than ``width``."""
    verb = "pbrl run" if st.runner == "local" else "pbrl sweep"
    if st.driver.alive:
        who = f"running: {st.driver.holder}" + (f" ({st.driver.note})" if st.driver.note else "")
    else:
        who = "no driver running"
    lines = [_clip(f"{st.name} ({verb}) in {st.out}: {who}", width)]
    shown, hidden, more = st.trials, 0, 0
    if len(st.trials) > MANY:
        shown = [t for t in st.trials if t.state not in ("finished", "pending")]
        hidden, more = len(st.trials) - len(shown), max(0, len(shown) - MANY)
        shown = shown[:MANY]
    rows = [(t.name, t.state, _progress(t), _cell(t, st.metric)) for t in shown]
    if rows:
        w_state = max(len(r[1]) for r in rows)
        w_prog = max(len(r[2]) for r in rows)
        w_name = min(max(len(r[0]) for r in rows), width - w_state - w_prog - 6 - 12)
        for name, state, prog, cell in rows:
            if len(name) > w_name:
                name = name[: w_name - 1] + "…"
            line = f"{name.ljust(w_name)}  {state.ljust(w_state)}  {prog.rjust(w_prog)}  {cell}"
            lines.append(_clip(line.rstrip(), width))
    if hidden:
        lines.append(f"({hidden} finished or pending trials not shown)")
    if more:
        lines.append(f"(and {more} more trials neither finished nor pending not shown)")
    counts = ", ".join(f"{n} {s}" for s, n in st.counts().items())
    lines.append(f"{len(st.trials)} trials: {counts}" if st.trials else "0 trials")
    best = best_line(st)
    if best:
        lines.append(_clip(best, width))
    lines.append(_clip(eta_line(st), width))
    return "\n".join(lines)


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def status_command(
    out: Path,
    *,
    watch: float | None = None,
    stream: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """``pbrl status DIR [--watch SECONDS]``: print once, or every ``watch`` seconds until every trial
    is final or no driver is left to change anything (Ctrl-C stops it quietly, exit 0)."""
    stream = stream or sys.stdout
    check_results_dir(out)
    if watch is not None and not (watch > 0 and math.isfinite(watch)):
        raise ConfigError(f"--watch {watch}: must be a number of seconds > 0")
    clear = watch is not None and stream.isatty()
    try:
        while True:
            st = read_status(out)
            text = format_status(st)
            if clear:
                stream.write("\033[H\033[J")
            elif watch is not None:
                text = f"--- {time.strftime('%H:%M:%S')}\n{text}"
            print(text, file=stream, flush=True)
            if watch is None or st.settled or not st.driver.alive:
                return 0
            sleep(watch)
    except KeyboardInterrupt:
        print("\npbrl status: stopped watching", file=stream, flush=True)
        return 0
