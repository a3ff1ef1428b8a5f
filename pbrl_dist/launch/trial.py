"""Run one trial into its results folder: config.yaml, metrics.jsonl, final_state.npz, result.json."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pbrl_dist.algos import ALGOS
from pbrl_dist.algos.base import Checkpointer, Result, outer_iters
from pbrl_dist.algos.registry import actor_counts
from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.executors.protocols import Runner
from pbrl_dist.metrics import (
    Diverged,
    DivergenceGuard,
    FanOut,
    JsonlSink,
    MetricSink,
    ProgressSink,
    non_finite,
)
from pbrl_dist.problems import get_problem
from pbrl_dist.safe_io import atomic_file, atomic_write_text

RESULT = "result.json"


def build_problem(spec: TrialSpec) -> Any:
    """Build the trial's problem from its validated config (its ``ProblemSpec.build``)."""
    problem = get_problem(spec.cfg.problem.name)
    assert problem is not None, spec.cfg.problem.name  # the loader resolved it
    return problem.build(spec.cfg.problem)


def actors_label(backend: str, actors: tuple[int, int]) -> str:
    """What a progress line says about where a trial runs: ``local`` or ``ray 4w+1o`` (workers, oracles)."""
    return "local" if backend != "ray" else f"ray {actors[0]}w+{actors[1]}o"


def progress_keys(spec: TrialSpec) -> tuple[str, ...]:
    """The metrics the trial's progress line shows (``ProblemSpec.progress``)."""
    problem = get_problem(spec.cfg.problem.name)
    return problem.progress if problem is not None else ()


def run_trial(
    spec: TrialSpec,
    trial_dir: Path,
    *,
    runner: Runner | None = None,
    sinks: Sequence[MetricSink] = (),
    progress: bool = True,
    ckpt: Checkpointer | None = None,
    wandb_group: str | None = None,
    launch_id: str = "",
    wandb_mode: str | None = None,
    on_start: Callable[[Runner], None] | None = None,
    on_end: Callable[[Runner], None] | None = None,
) -> tuple[Result, float]:
    """Run ``spec`` and write its files into ``trial_dir``; return the result and wall seconds.

    With a ``ckpt`` that restores state at iteration k, metrics rows past k (written before a crash)
    are dropped from metrics.jsonl so the file ends up exactly as an uninterrupted run's.

    With ``dist.backend=ray`` and no ``runner`` given, the trial starts its own rollout-worker (and
    oracle) actors (``dist.ray_runner``; Ray must be running) and stops them at the end. Unless W&B is
    disabled (``logging.wandb`` / ``WANDB_MODE``), the rows also go to one W&B run in the launch's
    group (``wandb_sink.wandb_group``: ``wandb_group``, default the sweep name, and the results
    folder's ``sweep.yaml``) whose files live in ``trial_dir/wandb`` and whose summary ends with the
    trial's status; its id derives from ``launch_id`` (one per launch, kept across ``--resume``) and
    ``wandb_mode`` is the mode the driver decided once for the whole sweep. ``on_start(runner)`` is called once the executor is up (the Tune
    trainable records where its actors run).

    ``result.json`` (with ``"status": "complete"``) is written last: its presence marks a trial that
    ran to the end; an interrupted trial has none. A trial whose metrics row holds a NaN or ±inf
    stops there and is *diverged*, a final state too: ``result.json`` says ``"status": "diverged"``
    with the ``metric`` and ``iter``, and ``Diverged`` is raised (no ``final_state.npz``).
    """
    # The learner uses the CPUs its bundle reserves (dist.cpus_per_trial, default 1). Numbers are
    # bitwise reproducible for a given thread count; a different count may change the last bits.
    torch.set_num_threads(max(1, int(spec.cfg.dist.cpus_per_trial)))
    _start_folder(spec, trial_dir)
    metrics_path = trial_dir / "metrics.jsonl"
    ckpt = _truncate_metrics(metrics_path, ckpt, spec.name)
    jsonl = JsonlSink(metrics_path)
    all_sinks: list[MetricSink] = [jsonl, *sinks]
    actors = actor_counts(spec.cfg.method, spec.cfg.dist)
    if progress:
        all_sinks.append(
            ProgressSink(
                spec.name,
                outer_iters(spec.cfg),
                spec.cfg.logging.progress_every_s,
                progress_keys(spec),
                actors=actors_label(spec.cfg.dist.backend, actors),
            )
        )
    problem = build_problem(spec)
    own_runner = None
    # Tabular problems get Monte Carlo chunk runners; deep RLHF gets env-shard rollout runners.
    if runner is None:
        from pbrl_dist.executors import make_runner

        runner = own_runner = make_runner(problem, spec.cfg.dist, actors)
    wb = None
    ok = False
    diverged: Diverged | None = None
    t0 = time.perf_counter()
    try:
        if on_start is not None:
            on_start(runner)
        from pbrl_dist.launch.wandb_sink import open_wandb

        wb = open_wandb(spec, trial_dir, group=wandb_group, launch_id=launch_id, mode=wandb_mode)
        if wb is not None:
            # A resumed run: the rows kept in metrics.jsonl that W&B lacks go there first (a kill
            # can lose rows W&B had not written yet); rows W&B has are never logged twice.
            wb.catch_up(read_rows(metrics_path))
            all_sinks.append(wb)
        t0 = time.perf_counter()  # compute time only: not W&B's or the actors' start-up
        try:
            result = ALGOS[spec.cfg.method.algo](  # its AlgoSpec.run
                problem,
                spec.cfg.method,
                seed=spec.cfg.seed,
                sink=DivergenceGuard(FanOut(*all_sinks)),
                runner=runner,
                ckpt=ckpt,
            )
        except Diverged as e:  # a final state, like complete: written below, then raised
            diverged = e
        ok = diverged is None
    finally:
        jsonl.close()
        if wb is not None:
            from pbrl_dist.launch.wandb_sink import end_summary

            wb.close(exit_code=0 if ok else 1, summary=end_summary(ok, diverged))
        if on_end is not None:
            with contextlib.suppress(Exception):  # bookkeeping must not hide the trial's own error
                on_end(runner)
        if own_runner is not None:
            own_runner.shutdown()
    wall = time.perf_counter() - t0
    if diverged is not None:
        _write_diverged(spec, trial_dir, diverged, {"wall_s": wall})
        raise diverged
    _write_complete(spec, trial_dir, result, {"wall_s": wall})
    return result, wall


