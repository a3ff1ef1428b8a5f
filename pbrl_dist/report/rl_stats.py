"""RLHF statistics with rliable (Agarwal et al., 2021): IQM, stratified bootstrap CIs, P(X > Y).

Everything here is keyed on the metric, not on problem names: a problem counts as RL when its trials
log ``rl/episode_return`` (toy_rlhf, atari_rlhf, gym_rlhf, ...). Only **complete** trials enter.

Scores:

* **final return** of a trial: ``rl/episode_return`` of its last logged row that has one (before the
  first episode ends the metric is absent; on the platform's trials it is simply the last row);
* **reward model**: ``rm/accuracy`` (held-out preference accuracy) and ``rm/return_corr``
  (predicted-vs-true return correlation) of the same last row; methods without a learned reward
  (``a2c_oracle``) have none.

Methods and tasks:

* a **method** is ``method.name`` plus the sweep's configuration axes (``pbrl lr=0.001``); its
  **mode** (``method.mode``: pbrl, drlhf, a2c_oracle) picks the improvement pairs;
* a **task** is a problem instance: ``problem.name`` plus every ``problem.*`` config value that
  differs between the RL trials of the folder (``problem.game`` on Atari, the env id on gym).

rliable works on (runs × tasks) score matrices; each statistic here is one
``rliable.library.get_interval_estimates`` call (percentile stratified bootstrap: runs are resampled
within each task). Several tasks are stacked into one matrix only where their scores share a scale:

* **IQM and mean of the return**: per task on raw returns. An aggregate over tasks ("all tasks") is
  reported only when ``baselines`` gives each task a (low, high) pair (e.g. random and human or oracle
  scores): scores are then normalised the standard way, ``(x - low) / (high - low)``, in every row.
  With one task and no baselines, that task's row *is* the aggregate (raw scores).
* **P(X > Y)** (``rliable.metrics.probability_of_improvement``: the Mann–Whitney U / (n·m) with ties
  counting 1/2, averaged over tasks) is rank-based, hence scale-free: with several tasks an
  "all tasks" row averages the per-task probabilities, with or without baselines.
* **Seed-paired differences** (``paired_table``, beside every P(X > Y) row): seeds fix initial
  weights and pairs, so d = X(seed) − Y(seed) over the seeds both finished has about half the
  variance of unpaired comparisons. d is divided by the task's mean ``a2c_oracle`` return (unit
  ``a2c``), or left in return points (``raw``, with the reason) where the task has no oracle trials
  or its mean is ≤ 0; an "all tasks" row exists only on the ``a2c`` scale. Mean and IQM of d with
  CIs, and the smallest effect a paired t-test detects with 80% power at that n and sd of d
  (noncentral t).
* **Reward-model metrics** are on a common scale ([0, 1] and [-1, 1]): mean per task, and over all
  tasks when there are several.

Stacking tasks needs the same runs in every column: an "all tasks" matrix keeps a method's seeds that
finished on every task. Bootstraps are reproducible: rliable draws from the global ``np.random``, so
every call seeds it with ``seed`` (and restores the previous state afterwards).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats
from rliable import metrics as rl_metrics

from pbrl_dist.report.tables import complete_only, short
from pbrl_dist.safe_io import atomic_file, atomic_path

RETURN = "rl/episode_return"
"""The true episode return: its presence marks an RL problem."""
RM_METRICS = ("rm/accuracy", "rm/return_corr")
"""Reward-model quality metrics (learned-reward methods only)."""
FRAMES = "env_frames"
"""x axis of the learning curves."""
ORACLE_MODE = "a2c_oracle"
"""The mode trained on the true reward: the upper bound every learned-reward method is compared to."""
MODE_ORDER = ("pbrl", "drlhf")
"""Learned-reward modes, most interesting first: P(earlier > later) is reported for every pair."""
ALL_TASKS = "all tasks"
"""Task label of the rows that stack several tasks."""
DEFAULT_REPS = 2000
"""Bootstrap replications (rliable suggests more for papers: pass ``reps``)."""


@functools.cache
def _rliable_library() -> ModuleType:
    """Import ``rliable.library``, working around arch < 8 on pandas >= 3.

    arch 7.x (rliable's bootstrap backend; arch 8 drops the ``random_state`` argument rliable 1.2
    passes) decorates one method with ``pandas.util._decorators.deprecate_kwarg(old, new)``, a
    signature pandas 3 changed to ``(klass, old, new)``; that import fails with a ``TypeError``. The
    retry gives that decorator the old signature for the duration of the import only.
    """
    try:
        from rliable import library
    except TypeError as err:
        if "deprecate_kwarg" not in str(err):
            raise
        import pandas.util._decorators as pd_decorators

        new_style = pd_decorators.deprecate_kwarg

        def old_style(old: str, new: str | None, mapping: Any = None, stacklevel: int = 2) -> Any:
            return new_style(FutureWarning, old, new, mapping=mapping, stacklevel=stacklevel)

        pd_decorators.deprecate_kwarg = old_style  # type: ignore[assignment]
        try:
            from rliable import library
        finally:
            pd_decorators.deprecate_kwarg = new_style
    return library


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global ``np.random`` (which rliable's bootstrap draws from); restore it on exit."""
    state = np.random.get_state()  # noqa: NPY002 (rliable draws from the legacy global RNG)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def interval_estimates(
    score_dict: Mapping[str, np.ndarray | tuple[np.ndarray, ...]],
    func: Callable[..., Any],
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run ``rliable.library.get_interval_estimates`` with a seeded percentile stratified bootstrap.

    Args:
        score_dict: key -> a (runs × tasks [× ...]) matrix, or a tuple of such matrices (each
            resampled independently, e.g. (scores_x, scores_y) for a probability of improvement).
        func: statistic of the matrices, returning a scalar or a 1-D array.
        reps: bootstrap replications.
        seed: seed of ``np.random`` for this call (each key's bootstrap starts from it).
        level: coverage of the intervals.

    Returns:
        key -> (point estimate, CI low, CI high), each a 1-D array (length 1 for a scalar ``func``).
    """
    lib = _rliable_library()
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for key, scores in score_dict.items():
        with seeded(seed):
            point, ci = lib.get_interval_estimates(
                {key: scores}, func, reps=reps, confidence_interval_size=level
            )
        ci_k = np.asarray(ci[key], dtype=float).reshape(2, -1)
        out[key] = (np.atleast_1d(np.asarray(point[key], dtype=float)), ci_k[0], ci_k[1])
    return out


def trim_mean_quarter(a: np.ndarray, axis: int | None) -> Any:
    """``scipy.stats.trim_mean(a, 0.25, axis=axis)`` bit for bit, without scipy's per-call wrapper.

    The IQM is computed ``reps`` times per statistic in a bootstrap, and scipy's ``nan_policy``
    wrapper (``inspect.signature`` on every call) costs about 1 ms a call: most of a report's time
    with many configurations. For a float64 array without NaN, taken whole (``axis=None``, rliable's
    ``aggregate_iqm``) or along axis 0 of a matrix, these are the numpy calls scipy makes (ravel, or
    the axis moved to the end; ``np.partition`` at the cuts; the mean of the middle). Anything else
    goes to scipy."""
    a = np.asarray(a)
    if a.dtype != np.float64 or a.size == 0 or np.isnan(a).any():
        return scipy.stats.trim_mean(a, 0.25, axis=axis)
    if axis is None:
        x = a.reshape(-1)
    elif axis == 0 and a.ndim == 2:
        x = np.moveaxis(a, 0, -1)
    else:
        return scipy.stats.trim_mean(a, 0.25, axis=axis)
    n = x.shape[-1]
    lo = int(0.25 * n)
    hi = n - lo
    return np.mean(np.partition(x, (lo, hi - 1), -1)[..., lo:hi], axis=-1)


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    """[IQM, mean] of a (runs × tasks) matrix (rliable's ``aggregate_iqm``, ``aggregate_mean``;
    the IQM by ``trim_mean_quarter``, the same number)."""
    return np.array([trim_mean_quarter(scores, None), rl_metrics.aggregate_mean(scores)])


def fast_probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """``rliable.metrics.probability_of_improvement`` without its scipy test: the same number.

    Per task P(X > Y) = (#{x_i > y_j} + #{x_i = y_j} / 2) / (n·m), the Mann–Whitney U of X over n·m
    (0.5 when the two columns are equal), averaged over tasks. rliable gets U from
    ``scipy.stats.mannwhitneyu``, which also computes a p-value (about 2 ms a call); the bootstrap
    calls this ``reps`` times per pair.
    """
    x = np.asarray(scores_x, dtype=float)
    y = np.asarray(scores_y, dtype=float)
    n, m = x.shape[0], y.shape[0]
    gt = (x[:, None, :] > y[None, :, :]).sum(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).sum(axis=(0, 1))
    per_task = (gt + 0.5 * eq) / (n * m)
    same = np.array([np.array_equal(x[:, t], y[:, t]) for t in range(x.shape[1])])
    return float(np.where(same, 0.5, per_task).mean())


def _last_valid(values: pd.Series) -> float:
    valid = values.dropna()
    return float(valid.iloc[-1]) if len(valid) else float("nan")


def _rl_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows of the complete trials of the problems that log ``rl/episode_return``."""
    if RETURN not in curves.columns or "problem.name" not in curves.columns:
        return curves.iloc[0:0]
    done = complete_only(curves)
    rl_problems = set(done.loc[done[RETURN].notna(), "problem.name"])
    return done[done["problem.name"].isin(rl_problems)]


def _missing(v: Any) -> bool:
    return not isinstance(v, list | dict) and bool(pd.isna(v))


def _cell(v: Any) -> str:
    return short(v) if not isinstance(v, list | dict) else str(v)


ENV_COLUMNS = ("problem.env_id", "problem.game")
"""Settings that name the environment itself: part of the task label even when the folder has one."""


def task_columns(frame: pd.DataFrame) -> list[str]:
    """``problem.name``, the environment's name (``ENV_COLUMNS``) and the other ``problem.*`` columns
    whose value differs between trials of a problem.

    A single-env folder is labelled by its env (``MinAtar/Breakout-v1``), not by the problem's
    registry name (``gym_rlhf``), so that it reads like the same env in a multi-env folder.
    """
    cols = ["problem.name"]
    cols += [c for c in ENV_COLUMNS if c in frame.columns and frame[c].notna().any()]
    for c in frame.columns:
        if c.startswith("problem.") and c not in cols:
            per_problem = frame.groupby("problem.name")[c].agg(
                lambda s: s.dropna().map(_cell).nunique()
            )
            if (per_problem > 1).any():
                cols.append(c)
    return cols


def _labels(frame: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``task``, ``method`` and ``mode`` columns."""
    tcols = task_columns(frame)
    several_problems = frame["problem.name"].nunique() > 1

    pieces = [frame["problem.name"].astype(str)] if several_problems or len(tcols) == 1 else []
    pieces += [frame[c].map(lambda v: "" if _missing(v) else _cell(v)) for c in tcols[1:]]
    task = pieces[0]
    for p in pieces[1:]:
        task = task + " " + p

    method = frame["method.name"].astype(str)
    for k in axes:
        if k in frame.columns:
            method = method + f" {k.split('.')[-1]}=" + frame[k].map(_cell)
    mode = frame["method.mode"] if "method.mode" in frame.columns else frame["method.name"]
    return frame.assign(
        task=task.str.replace(r"\s+", " ", regex=True).str.strip(),
        method=method,
        mode=mode.astype(str),
    )


def _method_axes(axes: Sequence[str]) -> list[str]:
    """Sweep axes that name method configurations (not seeds, not problem instances)."""
    return [a for a in axes if a not in ("seed", "method.name") and not a.startswith("problem.")]


def final_scores(curves: pd.DataFrame, axes: Sequence[str] = ()) -> pd.DataFrame:
    """One row per complete RL trial: task, method, mode, seed, trial, frames and the final metrics.

    Args:
        curves: the curves frame of ``load_results`` (one row per logged iteration).
        axes: the sweep's axes; those under ``method.``/``dist.``/... name configurations and become
            part of the method label.

    Returns:
        Columns ``task, method, mode, seed, trial, env_frames, rl/episode_return, rm/accuracy,
        rm/return_corr`` (NaN where a trial has none); trials without any return are left out.
    """
    rl = _rl_curves(curves)
    cols = ["task", "method", "mode", "seed", "trial", FRAMES, RETURN, *RM_METRICS]
    if rl.empty:
        return pd.DataFrame(columns=cols)
    rl = _labels(rl, _method_axes(axes))
    order = FRAMES if FRAMES in rl.columns else "iter"
    rows = []
    for (task, method, trial), grp in rl.groupby(["task", "method", "trial"], sort=False):
        grp = grp.sort_values(order, kind="stable") if order in grp.columns else grp
        row = {
            "task": task,
            "method": method,
            "mode": grp["mode"].iloc[0],
            "seed": grp["seed"].iloc[0] if "seed" in grp.columns else np.nan,
            "trial": trial,
            FRAMES: _last_valid(grp[FRAMES]) if FRAMES in grp.columns else np.nan,
            RETURN: _last_valid(grp[RETURN]),
        }
        for m in RM_METRICS:
            row[m] = _last_valid(grp[m]) if m in grp.columns else np.nan
        rows.append(row)
    scores = pd.DataFrame(rows, columns=cols)
    return scores[scores[RETURN].notna()].reset_index(drop=True)


def score_matrix(
    scores: pd.DataFrame,
    metric: str,
    tasks: Sequence[str],
    baselines: Mapping[str, tuple[float, float]] | None = None,
) -> np.ndarray:
    """(runs × tasks) matrix of one method's ``metric`` (``scores``: rows of ``final_scores``).

    One task: every run with a value. Several: the seeds with a value on every task, in seed order.
    With ``baselines`` each task's column is normalised to ``(x - low) / (high - low)``.
    """
    sub = scores[scores["task"].isin(tasks)].dropna(subset=[metric])
    if len(tasks) == 1:
        mat = sub[metric].to_numpy(dtype=float)[:, None]
    else:
        wide = sub.pivot_table(index="seed", columns="task", values=metric, aggfunc="first")
        wide = wide.reindex(columns=list(tasks)).dropna()
        mat = wide.sort_index().to_numpy(dtype=float)
    if baselines is not None:
        low = np.array([baselines[t][0] for t in tasks], dtype=float)
        high = np.array([baselines[t][1] for t in tasks], dtype=float)
        mat = (mat - low) / (high - low)
    return mat


def _task_groups(scores: pd.DataFrame, stack: bool) -> list[tuple[str, list[str]]]:
    """(label, tasks) per task, then (``ALL_TASKS``, every task) when ``stack`` and there are several."""
    tasks = list(dict.fromkeys(scores["task"]))
    groups = [(t, [t]) for t in tasks]
    if stack and len(tasks) > 1:
        groups.append((ALL_TASKS, tasks))
    return groups


def return_table(
    scores: pd.DataFrame,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
    baselines: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """IQM and mean of the final return per task and method, with stratified bootstrap CIs.

    Returns:
        Columns ``task, method, mode, n, iqm, iqm_lo, iqm_hi, mean, mean_lo, mean_hi, normalized``;
        an ``ALL_TASKS`` row per method only with ``baselines`` and several tasks.
    """
    rows: list[dict[str, Any]] = []
    for label, tasks in _task_groups(scores, stack=baselines is not None):
        sub = scores[scores["task"].isin(tasks)]
        mats = {
            str(m): score_matrix(g, RETURN, tasks, baselines)
            for m, g in sub.groupby("method", sort=False)
        }
        mats = {m: x for m, x in mats.items() if x.shape[0] > 0}
        est = interval_estimates(mats, iqm_and_mean, reps=reps, seed=seed, level=level)
        for m, (point, lo, hi) in est.items():
            rows.append(
                {
                    "task": label,
                    "method": m,
                    "mode": sub.loc[sub["method"] == m, "mode"].iloc[0],
                    "n": mats[m].shape[0],
                    "iqm": point[0],
                    "iqm_lo": lo[0],
                    "iqm_hi": hi[0],
                    "mean": point[1],
                    "mean_lo": lo[1],
                    "mean_hi": hi[1],
                    "normalized": baselines is not None,
                }
            )
    return pd.DataFrame(rows)


def improvement_pairs(modes: Mapping[str, str]) -> list[tuple[str, str]]:
    """Ordered (X, Y) method pairs whose P(X > Y) matters, from {method: mode}.

    Every learned-reward method over every one ranked after it (pbrl over drlhf over other modes),
    and every learned-reward method over every ``a2c_oracle`` method.
    """
    learned = [m for m, mode in modes.items() if mode != ORACLE_MODE]
    oracle = [m for m, mode in modes.items() if mode == ORACLE_MODE]

    def rank(m: str) -> int:
        mode = modes[m]
        return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)

    learned.sort(key=rank)  # stable: same-mode methods keep their order
    pairs = [(x, y) for i, x in enumerate(learned) for y in learned[i + 1 :] if rank(x) < rank(y)]
    return pairs + [(x, y) for x in learned for y in oracle]


def improvement_table(
    scores: pd.DataFrame,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """P(X > Y) of the final return per task, and over the tasks both ran when several, with CIs.

    The point estimate is ``rliable.metrics.probability_of_improvement``; the CI resamples the runs
    of X and Y independently within each task (rliable's ``StratifiedIndependentBootstrap``).

    Returns:
        Columns ``task, x, y, n_x, n_y, p, lo, hi, verdict`` where verdict is ``x`` or ``y`` (the
        CI lies above or below 0.5), ``not significant`` (it contains 0.5) or ``too few seeds``
        (fewer than 2 runs on a side: no interval).
    """
    modes = dict(zip(scores["method"], scores["mode"], strict=True))
    pairs = improvement_pairs(modes) if pairs is None else list(pairs)
    tasks = list(dict.fromkeys(scores["task"]))
    has = {(str(m), str(t)) for m, t in zip(scores["method"], scores["task"], strict=True)}
    todo: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    meta: dict[str, tuple[str, str, str]] = {}
    for label in [*tasks, ALL_TASKS]:
        for x, y in pairs:
            shared = [t for t in tasks if (x, t) in has and (y, t) in has]
            cols = shared if label == ALL_TASKS else [label] if label in shared else []
            if not cols or (label == ALL_TASKS and len(cols) < 2):
                continue  # "all tasks": the tasks both methods ran, when there are several
            mx = score_matrix(scores[scores["method"] == x], RETURN, cols)
            my = score_matrix(scores[scores["method"] == y], RETURN, cols)
            if mx.shape[0] and my.shape[0]:
                key = str(len(todo))
                todo[key], meta[key] = (mx, my), (label, x, y)
    est = interval_estimates(
        todo, fast_probability_of_improvement, reps=reps, seed=seed, level=level
    )
    rows: list[dict[str, Any]] = []
    for key, (_, lo, hi) in est.items():
        (label, x, y), (mx, my) = meta[key], todo[key]
        n_x, n_y = mx.shape[0], my.shape[0]
        if min(n_x, n_y) < 2:
            verdict = "too few seeds"
        elif lo[0] > 0.5:
            verdict = x
        elif hi[0] < 0.5:
            verdict = y
        else:
            verdict = "not significant"
        rows.append(
            {
                "task": label,
                "x": x,
                "y": y,
                "n_x": n_x,
                "n_y": n_y,
                "p": float(rl_metrics.probability_of_improvement(mx, my)),
                "lo": lo[0],
                "hi": hi[0],
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=["task", "x", "y", "n_x", "n_y", "p", "lo", "hi", "verdict"])


# ------------------------------------------------------------- seed-paired differences

PAIRED_POWER = 0.8
"""Power at which ``paired_table`` reports the smallest detectable effect."""
PAIRED_ALPHA = 0.05
"""Two-sided level of the paired t-test behind that effect."""
A2C_UNIT = "a2c"
"""Unit of a paired difference divided by the task's mean ``a2c_oracle`` final return."""
RAW_UNIT = "raw"
"""Unit of a paired difference in return points (no usable ``a2c_oracle`` mean on the task)."""
PAIRED_COLUMNS = (
    "task",
    "x",
    "y",
    "n",
    "unit",
    "scale",
    "mean",
    "mean_lo",
    "mean_hi",
    "iqm",
    "iqm_lo",
    "iqm_hi",
    "sd",
    "mde",
    "verdict",
    "note",
)
"""Columns of ``paired_table`` (``paired_stats.csv`` adds ``level, reps, seed, alpha, power``)."""


def a2c_scales(scores: pd.DataFrame) -> dict[str, float]:
    """{task: mean final return of the ``a2c_oracle``-mode trials on it} (every such trial of the
    task, pooled over oracle methods); tasks without one are absent."""
    oracle = scores[scores["mode"] == ORACLE_MODE]
    return {str(t): float(g[RETURN].mean()) for t, g in oracle.groupby("task", sort=False)}


def paired_differences(
    scores: pd.DataFrame,
    x: str,
    y: str,
    tasks: Sequence[str],
    scales: Mapping[str, float] | None = None,
) -> np.ndarray:
    """(pairs × tasks) matrix of d = X(seed) − Y(seed) of the final return (``scores``: rows of
    ``final_scores``), one row per seed that both methods finished on every task of ``tasks``, in
    seed order; column t divided by ``scales[t]`` when given. Trials without a seed never pair."""

    def wide(method: str) -> pd.DataFrame:
        sub = scores[(scores["method"] == method) & scores["task"].isin(tasks)]
        sub = sub.dropna(subset=["seed", RETURN])
        if sub.empty:
            return pd.DataFrame(columns=list(tasks), dtype=float)
        per_seed = sub.pivot_table(index="seed", columns="task", values=RETURN, aggfunc="first")
        return per_seed.reindex(columns=list(tasks))

    diff = (wide(x) - wide(y)).dropna().sort_index()
    mat = diff.to_numpy(dtype=float).reshape(-1, len(tasks))
    if scales is not None:
        mat = mat / np.array([scales[t] for t in tasks], dtype=float)
    return mat


def paired_t_power(nc: float, df: int, alpha: float = PAIRED_ALPHA) -> float:
    """Power of a two-sided one-sample (paired) t-test at level ``alpha`` with ``df`` degrees of
    freedom when the statistic is noncentral t with noncentrality ``nc`` (= δ·√n / sd):
    P(|T| > t_{1−α/2, df}), T ~ ``scipy.stats.nct(df, nc)``.

    The lower tail P(T < −t) is taken as P(T' > t), T' ~ nct(df, −nc) (the same number): scipy 1.17's
    ``nct.cdf`` returns NaN far in that tail (e.g. df 1, nc 8), where its ``sf`` gives 0."""
    crit = scipy.stats.t.ppf(1.0 - alpha / 2.0, df)
    return float(scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.sf(crit, df, -nc))


def min_detectable_effect(
    n: int, sd: float, *, power: float = PAIRED_POWER, alpha: float = PAIRED_ALPHA
) -> float:
    """The smallest mean difference δ that a two-sided paired t-test at level ``alpha`` detects with
    probability ``power`` from ``n`` pairs whose differences have standard deviation ``sd``.

    Exact (noncentral t, not the normal approximation): ``scipy.optimize.brentq`` finds the
    noncentrality λ with ``paired_t_power(λ, n − 1, alpha) = power``; δ = λ·sd/√n, in the units of
    ``sd``. NaN when n < 2 or ``sd`` is not a positive number (no t-test).
    """
    if n < 2 or not np.isfinite(sd) or sd <= 0 or not alpha < power < 1:
        return float("nan")
    df = n - 1

    def gap(nc: float) -> float:
        return paired_t_power(nc, df, alpha) - power

    hi = 1.0
    while gap(hi) < 0:  # power(0) = alpha < power; power rises to 1 with the noncentrality
        hi *= 2.0
    nc = float(scipy.optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-12))
    return nc * float(sd) / float(np.sqrt(n))


def _paired_unit(
    label: str, tasks: Sequence[str], scales: Mapping[str, float]
) -> tuple[str, float, str]:
    """(unit, scale, note) of the paired row of ``label`` over ``tasks``: ``A2C_UNIT`` with the
    task's oracle mean (NaN over several tasks) when every task has a positive one, else ``RAW_UNIT``
    and why."""
    missing = [t for t in tasks if t not in scales]
    nonpositive = [t for t in tasks if t in scales and not scales[t] > 0]
    if not missing and not nonpositive:
        return A2C_UNIT, (scales[tasks[0]] if label != ALL_TASKS else float("nan")), ""
    why = []
    if missing:
        why.append(f"no {ORACLE_MODE} trials on {', '.join(missing)}")
    for t in nonpositive:
        why.append(f"the {ORACLE_MODE} mean on {t} is {scales[t]:.4g} ≤ 0")
    return RAW_UNIT, float("nan"), f"raw return ({'; '.join(why)})"


def paired_table(
    scores: pd.DataFrame,
    improvement: pd.DataFrame,
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
    power: float = PAIRED_POWER,
    alpha: float = PAIRED_ALPHA,
) -> pd.DataFrame:
    """Seed-paired differences d = X(seed) − Y(seed) of the final return, one row per row of
    ``improvement`` (``improvement_table``: the same pairs and tasks as P(X > Y)).

    Seeds fix the initial weights and pairs, so X and Y on one seed are not independent runs: the
    differences on the seeds both finished have about half the variance of unpaired ones. d is
    divided by the task's mean ``a2c_oracle`` return (``a2c_scales``; unit ``A2C_UNIT``) or, where
    the task has no oracle trials or a mean ≤ 0, left in return points (unit ``RAW_UNIT``, with the
    reason in ``note``). An ``ALL_TASKS`` row stacks the (pairs × tasks) matrix of the seeds both
    finished on every task both ran, and only on the A2C scale; otherwise its verdict is
    ``no common scale``. Mean and IQM of d get a percentile stratified bootstrap CI
    (``interval_estimates``: rows of a task resampled together, so pairs stay pairs); estimates
    within 1e-12·max|d| of 0 (round-off of a mean that is 0) are reported as 0.

    Returns:
        Columns ``PAIRED_COLUMNS``: ``n`` pairs (seeds × tasks), ``scale`` the oracle mean divided
        by (NaN when raw or over tasks), ``sd`` of d (ddof 1), ``mde`` the smallest mean d a
        two-sided paired t-test at ``alpha`` detects with ``power`` (``min_detectable_effect``),
        ``verdict`` ``x`` or ``y`` (the CI of the mean lies above or below 0), ``not significant``
        (it contains 0), ``too few shared seeds`` (fewer than 2) or ``no common scale``.
    """
    scales = a2c_scales(scores)
    tasks = list(dict.fromkeys(scores["task"]))
    has = {(str(m), str(t)) for m, t in zip(scores["method"], scores["task"], strict=True)}
    rows: list[dict[str, Any]] = []
    todo: dict[str, np.ndarray] = {}
    for r in improvement.to_dict("records"):
        label, x, y = str(r["task"]), str(r["x"]), str(r["y"])
        cols = (
            [t for t in tasks if (x, t) in has and (y, t) in has] if label == ALL_TASKS else [label]
        )
        unit, scale, note = _paired_unit(label, cols, scales)
        mat = paired_differences(scores, x, y, cols, scales if unit == A2C_UNIT else None)
        row: dict[str, Any] = {"task": label, "x": x, "y": y, "n": mat.size, "unit": unit}
        row |= {"scale": scale, "note": note}
        if label == ALL_TASKS and unit != A2C_UNIT:
            row["verdict"] = "no common scale"
            row["note"] = f"no common scale over tasks: {note}"
        elif mat.shape[0] < 2:
            row["verdict"] = "too few shared seeds"
            where = "every task both ran" if label == ALL_TASKS else label
            why = f"{mat.shape[0]} seed(s) finished by both on {where}; need 2"
            row["note"] = f"{why}; {note}" if note else why
        else:
            row["sd"] = float(np.std(mat, ddof=1))
            row["mde"] = min_detectable_effect(mat.size, row["sd"], power=power, alpha=alpha)
            if not row["sd"] > 0:
                same = f"every d({x} − {y}) on {label} is the same: no t-test"
                row["note"] = "; ".join(filter(None, [same, note]))
            todo[str(len(rows))] = mat
        rows.append(row)
    est = interval_estimates(todo, iqm_and_mean, reps=reps, seed=seed, level=level)
    for key, (point, lo, hi) in est.items():
        row = rows[int(key)]
        # A resample whose differences cancel has mean 0 up to round-off (-1e-18 after the
        # division): that is 0, so that its CI contains 0 rather than "lies below" it.
        tol = 1e-12 * float(np.abs(todo[key]).max())
        point, lo, hi = (np.where(np.abs(v) <= tol, 0.0, v) for v in (point, lo, hi))
        row |= {"iqm": point[0], "iqm_lo": lo[0], "iqm_hi": hi[0]}
        row |= {"mean": point[1], "mean_lo": lo[1], "mean_hi": hi[1]}
        row["verdict"] = row["x"] if lo[1] > 0 else row["y"] if hi[1] < 0 else "not significant"
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def reward_model_table(
    scores: pd.DataFrame, *, reps: int = DEFAULT_REPS, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Mean over seeds (and tasks) of ``rm/accuracy`` and ``rm/return_corr`` with bootstrap CIs.

    Returns:
        Columns ``task, method, metric, n, mean, lo, hi``; methods without the metric have no row.
    """
    rows: list[dict[str, Any]] = []
    for label, tasks in _task_groups(scores, stack=True):
        sub = scores[scores["task"].isin(tasks)]
        for metric in RM_METRICS:
            mats = {
                str(m): score_matrix(g, metric, tasks) for m, g in sub.groupby("method", sort=False)
            }
            mats = {m: x for m, x in mats.items() if x.shape[0] > 0}
            est = interval_estimates(
                mats, rl_metrics.aggregate_mean, reps=reps, seed=seed, level=level
            )
            for m, (point, lo, hi) in est.items():
                rows.append(
                    {
                        "task": label,
                        "method": m,
                        "metric": metric,
                        "n": mats[m].shape[0],
                        "mean": point[0],
                        "lo": lo[0],
                        "hi": hi[0],
                    }
                )
    return pd.DataFrame(rows, columns=["task", "method", "metric", "n", "mean", "lo", "hi"])


def _iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """IQM over runs (× tasks) at every point of a (runs × tasks × points) array."""
    return np.asarray(trim_mean_quarter(scores.reshape(-1, scores.shape[-1]), 0), dtype=float)


def _common_grid(runs: list[pd.DataFrame]) -> np.ndarray:
    """x values of the run with the fewest points, inside the x range every run covers."""
    lo = max(float(r[FRAMES].iloc[0]) for r in runs)
    hi = min(float(r[FRAMES].iloc[-1]) for r in runs)
    fewest = min(runs, key=len)[FRAMES].to_numpy(dtype=float)
    return fewest[(fewest >= lo) & (fewest <= hi)]


def learning_curves(
    curves: pd.DataFrame,
    axes: Sequence[str] = (),
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """IQM over seeds of ``rl/episode_return`` against ``env_frames`` with a pointwise bootstrap band.

    Runs that logged different frame counts are interpolated onto the x values of the run with the
    fewest points, within the range all runs cover (identity when all log at the same frames).

    Returns:
        Columns ``task, method, env_frames, n, iqm, lo, hi, mean`` (complete trials only).
    """
    cols = ["task", "method", FRAMES, "n", "iqm", "lo", "hi", "mean"]
    rl = _rl_curves(curves)
    if rl.empty or FRAMES not in rl.columns:
        return pd.DataFrame(columns=cols)
    rl = _labels(rl.dropna(subset=[RETURN, FRAMES]), _method_axes(axes))
    parts: list[pd.DataFrame] = []
    for (task, method), grp in rl.groupby(["task", "method"], sort=False):
        runs = [
            r.sort_values(FRAMES).drop_duplicates(FRAMES, keep="last")
            for _, r in grp.groupby("trial", sort=False)
        ]
        grid = _common_grid(runs)
        if len(grid) == 0:
            continue
        mat = np.stack(
            [np.interp(grid, r[FRAMES].to_numpy(float), r[RETURN].to_numpy(float)) for r in runs]
        )[:, None, :]
        ((point, lo, hi),) = interval_estimates(
            {"curve": mat}, _iqm_per_point, reps=reps, seed=seed, level=level
        ).values()
        parts.append(
            pd.DataFrame(
                {
                    "task": task,
                    "method": method,
                    FRAMES: grid,
                    "n": len(runs),
                    "iqm": point,
                    "lo": lo,
                    "hi": hi,
                    "mean": mat.mean(axis=(0, 1)),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def draw_learning_curves(curve_stats: pd.DataFrame, path: Path, *, level: float = 0.95) -> Path:
    """One panel per task: per method the IQM over seeds and its bootstrap band, against env frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pbrl_dist.report.figures import method_colors

    tasks = list(dict.fromkeys(curve_stats["task"]))
    methods = [str(m) for m in dict.fromkeys(curve_stats["method"])]
    colors = method_colors(methods)  # a method's colour in every figure
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(max(7, 5 * len(tasks)), 4.6), squeeze=False, layout="constrained"
    )
    n_max: dict[str, int] = {}
    for ax, task in zip(axes[0], tasks, strict=True):
        for method, grp in curve_stats[curve_stats["task"] == task].groupby("method", sort=False):
            c = colors[str(method)]
            ax.plot(grp[FRAMES], grp["iqm"], color=c)
            ax.fill_between(grp[FRAMES], grp["lo"], grp["hi"], color=c, alpha=0.2)
            n_max[str(method)] = max(n_max.get(str(method), 0), int(grp["n"].max()))
        ax.set_title(str(task))
        ax.set_xlabel("env frames")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("true episode return (IQM over seeds)")
    fig.suptitle(f"RLHF learning curves: IQM over seeds, {level:.0%} stratified bootstrap band")
    handles = [plt.Line2D([], [], color=colors[m]) for m in n_max]
    fig.legend(  # below the axes, never on a curve
        handles,
        [f"{m} (n={n})" for m, n in n_max.items()],
        loc="outside lower center",
        ncols=min(len(n_max), 4),
        frameon=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@dataclass
class RLStats:
    """The RLHF statistics of a results folder (the frames of ``return_table`` and friends)."""

    scores: pd.DataFrame
    returns: pd.DataFrame
    improvement: pd.DataFrame
    reward_model: pd.DataFrame
    curves: pd.DataFrame
    reps: int
    seed: int
    level: float
    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(PAIRED_COLUMNS)))
    """``paired_table``: the seed-paired difference beside each row of ``improvement``."""

    def paired_frame(self) -> pd.DataFrame:
        """``paired_stats.csv``: ``PAIRED_COLUMNS`` then ``level, reps, seed, alpha, power``."""
        return self.paired.assign(
            level=self.level, reps=self.reps, seed=self.seed, alpha=PAIRED_ALPHA, power=PAIRED_POWER
        )

    def to_frame(self) -> pd.DataFrame:
        """One tidy frame for ``rl_stats.csv``: ``section, task, method, versus, metric, statistic,
        n, n_versus, estimate, ci_lo, ci_hi, level, reps, seed``."""
        rows: list[dict[str, Any]] = []
        for r in self.returns.to_dict("records"):
            metric = f"{RETURN} (normalized)" if r["normalized"] else RETURN
            for stat in ("iqm", "mean"):
                rows.append(
                    {
                        "section": "return",
                        "task": r["task"],
                        "method": r["method"],
                        "metric": metric,
                        "statistic": stat,
                        "n": r["n"],
                        "estimate": r[stat],
                        "ci_lo": r[f"{stat}_lo"],
                        "ci_hi": r[f"{stat}_hi"],
                    }
                )
        for r in self.improvement.to_dict("records"):
            rows.append(
                {
                    "section": "improvement",
                    "task": r["task"],
                    "method": r["x"],
                    "versus": r["y"],
                    "metric": RETURN,
                    "statistic": "P(method > versus)",
                    "n": r["n_x"],
                    "n_versus": r["n_y"],
                    "estimate": r["p"],
                    "ci_lo": r["lo"],
                    "ci_hi": r["hi"],
                    "verdict": r["verdict"],
                }
            )
        for r in self.reward_model.to_dict("records"):
            rows.append(
                {
                    "section": "reward_model",
                    "task": r["task"],
                    "method": r["method"],
                    "metric": r["metric"],
                    "statistic": "mean",
                    "n": r["n"],
                    "estimate": r["mean"],
                    "ci_lo": r["lo"],
                    "ci_hi": r["hi"],
                }
            )
        cols = [
            "section",
            "task",
            "method",
            "versus",
            "metric",
            "statistic",
            "n",
            "n_versus",
            "estimate",
            "ci_lo",
            "ci_hi",
            "verdict",
        ]
        frame = pd.DataFrame(rows).reindex(columns=cols)
        return frame.assign(level=self.level, reps=self.reps, seed=self.seed)


def rl_stats(
    curves: pd.DataFrame,
    axes: Sequence[str] = (),
    *,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    level: float = 0.95,
    baselines: Mapping[str, tuple[float, float]] | None = None,
    versus: Sequence[tuple[str, str]] = (),
) -> RLStats | None:
    """All RLHF statistics of the ``curves`` of ``load_results``; None when no problem logs a return.

    Args:
        curves: per-iteration rows of every trial (``load_results(out)[0]``).
        axes: the sweep's axes (configuration axes become part of the method label).
        reps: bootstrap replications of every interval.
        seed: seed of ``np.random`` for every bootstrap (reports are reproducible).
        level: coverage of the intervals.
        baselines: {task: (low, high)} to normalise returns per task (see the module docstring).
        versus: extra (X, Y) method pairs for P(X > Y), e.g. an ablation against its base method
            (the default pairs rank modes: pbrl over drlhf, each over the oracle).

    Raises:
        ValueError: a ``versus`` method that is not among the results (naming it and the known ones).
    """
    scores = final_scores(curves, axes)
    if scores.empty:
        return None
    modes = dict(zip(scores["method"], scores["mode"], strict=True))
    for x, y in versus:
        for m in (x, y):
            if m not in modes:
                raise ValueError(
                    f"--versus {x}:{y}: no method {m!r} in these results "
                    f"(methods: {', '.join(sorted(modes))})"
                )
    pairs = improvement_pairs(modes)
    pairs += [p for p in versus if p not in pairs]
    kw: dict[str, Any] = {"reps": reps, "seed": seed, "level": level}
    improvement = improvement_table(scores, pairs=pairs, **kw)
    return RLStats(
        scores=scores,
        returns=return_table(scores, baselines=baselines, **kw),
        improvement=improvement,
        reward_model=reward_model_table(scores, **kw),
        curves=learning_curves(curves, axes, **kw),
        paired=paired_table(scores, improvement, **kw),
        **kw,
    )


def _ci(v: float, lo: float, hi: float, n: int) -> str:
    return f"{v:.4g} [{lo:.4g}, {hi:.4g}]" if n > 1 else f"{v:.4g} (1 seed: no CI)"


def format_improvement(row: Mapping[str, Any], level: float = 0.95) -> str:
    """``P(pbrl > drlhf) = 0.62 [0.25, 1.00]  toy_rlhf, 4 vs 4 seeds: not significant (...)``."""
    x, y, pct = row["x"], row["y"], f"{level:.0%}"
    verdict = row["verdict"]
    if verdict == "too few seeds":
        words = "too few seeds for an interval (need 2 per method)"
    elif verdict == "not significant":
        words = f"not significant (the {pct} CI contains 0.5)"
    elif verdict == x:
        words = f"{x} better (the {pct} CI lies above 0.5)"
    else:
        words = f"{y} better (the {pct} CI lies below 0.5)"
    return (
        f"P({x} > {y}) = {row['p']:.2f} [{row['lo']:.2f}, {row['hi']:.2f}]  "
        f"{row['task']}, {row['n_x']} vs {row['n_y']} seeds: {words}"
    )


def _paired_verdict(row: Mapping[str, Any], pct: str) -> str:
    verdict = row["verdict"]
    if verdict == "not significant":
        return f"not significant (the {pct} CI of the mean contains 0)"
    if verdict == row["x"]:
        return f"{row['x']} better (the {pct} CI of the mean lies above 0)"
    if verdict == row["y"]:
        return f"{row['y']} better (the {pct} CI of the mean lies below 0)"
    return f"no paired statistic: {row['note']}"


def format_paired(paired: pd.DataFrame, level: float = 0.95) -> str:
    """The seed-paired block printed under the P(X > Y) lines: a header saying what d, its units and
    the power column are, one table row per pair and task (``d(pbrl − drlhf)  toy_rlhf  4  a2c ...``),
    then the notes (raw units and why)."""
    pct = f"{level:.0%}"
    head = (
        "seed-paired differences d = X(seed) − Y(seed) of the final return over the seeds both "
        f"finished: mean and IQM of d, {pct} stratified bootstrap CIs (pairs kept together)\n"
        f"unit {A2C_UNIT}: d ÷ the task's mean {ORACLE_MODE} return; {RAW_UNIT}: return points. "
        f"min effect: the smallest mean d a two-sided paired t-test (α = {PAIRED_ALPHA:g}) detects "
        f"with {PAIRED_POWER:.0%} power at this n and sd of d"
    )
    header = ["pair", "task", "n", "unit", f"mean d [{pct} CI]", f"IQM d [{pct} CI]"]
    header += [f"min effect ({PAIRED_POWER:.0%} power)", "paired verdict"]
    lines = [header]
    notes: list[str] = []
    for r in paired.to_dict("records"):
        stat = r["verdict"] not in ("too few shared seeds", "no common scale")
        cells = [f"d({r['x']} − {r['y']})", str(r["task"]), str(r["n"]), str(r["unit"])]
        if stat:
            cells += [_ci(r["mean"], r["mean_lo"], r["mean_hi"], 2)]
            cells += [_ci(r["iqm"], r["iqm_lo"], r["iqm_hi"], 2)]
            cells += ["-" if pd.isna(r["mde"]) else f"{r['mde']:.4g}"]
            if r["note"] and r["note"] not in notes:
                notes.append(r["note"])
        else:
            cells += ["-", "-", "-"]
        cells.append(_paired_verdict(r, pct))
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines
    )
    return "\n".join([head, table, *(f"note: {n}" for n in notes)])


def format_rl_stats(stats: RLStats) -> str:
    """The printed block: a table (task, method, n, IQM [CI], mean, reward model), then P(X > Y),
    then the seed-paired differences of the same pairs (``format_paired``)."""
    pct = f"{stats.level:.0%}"
    normalized = bool(stats.returns["normalized"].any()) if not stats.returns.empty else False
    what = "normalised final return" if normalized else f"final {RETURN}"
    head = (
        f"RLHF statistics (rliable): {what} of the complete trials; IQM = interquartile mean over "
        f"seeds; {pct} stratified bootstrap CIs ({stats.reps} reps, seed {stats.seed})"
    )
    rm = stats.reward_model
    header = [
        "task",
        "method",
        "n",
        f"IQM [{pct} CI]",
        "mean",
        *(f"{m} [{pct} CI]" for m in RM_METRICS),
    ]
    lines = [header]
    for r in stats.returns.to_dict("records"):
        cells = [str(r["task"]), str(r["method"]), str(r["n"])]
        cells += [_ci(r["iqm"], r["iqm_lo"], r["iqm_hi"], r["n"]), f"{r['mean']:.4g}"]
        for m in RM_METRICS:
            hit = rm[
                (rm["task"] == r["task"]) & (rm["method"] == r["method"]) & (rm["metric"] == m)
            ]
            cells.append("-" if hit.empty else _ci(*hit[["mean", "lo", "hi", "n"]].iloc[0]))
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines
    )
    out = [head, table]
    if stats.scores["task"].nunique() > 1 and ALL_TASKS not in set(stats.returns["task"]):
        out.append("(several tasks and no baselines: IQM and mean per task only, on raw returns)")
    out += [format_improvement(r, stats.level) for r in stats.improvement.to_dict("records")]
    if not stats.paired.empty:
        out.append(format_paired(stats.paired, stats.level))
    return "\n".join(out)


def write_rl_stats(
    stats: RLStats, report_dir: Path, figure_dir: Path, *, root: Path | None = None
) -> list[Path]:
    """Write ``rl_stats.csv``, ``rl_curves.csv`` and ``paired_stats.csv`` (``RLStats.paired_frame``)
    into ``report_dir`` and the learning-curve figure
    ``rl_learning_curves.png`` into ``figure_dir``; return the paths written.

    Each file is written atomically and never through a link (``safe_io``; folders resolving outside
    ``root`` are refused)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        report_dir / "rl_stats.csv",
        report_dir / "rl_curves.csv",
        report_dir / "paired_stats.csv",
    ]
    frames = (stats.to_frame(), stats.curves, stats.paired_frame())
    for path, frame in zip(paths, frames, strict=True):
        with atomic_file(path, "w", root=root, newline="") as fh:
            frame.to_csv(fh, index=False)
    if not stats.curves.empty:
        figure = figure_dir / "rl_learning_curves.png"
        figure_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(figure, root=root) as tmp:
            draw_learning_curves(stats.curves, tmp, level=stats.level)
        paths.append(figure)
    return paths
