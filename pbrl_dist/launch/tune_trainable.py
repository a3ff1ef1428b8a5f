"""The Tune trainable: one Tune trial = one *group* — a configuration over all of its seeds.

``trial_fn(config, *, groups, out, ...)`` looks up the already-validated ``Group`` named
``config["trial"]`` (``launch/groups.py``; its sampled ``config["search"]`` values, if any, applied to
every member alike) and runs its members — each into ``OUT/<member name>/`` with the files of ``pbrl
run`` (config.yaml, metrics.jsonl, final_state.npz, result.json) and the numbers it has alone:

- as **lanes** of one batched computation (``Group.batched``: tabular problems with exact gradients;
  ``trial.run_lanes_trial``), or
- **side by side**, one thread per member in this process (``trial.run_trial`` each), the group's
  placement group holding every member's learner CPUs and actors.

``GroupReporter`` stands between the members and Tune (the only caller of ``tune.report``, from this
thread):

- a metrics row goes to Tune once **every** member has logged that iteration, as the across-seed
  aggregate of each metric (``sweep.aggregate``: mean or IQM; lists such as per-game values count as
  their mean first) plus ``seeds`` (how many): the searcher and ASHA see configurations, never seeds,
  and ASHA stops a group as a whole;
- every ``dist.checkpoint_every`` iterations (and at the end) the members' whole states (one state for
  batched lanes) are saved together as one ``tune.Checkpoint`` reported with that iteration's row;
  the last one only once every member's files are written (ASHA at ``max_t`` may stop the trial as
  soon as it sees it);
- on a retry, the newest group checkpoint every member's ``metrics.jsonl`` reaches gives each member
  its state back and the group continues bitwise;
- a member that fails stops the group and fails it (Tune retries the group from its checkpoint); a
  member whose metrics go NaN or ±inf is *diverged* (its ``result.json`` says so, a final state) and
  the group reports no step past it (no aggregate over fewer seeds), while the other members finish.

A group of one (``sweep.trials: seed``) keeps the checkpoint layout of a single trial (``state.pt``),
so a sweep started before groups resumes as it was.

Each start of a group appends one line to every member's ``OUT/<member>/tune_attempts.jsonl`` (pid,
node id of the learner and of every actor, the iteration it resumed from, or ``skipped`` when the
member had already finished: a restored sweep never runs a finished group twice).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from pbrl_dist import cadence
from pbrl_dist.algos.base import outer_iters
from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.executors.protocols import Runner
from pbrl_dist.launch.checkpoints import STATE_FILE, load_state, safe_load
from pbrl_dist.launch.groups import Group, group_spec
from pbrl_dist.launch.recovery import completed_result, damage, diverged_result, metrics_cover
from pbrl_dist.launch.results import FAILED, inside
from pbrl_dist.launch.trial import Launch, Trial, run_lanes_trial, run_trial
from pbrl_dist.launch.wandb_sink import teardown as wandb_teardown
from pbrl_dist.metrics import Diverged, scalar_metrics
from pbrl_dist.safe_io import open_append

ATTEMPTS = "tune_attempts.jsonl"
FAIL_MARKER = ".fail_once_done"
FAIL_ONCE_ENV = "PBRL_TEST_FAIL_ONCE_AT_ITER"
"""Testing only, read by the driver (not part of any config): every Tune trial of the launch raises
once, right after saving its checkpoint at the first checkpoint iteration ≥ this value; a marker
file in the (first member's) trial folder makes the retry run through (tests that Tune retries from
the checkpoint)."""
TMP_DIR = ".ckpt_tmp"
GROUP_FILE = "group.json"
BATCH = -1
"""The lane key of a batched group's one state (all lanes in one)."""


