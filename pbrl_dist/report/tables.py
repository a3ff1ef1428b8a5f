"""Load per-trial results into pandas and aggregate final metrics across games and seeds.

Every trial has a ``status``: ``complete`` (it wrote ``result.json``), ``diverged`` (a metric went NaN
or ±inf: ``result.json`` says ``"status": "diverged"``), ``stopped`` (a scheduler such as ASHA stopped
it early: ``stopped.json``) or ``incomplete`` (none of these: interrupted, still running, or crashed).
Final-metric statistics use complete trials only: the last row of a half-run trial is not a final
result, and averaging it with finished ones mixes iteration 220 with iteration 2000. Non-finite floats
are numbers in ``metrics.jsonl`` (``NaN``, ``Infinity``); the strings older pbrl wrote for them
("nan", "inf") are read back as floats too. Each statistic's ``n`` is the number of values that
entered it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pbrl_dist.metrics import as_number, non_finite

STATUSES = ("complete", "diverged", "stopped", "incomplete", "failed")
"""Values of the ``status`` column of ``load_results``."""

WHY = {
    "diverged": "diverged",
    "incomplete": "incomplete",
    "stopped": "stopped by the scheduler",
    "failed": "in a failed seed group",
}
"""How the report words each status it leaves out."""


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
    v = as_number(v)
    if isinstance(v, list):
        nums = [x for x in v if isinstance(x, int | float)]
        return float(np.mean(nums)) if nums else float("nan")
    return v


SKIP_DIRS = frozenset({"_tune", "wandb", "confirm", "report", "figures"})
"""Sub-folders of a results folder that hold no trials of the sweep itself (Tune state, W&B runs,
``--confirm-seeds`` re-runs, report output)."""


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)


def _read_config(text: str) -> Any:
    """``yaml.safe_load(text)`` by libyaml's parser where PyYAML has it (the same constructor and
    implicit types; the pure-Python parser took 25 ms per ``config.yaml``, most of a 1,000-trial
    report). Text libyaml refuses goes to ``yaml.safe_load``, which says what it says."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader
        except Exception:
            pass
    return yaml.safe_load(text)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # half-written by a killed process: as if absent
        return None
    return data if isinstance(data, dict) else None


