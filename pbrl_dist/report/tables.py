"""Load per-trial results into pandas and aggregate final metrics across games and seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _scalar(v: Any) -> Any:
    if isinstance(v, list):
        return float(np.mean(v)) if v else float("nan")
    return v


SKIP_DIRS = frozenset({"_tune", "wandb", "confirm", "report", "figures"})
"""Sub-folders of a results folder that hold no trials of the sweep itself (Tune state, W&B runs,
``--confirm-seeds`` re-runs, report output)."""


def load_results(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (curves, trials): one row per logged iteration, and one row per trial with its config.

    Every folder holding a ``config.yaml`` and a ``metrics.jsonl`` counts as a trial, except those under
    ``SKIP_DIRS``.
    """
    curve_rows: list[dict[str, Any]] = []
    trial_rows: list[dict[str, Any]] = []
    for cfg_path in sorted(results_dir.glob("**/config.yaml")):
        tdir = cfg_path.parent
        if SKIP_DIRS & set(tdir.relative_to(results_dir).parts):
            continue
        mpath = tdir / "metrics.jsonl"
        if not mpath.exists():
            continue
        cfg = _flatten(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
        info = {"trial": tdir.name, **cfg}
        rows = [json.loads(line) for line in mpath.read_text(encoding="utf-8").splitlines() if line]
        for r in rows:
            curve_rows.append({**info, **{k: _scalar(v) for k, v in r.items()}})
        res_path = tdir / "result.json"
        done = res_path.exists()
        final = json.loads(res_path.read_text())["final"] if done else (rows[-1] if rows else {})
        wall = json.loads(res_path.read_text()).get("wall_s") if done else None
        trial_rows.append(
            {**info, "complete": done, "wall_s": wall, **{k: _scalar(v) for k, v in final.items()}}
        )
    return pd.DataFrame(curve_rows), pd.DataFrame(trial_rows)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the values."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


def bootstrap_ci(
    x: np.ndarray, *, num: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (fixed seed, so reports are reproducible)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(num, len(x)), replace=True).mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def metric_columns(trials: pd.DataFrame) -> list[str]:
    """Return the metric columns (namespaced keys like ``upper/...``)."""
    return [c for c in trials.columns if "/" in c and not c.startswith("perf/")]


def final_summary(trials: pd.DataFrame, by: tuple[str, ...] = ("method.name",)) -> pd.DataFrame:
    """Aggregate final metrics per group: n, mean, std, IQM, bootstrap 95% CI, min, max."""
    rows = []
    for key, grp in trials.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metric_columns(trials):
            vals = grp[m].dropna().to_numpy(dtype=float)
            if len(vals) == 0:
                continue
            lo, hi = bootstrap_ci(vals)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": m,
                    "n": len(vals),
                    "mean": vals.mean(),
                    "std": vals.std(ddof=1) if len(vals) > 1 else 0.0,
                    "iqm": iqm(vals),
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "min": vals.min(),
                    "max": vals.max(),
                }
            )
    return pd.DataFrame(rows)


def format_table(summary: pd.DataFrame, by: tuple[str, ...] = ("method.name",)) -> str:
    """Return a plain-text table: one row per group, `mean ± std [max]` per metric."""
    if summary.empty:
        return "(no results)"
    metrics = list(dict.fromkeys(summary["metric"]))
    header = [*(b.split(".")[-1] for b in by), "n", *metrics]
    lines = [header]
    for key, grp in summary.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        cells = [str(k) for k in key] + [str(int(grp["n"].max()))]
        for m in metrics:
            r = grp[grp["metric"] == m]
            cells.append(
                "-"
                if r.empty
                else f"{r['mean'].iloc[0]:.4g} ± {r['std'].iloc[0]:.2g} (max {r['max'].iloc[0]:.3g})"
            )
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines
    )
