"""``pbrl report DIR``: the table, summary files and figures of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _report_axes(out: Path, trials: Any) -> tuple[str, ...]:
    """Grid axes of the sweep in ``out`` that name configurations (not seeds, not game instances)."""
    rec_path = out / "sweep.yaml"
    if not rec_path.exists():
        return ()
    import yaml

    grid = ((yaml.safe_load(rec_path.read_text(encoding="utf-8")) or {}).get("sweep") or {}).get(
        "grid"
    )
    keys = [k for k in (grid or {}) if k not in ("seed", "problem.game") and k in trials.columns]
    return tuple(keys)


def report_folder(out: Path) -> None:
    """`pbrl report DIR`: print the cross-seed table, write summary.csv/parquet and the figures."""
    from pbrl_dist.report import draw_figures, final_summary, format_table, load_results

    curves, trials = load_results(out)
    if trials.empty:
        print(f"no trial results under {out}")
        return
    by = ("method.name", *_report_axes(out, trials))
    summary = final_summary(trials, by=by)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    summary.to_csv(report_dir / "summary.csv", index=False)
    summary.to_parquet(report_dir / "summary.parquet", index=False)
    print("\nfinal metrics over games and seeds: mean ± std (max)")
    print(format_table(summary, by=by))
    if len(by) > 1:  # one figure line per configuration, e.g. "pbrl_value lam=20.0"
        label = curves["method.name"].astype(str)
        for k in by[1:]:
            label = label + f" {k.split('.')[-1]}=" + curves[k].astype(str)
        curves = curves.assign(**{"method.name": label})
    for p in draw_figures(curves, out / "figures"):
        print(f"figure: {p}")
    print(f"summary: {report_dir / 'summary.csv'} (and summary.parquet)")
