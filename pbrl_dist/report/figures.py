"""Paper-style figures: mean ± band over games/seeds against iteration, one line per method.

Which trials a curve shows (``status`` from ``load_results``):

* the mean line and its ± std band average **complete trials only**, so every point of a mean curve
  averages the same population (a trial that stopped at iteration 220 would otherwise leave the mean
  after 220, and ASHA's survivors alone would make the curve jump up after each rung);
* trials a scheduler **stopped** early (ASHA) are drawn one by one as thin dotted lines in their
  method's colour, up to where they were stopped, and never enter a mean;
* **incomplete** trials (interrupted, running, crashed) are left out of the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pbrl_dist.report.tables import complete_only
from pbrl_dist.safe_io import atomic_path


def stopped_only(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows of the trials a scheduler stopped early (none in a frame without ``status``)."""
    if "status" not in curves.columns:
        return curves.iloc[0:0]
    return curves[curves["status"] == "stopped"]


def mean_curve(curves: pd.DataFrame, metric: str, x: str = "iter") -> pd.DataFrame:
    """Return ``x, mean, std, count`` of ``metric`` over the **complete** trials of ``curves``.

    Stopped and incomplete trials never enter the mean; rows without ``metric`` are dropped.
    """
    done = complete_only(curves)
    if metric not in done.columns or x not in done.columns:
        return pd.DataFrame(columns=[x, "mean", "std", "count"])
    done = done.dropna(subset=[metric])
    stats = done.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def _stopped_lines(
    ax: plt.Axes, curves: pd.DataFrame, metric: str, x: str, method: str, color: Any
) -> None:
    """Draw every stopped trial of one method as a thin dotted line (no mean, no band)."""
    stopped = stopped_only(curves)
    if metric not in stopped.columns:
        return
    stopped = stopped.dropna(subset=[metric])
    n = stopped["trial"].nunique() if "trial" in stopped.columns else 0
    for i, (_, tr) in enumerate(stopped.groupby("trial", sort=False)):
        tr = tr.sort_values(x)
        (line,) = ax.plot(
            tr[x],
            tr[metric],
            color=color,
            lw=0.8,
            ls=":",
            alpha=0.7,
            label=f"{method} stopped early (n={n})" if i == 0 else None,
        )
        color = line.get_color()


def _panel(ax: plt.Axes, curves: pd.DataFrame, metric: str, *, log: bool, title: str) -> None:
    for method, grp in curves.groupby("method.name", sort=False):
        stats = mean_curve(grp, metric)
        color: Any = None
        if not stats.empty:
            (line,) = ax.plot(
                stats["iter"], stats["mean"], label=f"{method} (n={int(stats['count'].max())})"
            )
            color = line.get_color()
            lo = stats["mean"] - stats["std"]
            if log:
                lo = lo.clip(lower=stats["mean"] * 0.1)
            ax.fill_between(stats["iter"], lo, stats["mean"] + stats["std"], color=color, alpha=0.2)
        _stopped_lines(ax, grp, metric, "iter", str(method), color)
    ax.set_xlabel("outer iteration")
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _legend(ax: plt.Axes, loc: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=loc)


