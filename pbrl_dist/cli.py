"""Command line: ``pbrl run | report`` (and, with Ray, ``sweep | submit``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pbrl_dist.config.loader import ConfigError, load_sweep


def _report(out: Path) -> None:
    from pbrl_dist.report import draw_figures, final_summary, format_table, load_results

    curves, trials = load_results(out)
    if trials.empty:
        print(f"no trial results under {out}")
        return
    summary = final_summary(trials)
    report_dir = out / "report"
    report_dir.mkdir(exist_ok=True)
    summary.to_csv(report_dir / "summary.csv", index=False)
    print("\nfinal metrics over games and seeds: mean ± std (max)")
    print(format_table(summary))
    for p in draw_figures(curves, out / "figures"):
        print(f"figure: {p}")
    print(f"summary: {report_dir / 'summary.csv'}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run every trial of a sweep file in this process."""
    from pbrl_dist.dist.local import run_local

    sweep = load_sweep(args.sweep, smoke=args.smoke, overrides=args.overrides)
    out = (
        Path(args.out)
        if args.out
        else Path("results") / (sweep.name + ("_smoke" if args.smoke else ""))
    )
    print(f"sweep {sweep.name}: {len(sweep.trials)} trials -> {out}")
    run_local(sweep, out, overwrite=args.overwrite)
    _report(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Aggregate a results folder."""
    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    _report(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    p = argparse.ArgumentParser(prog="pbrl", description="Penalty-based bilevel RL sweeps.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every trial of SWEEP.yaml in this process (no Ray)")
    r.add_argument("sweep", help="sweep file, e.g. sweeps/fig1_stackelberg.yaml")
    r.add_argument(
        "--smoke", action="store_true", help="merge the file's smoke: block (tiny sizes)"
    )
    r.add_argument("--out", help="results folder (default results/<sweep name>)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    r.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. method.lam=10")
    r.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report", help="tables and figures of a results folder")
    rep.add_argument("dir")
    rep.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pbrl`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (pbrl run X.yaml --smoke method.lam=3).
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"pbrl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
