"""``pbrl report DIR``: the table, summary files and figures of a results folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pbrl_dist.config.loader import ConfigError
from pbrl_dist.safe_io import atomic_file

INSTANCE_AXES = ("seed", "problem.game")
"""Sweep axes the report averages over (seeds and game instances) rather than giving their own rows."""


def sweep_axes(out: Path) -> list[str]:
    """The axes of the sweep recorded in ``out/sweep.yaml``: the grid's keys, then the search's."""
    rec_path = out / "sweep.yaml"
    if not rec_path.exists():
        return []
    import yaml

    rec = yaml.safe_load(rec_path.read_text(encoding="utf-8")) or {}
    block = rec.get("sweep") or {}
    return list(dict.fromkeys([*(block.get("grid") or {}), *(block.get("search") or {})]))


def _report_axes(axes: Sequence[str], trials: Any) -> tuple[str, ...]:
    """The sweep axes that name configurations (not seeds, not games).

    A ``search:`` axis gives one row per sampled value, like a grid axis gives one per listed value.
    """
    return tuple(k for k in axes if k not in INSTANCE_AXES and k in trials.columns)


def _key(v: Any) -> str:
    """A cell as a comparable key, whatever the column's dtype: 4, 4.0 and "4" agree; NaN and None agree."""
    if isinstance(v, list | dict):
        return repr(v)
    if v is None or (isinstance(v, float) and v != v):
        return "<unset>"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _keys(trials: pd.DataFrame, cols: Sequence[str]) -> list[tuple[str, ...]]:
    return [
        tuple(_key(r.get(c)) for c in cols) for r in trials.reindex(columns=cols).to_dict("records")
    ]


