"""Paper-style figures: mean ± band over games/seeds against iteration, one line per method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def _panel(ax: plt.Axes, curves: pd.DataFrame, metric: str, *, log: bool, title: str) -> None:
    for method, grp in curves.groupby("method.name", sort=False):
        stats = grp.groupby("iter")[metric].agg(["mean", "std", "count"]).reset_index()
        std = stats["std"].fillna(0.0)
        (line,) = ax.plot(
            stats["iter"], stats["mean"], label=f"{method} (n={int(stats['count'].max())})"
        )
        lo = stats["mean"] - std
        if log:
            lo = lo.clip(lower=stats["mean"] * 0.1)
        ax.fill_between(stats["iter"], lo, stats["mean"] + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("outer iteration")
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def fig1_stackelberg(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 1: leader return (left) and follower optimality gap (right) against iteration."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _panel(axes[0], curves, "upper/leader_return", log=False, title="Leader return Σρ·V_l (exact)")
    _panel(axes[1], curves, "lower/gap", log=True, title="Follower gap Σρ·(V*_f − V_f) (exact)")
    axes[0].legend(loc="lower right")
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
    _panel(axes[0], learners, "upper/designer_return", log=False, title="Designer return V^d (exact)")
    _panel(axes[1], learners, "lower/ni_gap", log=True, title="NI gap ψ of the players (exact)")
    if not start.empty:
        level = start.groupby("trial")["upper/designer_return"].last().mean()
        axes[0].axhline(level, color="green", ls="--", label=f"start line (no incentive) {level:.3f}")
    axes[0].legend(loc="lower right")
    fig.suptitle("Incentive design over a zero-sum Markov game: mean ± std over instances and seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def shaping(curves: pd.DataFrame, path: Path) -> Path:
    """Reward shaping: task return of π_y, lower gap, and the equal-budget retraining on the learned reward."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _panel(axes[0], curves, "upper/task_return", log=False, title="Task return V_{M_0}(π_y) (exact)")
    _panel(axes[1], curves, "lower/gap", log=True, title="Lower gap in the shaped task (exact)")
    _panel(axes[2], curves, "upper/retrain_shaped_return", log=False, title="Fresh PG on learned shaped reward")
    sparse = curves["upper/retrain_sparse_return"].mean()
    axes[2].axhline(sparse, color="gray", ls="--", label=f"fresh PG on sparse reward {sparse:.2f}")
    axes[0].legend(loc="lower right")
    axes[2].legend(loc="center right")
    fig.suptitle("Reward shaping on a sparse chain: mean ± std over instances and seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


FIGURES: dict[str, tuple[str, Callable[[pd.DataFrame, Path], Path]]] = {
    "shaping": ("shaping_chain.png", shaping),
    "stackelberg": ("fig1_stackelberg.png", fig1_stackelberg),
    "incentive": ("fig3_incentive.png", fig3_incentive),
}


def draw_figures(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Draw the figure of every problem present in ``curves`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for problem, grp in curves.groupby("problem.name"):
        if problem in FIGURES:
            fname, fn = FIGURES[problem]
            paths.append(fn(grp, out_dir / fname))
    return paths
