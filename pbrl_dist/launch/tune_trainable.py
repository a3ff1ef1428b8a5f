"""The Tune trainable: one trial = one central learner, writing the same files as ``pbrl run``.

``trial_fn(config, *, specs, out, group)`` looks up the already-validated ``TrialSpec`` named
``config["trial"]`` (plus any sampled ``config["search"]`` values), and runs it with ``run_trial`` into
``OUT/<trial name>/`` (config.yaml, metrics.jsonl, final_state.npz, result.json). ``TuneReporter`` is
both the trial's extra metric sink and its ``Checkpointer``:

- every logged row goes to ``tune.report`` (lists, e.g. per-game values, as their mean);
- every ``dist.checkpoint_every`` iterations (and at the end) the loop's whole state is saved with
  ``torch.save`` into a temporary folder and reported as a ``tune.Checkpoint`` together with that
  iteration's metrics (Tune counts one ``training_iteration`` per report; the outer iteration is the
  ``iter`` metric, which is also ASHA's time axis);
- on a retry, ``tune.get_checkpoint()`` gives the state back and the loop continues bitwise.

Each start of a trial appends one line to ``OUT/<trial>/tune_attempts.jsonl`` (pid, node id of the
learner and of every actor, the iteration it resumed from, or ``skipped`` when the trial had already
finished: a restored sweep never runs a finished trial twice). A trial whose metrics go NaN or ±inf
ends cleanly as *diverged* (``result.json`` says so; no error, so Tune does not retry it) and is never
run again either.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
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
from pbrl_dist.launch.results import inside
from pbrl_dist.launch.specs import respec, search_trial_name
from pbrl_dist.launch.trial import (
    completed_result,
    damage,
    diverged_result,
    metrics_cover,
    run_trial,
)
from pbrl_dist.launch.wandb_sink import teardown as wandb_teardown
from pbrl_dist.metrics import Diverged, scalar_metrics
from pbrl_dist.safe_io import open_append

ATTEMPTS = "tune_attempts.jsonl"
FAIL_MARKER = ".fail_once_done"
FAIL_ONCE_ENV = "PBRL_TEST_FAIL_ONCE_AT_ITER"
"""Testing only, read by the driver (not part of any config): every Tune trial of the launch raises
once, right after saving its checkpoint at the first checkpoint iteration ≥ this value; a marker
file in the trial folder makes the retry run through (tests that Tune retries from the checkpoint)."""
TMP_DIR = ".ckpt_tmp"


def _tune_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers only; lists (per-game values) as their mean; non-finite values kept."""
    return scalar_metrics(row, finite_only=False)


