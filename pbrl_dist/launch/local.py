"""``pbrl run``: every trial of a sweep in this process, one after another (Ray only for ``dist.backend=ray``).

Each trial checkpoints into ``OUT/<trial>/checkpoint/`` every ``dist.checkpoint_every`` iterations;
``--resume`` skips the trials that completed with the same config and continues the others from their
checkpoints (bitwise as if never interrupted). Ctrl-C raises ``Interrupted``: the command line prints
how many trials finished and the exact resume command.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pbrl_dist.config.loader import ConfigError, Sweep
from pbrl_dist.launch.checkpoints import FileCheckpointer
from pbrl_dist.launch.recovery import (
    RESULT,
    check_resume,
    completed_result,
    damage,
    diverged_line,
    diverged_result,
    forget_session,
    reap_leftovers,
    remember_session,
)
from pbrl_dist.launch.results import (
    FAILED,
    check_out_dir,
    hold_lock,
    inside,
    prepare_out_dir,
    write_record,
)
from pbrl_dist.launch.specs import check_bounds, fingerprint
from pbrl_dist.launch.trial import Launch, Trial, run_trial
from pbrl_dist.metrics import Diverged
from pbrl_dist.safe_io import UnsafePath, atomic_write_text, is_write_error


class TrialsFailed(Exception):
    """Some trials raised (each failed alone; the others ran to the end)."""

    def __init__(self, failed: list[str], total: int) -> None:
        """Remember which."""
        super().__init__(f"{len(failed)}/{total} trials failed: {', '.join(failed)}")
        self.failed, self.total = failed, total


class TrialsDiverged(Exception):
    """Some trials diverged (a metric went NaN or ±inf); every other trial completed.

    Diverged is a final state: the report leaves those trials out and ``--resume`` does not run them
    again.
    """

    def __init__(
        self, diverged: list[tuple[str, str]], total: int, rows: list[dict] | None = None
    ) -> None:
        """Remember which, where each diverged (``diverged_line``), and every trial's summary row
        (a diverged one: ``{"trial", "status": "diverged"}``, no metrics)."""
        first = f"{diverged[0][0]} ({diverged[0][1]})" if diverged else ""
        more = f" and {len(diverged) - 1} more" if len(diverged) > 1 else ""
        super().__init__(f"{len(diverged)}/{total} trials diverged: {first}{more}")
        self.diverged, self.total, self.rows = diverged, total, rows or []


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a sweep before every trial finished."""

    def __init__(self, finished: int, total: int) -> None:
        """Remember how far it got."""
        super().__init__(f"{finished}/{total} trials finished")
        self.finished, self.total = finished, total


def check_local_sweep(sweep: Sweep) -> None:
    """Refuse what only ``pbrl sweep`` (Tune) can do: random search axes."""
    block = sweep.block or {}
    if block.get("search") or int(block.get("num_samples", 1) or 1) > 1:
        raise ConfigError(
            "sweep.search: random search axes (and num_samples) need `pbrl sweep` (Ray Tune); "
            "`pbrl run` runs the grid only"
        )


def wandb_modes(sweep: Sweep) -> dict[str, str]:
    """Decide the W&B mode once per sweep (per distinct ``logging.wandb``); print each note once."""
    from pbrl_dist.launch.wandb_sink import decide_mode

    modes: dict[str, str] = {}
    for t in sweep.trials:
        setting = str(t.cfg.logging.wandb)
        if setting not in modes:
            mode, note = decide_mode(setting)
            if note:
                print(note, flush=True)
            modes[setting] = mode
    return modes


def run_local(
    sweep: Sweep,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    restart_corrupt: bool = False,
    extra_record: dict[str, Any] | None = None,
) -> list[dict]:
    """Run the whole sweep in-process; return one summary dict per trial.

    Trials with ``dist.backend=ray`` get their rollout-worker / oracle actors from a Ray runtime that
    this call starts (embedded, all CPUs) unless one is already running; the learner stays here.
    Raises ``ConfigError`` before writing anything on bad input, ``Interrupted`` on Ctrl-C.
    """
    check_local_sweep(sweep)
    check_bounds(sweep.trials, local=True)
    record = None
    if resume:
        record = check_resume(sweep, out)
    else:
        check_out_dir(out, overwrite=overwrite)
    with hold_lock(out, "run"):
        return _locked(
            sweep,
            out,
            resume=resume,
            overwrite=overwrite,
            record=record,
            restart_corrupt=restart_corrupt,
            extra_record=extra_record,
        )