def fig1_stackelberg(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 1: leader return (left) and follower optimality gap (right) against iteration."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _panel(axes[0], curves, "upper/leader_return", log=False, title="Leader return Σρ·V_l (exact)")
    _panel(axes[1], curves, "lower/gap", log=True, title="Follower gap Σρ·(V*_f − V_f) (exact)")
    _legend(axes[0], "lower right")
    fig.suptitle("Stackelberg Markov game: mean ± std over games and seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fig3_incentive(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 3: designer return (left) and NI gap ψ (right); the start line drawn flat, green, dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    start = curves[curves["method.algo"] == "start_line"]
    learners = curves[curves["method.algo"] != "start_line"]
    _panel(
        axes[0], learners, "upper/designer_return", log=False, title="Designer return V^d (exact)"
    )
    _panel(axes[1], learners, "lower/ni_gap", log=True, title="NI gap ψ of the players (exact)")
    start = complete_only(start)
    if not start.empty:
        level = start.groupby("trial")["upper/designer_return"].last().mean()
        axes[0].axhline(
            level, color="green", ls="--", label=f"start line (no incentive) {level:.3f}"
        )
    _legend(axes[0], "lower right")
    fig.suptitle(
        "Incentive design over a zero-sum Markov game: mean ± std over instances and seeds"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def shaping(curves: pd.DataFrame, path: Path) -> Path:
    """Reward shaping: task return of π_y, lower gap, and the equal-budget retraining on the learned reward."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _panel(
        axes[0], curves, "upper/task_return", log=False, title="Task return V_{M_0}(π_y) (exact)"
    )
    _panel(axes[1], curves, "lower/gap", log=True, title="Lower gap in the shaped task (exact)")
    _panel(
        axes[2],
        curves,
        "upper/retrain_shaped_return",
        log=False,
        title="Fresh PG on learned shaped reward",
    )
    done = complete_only(curves)
    sparse = (
        done["upper/retrain_sparse_return"].mean()
        if "upper/retrain_sparse_return" in done
        else float("nan")
    )
    if np.isfinite(sparse):
        axes[2].axhline(
            sparse, color="gray", ls="--", label=f"fresh PG on sparse reward {sparse:.2f}"
        )
    _legend(axes[0], "lower right")
    _legend(axes[2], "center right")
    fig.suptitle("Reward shaping on a sparse chain: mean ± std over instances and seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _method_colors(curves: pd.DataFrame) -> dict[str, str]:
    """Give every method one colour for all panels of a figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(curves["method.name"]))
    return {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}


def _frames_panel(
    ax: plt.Axes, curves: pd.DataFrame, metric: str, *, title: str, colors: dict[str, str]
) -> None:
    """Mean ± std over the complete seeds of ``metric`` against ``perf/env_frames``, one line per
    method (RLHF); stopped trials thin and dotted."""
    x = "perf/env_frames"
    for method, grp in curves.groupby("method.name", sort=False):
        if metric not in grp or grp[metric].isna().all():
            continue
        stats = mean_curve(grp, metric, x=x)
        if not stats.empty:
            ax.plot(
                stats[x],
                stats["mean"],
                color=colors[str(method)],
                label=f"{method} (n={int(stats['count'].max())})",
            )
            ax.fill_between(
                stats[x],
                stats["mean"] - stats["std"],
                stats["mean"] + stats["std"],
                color=colors[str(method)],
                alpha=0.2,
            )
        _stopped_lines(ax, grp, metric, x, str(method), colors[str(method)])
    ax.set_xlabel("env frames")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def fig2_atari_rlhf(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 2: true episode return vs env frames, one panel per game, mean ± std over seeds."""
    games = list(dict.fromkeys(curves["problem.game"])) if "problem.game" in curves else ["?"]
    colors = _method_colors(curves)
    fig, axes = plt.subplots(1, len(games), figsize=(max(7, 5 * len(games)), 4), squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        sub = curves[curves["problem.game"] == game] if "problem.game" in curves else curves
        _frames_panel(ax, sub, "rl/episode_return", title=str(game), colors=colors)
    axes[0][0].set_ylabel("true episode return")
    if axes[0][0].get_legend_handles_labels()[0]:  # no line when no episode has ended yet (smoke)
        axes[0][0].legend(loc="upper left")
    fig.suptitle("Deep RLHF on Atari: true episode return, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def toy_rlhf(curves: pd.DataFrame, path: Path) -> Path:
    """Toy RLHF: true episode return (left) and held-out reward-model accuracy (right) vs env frames."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = _method_colors(curves)
    _frames_panel(axes[0], curves, "rl/episode_return", title="True episode return", colors=colors)
    _frames_panel(
        axes[1], curves, "rm/accuracy", title="Reward model: accuracy on fresh pairs", colors=colors
    )
    _legend(axes[0], "lower right")
    fig.suptitle("RLHF on the moving-target gridworld: mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def progress_figure(curves: pd.DataFrame, path: Path) -> Path:
    """Any problem's figure: one panel per ``ProblemSpec.progress`` metric against the outer
    iteration, one line per method (mean ± std over instances and seeds; stopped trials thin)."""
    from pbrl_dist.problems import get_problem

    names = list(dict.fromkeys(curves["problem.name"])) if "problem.name" in curves else []
    spec = get_problem(str(names[0])) if names else None
    metrics = [m for m in (spec.progress if spec is not None else ()) if m in curves]
    metrics = metrics or [c for c in curves.columns if "/" in c and not c.startswith("perf/")][:2]
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(5.5 * max(len(metrics), 1), 4))
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics, strict=False):
        _panel(ax, curves, metric, log=False, title=metric)
    _legend(axes[0], "best")
    fig.suptitle(f"{names[0] if names else 'problem'}: mean ± std over instances and seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _figure_of(spec: Any) -> tuple[str, Callable[[pd.DataFrame, Path], Path]] | None:
    if spec.figure is None:
        return None
    fname, draw = spec.figure
    if isinstance(draw, str):
        import importlib

        mod, _, attr = draw.partition(":")
        draw = getattr(importlib.import_module(mod), attr)
    return fname, draw


class _FigureTable:
    """``FIGURES[problem] = (file name, draw)``: a read-only view of ``ProblemSpec.figure``."""

    def _spec(self, name: str) -> Any:
        from pbrl_dist.problems import get_problem

        return get_problem(name)

    def __contains__(self, name: object) -> bool:
        spec = self._spec(str(name))
        return spec is not None and spec.figure is not None

    def __getitem__(self, name: str) -> tuple[str, Callable[[pd.DataFrame, Path], Path]]:
        spec = self._spec(name)
        fig = _figure_of(spec) if spec is not None else None
        if fig is None:
            raise KeyError(name)
        return fig

    def keys(self) -> list[str]:
        from pbrl_dist.problems import problem_specs

        return [n for n, s in problem_specs().items() if s.figure is not None]

    def __iter__(self) -> Any:
        return iter(self.keys())


FIGURES = _FigureTable()
"""``problem.name`` → (file name, ``draw(curves, path)``), from each problem's ``ProblemSpec.figure``."""


def draw_figures(curves: pd.DataFrame, out_dir: Path, *, root: Path | None = None) -> list[Path]:
    """Draw the figure of every problem present in ``curves`` into ``out_dir``.

    Incomplete trials are dropped here; the panels average complete trials and draw stopped ones thin.
    Each figure is drawn into a temporary file and renamed over its target (``safe_io.atomic_path``:
    a kill mid-draw leaves the previous figure whole; a linked target, or an ``out_dir`` resolving
    outside ``root``, is refused).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "status" in curves.columns:
        curves = curves[curves["status"] != "incomplete"]
    if curves.empty:
        return paths
    for problem, grp in curves.groupby("problem.name"):
        if problem in FIGURES:
            fname, fn = FIGURES[problem]
            with atomic_path(out_dir / fname, root=root) as tmp:
                fn(grp, tmp)  # the problem's draw(curves, path), plug-ins included
            paths.append(out_dir / fname)
    return paths