class TuneReporter:
    """Metric sink and ``Checkpointer`` of one Tune trial.

    A row at a checkpoint iteration is held back until the checkpoint is saved, so metrics and
    checkpoint go out in one ``tune.report``; any other row is reported at once.
    """

    def __init__(
        self, spec: TrialSpec, trial_dir: Path, *, restart_corrupt: bool = False, fail_at: int = 0
    ) -> None:
        """Read ``dist.checkpoint_every``; ``fail_at``: the test hook ``FAIL_ONCE_ENV``."""
        self.restart_corrupt = restart_corrupt
        self.every = int(spec.cfg.dist.checkpoint_every)
        self.fail_at = fail_at
        self.num_iters = outer_iters(spec.cfg)
        self.trial_dir = trial_dir
        self._pending: dict[str, Any] | None = None
        self._restored: dict[str, Any] | None = None
        self._restore_done = False
        self._final: tuple[dict[str, Any], dict[str, Any] | None] | None = None
        self.reported = 0

    # --- MetricSink ------------------------------------------------------------------------------
    def log(self, row: Mapping[str, Any]) -> None:
        """Report ``row`` now, or hold it for the checkpoint of the same iteration."""
        self.flush()
        k = row.get("iter")
        due = isinstance(k, int) and cadence.due(k, self.every, self.num_iters)
        if due:
            self._pending = dict(row)
        else:
            self._report(row)

    def flush(self) -> None:
        """Report a held-back row (its checkpoint did not come)."""
        if self._pending is not None:
            row, self._pending = self._pending, None
            self._report(row)

    def _report(self, row: Mapping[str, Any], checkpoint: tune.Checkpoint | None = None) -> None:
        tune.report(_tune_metrics(row), checkpoint=checkpoint)
        self.reported += 1

    # --- Checkpointer ----------------------------------------------------------------------------
    def restore(self) -> dict[str, Any] | None:
        """Return the state of the trial's newest checkpoint (cached), or None.

        Tune hands back the checkpoint its last experiment snapshot recorded; after a driver kill
        that can be older than what the trial saved since (or none at all). The trial's own storage
        folder is searched too, and the checkpoint with the largest iteration wins among those that
        metrics.jsonl reaches (``metrics_cover``): an attempt that resumed from an older checkpoint
        cut the rows after it, and a newer checkpoint left on disk must not skip over them.
        """
        if not self._restore_done:
            self._restore_done = True
            ckpt = tune.get_checkpoint()
            if ckpt is not None:
                with ckpt.as_directory() as d:
                    self._restored = load_state(
                        Path(d) / STATE_FILE,
                        restart_corrupt=self.restart_corrupt,
                        shown=f"{ckpt.path}/{STATE_FILE}",
                    )
            mine = [("Tune's record", self._restored)] if self._restored is not None else []
            found = sorted(
                [*mine, *_on_disk()], key=lambda c: int(c[1]["k"]), reverse=True
            )  # newest first; a tie keeps Tune's record first
            metrics = self.trial_dir / "metrics.jsonl"
            covered = [c for c in found if metrics_cover(metrics, c[1])]
            pick = covered[0] if covered else (found[0] if found else None)
            if pick is not None and pick[1] is not self._restored:
                path, self._restored = pick
                why = (
                    "newer than Tune's record"
                    if not mine or int(pick[1]["k"]) > int(mine[0][1]["k"])
                    else "the newest checkpoint metrics.jsonl reaches"
                )
                print(f"    resuming from {path} ({why})", flush=True)
        return self._restored

    def save(self, state: dict[str, Any]) -> None:
        """Save ``state`` as a Tune checkpoint, reported with the row of the same iteration.

        The last iteration's report is held back until ``finish()``, i.e. until the trial's files are
        written: a scheduler (ASHA at ``max_t``) may stop the trial as soon as it sees that report.
        """
        k = int(state["k"])
        row = None
        if self._pending is not None and self._pending.get("iter") == k:
            row, self._pending = self._pending, None
        self.flush()
        if k == self.num_iters:
            self._final = (state, row)
            return
        self._save(state, row)

    def finish(self) -> None:
        """Report what is still held back: the last row and the final checkpoint."""
        self.flush()
        if self._final is not None:
            state, row = self._final
            self._final = None
            self._save(state, row)

    def _save(self, state: dict[str, Any], row: dict[str, Any] | None) -> None:
        k = int(state["k"])
        # Staged inside the trial folder: a kill mid-save leaves it where the next start removes it.
        tmp_root = self.trial_dir / TMP_DIR
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pbrl_ckpt_", dir=tmp_root) as d:
            torch.save(state, Path(d) / STATE_FILE)
            self._report(row or {"iter": k}, tune.Checkpoint.from_directory(d))  # type: ignore[arg-type]
        marker = self.trial_dir / FAIL_MARKER
        if self.fail_at and k >= self.fail_at and not marker.exists():
            marker.write_text(f"failed once after the checkpoint at iteration {k}\n")
            raise RuntimeError(f"{FAIL_ONCE_ENV}: simulated failure after iteration {k}")


