"""Pick each method's best hyperparameter setting (``pbrl report --confirm-seeds``): pure pandas.

The sweep's axes (grid and search keys) are of two kinds:

* **hyperparameters**: axes under ``method.`` and ``dist.`` (``method.lam``, ``method.lr_x``, …). A
  *setting* is one method with one value per hyperparameter axis;
* **instances**: axes under ``problem.`` (``problem.game``, …) and the seeds. These are what a setting
  is evaluated on; they are averaged over and never chosen.

A setting's score is the mean final ``metric`` over all its complete trials (seeds × instances). The
best setting is picked **within** each method: methods are not ranked against each other here (that is
what the confirmation on fresh seeds is for), and a problem instance is never a "best configuration".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def problem_default_metric(name: str) -> tuple[str, str] | None:
    """(metric, mode) used when ``--metric`` is not given: the problem's first ``progress`` metric,
    ``max`` when it is in ``higher_is_better``, else ``min`` (``ProblemSpec``)."""
    from pbrl_dist.problems import get_problem

    spec = get_problem(name)
    if spec is None or not spec.progress:
        return None
    metric = spec.progress[0]
    return metric, "max" if metric in spec.higher_is_better else "min"


HYPER_PREFIXES = ("method.", "dist.")
"""Sweep axes under these are hyperparameters (chosen per method)."""
INSTANCE_PREFIXES = ("problem.",)
"""Sweep axes under these are problem instances (averaged over, re-run on every value)."""


def default_metric(trials: pd.DataFrame) -> tuple[str, str] | None:
    """Return the problem's default (metric, mode), or None if unknown or mixed."""
    names = set(trials.get("problem.name", pd.Series(dtype=object)).dropna())
    return problem_default_metric(str(next(iter(names)))) if len(names) == 1 else None


def split_axes(axes: Sequence[str], columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return (hyperparameter axes, instance axes) among the sweep ``axes`` present in ``columns``.

    ``seed``, ``method.name`` and axes under other sections (``logging.``) are neither.
    """
    cols = set(columns)
    axes = [a for a in dict.fromkeys(axes) if a in cols and a not in ("seed", "method.name")]
    hyper = [a for a in axes if a.startswith(HYPER_PREFIXES)]
    instances = [a for a in axes if a.startswith(INSTANCE_PREFIXES)]
    return hyper, instances


def config_keys(trials: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """Group-by columns of a setting: ``method.name`` and the hyperparameter axes present."""
    hyper, _ = split_axes(axes, list(trials.columns))
    return ["method.name", *hyper]


def rank_configs(
    trials: pd.DataFrame,
    keys: Sequence[str],
    metric: str,
    mode: str,
    *,
    instances: Sequence[str] = (),
) -> pd.DataFrame:
    """Return one row per setting (``keys``, n, mean, trials, seeds, instances), best first.

    Every column not in ``keys`` (seeds, the ``instances`` axes) is averaged over.
    """
    keys = list(keys)
    if metric not in trials.columns:
        allowed = ", ".join(c for c in trials.columns if "/" in c)
        raise KeyError(f"--metric {metric}: not in the results; available: {allowed}")
    if mode not in ("max", "min"):
        raise KeyError(f"--mode {mode}: choose max or min")
    rows: list[dict[str, Any]] = []
    for key, grp in trials.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        grp = grp.dropna(subset=[metric])
        if grp.empty:
            continue
        vals = grp[metric].to_numpy(dtype=float)
        inst = list(instances)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "n": len(vals),
                "mean": float(vals.mean()),
                "trials": list(grp["trial"]),
                "seeds": sorted({int(s) for s in grp["seed"]}) if "seed" in grp else [],
                "instances": (
                    [dict(zip(inst, t, strict=True)) for t in unique_rows(grp, inst)]
                    if inst
                    else []
                ),
            }
        )
    ranked = pd.DataFrame(rows)
    if ranked.empty:
        return ranked
    return ranked.sort_values("mean", ascending=(mode == "min"), kind="stable").reset_index(
        drop=True
    )


def best_per_method(ranked: pd.DataFrame) -> pd.DataFrame:
    """Return the best setting of every method (rows of ``rank_configs``), with ``compared``: how many
    settings of that method were ranked. Methods come in the order of their best score."""
    if ranked.empty:
        return ranked
    counts = ranked.groupby("method.name", sort=False, dropna=False).size()
    best = ranked.groupby("method.name", sort=False, dropna=False).head(1).reset_index(drop=True)
    return best.assign(compared=[int(counts[m]) for m in best["method.name"]])


def unique_rows(frame: pd.DataFrame, cols: Sequence[str]) -> list[tuple[Any, ...]]:
    """Distinct value tuples of ``cols`` (plain Python values), sorted where they compare, else in
    order of first appearance; none without columns."""
    if not cols:
        return []
    seen: dict[tuple[Any, ...], None] = {}
    for row in frame[list(cols)].itertuples(index=False, name=None):
        seen.setdefault(tuple(_plain(v) for v in row), None)
    try:
        return sorted(seen)
    except TypeError:
        return list(seen)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def fresh_seeds(used: set[int], n: int) -> list[int]:
    """Return ``n`` seeds above every used one."""
    start = max(used, default=-1) + 1
    return list(range(start, start + n))


def mean_ci(values: ArrayLike) -> tuple[float, float, float]:
    """Return (mean, 95% bootstrap CI low, high)."""
    from pbrl_dist.report.tables import bootstrap_ci

    vals = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(vals)
    return float(vals.mean()), lo, hi


def pick_best(
    everything: pd.DataFrame,
    axes: Sequence[str],
    metric: str | None,
    mode: str | None,
    *,
    flag: str,
) -> tuple[pd.DataFrame, str, str, list[str], list[str]]:
    """Each method's best setting among the complete trials of ``everything`` (``load_results``).

    ``axes``: the sweep's grid and search keys (``sweep.yaml``); ``metric``/``mode`` default to the
    problem's. Returns (``best_per_method`` rows, metric, mode, hyperparameter axes, instance axes).
    The choice of ``--confirm-seeds`` and ``--export-best``. Raises ``ValueError`` (one line starting
    with ``flag`` or naming ``--metric``) when there is nothing to choose from.
    """
    if everything.empty:
        raise ValueError(f"{flag}: no trial results")
    trials = everything[everything["complete"]]
    if trials.empty:
        raise ValueError(f"{flag}: no complete trial")
    if metric is None:
        dm = default_metric(trials)
        if dm is None:
            raise ValueError(
                f"{flag}: no default metric for these results; pass --metric and --mode"
            )
        metric, dm_mode = dm
        mode = mode or dm_mode
    mode = mode or "max"
    hyper, instances = split_axes(axes, list(trials.columns))
    try:
        ranked = rank_configs(trials, ["method.name", *hyper], metric, mode, instances=instances)
    except KeyError as e:
        raise ValueError(str(e.args[0])) from None
    if ranked.empty:
        raise ValueError(f"{flag}: no complete trial reports {metric}")
    return best_per_method(ranked), metric, mode, hyper, instances
