"""Paper-style figures: mean ± band over games/seeds against iteration, one line per method.

Which trials a curve shows (``status`` from ``load_results``):

* the mean line and its ± std band average **complete trials only**, so every point of a mean curve
  averages the same population (a trial that stopped at iteration 220 would otherwise leave the mean
  after 220, and ASHA's survivors alone would make the curve jump up after each rung);
* trials a scheduler **stopped** early (ASHA) are drawn one by one as thin dotted lines in their
  method's colour, up to where they were stopped, and never enter a mean;
* **incomplete** trials (interrupted, running, crashed) are left out of the figures.

How a figure looks, in every figure and every results folder:

* a method has **one colour** (``method_colors``): the built-in method names have fixed palette
  entries, any other name (a user's method, a ``pbrl_value lam=20`` configuration label) a colour
  chosen from a hash of the name, so the same name gets the same colour wherever it is drawn;
* the legend sits **below the axes** (``fig.legend`` outside the constrained layout), never on a curve;
* a curve of one logged point is drawn as a marker (a line needs two);
* a panel without data is **left out**, with one console line saying why; a figure with no panel
  left is not written (``draw_figures`` returns only the files it wrote).

Every problem gets a figure: the one its ``ProblemSpec.figure`` names, otherwise ``progress_figure``
(its ``progress`` metrics; for a problem ``pbrl report`` has not imported, e.g. a user's
``problem.target``, the metrics its rows hold).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pbrl_dist.report.tables import complete_only
from pbrl_dist.safe_io import atomic_path

PALETTE: tuple[str, ...] = (
    # matplotlib's tab10 ...
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    # ... then ten darker shades (tab20b, Dark2), for when a figure has more than ten methods
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#1b9e77",
    "#d95f02",
    "#6b6ecf",
    "#e7298a",
    "#a6761d",
)
"""Every colour a method line can get."""

CANONICAL_METHODS: dict[str, int] = {
    "pbrl_value": 0,
    "pbrl_bellman": 1,
    "start_line": 2,  # fig3's flat start line: green, dashed
    "indep_pg": 3,
    "pbrl": 4,
    "drlhf": 5,
    "a2c_oracle": 6,
    "sparse_pg": 7,
    "pbrl_ni": 10,  # dark indigo and dark orange: apart from fig3's green start line
    "metagrad": 16,
}
"""The method names of the shipped sweep files → their fixed index in ``PALETTE`` (all different, so
two of them never share a colour, whichever figure they meet in)."""

REFERENCE_COLOR = "black"
"""Flat reference lines that are not a method (e.g. fresh PG on the sparse reward)."""

MAX_AUTO_PANELS = 4
"""At most this many panels in a figure drawn from the metrics a problem's rows hold."""

_X_LABEL = {"iter": "outer iteration", "perf/env_frames": "env frames"}


def _hash_index(name: str, n: int) -> int:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % n


def method_colors(names: Iterable[str]) -> dict[str, str]:
    """One colour per method name, the same in every figure and every folder.

    A name in ``CANONICAL_METHODS`` always gets its fixed colour. Any other name (a user's method, a
    configuration label such as ``pbrl_value lam=20``) gets the tab10 colour a hash of the name picks
    (SHA-1: the same in every process), or the next one not taken yet in this figure, then the darker
    shades; names are taken in sorted order, so the colours depend on the figure's set of names,
    never on the order of its rows, and two names of one figure share a colour only beyond
    ``len(PALETTE)`` names.
    """
    wanted = list(dict.fromkeys(str(n) for n in names))
    colors = {n: PALETTE[CANONICAL_METHODS[n]] for n in wanted if n in CANONICAL_METHODS}
    taken = set(colors.values())
    first, then = PALETTE[:10], PALETTE[10:]
    for name in sorted(n for n in wanted if n not in colors):
        a, b = _hash_index(name, len(first)), _hash_index(name, len(then))
        order = [*first[a:], *first[:a], *then[b:], *then[:b]]
        colors[name] = next((c for c in order if c not in taken), order[0])
        taken.add(colors[name])
    return colors


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
    done = done.dropna(subset=[metric, x])
    stats = done.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    return stats


