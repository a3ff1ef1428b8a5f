"""Pick the best configuration of a grid (``pbrl report --confirm-seeds``): pure pandas, no re-running.

A configuration is a method plus the values of the sweep's non-seed grid (and search) axes; its score is
the mean over seeds (and games, when ``problem.game`` is not an axis) of the trials' final ``metric``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DEFAULT_METRIC: dict[str, tuple[str, str]] = {
    "stackelberg": ("upper/leader_return", "max"),
    "incentive": ("upper/designer_return", "max"),
    "shaping": ("upper/task_return", "max"),
}
"""(metric, mode) used when ``--metric`` is not given, by ``problem.name``."""


def default_metric(trials: pd.DataFrame) -> tuple[str, str] | None:
    """Return the problem's default (metric, mode), or None if unknown or mixed."""
    names = set(trials.get("problem.name", pd.Series(dtype=object)).dropna())
    return DEFAULT_METRIC.get(next(iter(names))) if len(names) == 1 else None


def config_keys(trials: pd.DataFrame, axes: list[str]) -> list[str]:
    """Group-by columns of a configuration: ``method.name`` and the non-seed sweep axes present."""
    keys = ["method.name"] + [a for a in axes if a != "seed" and a in trials.columns]
    return list(dict.fromkeys(keys))


def rank_configs(trials: pd.DataFrame, keys: list[str], metric: str, mode: str) -> pd.DataFrame:
    """Return one row per configuration (``keys``, n, mean, seeds), best first."""
    if metric not in trials.columns:
        allowed = ", ".join(c for c in trials.columns if "/" in c)
        raise KeyError(f"--metric {metric}: not in the results; available: {allowed}")
    if mode not in ("max", "min"):
        raise KeyError(f"--mode {mode}: choose max or min")
    rows: list[dict[str, Any]] = []
    for key, grp in trials.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        vals = grp[metric].dropna().to_numpy(dtype=float)
        if len(vals) == 0:
            continue
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(vals),
                "mean": float(vals.mean()),
                "trials": list(grp["trial"]),
                "seeds": sorted({int(s) for s in grp["seed"]}) if "seed" in grp else [],
            }
        )
    ranked = pd.DataFrame(rows)
    if ranked.empty:
        return ranked
    return ranked.sort_values("mean", ascending=(mode == "min"), kind="stable").reset_index(
        drop=True
    )


def fresh_seeds(used: set[int], n: int) -> list[int]:
    """Return ``n`` seeds above every used one."""
    start = max(used, default=-1) + 1
    return list(range(start, start + n))


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Return (mean, 95% bootstrap CI low, high)."""
    from pbrl_dist.report.tables import bootstrap_ci

    vals = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(vals)
    return float(vals.mean()), lo, hi
