"""W&B logging: one run per trial, offline by default, never a reason for a trial to fail.

- group = the sweep name, name = the trial name, tags = [method name, problem name],
  config = the trial's resolved config (the same dict as its ``config.yaml``);
- **offline** by default: the run is written inside the trial's results folder
  (``OUT/<trial>/wandb/offline-run-*``), so it travels with the results; upload later with
  ``wandb sync OUT/*/wandb/offline-run-*``;
- **online** when ``logging.wandb=online`` or ``WANDB_MODE=online``, and only if ``WANDB_API_KEY`` is set
  (otherwise offline, and one line says so);
- **disabled** when ``logging.wandb=disabled`` or ``WANDB_MODE=disabled`` (tests set the latter);
- if ``wandb.init`` fails, the trial goes on with its local logs and prints one line saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbrl_dist.config.loader import TrialSpec
from pbrl_dist.metrics import scalar_metrics


def wandb_mode(setting: str) -> tuple[str, str | None]:
    """Return (mode, note) for the config value ``logging.wandb`` and the environment.

    ``note`` is a one-line explanation when the mode differs from what was asked for.
    """
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if setting == "disabled" or env in ("disabled", "dryrun-disabled"):
        return "disabled", None
    if setting == "online" or env == "online":
        if os.environ.get("WANDB_API_KEY"):
            return "online", None
        return "offline", "W&B online was asked for but WANDB_API_KEY is not set; logging offline"
    return "offline", None


def run_id(group: str, trial: str) -> str:
    """Return a stable W&B run id for (sweep, trial): retries of a trial resume the same run."""
    digest = hashlib.blake2b(f"{group}/{trial}".encode(), digest_size=6).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", trial)[:40]
    return f"{stem}-{digest}"


def _scalars(row: Mapping[str, Any]) -> dict[str, Any]:
    return scalar_metrics(row, finite_only=True)


class WandbSink:
    """A ``MetricSink`` that logs each row to one W&B run (``step`` = the row's ``iter``)."""

    def __init__(self, run: Any) -> None:
        """Wrap an initialized ``wandb`` run."""
        self.run = run
        self._failed = False

    def log(self, row: Mapping[str, Any]) -> None:
        """Log the row's numbers (lists, e.g. per-game values, as their mean)."""
        if self._failed:
            return
        try:
            step = row.get("iter")
            self.run.log(_scalars(row), step=int(step) if isinstance(step, int | float) else None)
        except Exception as e:
            self._failed = True
            print(
                f"    W&B logging stopped ({type(e).__name__}: {e}); local logs go on", flush=True
            )

    def close(self, exit_code: int = 0) -> None:
        """Finish the run (quietly; errors are reported in one line)."""
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            print(f"    W&B finish failed ({type(e).__name__}: {e})", flush=True)


def open_wandb(spec: TrialSpec, trial_dir: Path, *, group: str | None = None) -> WandbSink | None:
    """Start the W&B run of a trial, or return None (disabled, or W&B failed: one line says so)."""
    logging_cfg = spec.cfg.logging
    mode, note = wandb_mode(str(logging_cfg.wandb))
    if mode == "disabled":
        return None
    if note:
        print(f"    {note}", flush=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    group = group or spec.cfg.exp
    problem = getattr(spec.cfg.problem, "name", "problem")
    try:
        import wandb

        trial_dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=logging_cfg.project,
            group=group,
            name=spec.name,
            tags=[str(spec.cfg.method.name), str(problem)],
            config=spec.container,
            dir=str(trial_dir),
            mode=mode,
            id=run_id(group, spec.name),
            resume="allow",
            reinit="create_new",
            settings=wandb.Settings(quiet=True, silent=True, console="off", x_disable_stats=True),
        )
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        print(
            f"    W&B could not start ({type(e).__name__}: {first}); trial {spec.name} goes on "
            "with local logs only",
            flush=True,
        )
        return None
    return WandbSink(run)


def teardown() -> None:
    """Stop this process's W&B service now (Tune trial processes: at exit it may be gone already)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    with contextlib.suppress(Exception):
        wandb.teardown()
