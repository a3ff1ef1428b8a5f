"""``pbrl run``: every trial of a sweep in this process, one after another (no Ray needed)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from pbrl_dist.config.loader import ConfigError, Sweep
from pbrl_dist.dist.trial import run_trial


def prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    """Create ``out``; refuse to touch an existing non-empty folder unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"--out {out}: folder exists and is not empty; pass --overwrite to replace it "
                "or choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_sweep_record(sweep: Sweep, out: Path) -> None:
    """Write ``out/sweep.yaml``: the source file, the resolved sweep block and the trial names."""
    record = {
        "name": sweep.name,
        "source": str(sweep.path),
        "sweep": sweep.block,
        "trials": [t.name for t in sweep.trials],
    }
    (out / "sweep.yaml").write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")


def run_local(sweep: Sweep, out: Path, *, overwrite: bool = False) -> list[dict]:
    """Run the whole sweep in-process; return one summary dict per trial."""
    prepare_out_dir(out, overwrite=overwrite)
    write_sweep_record(sweep, out)
    n = len(sweep.trials)
    rows = []
    t_start = time.perf_counter()
    for i, spec in enumerate(sweep.trials, 1):
        print(f"[{i}/{n}] {spec.name}", flush=True)
        result, wall = run_trial(spec, out / spec.name)
        shown = "  ".join(f"{k}={_short(v)}" for k, v in result.metrics.items() if k != "iter")
        eta = (time.perf_counter() - t_start) / i * (n - i)
        print(f"      done in {wall:.1f}s  {shown}  (eta {eta:.0f}s)", flush=True)
        rows.append({"trial": spec.name, "wall_s": wall, **result.metrics})
    return rows


def _short(v: object) -> str:
    if isinstance(v, list):
        v = sum(v) / max(len(v), 1)
    return f"{v:.4g}" if isinstance(v, float) else str(v)
