"""``pbrl sweep``: every trial of a sweep file as a Ray Tune experiment (resumable, multi-node).

Order of events (bad input stops at the first step that finds it, with one message):

1. the sweep file is loaded and **every** trial validated (``load_sweep``), plus the Tune-only parts of
   the ``sweep:`` block (``search``, ``num_samples``, ``scheduler``) and ``--out`` / ``--resume``;
   nothing is written and Ray is not started;
2. Ray starts (embedded: ``ray.init(address="local", num_cpus=os.cpu_count())``) or is joined (``--address``); a trial
   that needs more CPUs than the cluster has stops the sweep before any trial starts;
3. the Tuner runs a ``tune.grid_search`` over the already-validated trial names (so a sweep file means
   exactly what it means to ``pbrl run``: methods × grid × seeds), times ``num_samples`` draws of the
   optional ``sweep.search`` axes. Each trial reserves a placement group: one bundle for its learner
   and, with ``dist.backend=ray``, one per rollout worker and oracle actor;
4. every trial writes the ``pbrl run`` layout into ``OUT/<trial>/``; Tune's own state, checkpoints
   (last 2 per trial) and logs live in ``OUT/_tune/<sweep name>/``; ``pbrl report OUT`` works on both;
5. ``--resume`` restores the Tune experiment (finished trials are not run again, unfinished and errored
   ones continue from their last checkpoint).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.search import BasicVariantGenerator

from pbrl_dist.algos.base import outer_iters
from pbrl_dist.algos.registry import actor_counts
from pbrl_dist.config.loader import ConfigError, Sweep, load_sweep
from pbrl_dist.config.schema import SweepBlock
from pbrl_dist.launch.groups import Group, group_spec, make_groups
from pbrl_dist.launch.local import Interrupted, wandb_modes
from pbrl_dist.launch.ray_session import ensure_ray, stop_ray
from pbrl_dist.launch.recovery import (
    RESULT,
    diverged_line,
    forget_session,
    reap_leftovers,
    remember_session,
)
from pbrl_dist.launch.results import (
    check_out_dir,
    hold_lock,
    prepare_out_dir,
    write_record,
)
from pbrl_dist.launch.specs import (
    asha_max_t,
    check_bounds,
    check_fits,
    check_search,
    fingerprint,
    sweep_notes,
    typed_block,
)
from pbrl_dist.launch.trial import actors_label, progress_keys
from pbrl_dist.launch.tune_resume import (
    STOPPED,
    dirname_trial,
    repair_finished,
    result_group,
    resume_record,
    tune_path,
)
from pbrl_dist.launch.tune_state import LaunchCallback, SnapshotCallback
from pbrl_dist.launch.tune_state import repair as repair_state
from pbrl_dist.launch.tune_trainable import FAIL_ONCE_ENV, trial_fn
from pbrl_dist.metrics import ProgressSink
from pbrl_dist.safe_io import UnsafePath, atomic_write_text, with_filename


def _domain(kind: str, values: list[Any]) -> Any:
    if kind == "choice":
        return tune.choice(values)
    if kind == "uniform":
        return tune.uniform(*values)
    if kind == "loguniform":
        return tune.loguniform(*values)
    return tune.randint(*values)


def param_space(groups: Sequence[Group], block: SweepBlock) -> dict[str, Any]:
    """Return Tune's param_space: a grid over group names (+ the ``search`` axes)."""
    space: dict[str, Any] = {"trial": tune.grid_search([g.name for g in groups])}
    if block.search:
        space["search"] = {
            key: _domain(*next(iter(spec.items()))) for key, spec in block.search.items()
        }
    return space


def make_trainable(
    sweep: Sweep,
    groups: Sequence[Group],
    out: Path,
    *,
    launch_id: str = "",
    modes: dict[str, str] | None = None,
    restart_corrupt: bool = False,
    aggregate: str = "mean",
) -> Any:
    """Return the trainable with the groups attached and each group's placement group."""
    fn = tune.with_parameters(
        trial_fn,
        groups={g.name: g for g in groups},
        out=str(out.resolve()),
        group=sweep.name,
        launch_id=launch_id,
        wandb_modes=modes or {},
        restart_corrupt=restart_corrupt,
        fail_once_at=int(os.environ.get(FAIL_ONCE_ENV, "0") or 0),  # a test hook
        aggregate=aggregate,
    )
    pgfs = {
        g.name: tune.PlacementGroupFactory(list(b.bundles), strategy=b.strategy)
        for g, b in ((g, g.bundles()) for g in groups)
    }

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        return pgfs[config["trial"]]

    return tune.with_resources(fn, resources)


