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

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune

from pbrl_dist.config.loader import ConfigError, Sweep, load_sweep
from pbrl_dist.config.schema import SweepBlock
from pbrl_dist.launch.local import check_out_dir, prepare_out_dir, write_sweep_record
from pbrl_dist.launch.ray_session import ensure_ray
from pbrl_dist.launch.specs import (
    asha_max_t,
    check_fits,
    check_search,
    fingerprint,
    out_default,
    trial_bundles,
    typed_block,
)
from pbrl_dist.launch.trial import PROGRESS_KEYS
from pbrl_dist.launch.tune_trainable import trial_fn

TUNE_DIR = "_tune"


def tune_path(out: Path, sweep: Sweep) -> Path:
    """Tune's experiment folder of a sweep: ``OUT/_tune/<sweep name>``."""
    return out.resolve() / TUNE_DIR / sweep.name


def _domain(kind: str, values: list[Any]) -> Any:
    if kind == "choice":
        return tune.choice(values)
    if kind == "uniform":
        return tune.uniform(*values)
    if kind == "loguniform":
        return tune.loguniform(*values)
    return tune.randint(*values)


def param_space(sweep: Sweep, block: SweepBlock) -> dict[str, Any]:
    """Return Tune's param_space: a grid over trial names (+ the ``search`` axes)."""
    space: dict[str, Any] = {"trial": tune.grid_search([t.name for t in sweep.trials])}
    if block.search:
        space["search"] = {
            key: _domain(*next(iter(spec.items()))) for key, spec in block.search.items()
        }
    return space


def make_trainable(sweep: Sweep, out: Path) -> Any:
    """Return the trainable with the trial specs attached and its per-trial placement groups."""
    specs = {t.name: t for t in sweep.trials}
    fn = tune.with_parameters(trial_fn, specs=specs, out=str(out.resolve()), group=sweep.name)
    pgfs = {
        name: tune.PlacementGroupFactory(list(b.bundles), strategy=b.strategy)
        for name, b in ((t.name, trial_bundles(t.cfg)) for t in sweep.trials)
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


class _Progress(tune.Callback):
    """One line per finished or failed trial (Tune's own tables are off unless PBRL_TUNE_VERBOSE>0)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        res = trial.last_result or {}
        shown = "  ".join(
            f"{k.split('/')[-1]}={res[k]:.4g}"
            for k in PROGRESS_KEYS
            if isinstance(res.get(k), int | float)
        )
        print(
            f"[{self.done}/{self.total}] {trial.config.get('trial')} done ({time.perf_counter() - self.t0:.0f}s)  {shown}",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(
            f"[{self.done}/{self.total}] {trial.config.get('trial')} failed (attempt {trial.num_failures})",
            flush=True,
        )


def _dirname(trial: Any) -> str:
    return f"{str(trial.config.get('trial', 'trial'))[:80]}_{trial.trial_id}"


def _cluster_cpus() -> tuple[float, float]:
    total = float(ray.cluster_resources().get("CPU", 0.0))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((float(n["Resources"].get("CPU", 0.0)) for n in nodes), default=total)
    return total, largest


def _check_resume(sweep: Sweep, out: Path) -> None:
    record_path = out / "sweep.yaml"
    if not record_path.exists() or not tune_path(out, sweep).exists():
        raise ConfigError(
            f"--resume: {out} holds no Tune sweep named {sweep.name} "
            f"(expected {record_path} and {tune_path(out, sweep)})"
        )
    record = yaml.safe_load(record_path.read_text(encoding="utf-8")) or {}
    if record.get("fingerprint") != fingerprint(sweep.trials):
        raise ConfigError(
            f"--resume: the trials differ from the run in {out} (sweep file, --smoke or key=value "
            "overrides changed); pass the same ones as the first run, or start a new --out"
        )


def run_sweep(
    sweep: Sweep,
    out: Path,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra_record: dict[str, Any] | None = None,
) -> int:
    """Run (or resume) the sweep with Tune; return 0 when every trial finished, else 1.

    Raises ``ConfigError`` before any trial starts on bad input (see the module docstring).
    """
    block = typed_block(sweep)
    check_search(sweep, block)
    # Frequent small checkpoints force experiment snapshots; Tune warns about that on every one.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if resume:
        _check_resume(sweep, out)
    else:
        check_out_dir(out, overwrite=overwrite)
    if address is None and not ray.is_initialized():
        cpus = float(os.cpu_count() or 1)
        check_fits(sweep.trials, cpus, cpus)  # before starting Ray at all
    started = ensure_ray(address)
    try:
        total, largest = _cluster_cpus()
        check_fits(sweep.trials, total, largest)
        return _fit(sweep, block, out, resume=resume, overwrite=overwrite, extra=extra_record or {})
    finally:
        if started:
            ray.shutdown()


def _fit(
    sweep: Sweep,
    block: SweepBlock,
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    extra: dict[str, Any],
) -> int:
    trainable = make_trainable(sweep, out)
    path = tune_path(out, sweep)
    if resume:
        if not tune.Tuner.can_restore(str(path)):
            raise ConfigError(f"--resume: {path} is not a restorable Tune experiment")
        print(f"sweep {sweep.name}: resuming {len(sweep.trials)} trials from {path}", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        prepare_out_dir(out, overwrite=overwrite)
        write_sweep_record(
            sweep,
            out,
            runner="tune",
            fingerprint=fingerprint(sweep.trials),
            tune_path=str(path),
            **extra,
        )
        n = len(sweep.trials) * block.num_samples
        print(f"sweep {sweep.name}: {n} trials -> {out} (Tune state: {path})", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(sweep, block),
            tune_config=tune.TuneConfig(
                num_samples=block.num_samples,
                scheduler=_scheduler(sweep, block),
                max_concurrent_trials=block.max_concurrent_trials or None,
                trial_dirname_creator=_dirname,
                reuse_actors=os.environ.get("PBRL_TUNE_REUSE_ACTORS", "1") == "1",
            ),
            run_config=tune.RunConfig(
                name=sweep.name,
                storage_path=str(path.parent),
                failure_config=tune.FailureConfig(max_failures=block.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=int(os.environ.get("PBRL_TUNE_VERBOSE", "0")),
                callbacks=[_Progress(n)],
            ),
        )
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    for r in errors:
        first = str(r.error).strip().splitlines()
        print(
            f"trial {r.config.get('trial')} failed: {first[-1] if first else r.error}", flush=True
        )
    print(
        f"sweep {sweep.name}: {len(results) - len(errors)}/{len(results)} trials finished "
        f"({len(errors)} errored)",
        flush=True,
    )
    return 1 if errors else 0


def sweep_command(
    sweep_file: str,
    *,
    smoke: bool,
    overrides: Sequence[str],
    out: str | None,
    address: str | None,
    resume: bool,
    overwrite: bool,
) -> tuple[int, Path]:
    """``pbrl sweep``: load and validate, then run or resume; return (exit code, results folder)."""
    sweep = load_sweep(sweep_file, smoke=smoke, overrides=overrides)
    out_dir = Path(out) if out else out_default(sweep, smoke)
    rc = run_sweep(
        sweep,
        out_dir,
        address=address,
        resume=resume,
        overwrite=overwrite,
        extra_record={"smoke": smoke, "overrides": list(overrides)},
    )
    return rc, out_dir
