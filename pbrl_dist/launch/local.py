"""``pbrl run``: every trial of a sweep in this process, one after another (Ray only for ``dist.backend=ray``)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from pbrl_dist.config.loader import ConfigError, Sweep
from pbrl_dist.launch.trial import run_trial


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Raise ``ConfigError`` unless ``out`` may be used (missing, empty, or ``overwrite``); writes nothing."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out}: folder exists and is not empty; pass --overwrite to replace it "
            "or choose another --out"
        )


def prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    """Create ``out``; refuse to touch an existing non-empty folder unless ``overwrite``."""
    check_out_dir(out, overwrite=overwrite)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_sweep_record(sweep: Sweep, out: Path, **extra: Any) -> None:
    """Write ``out/sweep.yaml``: the source file, the resolved sweep block, the trial names (and ``extra``)."""
    record = {
        "name": sweep.name,
        "source": str(sweep.path),
        "sweep": sweep.block,
        "trials": [t.name for t in sweep.trials],
        **extra,
    }
    (out / "sweep.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")


def check_local_sweep(sweep: Sweep) -> None:
    """Refuse what only ``pbrl sweep`` (Tune) can do: random search axes."""
    block = sweep.block or {}
    if block.get("search") or int(block.get("num_samples", 1) or 1) > 1:
        raise ConfigError(
            "sweep.search: random search axes (and num_samples) need `pbrl sweep` (Ray Tune); "
            "`pbrl run` runs the grid only"
        )


def run_local(sweep: Sweep, out: Path, *, overwrite: bool = False) -> list[dict]:
    """Run the whole sweep in-process; return one summary dict per trial.

    Trials with ``dist.backend=ray`` get their rollout-worker / oracle actors from a Ray runtime that
    this call starts (embedded, all CPUs) unless one is already running; the learner stays here.
    """
    check_local_sweep(sweep)
    check_out_dir(out, overwrite=overwrite)
    ray_trials = [t for t in sweep.trials if t.cfg.dist.backend == "ray"]
    started = False
    if ray_trials:
        from pbrl_dist.launch.ray_session import check_actor_fit, ensure_ray

        started = ensure_ray()
    try:
        if ray_trials:
            check_actor_fit([t.cfg.dist for t in ray_trials], [t.name for t in ray_trials])
        prepare_out_dir(out, overwrite=overwrite)
        write_sweep_record(sweep, out, runner="local")
        return _run_all(sweep, out)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run_all(sweep: Sweep, out: Path) -> list[dict]:
    n = len(sweep.trials)
    rows = []
    t_start = time.perf_counter()
    for i, spec in enumerate(sweep.trials, 1):
        print(f"[{i}/{n}] {spec.name}", flush=True)
        result, wall = run_trial(spec, out / spec.name, wandb_group=sweep.name)
        shown = "  ".join(f"{k}={_short(v)}" for k, v in result.metrics.items() if k != "iter")
        eta = (time.perf_counter() - t_start) / i * (n - i)
        print(f"      done in {wall:.1f}s  {shown}  (eta {eta:.0f}s)", flush=True)
        rows.append({"trial": spec.name, "wall_s": wall, **result.metrics})
    return rows


def _short(v: object) -> str:
    if isinstance(v, list):
        v = sum(v) / max(len(v), 1)
    return f"{v:.4g}" if isinstance(v, float) else str(v)