def _tune_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers only; lists (per-game values) as their mean; non-finite values kept."""
    return scalar_metrics(row, finite_only=False)


def aggregate_rows(rows: Sequence[Mapping[str, Any]], how: str = "mean") -> dict[str, Any]:
    """The group's row: every metric all members report, as the mean (or IQM) over members.

    ``iter`` (and any other value equal across members, such as ``env_frames``) stays as it is; a NaN
    or ±inf in any member makes the mean non-finite (IQM: NaN), so divergence is never averaged away.
    """
    flat = [_tune_metrics(r) for r in rows]
    keys = [k for k in flat[0] if all(k in f for f in flat[1:])]
    out: dict[str, Any] = {}
    for k in keys:
        vals = [float(f[k]) for f in flat]
        if all(v == vals[0] for v in vals) and isinstance(flat[0][k], int):
            out[k] = flat[0][k]  # iter, env_frames: the shared step
        elif how == "iqm" and all(math.isfinite(v) for v in vals):
            from scipy.stats import trim_mean

            out[k] = float(trim_mean(vals, 0.25))  # rliable's aggregate_iqm
        elif how == "iqm":
            out[k] = math.nan
        else:
            out[k] = sum(vals) / len(vals)
    out["seeds"] = len(rows)
    return out


class Stopped(BaseException):
    """Raised in a member's thread when its group stops (Tune stopped it, or another member failed)."""


def _lane_file(lane: int, n: int) -> str:
    if lane == BATCH:
        return "batch.pt"
    return STATE_FILE if n == 1 else f"lane_{lane}.pt"