def join_results(
    out: Path, others: Sequence[Path]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """``load_results(out)`` plus, from each folder in ``others``, the trials on the same instances.

    An added trial must share its seed and every ``problem.*`` setting with some trial of ``out``: an
    ablation folder (say seeds 0-4 on Breakout) is compared with its base sweep's trials on those
    seeds and that game only, never with instances the ablation did not run. Returns (curves, trials,
    the union of the folders' sweep axes, one line per added folder saying what it added).

    Raises:
        ConfigError: naming ``--with DIR2``: not a results folder, no trial on the same seeds and
            problem (with the settings that differ), a folder given twice, a method in two folders
            with no ``method.*`` setting that tells its trials apart (they would be pooled into one
            row; a setting that does, e.g. ``method.lam`` 5 vs 50, becomes a report axis). A trial
            name in two folders is kept apart by the added one's path (``DIR2/name``).
    """
    from pbrl_dist.report import load_results

    curves, trials = load_results(out)
    axes, lines = sweep_axes(out), list[str]()
    if not others or trials.empty:
        return curves, trials, axes, lines
    where = dict.fromkeys(trials["trial"], out)
    for other in others:
        if not other.is_dir():
            raise ConfigError(f"--with {other}: no such results folder")
        c2, t2 = load_results(other)
        if t2.empty:
            raise ConfigError(f"--with {other}: no trial results in it")
        cols = [
            "seed",
            *sorted({c for c in [*trials.columns, *t2.columns] if c.startswith("problem.")}),
        ]
        have = set(_keys(trials, cols))
        same = t2[[k in have for k in _keys(t2, cols)]]
        if same.empty:
            differ = [
                c
                for c in cols
                if not {k[0] for k in _keys(t2, [c])} & {k[0] for k in _keys(trials, [c])}
            ]
            why = f"; no shared value of {', '.join(differ)}" if differ else ""
            raise ConfigError(
                f"--with {other}: none of its {len(t2)} trials has the seed and problem settings of a "
                f"trial in {out}{why}"
            )
        rename: dict[str, str] = {}  # a trial name of two folders: the added one by its path
        for name in same["trial"]:
            if name in where:
                if Path(where[name]).resolve() == other.resolve():
                    raise ConfigError(f"--with {other}: trial {name} is in {where[name]} too")
                rename[name] = str(other / name)
        same = same.assign(trial=same["trial"].replace(rename))
        c2 = c2.assign(trial=c2["trial"].replace(rename))
        mine = set(trials["method.name"].astype(str))
        theirs = set(same["method.name"].astype(str))
        apart = settings_apart(trials, same, mine & theirs) if mine & theirs else []
        if mine & theirs and not apart:
            raise ConfigError(
                f"--with {other}: method {sorted(mine & theirs)[0]} is in {out} too; their trials "
                "would be pooled into one row (rename one, e.g. methods.<name> in the sweep file)"
            )
        where.update(dict.fromkeys(same["trial"], other))
        trials = pd.concat([trials, same], ignore_index=True)
        curves = pd.concat([curves, c2[c2["trial"].isin(same["trial"])]], ignore_index=True)
        axes = list(dict.fromkeys([*axes, *sweep_axes(other), *apart]))
        told = f"; told apart by {', '.join(apart)}" if apart else ""
        lines.append(
            f"with {len(same)} of the {len(t2)} trials of {other} (same seeds and problem; "
            f"methods: {', '.join(sorted(theirs))}{told})"
        )
    return curves, trials, axes, lines


def settings_apart(a: pd.DataFrame, b: pd.DataFrame, methods: set[str]) -> list[str]:
    """The ``method.*`` settings whose values tell the trials of ``methods`` in ``a`` and in ``b``
    apart (e.g. ``method.lam``: 5 in one folder, 50 in the other), so that each folder's trials get
    their own report rows; [] when some trial of ``b`` has the settings of one of ``a`` (they would
    be pooled) or nothing differs."""
    a = a[a["method.name"].astype(str).isin(methods)]
    b = b[b["method.name"].astype(str).isin(methods)]
    cols = sorted(
        {c for c in [*a.columns, *b.columns] if c.startswith("method.") and c != "method.name"}
    )
    differ = [c for c in cols if {k[0] for k in _keys(a, [c])} != {k[0] for k in _keys(b, [c])}]
    key = ["method.name", *differ]
    if not differ or set(_keys(a, key)) & set(_keys(b, key)):
        return []
    return differ


def config_labels(frame: pd.DataFrame, by: tuple[str, ...]) -> pd.Series:
    """Figure labels: the method name, then ``axis=value`` per report axis (e.g. ``pbrl lr_x=0.1``)."""
    from pbrl_dist.report.tables import short

    label = frame["method.name"].astype(str)
    for k in by[1:]:
        label = label + f" {k.split('.')[-1]}=" + frame[k].map(short)
    return label


def report_folder(
    out: Path,
    *,
    reps: int | None = None,
    seed: int = 0,
    versus: Sequence[tuple[str, str]] = (),
    others: Sequence[Path] = (),
) -> None:
    """`pbrl report DIR`: print the cross-seed table, write summary.csv/parquet and the figures.

    The final metrics use complete trials only; one line says how many trials were left out and why.
    Folders whose problems log ``rl/episode_return`` (RLHF) also get the rliable statistics of
    ``report.rl_stats`` (IQM and P(X > Y) with stratified bootstrap CIs over ``reps`` replications
    seeded by ``seed``; ``versus`` adds P(X > Y) pairs): printed, written to ``report/rl_stats.csv``
    and ``report/rl_curves.csv``, and drawn as ``figures/rl_learning_curves.png``. ``others``: results
    folders whose trials on the same seeds and problem join this report (``join_results``), e.g. the
    base sweep of an ablation; everything is still written under ``out``.
    Raises ``ConfigError`` (and writes nothing) when no trial is complete.
    """
    from pbrl_dist.report import draw_figures, final_summary, format_table
    from pbrl_dist.report.tables import WHY, left_out, left_out_message

    curves, trials, axes, joined = join_results(out, others)
    if trials.empty:
        raise ConfigError(
            f"{out}: no trial results (no folder with config.yaml and metrics.jsonl); nothing to report"
        )
    if not trials["complete"].any():
        why = ", ".join(f"{n} {WHY[s]}" for s, n in left_out(trials).items())
        raise ConfigError(
            f"{out}: none of the {len(trials)} trials is complete ({why}); nothing to report"
            " (resume the sweep, or wait until a trial finishes)"
        )
    methods = set(trials["method.name"].astype(str))
    for x, y in versus:  # before anything is written
        for m in (x, y):
            if m not in methods:
                folders = ", ".join(map(str, [out, *others]))
                raise ConfigError(
                    f"--versus {x}:{y}: no method {m!r} in {folders} (methods: {', '.join(sorted(methods))})"
                )
    note = left_out_message(trials)
    by = ("method.name", *_report_axes(axes, trials))
    summary = final_summary(trials, by=by)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    with atomic_file(report_dir / "summary.csv", "w", root=out, newline="") as fh:
        summary.to_csv(fh, index=False)
    with atomic_file(report_dir / "summary.parquet", root=out) as fh:
        summary.to_parquet(fh, index=False)
    for line in joined:
        print(f"\n{line}")
    if note:
        print(f"\n{note}")
    print("\nfinal metrics of the complete trials over games and seeds: mean ± std (max)")
    print(format_table(summary, by=by))
    rl_paths = _report_rl_stats(out, curves, axes, reps=reps, seed=seed, versus=versus)
    if len(by) > 1:  # one figure line per configuration, e.g. "pbrl_value lam=20.0"
        curves = curves.assign(**{"method.name": config_labels(curves, by)})
    for p in draw_figures(curves, out / "figures", root=out):
        print(f"figure: {p}")
    for p in rl_paths:
        print(f"{'figure' if p.suffix == '.png' else 'rl stats'}: {p}")
    print(f"summary: {report_dir / 'summary.csv'} (and summary.parquet)")


def _report_rl_stats(
    out: Path,
    curves: pd.DataFrame,
    axes: Sequence[str],
    *,
    reps: int | None,
    seed: int,
    versus: Sequence[tuple[str, str]] = (),
) -> list[Path]:
    """Print the rliable statistics of the RL problems in ``curves`` and write their files (none
    when no problem logs ``rl/episode_return``)."""
    from pbrl_dist.report.rl_stats import DEFAULT_REPS, format_rl_stats, rl_stats, write_rl_stats

    try:
        stats = rl_stats(curves, axes, reps=reps or DEFAULT_REPS, seed=seed, versus=versus)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if stats is None:
        return []
    print(f"\n{format_rl_stats(stats)}")
    return write_rl_stats(stats, out / "report", out / "figures", root=out)