def _locked(
    sweep: Sweep,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    record: dict[str, Any] | None,
    restart_corrupt: bool,
    extra_record: dict[str, Any] | None,
) -> list[dict]:
    ray_trials = [t for t in sweep.trials if t.cfg.dist.backend == "ray"]
    started = False
    if ray_trials:
        from pbrl_dist.launch.ray_session import check_actor_fit, ensure_ray

        if reap_leftovers(out):
            print("stopped Ray processes left behind by a killed pbrl driver", flush=True)
        started = ensure_ray()
        if started:
            remember_session(out)
    try:
        if ray_trials:
            check_actor_fit([t.cfg for t in ray_trials], [t.name for t in ray_trials])
        if not resume:
            from pbrl_dist.launch.wandb_sink import new_launch_id

            prepare_out_dir(out, overwrite=overwrite)
            record = {"launch_id": new_launch_id(), "fingerprint": fingerprint(sweep.trials)}
            write_record(sweep, out, runner="local", **record, **(extra_record or {}))
        assert record is not None
        return _run_all(
            sweep, out, launch_id=str(record.get("launch_id", "")), restart_corrupt=restart_corrupt
        )
    finally:
        if started:
            from pbrl_dist.launch.ray_session import stop_ray

            stop_ray(clean=sys.exc_info()[0] is None)
            forget_session(out)


def _run_all(sweep: Sweep, out: Path, *, launch_id: str, restart_corrupt: bool) -> list[dict]:
    n = len(sweep.trials)
    launch = Launch(sweep.name, launch_id, wandb_modes(sweep))
    rows: list[dict] = []
    failed: list[str] = []
    diverged: list[tuple[str, str]] = []  # (trial, where it diverged)
    t_start = time.perf_counter()
    ran = 0
    try:
        for i, spec in enumerate(sweep.trials, 1):
            tdir = inside(out, out / spec.name)
            gone = diverged_result(spec, tdir)
            if gone is not None:  # a final state: not run again
                line = diverged_line(gone)
                print(f"[{i}/{n}] {spec.name}: {line} (final; not run again)", flush=True)
                diverged.append((spec.name, line))
                rows.append({"trial": spec.name, "status": "diverged"})
                continue
            done = completed_result(spec, tdir)
            why = damage(spec, tdir) if done is not None else None
            if done is not None and why is None:
                print(f"[{i}/{n}] {spec.name}: complete already, skipped", flush=True)
                rows.append({"trial": spec.name, "wall_s": done.get("wall_s"), **done["final"]})
                continue
            if why is not None:
                print(f"[{i}/{n}] {spec.name}: repairing ({why}): running it again", flush=True)
                (tdir / RESULT).unlink(missing_ok=True)
            ckpt = FileCheckpointer(
                tdir, spec.cfg.dist.checkpoint_every, restart_corrupt=restart_corrupt
            )
            state = ckpt.restore()
            print(
                f"[{i}/{n}] {spec.name}"
                + (f" (resuming from iteration {state['k']})" if state is not None else ""),
                flush=True,
            )
            (tdir / FAILED).unlink(missing_ok=True)  # this launch's attempt decides now
            try:
                result, wall = run_trial(Trial(spec, tdir, launch), ckpt=ckpt)
            except ConfigError:
                raise  # the user's input (e.g. a corrupt checkpoint): stop and say so
            except Diverged as e:  # a final state: result.json says so, the checkpoint goes
                ckpt.clear()
                print(f"      {e} (left out of the report; final)", flush=True)
                diverged.append((spec.name, str(e)))
                rows.append({"trial": spec.name, "status": "diverged"})
                continue
            except Exception as e:  # this trial failed; its checkpoint stays for --resume
                if is_write_error(e) or isinstance(e, UnsafePath):
                    raise  # the folder cannot be written: stop (one line, the resume command)
                first = str(e).strip().splitlines()
                reason = f"{type(e).__name__}: {first[0] if first else ''}"
                print(f"      failed: {reason}", flush=True)
                with contextlib.suppress(
                    OSError, UnsafePath
                ):  # for pbrl status; the line above said it
                    atomic_write_text(
                        tdir / FAILED,
                        json.dumps({"status": "failed", "reason": reason, "time": time.time()}),
                    )
                failed.append(spec.name)
                continue
            ckpt.clear()
            ran += 1
            shown = "  ".join(f"{k}={_short(v)}" for k, v in result.metrics.items() if k != "iter")
            eta = (time.perf_counter() - t_start) / ran * (n - i)
            print(f"      done in {wall:.1f}s  {shown}  (eta {eta:.0f}s)", flush=True)
            rows.append({"trial": spec.name, "wall_s": wall, **result.metrics})
    except KeyboardInterrupt:
        raise Interrupted(len(rows), n) from None
    if failed:
        raise TrialsFailed(failed, n)
    if diverged:
        raise TrialsDiverged(diverged, n, rows)
    return rows


def _short(v: object) -> str:
    if isinstance(v, list):
        v = sum(v) / max(len(v), 1)
    return f"{v:.4g}" if isinstance(v, float) else str(v)