def _on_disk() -> list[tuple[str, dict[str, Any]]]:
    """The loadable checkpoints in this trial's storage folder: (path, state)."""
    try:
        trial_path = Path(tune.get_context().get_storage().trial_fs_path)
    except Exception:
        return []  # remote storage or no Tune session: Tune's record is all there is
    found = []
    for p in sorted(trial_path.glob(f"checkpoint_*/{STATE_FILE}")):
        try:
            st = safe_load(p)
        except Exception:
            continue  # a damaged candidate is no candidate
        if isinstance(st, dict) and isinstance(st.get("k"), int):
            found.append((str(p), st))
    return found


def _record(trial_dir: Path, entry: dict[str, Any]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open_append(trial_dir / ATTEMPTS) as fh:  # never through a planted link
        fh.write(json.dumps(entry) + "\n")


def trial_spec(
    config: Mapping[str, Any], specs: Mapping[str, TrialSpec], trial_id: str
) -> TrialSpec:
    """The spec a Tune trial runs: the grid trial ``config["trial"]`` with its sampled values, if any."""
    base = specs[config["trial"]]
    sample = dict(config.get("search") or {})
    return (
        respec(base, sample, name=search_trial_name(base.name, sample, trial_id))
        if sample
        else base
    )


def trial_fn(
    config: dict[str, Any],
    *,
    specs: dict[str, TrialSpec],
    out: str,
    group: str,
    launch_id: str = "",
    wandb_modes: dict[str, str] | None = None,
    restart_corrupt: bool = False,
    fail_once_at: int = 0,
) -> None:
    """Run the trial named ``config["trial"]`` (with sampled ``config["search"]`` values) under Tune."""
    logging.getLogger("ray.train").setLevel(
        logging.WARNING
    )  # no "Checkpoint created" line per save
    ctx = tune.get_context()
    spec = trial_spec(config, specs, ctx.get_trial_id())
    trial_dir = inside(Path(out), Path(out) / spec.name)
    entry: dict[str, Any] = {
        "time": time.time(),
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "trial_id": ctx.get_trial_id(),
    }
    done = completed_result(spec, trial_dir) or diverged_result(spec, trial_dir)
    if done is not None and (done.get("status") == "diverged" or damage(spec, trial_dir) is None):
        # complete, or diverged (a final state too): never run again
        _record(trial_dir, {**entry, "skipped": True, "status": done.get("status", "complete")})
        tune.report(_tune_metrics({"iter": done["final"].get("iter", 0), **done["final"]}))
        return
    shutil.rmtree(trial_dir / TMP_DIR, ignore_errors=True)  # a save killed half-way
    reporter = TuneReporter(
        spec, trial_dir, restart_corrupt=restart_corrupt, fail_at=fail_once_at
    )
    restored = reporter.restore()
    entry["restored_from"] = None if restored is None else int(restored["k"])

    def on_start(runner: Runner) -> None:
        entry["actors"] = [dataclasses.asdict(a) for a in runner.actors()]
        _record(trial_dir, entry)

    def on_end(runner: Runner) -> None:
        actors = [dataclasses.asdict(a) for a in runner.actors()]
        if actors != entry["actors"]:  # started inside the loop (RLHF) or replaced since
            _record(
                trial_dir,
                {"trial_id": entry["trial_id"], "time": time.time(), "actors_at_end": actors},
            )

    try:
        result, wall = run_trial(
            spec,
            trial_dir,
            sinks=[reporter],
            ckpt=reporter,
            wandb_group=group,
            launch_id=launch_id,
            wandb_mode=(wandb_modes or {}).get(str(spec.cfg.logging.wandb)),
            on_start=on_start,
            on_end=on_end,
            progress=False,  # the driver prints progress lines from the rows it receives (_Progress)
        )
    except Diverged as e:  # result.json says diverged; the trial ends cleanly (no retry)
        reporter.flush()  # the diverged row, if it was held back for a checkpoint
        _record(trial_dir, {"trial_id": entry["trial_id"], "time": time.time(), "diverged": str(e)})
        return
    finally:
        wandb_teardown()
    reporter.finish()
    if reporter.reported == 0:  # a loop that logged nothing still ends with its final metrics
        tune.report(_tune_metrics({**result.metrics, "wall_s": wall}))