def _scheduler(sweep: Sweep, block: SweepBlock) -> Any:
    sch = block.scheduler
    if sch.name != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="iter",
        metric=sch.metric,
        mode=sch.mode,
        max_t=asha_max_t(sweep.trials, sch.max_t),
        grace_period=sch.grace_period,
        reduction_factor=sch.reduction_factor,
    )


class _DropTuneHints(logging.Filter):
    """Drop Tune's log records that pbrl says better itself: after Ctrl-C, Tune's
    ``Tuner.restore(...)`` hint (pbrl prints its own resume command) and its "Failed to fetch metrics"
    block, one line per unfinished trial (their rows are in the trial folders)."""

    DROP = ("Experiment has been interrupted", "Failed to fetch metrics")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROP)


_TUNE_HINTS = _DropTuneHints()
for _name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
    if _TUNE_HINTS not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_TUNE_HINTS)


class _CtrlC:
    """Whether Tune's own Ctrl-C handler has fired during ``fit``.

    For the length of a run Tune puts in a SIGINT handler of its own; the first Ctrl-C sets Tune's
    stop event and puts back the handler that was there before. So once Tune's handler has been seen
    in place, finding the earlier one back means Ctrl-C came (a normal end leaves Tune's in place).
    """

    def __init__(self) -> None:
        self.before = signal.getsignal(signal.SIGINT)
        self.tune_handler: Any = None

    def __reduce__(self) -> tuple[type[_CtrlC], tuple[()]]:
        """Tune pickles its callbacks into ``tuner.pkl``; signal handlers belong to this process (one
        may hold a lock, e.g. an embedding program's), so a restored copy starts afresh."""
        return (_CtrlC, ())

    def seen(self) -> bool:
        """True once Ctrl-C has reached Tune's handler."""
        now = signal.getsignal(signal.SIGINT)
        if now is not self.before:
            self.tune_handler = now
            return False
        return self.tune_handler is not None

    def close(self) -> None:
        """Put back the handler Tune left in place after a normal end."""
        if self.tune_handler is not None and signal.getsignal(signal.SIGINT) is self.tune_handler:
            signal.signal(signal.SIGINT, self.before)