def _drawn(curves: pd.DataFrame, metric: str, x: str) -> pd.DataFrame:
    """The rows a panel of ``metric`` against ``x`` would draw: complete and stopped trials with both."""
    if metric not in curves.columns or x not in curves.columns:
        return curves.iloc[0:0]
    rows = curves
    if "status" in rows.columns:
        rows = rows[rows["status"].isin(["complete", "stopped"])]
    return rows.dropna(subset=[metric, x])


def _marker(n_points: int) -> dict[str, Any]:
    """A curve of one point is a marker: a line needs two."""
    return {"marker": "o", "ms": 4} if n_points < 2 else {}


Drawn = dict[str, tuple[set[str], set[str]]]
"""Per method, the complete and the stopped trials a panel drew."""


def _stopped_lines(
    ax: plt.Axes, curves: pd.DataFrame, metric: str, x: str, method: str, color: Any
) -> set[str]:
    """Draw every stopped trial of one method as a thin dotted line (no mean, no band)."""
    stopped = stopped_only(curves)
    if metric not in stopped.columns or x not in stopped.columns:
        return set()
    stopped = stopped.dropna(subset=[metric, x])
    n = stopped["trial"].nunique() if "trial" in stopped.columns else 0
    names: set[str] = set()
    for i, (name, tr) in enumerate(stopped.groupby("trial", sort=False)):
        tr = tr.sort_values(x)
        ax.plot(
            tr[x],
            tr[metric],
            color=color,
            lw=0.8,
            ls=":",
            alpha=0.7,
            label=f"{method} stopped early (n={n})" if i == 0 else None,
            **_marker(len(tr)),
        )
        names.add(str(name))
    return names


def _panel(
    ax: plt.Axes,
    curves: pd.DataFrame,
    metric: str,
    *,
    log: bool,
    title: str,
    x: str = "iter",
    colors: dict[str, str] | None = None,
) -> Drawn:
    """One panel: per method the mean ± std of ``metric`` over its complete trials against ``x``, its
    stopped trials thin and dotted; every line in the method's ``method_colors`` colour. Returns what
    was drawn (method → complete trials, stopped trials)."""
    colors = colors or method_colors(curves["method.name"].astype(str))
    drawn: Drawn = {}
    values: list[float] = []
    for method, grp in curves.groupby("method.name", sort=False):
        color = colors.get(str(method)) or method_colors([str(method)])[str(method)]
        stats = mean_curve(grp, metric, x=x)
        done: set[str] = set()
        if not stats.empty:
            ax.plot(
                stats[x],
                stats["mean"],
                color=color,
                label=f"{method} (n={int(stats['count'].max())})",
                **_marker(len(stats)),
            )
            lo = stats["mean"] - stats["std"]
            if log:
                lo = lo.clip(lower=stats["mean"] * 0.1)
            ax.fill_between(stats[x], lo, stats["mean"] + stats["std"], color=color, alpha=0.2)
            rows = complete_only(grp).dropna(subset=[metric, x])
            done = set(rows["trial"].astype(str)) if "trial" in rows.columns else {str(method)}
            values += stats["mean"].tolist()
        stopped = _stopped_lines(ax, grp, metric, x, str(method), color)
        if stopped:
            values += stopped_only(grp)[metric].dropna().tolist()
        if done or stopped:
            drawn[str(method)] = (done, stopped)
    ax.set_xlabel(_X_LABEL.get(x, x))
    ax.set_title(title)
    if log and values and min(values) > 0:  # a log axis cannot show a zero or a negative value
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return drawn


@dataclass(frozen=True)
class PanelSpec:
    """One panel of a figure: ``metric`` against ``x`` over ``rows`` (None: the figure's curves)."""

    metric: str
    title: str
    log: bool = False
    x: str = "iter"
    ylabel: str = ""
    rows: pd.DataFrame | None = field(default=None, compare=False)
    reference: tuple[float, str, str] | None = None
    """A flat line (level, label, colour) drawn across the panel, e.g. a baseline's final value."""