def trial_status(trial_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """Return (status, the parsed ``result.json`` or None) of one trial folder.

    A ``failed.json`` naming a group (a seed group that failed for good) makes the trial ``failed``.
    Otherwise ``result.json`` wins over ``stopped.json`` (a resumed trial that then finished); a ``result.json``
    without a ``status`` key (older folders) means complete, unless its final metrics hold a NaN or
    ±inf (older pbrl wrote diverged trials as complete): then it is diverged.
    """
    res = _read_json(trial_dir / "result.json")
    failed = _read_json(trial_dir / "failed.json")
    if failed is not None and failed.get("group"):
        # A member of a seed group that failed for good (``pbrl sweep``): left out with its group,
        # finished or not, so that a configuration is never reported over fewer seeds than it ran.
        return "failed", res
    if res is not None:
        status = str(res.get("status", "complete"))
        final = res.get("final")
        if status == "complete" and isinstance(final, dict) and non_finite(final) is not None:
            status = "diverged"
        return (status if status in STATUSES else "incomplete"), res
    if _read_json(trial_dir / "stopped.json") is not None:
        return "stopped", None
    return "incomplete", None


def load_results(results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (curves, trials): one row per logged iteration, and one row per trial with its config.

    Every folder holding a ``config.yaml`` and a ``metrics.jsonl`` counts as a trial, except those under
    ``SKIP_DIRS``. Both frames carry ``status`` (one of ``STATUSES``); ``trials`` also has the bool
    ``complete``. The final metrics of a trial that is not complete are its last logged row.
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
        cfg = _flatten(_read_config(cfg_path.read_text(encoding="utf-8")) or {})
        status, res = trial_status(tdir)
        info = {"trial": tdir.name, **cfg, "status": status}
        rows = []
        for line in mpath.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a killed trial may be cut short
                continue
        for r in rows:
            curve_rows.append({**info, **{k: _scalar(v) for k, v in r.items()}})
        done = status == "complete" and res is not None
        final = res.get("final", {}) if done and res else (rows[-1] if rows else {})
        wall = res.get("wall_s") if done and res else None
        trial_rows.append(
            {**info, "complete": done, "wall_s": wall, **{k: _scalar(v) for k, v in final.items()}}
        )
    return pd.DataFrame(curve_rows), pd.DataFrame(trial_rows)


def complete_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of complete trials (all rows of a frame without a ``status`` column)."""
    if "status" not in frame.columns:
        return frame
    return frame[frame["status"] == "complete"]


def left_out(trials: pd.DataFrame) -> dict[str, int]:
    """Return {status: count} of the trials that final statistics leave out (not complete)."""
    if "status" not in trials.columns:
        return {}
    counts = trials["status"].value_counts()
    return {
        s: int(counts[s]) for s in ("diverged", "incomplete", "stopped", "failed") if s in counts
    }


def left_out_message(trials: pd.DataFrame) -> str | None:
    """One line such as ``left out 4 of 12 trials: 1 diverged, 2 incomplete, 1 stopped by the
    scheduler``."""
    counts = left_out(trials)
    if not counts:
        return None
    why = ", ".join(f"{n} {WHY[s]}" for s, n in counts.items())
    return f"left out {sum(counts.values())} of {len(trials)} trials: {why}"


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


def final_summary(trials: pd.DataFrame, by: Sequence[str] = ("method.name",)) -> pd.DataFrame:
    """Aggregate final metrics of the complete trials per group: n, mean, std, IQM, bootstrap 95% CI,
    min, max. Trials that diverged, stopped or are incomplete are left out (see
    ``left_out_message``); so is any value that is not a finite number, and ``n`` counts exactly the
    values that entered the statistics."""
    by = list(by)
    done = complete_only(trials)
    rows: list[dict[str, Any]] = []
    if done.empty:
        return pd.DataFrame(rows)
    for key, grp in done.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metric_columns(done):
            vals = pd.to_numeric(grp[m].map(as_number), errors="coerce").to_numpy(dtype=float)
            vals = vals[np.isfinite(vals)]
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


def short(v: Any) -> str:
    """A table or label cell: floats to 4 significant digits (sampled search values are long)."""
    if isinstance(v, float | np.floating) and not float(v).is_integer():
        return f"{float(v):.4g}"
    return str(v)


def format_table(
    summary: pd.DataFrame, by: Sequence[str] = ("method.name",), width: int = 120
) -> str:
    """Return a plain-text table: one row per group, `mean ± std (max)` per metric.

    The ``n`` column is the row's largest ``n``; a metric with fewer values says its own (``n=2``),
    so every number shown was computed from exactly the ``n`` it is shown with. Metric columns that
    would make a line wider than ``width`` are left out, and a last line names them (they are in
    ``summary.csv``).
    """
    if summary.empty:
        return "(no results)"
    by = list(by)
    metrics = list(dict.fromkeys(summary["metric"]))
    header = [*(b.split(".")[-1] for b in by), "n", *metrics]
    lines = [header]
    for key, grp in summary.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        n_row = int(grp["n"].max())
        cells = [short(k) for k in key] + [str(n_row)]
        for m in metrics:
            r = grp[grp["metric"] == m]
            if r.empty:
                cells.append("-")
                continue
            n_m = int(r["n"].iloc[0])
            cells.append(
                f"{r['mean'].iloc[0]:.4g} ± {r['std'].iloc[0]:.2g} (max {r['max'].iloc[0]:.3g})"
                + (f" n={n_m}" if n_m != n_row else "")
            )
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    keep = list(range(len(by) + 1))  # the group's key columns and n are always shown
    for i in range(len(by) + 1, len(header)):
        if sum(widths[j] + 2 for j in keep) + widths[i] <= width:
            keep.append(i)
    text = ["  ".join(row[i].ljust(widths[i]) for i in keep).rstrip() for row in lines]
    dropped = [header[i] for i in range(len(header)) if i not in keep]
    if dropped:
        text.append(f"(+{len(dropped)} more in summary.csv: {', '.join(dropped)})")
    return "\n".join(text)