class GroupReporter:
    """Tune side of one group: the members' sink and checkpointer, Tune's only reporter.

    Members (threads) only put events on a queue; ``serve`` (this trial's main thread) turns them into
    ``tune.report`` calls. A row at a checkpoint iteration is held back until every member's state of
    that iteration is in, so metrics and checkpoint go out in one report.
    """

    def __init__(
        self,
        group: Group,
        dirs: Sequence[Path],
        *,
        restart_corrupt: bool = False,
        fail_at: int = 0,
        aggregate: str = "mean",
    ) -> None:
        """Read ``dist.checkpoint_every`` and the iteration count of the group's (equal) members."""
        first = group.members[0].cfg
        self.group, self.dirs, self.n = group, list(dirs), group.size
        self.restart_corrupt, self.fail_at, self.aggregate = restart_corrupt, fail_at, aggregate
        self.every = int(first.dist.checkpoint_every)
        self.num_iters = outer_iters(first)
        self.lanes = [BATCH] if group.batched else list(range(self.n))
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.stop = threading.Event()
        self.rows: dict[int, dict[int, dict[str, Any]]] = {}
        self.states: dict[int, dict[int, bytes]] = {}
        self.held: dict[int, dict[str, Any]] = {}
        self.final: tuple[int, dict[int, bytes]] | None = None
        self.diverged_at: int | None = None
        self.reported = 0
        self._restored: dict[int, dict[str, Any]] | None = None
        self._restore_done = False

    # --- member side (threads) --------------------------------------------------------------------
    def lane_sink(self, lane: int) -> _LaneSink:
        """Member ``lane``'s extra metric sink."""
        return _LaneSink(self, lane)

    def lane_ckpt(self, lane: int) -> _LaneCkpt:
        """Member ``lane``'s checkpointer (``BATCH``: the batched lanes' one state)."""
        return _LaneCkpt(self, lane)

    def _put(self, *event: Any) -> None:
        if self.stop.is_set():
            raise Stopped
        self.events.put(event)

    # --- restore ----------------------------------------------------------------------------------
    def restore(self) -> dict[int, dict[str, Any]] | None:
        """Every lane's state of the group's newest checkpoint that every member's metrics.jsonl
        reaches (cached), or None.

        Tune hands back the checkpoint its last experiment snapshot recorded; after a driver kill
        that can be older than what the group saved since (or none at all), so the group's storage
        folder is searched too. An attempt that resumed from an older checkpoint cut the rows after
        it, and a newer checkpoint left on disk must not skip over them (``metrics_cover``).
        """
        if self._restore_done:
            return self._restored
        self._restore_done = True
        mine: list[tuple[str, dict[int, dict[str, Any]]]] = []
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                got = self._load(Path(d), shown=str(ckpt.path))
            if got is not None:
                mine = [("Tune's record", got)]
        found = sorted([*mine, *self._on_disk()], key=lambda c: _k(c[1]), reverse=True)
        covered = [c for c in found if self._covers(c[1])]
        pick = covered[0] if covered else (found[0] if found else None)
        if pick is not None:
            self._restored = pick[1]
            if not mine or pick[1] is not mine[0][1]:
                why = (
                    "newer than Tune's record"
                    if not mine or _k(pick[1]) > _k(mine[0][1])
                    else "the newest checkpoint metrics.jsonl reaches"
                )
                print(f"    resuming from {pick[0]} ({why})", flush=True)
        return self._restored

    def _load(self, d: Path, *, shown: str) -> dict[int, dict[str, Any]] | None:
        """The lanes' states in checkpoint folder ``d``, or None if it is not this group's."""
        if self.n > 1:
            try:
                meta = json.loads((d / GROUP_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if meta.get("members") != [m.name for m in self.group.members]:
                return None
        out: dict[int, dict[str, Any]] = {}
        for lane in self.lanes:
            name = _lane_file(lane, self.n)
            st = load_state(d / name, restart_corrupt=self.restart_corrupt, shown=f"{shown}/{name}")
            if st is None:
                return None
            out[lane] = st
        return out if len({int(s["k"]) for s in out.values()}) == 1 else None

    def _on_disk(self) -> list[tuple[str, dict[int, dict[str, Any]]]]:
        """The loadable group checkpoints in this trial's storage folder: (path, states)."""
        try:
            trial_path = Path(tune.get_context().get_storage().trial_fs_path)
        except Exception:
            return []  # remote storage or no Tune session: Tune's record is all there is
        found = []
        for d in sorted(p for p in trial_path.glob("checkpoint_*") if p.is_dir()):
            out: dict[int, dict[str, Any]] = {}
            for lane in self.lanes:
                try:
                    st = safe_load(d / _lane_file(lane, self.n))
                except Exception:
                    break  # a damaged candidate is no candidate
                if not (isinstance(st, dict) and isinstance(st.get("k"), int)):
                    break
                out[lane] = st
            else:
                if self._load_meta_ok(d) and len({int(s["k"]) for s in out.values()}) == 1:
                    found.append((str(d), out))
        return found

    def _load_meta_ok(self, d: Path) -> bool:
        if self.n == 1:
            return True
        try:
            meta = json.loads((d / GROUP_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(meta.get("members") == [m.name for m in self.group.members])

    def _covers(self, states: dict[int, dict[str, Any]]) -> bool:
        for i, d in enumerate(self.dirs):
            st = states.get(BATCH, states.get(i))
            if st is None or not metrics_cover(d / "metrics.jsonl", st):
                return False
        return True

    def lane_state(self, lane: int) -> dict[str, Any] | None:
        """The restored state of ``lane`` (``BATCH`` for batched lanes), or None."""
        got = self.restore()
        return None if got is None else got.get(lane)

    # --- main thread: events → tune.report --------------------------------------------------------
    def serve(self, alive: Callable[[], bool]) -> list[tuple[int, str, Any]]:
        """Turn the members' events into reports until every member has ended; return their ends
        ``(lane, status, detail)``; on a member's error stop the others and raise it."""
        ends: dict[int, tuple[str, Any]] = {}
        try:
            while len(ends) < self.n:
                try:
                    ev = self.events.get(timeout=1.0)
                except queue.Empty:
                    if not alive():
                        raise RuntimeError("a member's thread ended without a word") from None
                    continue
                kind = ev[0]
                if kind == "row":
                    self._on_row(ev[1], ev[2])
                elif kind == "ckpt":
                    self._on_ckpt(ev[1], ev[2], ev[3])
                elif kind == "end":
                    ends[ev[1]] = (ev[2], ev[3])
                    if ev[2] == "diverged" and isinstance(ev[4], int):
                        self.diverged_at = min(ev[4], self.diverged_at or ev[4])
                elif kind == "error":
                    raise _MemberFailed.of(self.group.members[ev[1]].name, ev[2])
        except BaseException:
            self.stop.set()  # the members raise Stopped at their next row or checkpoint
            raise
        self._finish()
        return [(lane, s, d) for lane, (s, d) in sorted(ends.items())]

    def _past_divergence(self, k: int) -> bool:
        return self.diverged_at is not None and k > self.diverged_at

    def _on_row(self, lane: int, row: dict[str, Any]) -> None:
        k = row.get("iter")
        if not isinstance(k, int):
            return
        got = self.rows.setdefault(k, {})
        got[lane] = row
        if len(got) < self.n:
            return
        agg = aggregate_rows([got[i] for i in range(self.n)], self.aggregate)
        del self.rows[k]
        self._flush_held(before=k)
        if self._past_divergence(k):
            return
        if cadence.due(k, self.every, self.num_iters):
            self.held[k] = agg  # its checkpoint comes next
        else:
            self._report(agg)

    def _on_ckpt(self, lane: int, k: int, data: bytes) -> None:
        got = self.states.setdefault(k, {})
        got[lane] = data
        if len(got) < len(self.lanes):
            return
        del self.states[k]
        self._flush_held(before=k)
        if k == self.num_iters:
            self.final = (k, got)
            return
        if not self._past_divergence(k):
            self._save(k, got)

    def _flush_held(self, before: int) -> None:
        """Report held rows whose checkpoint did not come (older than ``before``)."""
        for k in sorted(x for x in self.held if x < before):
            self._report(self.held.pop(k))

    def _finish(self) -> None:
        """Every member ended (its files written): report what is still held back."""
        if self.final is not None:
            k, got = self.final
            self.final = None
            self._flush_held(before=k)
            if not self._past_divergence(k):
                self._save(k, got)
        self._flush_held(before=self.num_iters + 1)

    def _report(self, row: Mapping[str, Any], checkpoint: tune.Checkpoint | None = None) -> None:
        tune.report(dict(row), checkpoint=checkpoint)
        self.reported += 1

    def _save(self, k: int, got: dict[int, bytes]) -> None:
        row = self.held.pop(k, None)
        # Staged inside the first member's folder: a kill mid-save leaves it where the next start
        # removes it.
        tmp_root = self.dirs[0] / TMP_DIR
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pbrl_ckpt_", dir=tmp_root) as d:
            for lane, data in got.items():
                (Path(d) / _lane_file(lane, self.n)).write_bytes(data)
            if self.n > 1:
                meta = {"k": k, "members": [m.name for m in self.group.members]}
                (Path(d) / GROUP_FILE).write_text(json.dumps(meta), encoding="utf-8")
            self._report(row or {"iter": k}, tune.Checkpoint.from_directory(d))  # type: ignore[arg-type]
        marker = self.dirs[0] / FAIL_MARKER
        if self.fail_at and k >= self.fail_at and not marker.exists():
            marker.write_text(f"failed once after the checkpoint at iteration {k}\n")
            raise RuntimeError(f"{FAIL_ONCE_ENV}: simulated failure after iteration {k}")


def _k(states: dict[int, dict[str, Any]]) -> int:
    return int(next(iter(states.values()))["k"])


class _MemberFailed(RuntimeError):
    """A member's error, raised by its group (one message argument: Ray pickles it)."""

    @classmethod
    def of(cls, name: str, err: BaseException) -> _MemberFailed:
        """``seed NAME of the group failed: TYPE: MESSAGE``, chained to ``err``."""
        e = cls(f"seed {name} of the group failed: {type(err).__name__}: {err}")
        e.__cause__ = err
        return e


class _LaneSink:
    """A member's metric sink: its rows go to the group (from the member's thread)."""

    def __init__(self, rep: GroupReporter, lane: int) -> None:
        self.rep, self.lane = rep, lane

    def log(self, row: Mapping[str, Any]) -> None:
        """Queue ``row`` for the group's aggregate."""
        self.rep._put("row", self.lane, dict(row))


class _LaneCkpt:
    """A member's ``Checkpointer``: its state (serialized at once) goes to the group checkpoint."""

    def __init__(self, rep: GroupReporter, lane: int) -> None:
        self.rep, self.lane, self.every = rep, lane, rep.every

    def restore(self) -> dict[str, Any] | None:
        """The lane's state of the group checkpoint the group resumes from, or None."""
        return self.rep.lane_state(self.lane)

    def save(self, state: dict[str, Any]) -> None:
        """Serialize ``state`` now (the loop goes on changing its tensors) and queue it."""
        buf = io.BytesIO()
        torch.save(state, buf)
        self.rep._put("ckpt", self.lane, int(state["k"]), buf.getvalue())


class _Attempts:
    """Each member's ``tune_attempts.jsonl`` lines: where its learner and actors ran."""

    def __init__(self, entry: dict[str, Any], dirs: Sequence[Path]) -> None:
        self.entry, self.dirs = entry, dirs
        self.started: dict[int, Any] = {}

    def on_start(self, i: int) -> Callable[[Runner], None]:
        """Member ``i``'s ``on_start``: records its actors once the executor is up."""

        def record(runner: Runner) -> None:
            self.started[i] = [dataclasses.asdict(a) for a in runner.actors()]
            _record(self.dirs[i], {**self.entry, "actors": self.started[i]})

        return record

    def on_end(self, i: int) -> Callable[[Runner], None]:
        """Member ``i``'s ``on_end``: records actors started inside the loop (RLHF) or replaced."""

        def record(runner: Runner) -> None:
            actors = [dataclasses.asdict(a) for a in runner.actors()]
            if actors != self.started.get(i):
                _record(
                    self.dirs[i],
                    {
                        "trial_id": self.entry["trial_id"],
                        "time": time.time(),
                        "actors_at_end": actors,
                    },
                )

        return record


def _record(trial_dir: Path, entry: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open_append(trial_dir / ATTEMPTS) as fh:  # never through a planted link
        fh.write(json.dumps(entry) + "\n")


def _final(spec: TrialSpec, tdir: Path) -> dict[str, Any] | None:
    """The member's result if it reached a final state that needs no rerun (complete and whole, or
    diverged), else None."""
    done = completed_result(spec, tdir) or diverged_result(spec, tdir)
    if done is not None and (done.get("status") == "diverged" or damage(spec, tdir) is None):
        return done
    return None


def trial_fn(
    config: dict[str, Any],
    *,
    groups: dict[str, Group],
    out: str,
    group: str,
    launch_id: str = "",
    wandb_modes: dict[str, str] | None = None,
    restart_corrupt: bool = False,
    fail_once_at: int = 0,
    aggregate: str = "mean",
) -> None:
    """Run the group named ``config["trial"]`` (with sampled ``config["search"]`` values) under Tune."""
    logging.getLogger("ray.train").setLevel(
        logging.WARNING
    )  # no "Checkpoint created" line per save
    ctx = tune.get_context()
    g = group_spec(config, groups, ctx.get_trial_id())
    dirs = [inside(Path(out), Path(out) / m.name) for m in g.members]
    entry: dict[str, Any] = {
        "time": time.time(),
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "trial_id": ctx.get_trial_id(),
    }
    if g.size > 1:
        entry["group"] = g.name
    if g.batched:
        entry["batch_lanes"] = g.size
    finals = [_final(m, d) for m, d in zip(g.members, dirs, strict=True)]
    if all(f is not None for f in finals):  # every member complete or diverged: never run again
        rows = []
        for d, f in zip(dirs, finals, strict=True):
            assert f is not None
            _record(d, {**entry, "skipped": True, "status": f.get("status", "complete")})
            rows.append({"iter": f["final"].get("iter", 0), **f["final"]})
        tune.report(aggregate_rows(rows, aggregate))
        return
    shutil.rmtree(dirs[0] / TMP_DIR, ignore_errors=True)  # a save killed half-way
    for d in dirs:  # this attempt decides now whether the group failed
        (d / FAILED).unlink(missing_ok=True)
    rep = GroupReporter(
        g, dirs, restart_corrupt=restart_corrupt, fail_at=fail_once_at, aggregate=aggregate
    )
    restored = rep.restore()
    entry["restored_from"] = None if restored is None else _k(restored)

    attempts = _Attempts(entry, dirs)
    starter, ender = attempts.on_start, attempts.on_end
    launch = Launch(group, launch_id, wandb_modes or {})
    trials = [Trial(m, d, launch) for m, d in zip(g.members, dirs, strict=True)]
    threads: list[threading.Thread] = []
    if g.batched:
        threads.append(
            threading.Thread(target=_run_batched, args=(rep, trials, starter, ender), daemon=True)
        )
    else:
        for i, trial in enumerate(trials):
            threads.append(
                threading.Thread(
                    target=_run_member,
                    args=(rep, i, trial, starter(i), ender(i)),
                    daemon=True,
                )
            )
    for t in threads:
        t.start()
    try:
        ends = rep.serve(alive=lambda: any(t.is_alive() for t in threads))
    finally:
        for t in threads:
            t.join(timeout=30.0)
        wandb_teardown()
    for lane, status, detail in ends:
        if status == "diverged":
            _record(
                dirs[lane], {"trial_id": entry["trial_id"], "time": time.time(), "diverged": detail}
            )
    if rep.reported == 0:  # loops that logged nothing still end with their final metrics
        rows = [r for _, s, r in ends if s == "complete" and isinstance(r, dict)]
        if rows:
            tune.report(aggregate_rows(rows, aggregate))


def _run_member(
    rep: GroupReporter,
    i: int,
    trial: Trial,
    on_start: Callable[[Runner], None],
    on_end: Callable[[Runner], None],
) -> None:
    """One member in its own thread: ``run_trial`` with the group's sink and checkpointer."""
    try:
        result, wall = run_trial(
            trial,
            sinks=[rep.lane_sink(i)],
            ckpt=rep.lane_ckpt(i),
            on_start=on_start,
            on_end=on_end,
            progress=False,  # the driver prints progress lines from the rows it receives
        )
        rep.events.put(("end", i, "complete", {**result.metrics, "wall_s": wall}, None))
    except Diverged as e:
        rep.events.put(("end", i, "diverged", str(e), e.iter))
    except Stopped:
        rep.events.put(("end", i, "stopped", None, None))
    except BaseException as e:
        rep.events.put(("error", i, e))


def _run_batched(
    rep: GroupReporter,
    trials: list[Trial],
    starter: Callable[[int], Callable[[Runner], None]],
    ender: Callable[[int], Callable[[Runner], None]],
) -> None:
    """All members as lanes of one batch, in one thread: ``run_lanes_trial``."""
    n = len(trials)
    try:
        ends = run_lanes_trial(
            trials,
            sinks=[rep.lane_sink(i) for i in range(n)],
            ckpt=rep.lane_ckpt(BATCH),
            on_start=[starter(i) for i in range(n)],
            on_end=[ender(i) for i in range(n)],
        )
        for i, (status, detail, k) in enumerate(ends):
            rep.events.put(("end", i, status, detail, k))
    except Stopped:
        for i in range(n):
            rep.events.put(("end", i, "stopped", None, None))
    except BaseException as e:
        rep.events.put(("error", 0, e))