class _Progress(LaunchCallback):
    """One line per finished, stopped or failed Tune trial (a group: a configuration over its seeds;
    Tune's tables are off unless PBRL_TUNE_VERBOSE>0).

    A group that ends without every member's ``result.json`` was stopped by the scheduler when there
    is one (ASHA) and Ctrl-C has not come: each such member gets a ``stopped.json`` so that ``pbrl
    report`` never counts it as complete. Otherwise (Ctrl-C reached the trial while it was finishing,
    e.g. during W&B's final upload) it is unfinished: ``--resume`` runs it again.
    """

    kind = "progress"

    def __init__(
        self, total: int, groups: dict[str, Group], out: Path, *, scheduler: bool, ctrl_c: _CtrlC
    ) -> None:
        self.total, self.groups, self.out = total, groups, out
        self.scheduler, self.ctrl_c = scheduler, ctrl_c
        self.done = self.stopped = self.errored = self.unfinished = self.diverged = 0
        self.counted: dict[str, list[bytes]] = {}  # complete before this launch (--resume)
        self.progress: dict[str, ProgressSink] = {}  # by Tune's trial id
        self.t0 = time.perf_counter()

    def count_on(self) -> None:
        """On ``--resume``: count the groups already complete, so this launch's lines count on.

        Ctrl-C can catch a group after its members' ``result.json`` were written but before Tune
        marked it terminated; Tune runs it again (it returns its stored result at once) and it is not
        counted twice. A counted group that is really run again (its files were damaged) is counted
        by how that run ends instead.
        """
        for g in self.groups.values():
            got = [_read_bytes(self.out / m.name / RESULT) for m in g.members]
            if all(b is not None for b in got):
                self.counted[g.name] = [b for b in got if b is not None]
        self.done = len(self.counted)

    def _already_counted(self, g: Group) -> bool:
        """True for a counted group whose stored results Tune only read back; uncounts one run again."""
        if g.name not in self.counted:
            return False
        stored = self.counted.pop(g.name)
        if [_read_bytes(self.out / m.name / RESULT) for m in g.members] == stored:
            return True  # a new run writes its own wall time
        self.done -= 1  # run again for real: its end (done, failed, cut, stopped) counts it
        return False

    def _group(self, trial: Trial) -> Group | None:
        try:
            return group_spec(trial.config, self.groups, trial.trial_id)
        except Exception:
            return None

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.ctrl_c.seen()  # notes Tune's handler in place
        g = self._group(trial)
        if g is None:
            return
        spec = g.members[0]
        # The trial's progress line is printed here, from the rows Tune receives: a line printed in
        # the trial's process would reach this console through Ray's log forwarding, prefixed
        # "(trial_fn pid=…)" and merged with other trials' lines by Ray's de-duplication.
        self.progress[trial.trial_id] = ProgressSink(
            _shown(g),
            outer_iters(spec.cfg),
            spec.cfg.logging.progress_every_s,
            progress_keys(spec),
            actors=actors_label(spec.cfg.dist.backend, actor_counts(spec.cfg.method, spec.cfg.dist))
            + (", batched" if g.batched else ""),
        )

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        sink = self.progress.get(trial.trial_id)
        if sink is not None and "iter" in result and not self.ctrl_c.seen():
            sink.log(result)

    def _name(self, trial: Trial) -> str:
        g = self._group(trial)
        return _shown(g) if g is not None else str(trial.config.get("trial"))

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.progress.pop(trial.trial_id, None)  # no progress line after the trial's last line
        res = trial.last_result or {}
        g = self._group(trial)
        if g is None:
            return
        if self._already_counted(g):
            print(f"    {_shown(g)} was already finished before the interruption", flush=True)
            return
        dirs = [self.out / m.name for m in g.members]
        gone = [(x.name, d) for x, d in ((x, _diverged(x)) for x in dirs) if d is not None]
        if gone:
            self.diverged += 1
            more = f"; {len(gone)} of {g.size} members diverged" if g.size > 1 else ""
            first, res_first = gone[0]
            what = (
                f"ended: {first} {diverged_line(res_first)} (left out of the report{more}; final)"
            )
        elif all((d / RESULT).exists() for d in dirs):
            self.done += 1
            what = "done"
        elif self.ctrl_c.seen() or not self.scheduler:
            self.unfinished += 1
            what = "ended without its result (interrupted); --resume runs it again"
        else:
            self.stopped += 1
            k = res.get("iter")
            what = f"stopped by the scheduler at iteration {k}"
            for d in dirs:
                if (d / RESULT).exists():
                    continue
                with contextlib.suppress(OSError, UnsafePath):
                    d.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(
                        d / STOPPED,
                        json.dumps({"status": "stopped", "iter": k, "by": "scheduler"}),
                    )
        shown = "  ".join(
            f"{k.split('/')[-1]}={res[k]:.4g}"
            for k in progress_keys(g.members[0])
            if isinstance(res.get(k), int | float)
        )
        print(
            f"[{self.ended}/{self.total}] {_shown(g)} {what} ({time.perf_counter() - self.t0:.0f}s)  {shown}",
            flush=True,
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.progress.pop(trial.trial_id, None)
        g = self._group(trial)
        if g is not None and self.counted.pop(g.name, None) is not None:
            self.done -= 1  # counted at the start, failed now: counted as failed
        self.errored += 1
        print(
            f"[{self.ended}/{self.total}] {self._name(trial)} failed (attempt {trial.num_failures})",
            flush=True,
        )

    @property
    def ended(self) -> int:
        """Groups that reached an end: complete, diverged, stopped by the scheduler, failed for good,
        or cut."""
        return self.done + self.diverged + self.stopped + self.errored + self.unfinished


def _shown(g: Group) -> str:
    """A group's name on the console: ``name (3 seeds)``, or ``(30 runs)`` over seeds and instances."""
    if g.size == 1:
        return g.name
    seeds = len({m.cfg.seed for m in g.members})
    return f"{g.name} ({g.size} seeds)" if seeds == g.size else f"{g.name} ({g.size} runs)"


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _diverged(tdir: Path) -> dict[str, Any] | None:
    """The trial's ``result.json`` when it says the trial diverged, else None."""
    try:
        res = json.loads((tdir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) and res.get("status") == "diverged" else None


def _dirname(trial: Trial) -> str:
    return f"{str(trial.config.get('trial', 'trial'))[:80]}_{trial.trial_id}"


def _cluster_cpus() -> tuple[float, float]:
    total = float(ray.cluster_resources().get("CPU", 0.0))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((float(n["Resources"].get("CPU", 0.0)) for n in nodes), default=total)
    return total, largest


def run_sweep(
    sweep: Sweep,
    out: Path,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    restart_corrupt: bool = False,
    extra_record: dict[str, Any] | None = None,
) -> int:
    """Run (or resume) the sweep with Tune; return 0 when every trial completed, 1 when one
    errored, else 3 when one diverged (a metric went NaN or ±inf: left out of the report).

    Raises ``ConfigError`` before any trial starts on bad input (see the module docstring), and
    ``Interrupted`` when Ctrl-C stopped the sweep before every trial ended.
    """
    block = typed_block(sweep)
    check_search(sweep, block)
    check_bounds(sweep.trials, local=address is None and not os.environ.get("RAY_ADDRESS"))
    # Frequent small checkpoints force experiment snapshots; Tune warns about that on every one.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's console output: pbrl prints one line per trial and its own resume hint. Tune's newer
    # output engine prints, even when silent, a settings box, a TensorBoard hint (not installed) and a
    # `Tuner.restore(...)` hint; the classic one prints nothing at verbose=0 (PBRL_TUNE_VERBOSE=1
    # brings its tables back).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if resume:
        record, block = resume_record(sweep, out, block)
    else:
        check_out_dir(out, overwrite=overwrite)
        from pbrl_dist.launch.wandb_sink import new_launch_id

        record = {
            "launch_id": new_launch_id(),
            "fingerprint": fingerprint(sweep.trials),
            "trial_unit": block.trials,
            "group_over": list(block.group_over),
        }
    groups = make_groups(sweep.trials, block)
    if address is None and not ray.is_initialized():
        cpus = float(os.cpu_count() or 1)
        check_groups_fit(groups, cpus, cpus)  # before starting Ray at all
    with hold_lock(out, "sweep"):
        reaped = reap_leftovers(out)
        if reaped:
            print(
                f"stopped {reaped} Ray processes left behind by a killed pbrl driver",
                flush=True,
            )
        started = ensure_ray(address)
        if started:
            remember_session(out)
        try:
            total, largest = _cluster_cpus()
            check_groups_fit(groups, total, largest)
            return _fit(
                sweep,
                groups,
                block,
                out,
                resume=resume,
                overwrite=overwrite,
                record=record,
                restart_corrupt=restart_corrupt,
                extra=extra_record or {},
            )
        finally:
            if started:
                stop_ray(clean=sys.exc_info()[0] is None)
                forget_session(out)


def _fit(
    sweep: Sweep,
    groups: list[Group],
    block: SweepBlock,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    record: dict[str, Any],
    restart_corrupt: bool,
    extra: dict[str, Any],
) -> int:
    trainable = make_trainable(
        sweep,
        groups,
        out,
        launch_id=str(record.get("launch_id", "")),
        modes=wandb_modes(sweep),
        restart_corrupt=restart_corrupt,
        aggregate=block.aggregate,
    )
    path = tune_path(out, sweep)
    n = len(groups) * block.num_samples
    runs = len(sweep.trials) * block.num_samples
    specs = {g.name: g for g in groups}
    ctrl_c = _CtrlC()
    progress = _Progress(
        n,
        specs,
        out.resolve(),
        scheduler=block.scheduler.name == "asha",
        ctrl_c=ctrl_c,
    ).install()
    snapshots = SnapshotCallback(path).install()
    restorable = True
    if resume:  # a state file cut by a full disk: back from pbrl's verified copy (tune_state)
        restorable, note = repair_state(path)
        if note:
            print(f"sweep {sweep.name}: {note}", flush=True)
    if resume and restorable:
        if not tune.Tuner.can_restore(str(path)):
            raise ConfigError(f"--resume: {path} is not a restorable Tune experiment")
        tuner = tune.Tuner.restore(  # the grid again: were the state unusable, Tune restarts it
            str(path),
            trainable=trainable,
            resume_errored=True,
            param_space=param_space(groups, block),
        )
        # The restored run config's callbacks were pickled as references to this launch's
        # (LaunchCallback): they are ``progress`` and ``snapshots``, counting on from here.
        progress.count_on()
        print(
            f"sweep {sweep.name}: resuming {_units(n, runs)} from {path} ({progress.done} finished)",
            flush=True,
        )
    else:
        if not resume:
            prepare_out_dir(out, overwrite=overwrite)
            write_record(sweep, out, runner="tune", **record, tune_path=str(path), **extra)
        print(f"sweep {sweep.name}: {_units(n, runs)} -> {out} (Tune state: {path})", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(groups, block),
            tune_config=tune.TuneConfig(
                num_samples=block.num_samples,
                scheduler=_scheduler(sweep, block),
                # Seeded: a sweep file draws the same search samples on every launch.
                search_alg=BasicVariantGenerator(
                    max_concurrent=block.max_concurrent_trials, random_state=block.search_seed
                ),
                trial_dirname_creator=_dirname,
                reuse_actors=os.environ.get("PBRL_TUNE_REUSE_ACTORS", "1") == "1",
            ),
            run_config=tune.RunConfig(
                name=sweep.name,
                storage_path=str(path.parent),
                failure_config=tune.FailureConfig(max_failures=block.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=int(os.environ.get("PBRL_TUNE_VERBOSE", "0")),
                callbacks=[progress, snapshots],
            ),
        )
    try:
        results = tuner.fit()
    except KeyboardInterrupt:
        raise Interrupted(_count_complete(specs, out, sampled=bool(block.search)), n) from None
    except OSError as e:  # Tune's own state could not be written (a full disk): name its folder
        raise with_filename(e, path) from None
    except (EOFError, pickle.UnpicklingError) as e:  # Tune read back a file a full disk cut
        raise OSError(
            errno.EIO, f"Tune's own files are cut ({type(e).__name__}; a full disk?)", str(path)
        ) from None
    if ctrl_c.seen():  # Tune stopped gracefully: nothing is repaired or reported, exit 130
        raise Interrupted(_count_complete(specs, out, sampled=bool(block.search)), n)
    ctrl_c.close()
    if resume:
        repair_finished(results, specs, out, launch_id=str(record.get("launch_id", "")))
    tally = _tally(results, specs, out)
    for name, err in tally["errors"]:
        print(f"trial {name} failed: {error_line(err)}", flush=True)
    if len(results) < n or tally["unfinished"]:
        raise Interrupted(len(tally["complete"]) + len(tally["diverged"]), n)
    stopped = (
        f", {len(tally['stopped'])} stopped early by the scheduler" if tally["stopped"] else ""
    )
    diverged = (
        f", {len(tally['diverged'])} diverged: left out of the report" if tally["diverged"] else ""
    )
    print(
        f"sweep {sweep.name}: {len(tally['complete'])}/{n} {'trials' if n == runs else 'groups'} finished "
        f"({len(tally['errors'])} errored{stopped}{diverged})",
        flush=True,
    )
    return 1 if tally["errors"] else 3 if tally["diverged"] else 0


def error_line(err: BaseException | str) -> str:
    """One line for a trial's final error; an OOM kill names the memory figures Ray measured."""
    text = str(err)
    oom = re.search(r"Memory on the node \([^)]*\) was ([^\n]*?\))", text)
    if oom or "OutOfMemoryError" in text:
        figures = f": {oom.group(1)}" if oom else ""
        return (
            f"killed by Ray's memory monitor (out of memory){figures}; it counts as a trial failure "
            "(sweep.max_failures retries it). Make the trial smaller (problem.num_envs, "
            "method.buffer_size), run fewer at once (sweep.max_concurrent_trials) or add memory"
        )
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def _tally(results: Any, groups: dict[str, Group], out: Path) -> dict[str, list[Any]]:
    """Sort Tune's results (groups) by pbrl's own files: complete, diverged, stopped, errored,
    unfinished. A group is complete when every member is; one diverged member makes it diverged."""
    tally: dict[str, list[Any]] = {
        "complete": [],
        "diverged": [],
        "stopped": [],
        "errors": [],
        "unfinished": [],
    }
    for r in results:
        g = result_group(r, groups)
        name = (
            _shown(g)
            if g is not None
            else str((r.config or {}).get("trial") or dirname_trial(r.path))
        )
        dirs = [out / m.name for m in g.members] if g is not None else [out / name]
        if r.error is not None:
            tally["errors"].append((name, r.error))
            if g is not None and g.size > 1:
                _mark_failed(g, dirs, r.error)
        elif any(_diverged(d) is not None for d in dirs):
            tally["diverged"].append(name)
        elif all((d / RESULT).exists() for d in dirs):
            tally["complete"].append(name)
        elif all((d / RESULT).exists() or (d / STOPPED).exists() for d in dirs):
            tally["stopped"].append(name)
        else:
            tally["unfinished"].append(name)
    return tally


def _mark_failed(g: Group, dirs: list[Path], err: BaseException | str) -> None:
    """A failed group is failed as a whole: every member gets ``failed.json`` naming the group, and
    ``pbrl report`` leaves the group's finished members out (never a silently shorter group)."""
    from pbrl_dist.launch.results import FAILED

    why = error_line(err)
    for d in dirs:
        with contextlib.suppress(OSError, UnsafePath):
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                d / FAILED, json.dumps({"status": "failed", "group": g.name, "error": why})
            )


def _count_complete(groups: dict[str, Group], out: Path, *, sampled: bool = False) -> int:
    """Groups whose every member has its ``result.json``. Sampled groups (a search) have names of
    their own: their finished members are counted and divided by the group size."""
    if sampled:
        size = max((g.size for g in groups.values()), default=1)
        return sum(1 for _ in out.glob(f"*/{RESULT}")) // max(1, size)
    return sum(
        1 for g in groups.values() if all((out / m.name / RESULT).exists() for m in g.members)
    )


def _units(groups: int, runs: int) -> str:
    """``90 trials``, or ``90 runs in 3 trials (configurations × their seeds)``."""
    if groups == runs:
        return f"{runs} trials"
    trials = "1 Tune trial" if groups == 1 else f"{groups} Tune trials"
    return f"{runs} runs in {trials} (a configuration over its seeds each)"


def check_groups_fit(groups: Sequence[Group], total_cpus: float, largest_node_cpus: float) -> None:
    """Raise one ``ConfigError`` if some group needs more CPUs than the cluster (or a node) has."""
    for g in groups:
        if g.size == 1 or g.batched:
            check_fits([g.members[0]], total_cpus, largest_node_cpus)
            continue
        b = g.bundles()
        biggest = max(x.get("CPU", 0.0) for x in b.bundles)
        if b.total_cpus > total_cpus + 1e-9 or biggest > largest_node_cpus + 1e-9:
            raise ConfigError(
                f"sweep.trials: the group {g.name} runs its {g.size} seeds side by side and needs "
                f"{b.total_cpus:g} CPUs ({biggest:g} on one node) but the Ray cluster has "
                f"{total_cpus:g} (largest node {largest_node_cpus:g}); set sweep.trials=seed (one "
                "Tune trial per seed), use fewer seeds, or add nodes"
            )


def sweep_command(
    sweep_file: str,
    *,
    smoke: bool,
    overrides: Sequence[str],
    out: Path,
    address: str | None,
    resume: bool,
    overwrite: bool,
    restart_corrupt: bool = False,
) -> int:
    """``pbrl sweep``: load and validate, then run or resume; return the exit code."""
    sweep = load_sweep(sweep_file, smoke=smoke, overrides=overrides)
    for note in sweep_notes(sweep):
        print(note, flush=True)
    return run_sweep(
        sweep,
        out,
        address=address,
        resume=resume,
        overwrite=overwrite,
        restart_corrupt=restart_corrupt,
        extra_record={"smoke": smoke, "overrides": list(overrides)},
    )
