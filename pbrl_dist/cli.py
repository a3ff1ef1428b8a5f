"""Command line: ``pbrl run | report`` (and, with Ray, ``sweep | submit``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pbrl_dist.config.loader import ConfigError, load_sweep


def report_folder(out: Path) -> None:
    """Lazy import: pandas and matplotlib load only when a report is drawn."""
    from pbrl_dist.report.command import report_folder as draw

    draw(out)


def cmd_run(args: argparse.Namespace) -> int:
    """Run every trial of a sweep file in this process."""
    from pbrl_dist.launch.local import check_local_sweep, run_local

    sweep = load_sweep(args.sweep, smoke=args.smoke, overrides=args.overrides)
    check_local_sweep(sweep)
    out = (
        Path(args.out)
        if args.out
        else Path("results") / (sweep.name + ("_smoke" if args.smoke else ""))
    )
    print(f"sweep {sweep.name}: {len(sweep.trials)} trials -> {out}")
    run_local(sweep, out, overwrite=args.overwrite)
    report_folder(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Aggregate a results folder (and optionally confirm its best configuration on fresh seeds)."""
    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    report_folder(out)
    if args.confirm_seeds:
        from pbrl_dist.launch.confirm import confirm_best

        confirm_best(
            out, args.confirm_seeds, metric=args.metric, mode=args.mode, overwrite=args.overwrite
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) a sweep file as a Ray Tune experiment."""
    from pbrl_dist.launch.tune_sweep import sweep_command

    rc, out = sweep_command(
        args.sweep,
        smoke=args.smoke,
        overrides=args.overrides,
        out=args.out,
        address=args.address,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    if not args.no_report:
        report_folder(out)
    return rc


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit ``pbrl sweep`` to a cluster as a Ray Job, or follow a job's logs."""
    from pbrl_dist.launch import submit

    if args.logs:
        if args.sweep:
            raise ConfigError("pbrl submit: give either SWEEP.yaml or --logs JOB_ID, not both")
        return submit.follow_logs(args.logs, address=args.address)
    if not args.sweep:
        raise ConfigError("pbrl submit: SWEEP.yaml is missing (or pass --logs JOB_ID)")
    submit.submit(
        args.sweep,
        address=args.address,
        smoke=args.smoke,
        out=args.out,
        overrides=args.overrides,
        resume=args.resume,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    p = argparse.ArgumentParser(prog="pbrl", description="Penalty-based bilevel RL sweeps.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every trial of SWEEP.yaml in this process, one by one")
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
    rep.add_argument(
        "--confirm-seeds",
        type=int,
        default=0,
        metavar="N",
        help="re-run the grid's best configuration on N fresh seeds into DIR/confirm/",
    )
    rep.add_argument(
        "--metric",
        help="metric that picks the best configuration (default: the problem's, "
        "e.g. upper/leader_return for stackelberg)",
    )
    rep.add_argument("--mode", choices=("max", "min"), help="maximize or minimize --metric")
    rep.add_argument("--overwrite", action="store_true", help="replace an existing DIR/confirm")
    rep.set_defaults(fn=cmd_report)

    sw = sub.add_parser(
        "sweep", help="run SWEEP.yaml as a Ray Tune experiment (local Ray or a cluster)"
    )
    sw.add_argument("sweep", help="sweep file, e.g. sweeps/fig1_stackelberg.yaml")
    sw.add_argument("--smoke", action="store_true", help="merge the file's smoke: block")
    sw.add_argument("--out", help="results folder (default results/<sweep name>)")
    sw.add_argument(
        "--address",
        help="join a running cluster (auto, or HOST:6379); default: start Ray here with all CPUs",
    )
    sw.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted sweep in --out (same file and overrides)",
    )
    sw.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    sw.add_argument(
        "--no-report", action="store_true", help="skip the report at the end (run pbrl report)"
    )
    sw.add_argument("overrides", nargs="*", help="key=value config overrides")
    sw.set_defaults(fn=cmd_sweep)

    sb = sub.add_parser("submit", help="submit `pbrl sweep` to a Ray cluster as a Ray Job")
    sb.add_argument("sweep", nargs="?", help="sweep file (a path inside this working directory)")
    sb.add_argument(
        "--address", help="Ray Jobs API, e.g. http://127.0.0.1:8265 (default: RAY_ADDRESS or that)"
    )
    sb.add_argument("--logs", metavar="JOB_ID", help="follow the logs of a submitted job instead")
    sb.add_argument("--smoke", action="store_true", help="merge the file's smoke: block")
    sb.add_argument("--out", help="results folder on the cluster (default /results/<sweep name>)")
    sb.add_argument("--resume", action="store_true", help="the job resumes --out instead")
    sb.add_argument("overrides", nargs="*", help="key=value config overrides")
    sb.set_defaults(fn=cmd_submit)
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