class EmptyFigure(ValueError):
    """No panel of a figure has data (the message says why)."""


@dataclass
class Built:
    """A figure built in memory (None when no panel had data) and one line per panel left out."""

    name: str
    figure: Figure | None
    notes: list[str]


def _span(rows: pd.DataFrame, x: str) -> str:
    """``(logged up to env frames 300)`` of a set of rows, or nothing."""
    if x in rows.columns and rows[x].notna().any():
        return f" (logged up to {_X_LABEL.get(x, x)} {rows[x].max():g})"
    return ""


def why_empty(rows: pd.DataFrame, metrics: Sequence[str], x: str = "iter") -> str:
    """Why a panel of ``metrics`` against ``x`` has nothing to draw in ``rows``, in a few words."""
    if "status" in rows.columns:
        shown = rows[rows["status"].isin(["complete", "stopped"])]
        if shown.empty:
            n = rows["trial"].nunique() if "trial" in rows.columns else len(rows)
            return f"none of its {n} trials is complete or stopped early"
        rows = shown
    n = rows["trial"].nunique() if "trial" in rows.columns else 1
    have = [m for m in metrics if m in rows.columns and rows[m].notna().any()]
    if not have:
        what = " or ".join(metrics)
        hint = (
            ": no episode has ended yet (a smoke run is too short to finish one)"
            if "rl/episode_return" in metrics
            else ""
        )
        return f"no {what} value in the {len(rows)} rows of its {n} trials{_span(rows, x)}{hint}"
    return f"the rows with {' or '.join(have)} carry no {x}"


def _legend(fig: Figure, axes: Sequence[plt.Axes], drawn: Drawn, colors: dict[str, str]) -> None:
    """One legend for the whole figure, below the axes (outside the constrained layout), as many
    columns as fit the figure's width: it never covers a curve. ``n`` counts the trials a method's
    lines drew over all panels."""
    handles: list[Any] = []
    labels: list[str] = []
    for method, (done, stopped) in drawn.items():
        if done:
            handles.append(Line2D([], [], color=colors[method], lw=1.5))
            labels.append(f"{method} (n={len(done)})")
        if stopped:
            handles.append(Line2D([], [], color=colors[method], lw=0.8, ls=":"))
            labels.append(f"{method} stopped early (n={len(stopped)})")
    for ax in axes:  # reference lines (not a method): their own labels
        for line in ax.get_lines():
            if line.get_gid() == "reference" and line.get_label() not in labels:
                handles.append(line)
                labels.append(str(line.get_label()))
    if not handles:
        return
    width = fig.get_figwidth() * fig.dpi
    longest = max(len(s) for s in labels)
    ncols = max(1, min(len(labels), int(fig.get_figwidth() * 72 / (7 * longest + 40))))
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    while True:
        leg = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
        if ncols == 1 or leg.get_window_extent(renderer).width <= width:
            return
        leg.remove()
        ncols -= 1


def build_figure(
    name: str,
    curves: pd.DataFrame,
    panels: Sequence[PanelSpec],
    suptitle: str,
    *,
    panel_width: float = 5.5,
) -> Built:
    """Build the figure ``name`` of ``panels`` over ``curves`` in memory (nothing is written).

    Panels without data are left out with one note each; when none has data the figure is None and
    the one note says why. Colours come from ``method_colors`` over every method of ``curves``.
    """
    notes: list[str] = []
    keep: list[PanelSpec] = []
    for p in panels:
        rows = curves if p.rows is None else p.rows
        if _drawn(rows, p.metric, p.x).empty:
            notes.append(
                f"figure {name}: panel {p.title!r} left out: {why_empty(rows, [p.metric], p.x)}"
            )
        else:
            keep.append(p)
    if not keep:
        xs = list(dict.fromkeys(p.x for p in panels)) or ["iter"]
        why = why_empty(curves, list(dict.fromkeys(p.metric for p in panels)), xs[0])
        return Built(name, None, [f"figure {name}: not written: {why}"])
    methods = (
        curves["method.name"].astype(str) if "method.name" in curves else pd.Series([], dtype=str)
    )
    colors = method_colors(methods)
    fig = plt.figure(figsize=(max(7.0, panel_width * len(keep)), 4.6), layout="constrained")
    axes = list(fig.subplots(1, len(keep), squeeze=False)[0])
    drawn: Drawn = {}
    for ax, p in zip(axes, keep, strict=True):
        rows = curves if p.rows is None else p.rows
        for method, (done, stopped) in _panel(
            ax, rows, p.metric, log=p.log, title=p.title, x=p.x, colors=colors
        ).items():
            old = drawn.setdefault(method, (set(), set()))
            old[0].update(done)
            old[1].update(stopped)
        if p.reference is not None:
            level, label, color = p.reference
            ax.axhline(level, color=color, ls="--", label=label, gid="reference")
        if p.ylabel:
            ax.set_ylabel(p.ylabel)
    _legend(fig, axes, drawn, colors)
    fig.suptitle(suptitle)
    return Built(name, fig, notes)