def _start_folder(spec: TrialSpec, trial_dir: Path) -> None:
    """A (re-)started trial's folder: neither complete nor stopped, with the config that runs."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT, "stopped.json"):
        (trial_dir / stale).unlink(missing_ok=True)
    atomic_write_text(trial_dir / "config.yaml", spec.to_yaml())


def _write_diverged(spec: TrialSpec, trial_dir: Path, e: Diverged, extra: dict[str, Any]) -> None:
    """``result.json`` of a diverged trial (a final state; NaN written as a number)."""
    summary = {"trial": spec.name, "status": "diverged", "metric": e.metric, "iter": e.iter}
    summary.update(extra)
    summary["final"] = e.row
    atomic_write_text(trial_dir / RESULT, json.dumps(summary, indent=1))


def _write_complete(
    spec: TrialSpec, trial_dir: Path, result: Result, extra: dict[str, Any]
) -> None:
    """``final_state.npz``, then ``result.json`` (always whole; its presence marks a finished trial)."""
    arrays: dict[str, Any] = dict(result.final_state)  # np.savez's stubs type **kwds narrowly
    with atomic_file(trial_dir / "final_state.npz") as fh:
        np.savez(fh, **arrays)
    summary = {"trial": spec.name, "status": "complete", **extra, "final": result.metrics}
    atomic_write_text(trial_dir / RESULT, json.dumps(summary, indent=1))


class _LaneGuard:
    """A lane's sink in a batch: forwards rows until one holds a NaN or ±inf, then marks the lane
    diverged and drops its later rows (what the lane logs alone, where ``DivergenceGuard`` stops
    it); the other lanes go on."""

    def __init__(self, inner: MetricSink) -> None:
        self.inner = inner
        self.diverged: Diverged | None = None

    def log(self, row: Mapping[str, Any]) -> None:
        """Forward ``row`` unless the lane has diverged; note a divergence."""
        if self.diverged is not None:
            return
        self.inner.log(row)
        bad = non_finite(row)
        if bad is not None:
            self.diverged = Diverged(bad, row.get("iter"), row)


LaneEnd = tuple[str, Any, int | None]
"""How a lane ended: ("complete", final metrics with wall_s, None) or ("diverged", why, iteration)."""


def run_lanes_trial(
    specs: Sequence[TrialSpec],
    dirs: Sequence[Path],
    *,
    sinks: Sequence[MetricSink],
    ckpt: Checkpointer | None = None,
    wandb_group: str | None = None,
    launch_id: str = "",
    wandb_mode: str | None = None,
    on_start: Sequence[Callable[[Runner], None]] = (),
    on_end: Sequence[Callable[[Runner], None]] = (),
) -> list[LaneEnd]:
    """Run trials that differ only in seed (and problem instance) as lanes of one batched computation
    (``algos.lanes.run_lanes``), each into its own folder with exactly the files ``run_trial`` writes
    for it alone: the same rows, final state and final metrics, bitwise.

    ``sinks[i]`` gets lane i's rows; ``ckpt`` saves and restores the one batched state of all lanes.
    A lane whose row holds a NaN or ±inf is diverged at that row (``result.json`` says so, as alone)
    while the others run on. ``result.json`` records the batch's wall time and ``batch_lanes``.
    """
    from pbrl_dist.algos.lanes import lane_problem, run_lanes

    first = specs[0].cfg
    torch.set_num_threads(max(1, int(first.dist.cpus_per_trial)))
    state = ckpt.restore() if ckpt is not None else None
    paths = [d / "metrics.jsonl" for d in dirs]
    if state is not None and not all(metrics_cover(p, state) for p in paths):
        print(
            f"    {specs[0].name} and its group: a member's metrics.jsonl lacks rows the checkpoint "
            f"at iteration {state['k']} had logged; starting the group from scratch",
            flush=True,
        )
        assert ckpt is not None
        ckpt, state = _FreshStart(ckpt), None
    jsonls: list[JsonlSink] = []
    for spec, d, path in zip(specs, dirs, paths, strict=True):
        _start_folder(spec, d)
        _cut_rows(path, state)
        jsonls.append(JsonlSink(path))
    problems = [build_problem(s) for s in specs]
    seeds = [s.cfg.seed for s in specs]
    actors = actor_counts(first.method, first.dist)
    from pbrl_dist.executors import make_runner

    runner = make_runner(lane_problem(problems, seeds), first.dist, actors)
    wbs: list[Any] = []
    guards: list[_LaneGuard] = []
    ok = False
    results: list[Result] = []
    t0 = time.perf_counter()
    try:
        for start in on_start:
            start(runner)
        from pbrl_dist.launch.wandb_sink import open_wandb

        for i, spec in enumerate(specs):
            wb = open_wandb(spec, dirs[i], group=wandb_group, launch_id=launch_id, mode=wandb_mode)
            if wb is not None:
                wb.catch_up(read_rows(paths[i]))
            wbs.append(wb)
            guards.append(
                _LaneGuard(FanOut(jsonls[i], sinks[i], *([wb] if wb is not None else [])))
            )
        t0 = time.perf_counter()
        results = run_lanes(problems, first.method, seeds, sinks=guards, runner=runner, ckpt=ckpt)
        ok = True
    finally:
        for j in jsonls:
            j.close()
        from pbrl_dist.launch.wandb_sink import end_summary

        for wb, g in zip(wbs, guards, strict=False):
            if wb is not None:
                lane_ok = ok and g.diverged is None
                wb.close(exit_code=0 if lane_ok else 1, summary=end_summary(lane_ok, g.diverged))
        for end in on_end:
            with contextlib.suppress(Exception):  # bookkeeping must not hide the run's own error
                end(runner)
        runner.shutdown()
    wall = time.perf_counter() - t0
    ends: list[LaneEnd] = []
    extra = {"wall_s": wall, "batch_lanes": len(specs)}
    for spec, d, g, result in zip(specs, dirs, guards, results, strict=True):
        if g.diverged is not None:
            _write_diverged(spec, d, g.diverged, extra)
            ends.append(("diverged", str(g.diverged), g.diverged.iter))
        else:
            _write_complete(spec, d, result, extra)
            ends.append(("complete", {**result.metrics, "wall_s": wall}, None))
    return ends


def _cut_rows(path: Path, state: dict[str, Any] | None) -> None:
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


class _FreshStart:
    """A checkpointer that saves as ``inner`` does but restores nothing (start from scratch)."""

    def __init__(self, inner: Checkpointer) -> None:
        self.inner, self.every = inner, inner.every

    def restore(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        self.inner.save(state)


def _truncate_metrics(path: Path, ckpt: Checkpointer | None, name: str) -> Checkpointer | None:
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
        ckpt, state = _FreshStart(ckpt), None
    _cut_rows(path, state)
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
