"""``pbrl report DIR --confirm-seeds N``: re-run the best configuration of a grid on N fresh seeds.

The best configuration (method + non-seed sweep axes, read from ``DIR/sweep.yaml``) is chosen by the
mean final metric over its seeds; its config (from one of its trials' ``config.yaml``) is re-run on
seeds never used in ``DIR``, locally like ``pbrl run``, into ``DIR/confirm/``. The point: a winner
picked on the same seeds it was scored on is optimistically biased; fresh seeds give an honest number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from pbrl_dist.config.loader import ConfigError, Sweep, TrialSpec
from pbrl_dist.launch.local import run_local
from pbrl_dist.launch.specs import respec, spec_from_container
from pbrl_dist.report.confirm import config_keys, default_metric, fresh_seeds, mean_ci, rank_configs
from pbrl_dist.report.tables import load_results


def spec_from_dir(trial_dir: Path) -> TrialSpec:
    """Rebuild a validated ``TrialSpec`` from a trial folder's ``config.yaml``."""
    container = yaml.safe_load((trial_dir / "config.yaml").read_text(encoding="utf-8"))
    return spec_from_container(trial_dir.name, container)


def _axes(out: Path) -> list[str]:
    rec_path = out / "sweep.yaml"
    if not rec_path.exists():
        raise ConfigError(
            f"--confirm-seeds: {rec_path} is missing (was {out} written by pbrl run/sweep?)"
        )
    rec = yaml.safe_load(rec_path.read_text(encoding="utf-8")) or {}
    block = rec.get("sweep") or {}
    return [*(block.get("grid") or {}), *(block.get("search") or {})]


def confirm_best(
    out: Path,
    n: int,
    *,
    metric: str | None = None,
    mode: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pick the best configuration in ``out`` and re-run it on ``n`` fresh seeds into ``out/confirm``."""
    if n < 1:
        raise ConfigError(f"--confirm-seeds: must be ≥ 1 (got {n})")
    _, trials = load_results(out)
    if trials.empty:
        raise ConfigError(f"--confirm-seeds: no trial results under {out}")
    trials = trials[trials["complete"]]
    if metric is None:
        dm = default_metric(trials)
        if dm is None:
            raise ConfigError(
                "--confirm-seeds: no default metric for these results; pass --metric and --mode"
            )
        metric, dm_mode = dm
        mode = mode or dm_mode
    mode = mode or "max"
    keys = config_keys(trials, _axes(out))
    try:
        ranked = rank_configs(trials, keys, metric, mode)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    if ranked.empty:
        raise ConfigError(f"--confirm-seeds: no finished trial reports {metric}")
    best = ranked.iloc[0]
    config = {k: best[k] for k in keys}
    seeds = fresh_seeds({int(s) for s in trials["seed"]}, n)
    base = spec_from_dir(out / best["trials"][0])
    specs = [
        respec(base, {"seed": s}, name=re.sub(r"__s\d+$", "", base.name) + f"__s{s}") for s in seeds
    ]
    shown = ", ".join(f"{k}={v}" for k, v in config.items())
    print(
        f"\nbest of {len(ranked)} configurations by {metric} ({mode}): {shown} "
        f"(mean {best['mean']:.4g} over {best['n']} trials, seeds {best['seeds']})"
    )
    print(f"re-running it on {n} fresh seeds {seeds} -> {out / 'confirm'}")
    sweep = Sweep(
        name=f"{base.cfg.exp}_confirm",
        path=out / "sweep.yaml",
        trials=specs,
        block={"seeds": seeds},
        raw={},
    )
    rows = run_local(sweep, out / "confirm", overwrite=overwrite)
    vals = [_scalar(r.get(metric)) for r in rows]
    mean, lo, hi = mean_ci([v for v in vals if v is not None])
    summary = {
        "metric": metric,
        "mode": mode,
        "config": {k: _plain(v) for k, v in config.items()},
        "grid_mean": float(best["mean"]),
        "grid_seeds": [int(s) for s in best["seeds"]],
        "confirm_seeds": seeds,
        "confirm_values": vals,
        "confirm_mean": mean,
        "confirm_ci95": [lo, hi],
    }
    (out / "confirm" / "confirm.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(
        f"confirmation on fresh seeds: {metric} = {mean:.4g} ± {(hi - lo) / 2:.2g} "
        f"(mean ± half-width of the 95% bootstrap CI [{lo:.4g}, {hi:.4g}], n={len(vals)}); "
        f"on the grid's own seeds it was {best['mean']:.4g}"
    )
    return summary


def _scalar(v: Any) -> float | None:
    if isinstance(v, list):
        return float(sum(v) / len(v)) if v else None
    return None if v is None else float(v)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