def _save(built: Built, path: Path) -> Path:
    """Write a built figure to ``path`` (its notes printed); raise ``EmptyFigure`` when there is none."""
    for note in built.notes:
        print(note)
    if built.figure is None:
        raise EmptyFigure(built.notes[0] if built.notes else f"figure {built.name}: no data")
    try:
        built.figure.savefig(path, dpi=120)
    finally:
        plt.close(built.figure)
    return path


# --- the built-in problems' figures: build_* in memory, the draw(curves, path) names save them -----


def build_fig1(curves: pd.DataFrame, name: str = "fig1_stackelberg.png") -> Built:
    """Figure 1: leader return (left) and follower optimality gap (right) against iteration."""
    return build_figure(
        name,
        curves,
        [
            PanelSpec("upper/leader_return", "Leader return Σρ·V_l (exact)"),
            PanelSpec("lower/gap", "Follower gap Σρ·(V*_f − V_f) (exact)", log=True),
        ],
        "Stackelberg Markov game: mean ± std over games and seeds",
    )


def build_fig3(curves: pd.DataFrame, name: str = "fig3_incentive.png") -> Built:
    """Figure 3: designer return (left) and NI gap ψ (right); the start line drawn flat, green, dashed."""
    algo = curves["method.algo"] if "method.algo" in curves else pd.Series("", index=curves.index)
    start = complete_only(curves[algo == "start_line"])
    learners = curves[algo != "start_line"]
    ref = None
    if not start.empty and "upper/designer_return" in start:
        level = start.groupby("trial")["upper/designer_return"].last().mean()
        if np.isfinite(level):
            color = method_colors(["start_line"])["start_line"]
            ref = (float(level), f"start line (no incentive) {level:.3f}", color)
    return build_figure(
        name,
        learners,
        [
            PanelSpec("upper/designer_return", "Designer return V^d (exact)", reference=ref),
            PanelSpec("lower/ni_gap", "NI gap ψ of the players (exact)", log=True),
        ],
        "Incentive design over a zero-sum Markov game: mean ± std over instances and seeds",
    )


def build_shaping(curves: pd.DataFrame, name: str = "shaping_chain.png") -> Built:
    """Reward shaping: task return of π_y, lower gap, and the equal-budget retraining on the learned
    reward (with fresh PG on the sparse reward as a flat reference)."""
    done = complete_only(curves)
    col = "upper/retrain_sparse_return"
    sparse = float(done[col].mean()) if col in done and done[col].notna().any() else float("nan")
    ref = (
        (sparse, f"fresh PG on sparse reward {sparse:.2f}", REFERENCE_COLOR)
        if np.isfinite(sparse)
        else None
    )
    return build_figure(
        name,
        curves,
        [
            PanelSpec("upper/task_return", "Task return V_{M_0}(π_y) (exact)"),
            PanelSpec("lower/gap", "Lower gap in the shaped task (exact)", log=True),
            PanelSpec(
                "upper/retrain_shaped_return", "Fresh PG on learned shaped reward", reference=ref
            ),
        ],
        "Reward shaping on a sparse chain: mean ± std over instances and seeds",
        panel_width=5.0,
    )


