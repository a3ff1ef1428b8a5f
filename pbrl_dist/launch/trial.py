"""Run one trial into its results folder: config.yaml, metrics.jsonl, final_state.npz, result.json.

A ``Trial`` is built once by whoever launches it (``local``, the Tune trainable, a ``--resume`` repair)
and passed down whole: its validated config, its own folder, and the ``Launch`` it belongs to (what every
trial of one launch shares: W&B group, launch id, W&B modes).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pbrl_dist.algos import ALGOS
from pbrl_dist.algos.base import Checkpointer, Result, outer_iters
from pbrl_dist.algos.registry import actor_counts
from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.executors.protocols import Runner
from pbrl_dist.launch.recovery import (
    RESULT,
    FreshStart,
    cut_rows,
    metrics_cover,
    read_rows,
    truncate_metrics,
)
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


@dataclass(frozen=True)
class Launch:
    """What the trials of one launch share, decided once by its driver.

    Attributes:
        group: the W&B group's base, the sweep name (None: each trial's ``exp``).
        launch_id: W&B run ids derive from it; one per launch, kept across ``--resume``.
        modes: the W&B mode for each ``logging.wandb`` value (``local.wandb_modes``); a value not
            here lets the trial decide (and print the note).
    """

    group: str | None = None
    launch_id: str = ""
    modes: Mapping[str, str] = field(default_factory=dict)

    def wandb_mode(self, spec: TrialSpec) -> str | None:
        """The W&B mode the driver decided for ``spec``'s ``logging.wandb`` (None: undecided)."""
        return self.modes.get(str(spec.cfg.logging.wandb))


@dataclass(frozen=True)
class Trial:
    """One trial as it runs: its validated config, its own folder, and its launch."""

    spec: TrialSpec
    dir: Path
    launch: Launch = field(default_factory=Launch)

    @property
    def name(self) -> str:
        """The trial's name (its folder's)."""
        return self.spec.name

    def open_wandb(self) -> Any:
        """Its W&B run of this launch (``wandb_sink.open_wandb``), or None."""
        from pbrl_dist.launch.wandb_sink import open_wandb

        return open_wandb(
            self.spec,
            self.dir,
            group=self.launch.group,
            launch_id=self.launch.launch_id,
            mode=self.launch.wandb_mode(self.spec),
        )


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
    trial: Trial,
    *,
    runner: Runner | None = None,
    sinks: Sequence[MetricSink] = (),
    progress: bool = True,
    ckpt: Checkpointer | None = None,
    on_start: Callable[[Runner], None] | None = None,
    on_end: Callable[[Runner], None] | None = None,
) -> tuple[Result, float]:
    """Run ``trial.spec`` and write its files into ``trial.dir``; return the result and wall seconds.

    With a ``ckpt`` that restores state at iteration k, metrics rows past k (written before a crash)
    are dropped from metrics.jsonl so the file ends up exactly as an uninterrupted run's.

    With ``dist.backend=ray`` and no ``runner`` given, the trial starts its own rollout-worker (and
    oracle) actors (``dist.ray_runner``; Ray must be running) and stops them at the end. Unless W&B is
    disabled (``logging.wandb`` / ``WANDB_MODE``), the rows also go to one W&B run in the launch's
    group (``trial.launch``; ``wandb_sink.wandb_group``) whose files live in ``trial.dir/wandb`` and
    whose summary ends with the trial's status. ``on_start(runner)`` is called once the executor is up
    (the Tune trainable records where its actors run).

    ``result.json`` (with ``"status": "complete"``) is written last: its presence marks a trial that
    ran to the end; an interrupted trial has none. A trial whose metrics row holds a NaN or ±inf
    stops there and is *diverged*, a final state too: ``result.json`` says ``"status": "diverged"``
    with the ``metric`` and ``iter``, and ``Diverged`` is raised (no ``final_state.npz``).
    """
    # The learner uses the CPUs its bundle reserves (dist.cpus_per_trial, default 1). Numbers are
    # bitwise reproducible for a given thread count; a different count may change the last bits.
    spec, trial_dir = trial.spec, trial.dir
    torch.set_num_threads(max(1, int(spec.cfg.dist.cpus_per_trial)))
    _start_folder(spec, trial_dir)
    metrics_path = trial_dir / "metrics.jsonl"
    ckpt = truncate_metrics(metrics_path, ckpt, spec.name)
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
        wb = trial.open_wandb()
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
    trials: Sequence[Trial],
    *,
    sinks: Sequence[MetricSink],
    ckpt: Checkpointer | None = None,
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

    specs = [t.spec for t in trials]
    dirs = [t.dir for t in trials]
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
        ckpt, state = FreshStart(ckpt), None
    jsonls: list[JsonlSink] = []
    for spec, d, path in zip(specs, dirs, paths, strict=True):
        _start_folder(spec, d)
        cut_rows(path, state)
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
        for i, t in enumerate(trials):
            wb = t.open_wandb()
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
