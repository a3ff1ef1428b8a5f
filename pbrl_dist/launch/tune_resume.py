"""Resuming a Tune sweep, kept apart from its main path (``tune_sweep``).

- ``resume_record`` decides whether ``pbrl sweep --resume --out OUT`` may continue: the folder's record
  (``sweep.yaml``) and these trials agree (``recovery.check_resume``), Tune's state is there and
  trusted, and the trial unit (groups, or one Tune trial per seed) is the one the sweep ran with.
- ``repair_finished`` re-runs, in the driver, every member Tune counts as finished whose files are
  damaged or gone (a member's numbers do not depend on its group, so it runs alone).
- ``result_group`` names the group of one of Tune's results (``tune_sweep`` tallies with it too).

Tune's own state files are kept restorable by ``tune_state``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ray import tune

from pbrl_dist.config.loader import ConfigError, Sweep
from pbrl_dist.config.schema import SweepBlock
from pbrl_dist.launch.groups import Group, group_spec
from pbrl_dist.launch.local import wandb_modes
from pbrl_dist.launch.recovery import check_resume, damage, diverged_result
from pbrl_dist.launch.results import check_trusted
from pbrl_dist.launch.trial import Launch, Trial, run_trial

TUNE_DIR = "_tune"
STOPPED = "stopped.json"


def tune_path(out: Path, sweep: Sweep) -> Path:
    """Tune's experiment folder of a sweep: ``OUT/_tune/<sweep name>``."""
    return out.resolve() / TUNE_DIR / sweep.name


def resume_record(sweep: Sweep, out: Path, block: SweepBlock) -> tuple[dict[str, Any], SweepBlock]:
    """The record of the sweep ``out`` holds and the block it ran with; ``ConfigError`` when
    ``--resume`` may not continue it (other trials, no or untrusted Tune state, another trial unit)."""
    record = check_resume(sweep, out)
    path = tune_path(out, sweep)
    if not path.exists():
        raise ConfigError(
            f"--resume: {out} holds no Tune sweep named {sweep.name} (expected {path})"
        )
    check_trusted(out, path)
    return record, _resumed_unit(block, record)


def _resumed_unit(block: SweepBlock, record: dict[str, Any]) -> SweepBlock:
    """The trial unit a resumed sweep ran with (``sweep.yaml``; a sweep started before groups: one
    Tune trial per seed). Asking for another on ``--resume`` is refused."""
    unit = str(record.get("trial_unit") or "seed")
    over = list(record.get("group_over") or [])
    if "trial_unit" in record and (unit != block.trials or over != list(block.group_over)):
        raise ConfigError(
            f"--resume: this folder's sweep ran with sweep.trials={unit}"
            + (f" and sweep.group_over={over}" if over else "")
            + "; resume it with the same settings (a Tune trial cannot change what it runs)"
        )
    return dataclasses.replace(block, trials=unit, group_over=over)


def repair_finished(results: Any, groups: dict[str, Group], out: Path, *, launch_id: str) -> None:
    """Re-run, here, every member Tune counts as finished whose files are damaged or gone (alone:
    a member's numbers do not depend on its group)."""
    launch: Launch | None = None
    for r in results:
        if r.error is not None:
            continue
        g = result_group(r, groups)
        if g is None:
            continue
        for spec in g.members:
            tdir = out / spec.name
            if (tdir / STOPPED).exists() or diverged_result(spec, tdir) is not None:
                continue  # stopped, or diverged (a final state)
            why = damage(spec, tdir)
            if why is None:
                continue
            print(f"repairing {spec.name}: {why}; running it again", flush=True)
            if launch is None:
                trials = [m for x in groups.values() for m in x.members]
                modes = wandb_modes(
                    Sweep(name=spec.cfg.exp, path=out, trials=trials, block={}, raw={})
                )
                launch = Launch(spec.cfg.exp, launch_id, modes)
            run_trial(Trial(spec, tdir, launch), progress=False)


def result_group(r: tune.Result, groups: dict[str, Group]) -> Group | None:
    """The group of a Tune result (sampled groups carry their Tune trial id)."""
    trial_id = (r.metrics or {}).get("trial_id") or "_".join(Path(r.path).name.split("_")[-2:])
    # a trial killed before its first report (e.g. by Ray's OOM killer) has no config in its
    # result: its folder's name (``tune_sweep._dirname``) still names its group
    config = r.config or {"trial": dirname_trial(r.path)}
    try:
        return group_spec(config, groups, str(trial_id))
    except Exception:
        return None


def dirname_trial(path: str) -> str:
    """The ``config["trial"]`` in a Tune trial folder's name (``<trial>_<id>_<n>``)."""
    return Path(path).name.rsplit("_", 2)[0]