def build_fig2(curves: pd.DataFrame, name: str = "fig2_atari_rlhf.png") -> Built:
    """Figure 2: true episode return vs env frames, one panel per game, mean ± std over seeds."""
    games = list(dict.fromkeys(curves["problem.game"])) if "problem.game" in curves else [None]
    panels = [
        PanelSpec(
            "rl/episode_return",
            str(game) if game is not None else "true episode return",
            x="perf/env_frames",
            ylabel="true episode return",
            rows=curves[curves["problem.game"] == game] if game is not None else None,
        )
        for game in games
    ]
    return build_figure(
        name,
        curves,
        panels,
        "Deep RLHF on Atari: true episode return, mean ± std over seeds",
        panel_width=5.0,
    )


def build_toy_rlhf(curves: pd.DataFrame, name: str = "rlhf_toy.png") -> Built:
    """Toy RLHF: true episode return (left) and held-out reward-model accuracy (right) vs env frames."""
    x = "perf/env_frames"
    return build_figure(
        name,
        curves,
        [
            PanelSpec("rl/episode_return", "True episode return", x=x),
            PanelSpec("rm/accuracy", "Reward model: accuracy on fresh pairs", x=x),
        ],
        "RLHF on the moving-target gridworld: mean ± std over seeds",
    )


def metric_columns(curves: pd.DataFrame) -> list[str]:
    """The metric columns of ``curves`` with a value (``group/name`` keys; ``perf/*`` aside): those
    every method logs before those only some log (a penalty of one method); within each, upper level
    first, then RL, lower level, reward model, the rest, each in the rows' order."""
    rank = {"upper": 0, "rl": 1, "lower": 2, "rm": 3}
    cols = [
        c
        for c in curves.columns
        if "/" in c
        and not c.startswith("perf/")
        and pd.api.types.is_numeric_dtype(curves[c])
        and curves[c].notna().any()
    ]
    if "method.name" in curves.columns:
        logged = curves[cols].notna().groupby(curves["method.name"]).any().all()
    else:
        logged = pd.Series(True, index=cols)
    return sorted(cols, key=lambda c: (not bool(logged[c]), rank.get(c.split("/")[0], 4)))


def _x_of(curves: pd.DataFrame, metric: str) -> str:
    """``iter``, or env frames for an RL metric logged with them."""
    x = "perf/env_frames"
    if metric.startswith(("rl/", "rm/")) and not _drawn(curves, metric, x).empty:
        return x
    return "iter"


def build_progress(curves: pd.DataFrame, name: str | None = None, spec: Any = None) -> Built:
    """Any problem's figure: one panel per ``ProblemSpec.progress`` metric (a problem without one: its
    declared ``metrics``; a problem not imported here: the metrics its rows hold, at most
    ``MAX_AUTO_PANELS``) against the outer iteration (env frames for RL metrics), one line per method
    (mean ± std over instances and seeds; stopped trials thin). ``gap`` metrics on a log axis."""
    problems = list(dict.fromkeys(curves["problem.name"])) if "problem.name" in curves else []
    problem = str(problems[0]) if problems else "problem"
    if spec is None and problems:
        from pbrl_dist.problems import get_problem

        spec = get_problem(problem)
    name = name or f"{problem}.png"
    notes: list[str] = []
    if spec is not None and (spec.progress or spec.metrics):
        metrics = list(spec.progress or spec.metrics)[:MAX_AUTO_PANELS]
    else:
        held = metric_columns(curves)
        metrics = held[:MAX_AUTO_PANELS]
        if metrics:
            more = f" (of {len(held)})" if len(held) > len(metrics) else ""
            notes.append(
                f"figure {name}: problem {problem} is not imported by pbrl report (a problem.target "
                f"is code); drawn from the metrics its rows hold{more}: {', '.join(metrics)}"
            )
    if not metrics:
        return Built(name, None, [f"figure {name}: not written: its rows hold no metric"])
    meaning = dict(spec.metrics) if spec is not None else {}
    panels = [
        PanelSpec(
            m,
            m,
            log=bool(re.search(r"gap", m)),
            x=_x_of(curves, m),
            ylabel=_short(meaning.get(m, "")),
        )
        for m in metrics
    ]
    built = build_figure(name, curves, panels, f"{problem}: mean ± std over instances and seeds")
    built.notes[:0] = notes
    return built


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def fig1_stackelberg(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 1 written to ``path`` (``build_fig1``)."""
    return _save(build_fig1(curves, path.name), path)


def fig3_incentive(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 3 written to ``path`` (``build_fig3``)."""
    return _save(build_fig3(curves, path.name), path)


def shaping(curves: pd.DataFrame, path: Path) -> Path:
    """The reward-shaping figure written to ``path`` (``build_shaping``)."""
    return _save(build_shaping(curves, path.name), path)


def fig2_atari_rlhf(curves: pd.DataFrame, path: Path) -> Path:
    """Figure 2 written to ``path`` (``build_fig2``)."""
    return _save(build_fig2(curves, path.name), path)


def toy_rlhf(curves: pd.DataFrame, path: Path) -> Path:
    """The toy RLHF figure written to ``path`` (``build_toy_rlhf``)."""
    return _save(build_toy_rlhf(curves, path.name), path)


def progress_figure(curves: pd.DataFrame, path: Path) -> Path:
    """Any problem's figure written to ``path`` (``build_progress``)."""
    return _save(build_progress(curves, path.name), path)


_BUILDERS: dict[Callable[..., Any], Callable[..., Built]] = {
    fig1_stackelberg: build_fig1,
    fig3_incentive: build_fig3,
    shaping: build_shaping,
    fig2_atari_rlhf: build_fig2,
    toy_rlhf: build_toy_rlhf,
    progress_figure: build_progress,
}
"""The built-in draw functions → their in-memory builders (so ``draw_figures`` can skip empty ones)."""


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


def build_problem_figure(problem: str, curves: pd.DataFrame) -> Built | None:
    """The figure of ``problem`` over its ``curves`` in memory; None for a problem whose own
    ``draw(curves, path)`` (not a built-in one) draws it (``draw_figures`` calls that one)."""
    from pbrl_dist.problems import get_problem

    spec = get_problem(problem)
    fig = _figure_of(spec) if spec is not None else None
    if fig is None:
        return build_progress(curves, f"{problem}.png", spec)
    fname, draw = fig
    builder = _BUILDERS.get(draw)
    if builder is None:
        return None
    if builder is build_progress:
        return build_progress(curves, fname, spec)
    return builder(curves, fname)


def draw_figures(
    curves: pd.DataFrame,
    out_dir: Path,
    *,
    root: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Draw the figure of every problem present in ``curves`` into ``out_dir``; return the files written.

    Incomplete trials are dropped here; the panels average complete trials and draw stopped ones thin.
    Every problem gets its ``ProblemSpec.figure``, or ``progress_figure`` when it names none or is not
    registered in this process (a user's ``problem.target`` that ``pbrl report`` does not import).
    A panel without data is left out and a figure without any is not written; each such case is one
    line passed to ``say`` (the console). Each figure is drawn into a temporary file and renamed over
    its target (``safe_io.atomic_path``: a kill mid-draw leaves the previous figure whole; a linked
    target, or an ``out_dir`` resolving outside ``root``, is refused).
    """
    paths: list[Path] = []
    if "status" in curves.columns:
        curves = curves[curves["status"] != "incomplete"]
    if curves.empty or "problem.name" not in curves.columns:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    for problem, grp in curves.groupby("problem.name", sort=True):
        built = build_problem_figure(str(problem), grp)
        if built is None:  # the problem's own draw(curves, path), a plug-in's
            fname, fn = FIGURES[str(problem)]
            with atomic_path(out_dir / fname, root=root) as tmp:
                fn(grp, tmp)
            paths.append(out_dir / fname)
            continue
        for note in built.notes:
            say(note)
        if built.figure is None:
            continue
        try:
            with atomic_path(out_dir / built.name, root=root) as tmp:
                built.figure.savefig(tmp, dpi=120)
        finally:
            plt.close(built.figure)
        paths.append(out_dir / built.name)
    return paths
