"""Command line: ``pbrl run | report`` (and, with Ray, ``sweep | submit``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pbrl_dist.config.loader import ConfigError, load_sweep
from pbrl_dist.safe_io import UnsafePath, is_write_error, write_error_line


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("pbrl_dist")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def report_folder(
    out: Path, versus: list[tuple[str, str]] | None = None, others: list[Path] | None = None
) -> None:
    """Lazy import: pandas and matplotlib load only when a report is drawn."""
    from pbrl_dist.report.command import report_folder as draw

    draw(out, versus=versus or (), others=others or ())


def _invocation(args: argparse.Namespace, verb: str) -> tuple[str, bool, list[str], Path]:
    """(sweep file, smoke, overrides, results folder) of ``pbrl run|sweep``.

    With ``--resume`` the sweep file, ``--smoke`` and the overrides default to the ones recorded in
    ``OUT/sweep.yaml`` by the first launch, so a resume is ``pbrl VERB --resume --out OUT``.
    """
    overrides = list(args.overrides)
    sweep_file = args.sweep
    if sweep_file is not None and "=" in sweep_file and not sweep_file.endswith((".yaml", ".yml")):
        overrides.insert(0, sweep_file)  # `pbrl run --resume --out X key=value`
        sweep_file = None
    from pbrl_dist.launch.trust import check_results, check_sweep_file

    if sweep_file is not None:  # trust before code: its problem.target is imported when loaded
        check_sweep_file(sweep_file, overrides)
    if args.resume:
        from pbrl_dist.launch.results import read_record

        if args.out is None and sweep_file is None:
            raise ConfigError(f"pbrl {verb} --resume: pass --out DIR (the folder to resume)")
        if args.out is None:
            out = _default_out(sweep_file, args.smoke, overrides)
        else:
            out = Path(args.out)
        if out.is_dir():  # before its record names code to import or Tune unpickles its state
            check_results(out, f"pbrl {verb} --resume")
        rec = read_record(out)
        if sweep_file is None:
            sweep_file = str(rec.get("source"))
            if not Path(sweep_file).is_file():
                raise ConfigError(
                    f"--resume: {out / 'sweep.yaml'} records the sweep file {sweep_file}, which is not "
                    f"there (from {Path.cwd()}); pass it: pbrl {verb} PATH/TO/SWEEP.yaml --resume --out {out}"
                )
        smoke = args.smoke or bool(rec.get("smoke", False))
        if not overrides:
            overrides = [str(o) for o in rec.get("overrides") or []]
        check_sweep_file(sweep_file, overrides)
        return sweep_file, smoke, overrides, out
    if sweep_file is None:
        raise ConfigError(f"pbrl {verb}: SWEEP.yaml is missing")
    out = Path(args.out) if args.out else _default_out(sweep_file, args.smoke, overrides)
    return sweep_file, args.smoke, overrides, out


def _default_out(sweep_file: str, smoke: bool, overrides: list[str]) -> Path:
    sweep = load_sweep(sweep_file, smoke=smoke, overrides=overrides)
    return Path("results") / (sweep.name + ("_smoke" if smoke else ""))


def _resume_hint(verb: str, out: Path, address: str | None = None) -> str:
    if not (out / "sweep.yaml").exists():  # stopped before anything was written
        return f"the same command again (nothing was written to {out})"
    extra = f" --address {address}" if address else ""
    return f"pbrl {verb} --resume --out {shlex.quote(str(out))}{extra}"


def _interrupted(verb: str, e: Any, out: Path, address: str | None = None) -> int:
    print(
        f"\npbrl {verb}: interrupted: {e.finished}/{e.total} trials finished; nothing was reported.\n"
        f"resume with: {_resume_hint(verb, out, address)}",
        file=sys.stderr,
        flush=True,
    )
    return 130


def _write_failed(verb: str, e: OSError, out: Path, address: str | None = None) -> int:
    """A write failure (disk full, read-only, permission) of ``pbrl run|sweep``: one line, exit 1."""
    hint = _resume_hint(verb, out, address)
    print(
        f"pbrl {verb}: {write_error_line(e, out)}; fix that, then resume with: {hint}",
        file=sys.stderr,
        flush=True,
    )
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    """Run every trial of a sweep file in this process (``--resume`` continues an interrupted run)."""
    from pbrl_dist.launch.local import (
        Interrupted,
        TrialsDiverged,
        TrialsFailed,
        check_local_sweep,
        run_local,
    )

    sweep_file, smoke, overrides, out = _invocation(args, "run")
    sweep = load_sweep(sweep_file, smoke=smoke, overrides=overrides)
    check_local_sweep(sweep)
    from pbrl_dist.launch.specs import sweep_notes

    for note in sweep_notes(sweep):
        print(note, flush=True)
    print(f"sweep {sweep.name}: {len(sweep.trials)} trials -> {out}")
    try:
        run_local(
            sweep,
            out,
            overwrite=args.overwrite,
            resume=args.resume,
            restart_corrupt=args.restart_corrupt,
            extra_record={"smoke": smoke, "overrides": overrides},
        )
    except Interrupted as e:
        return _interrupted("run", e, out)
    except TrialsFailed as e:
        print(f"pbrl run: {e}; the rest finished", file=sys.stderr, flush=True)
        if not args.no_report:
            with contextlib.suppress(ConfigError):
                report_folder(out)
        print(f"retry the failed ones with: {_resume_hint('run', out)}", file=sys.stderr)
        return 1
    except TrialsDiverged as e:  # every other trial complete; diverged is final (exit 3)
        if not args.no_report:
            try:
                report_folder(out)
            except ConfigError as err:  # e.g. every trial diverged
                print(f"pbrl report: {err}", file=sys.stderr)
        print(f"pbrl run: {e}; left out of the report", file=sys.stderr, flush=True)
        return 3
    except KeyboardInterrupt:  # between trials' own handlers (e.g. while starting Ray)
        print(f"\npbrl run: interrupted\nresume with: {_resume_hint('run', out)}", file=sys.stderr)
        return 130
    except OSError as e:
        return _write_failed("run", e, out)
    if not args.no_report:
        report_folder(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Aggregate a results folder (and optionally confirm its best configuration on fresh seeds)."""
    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    versus = []
    for v in args.versus or []:
        x, sep, y = v.partition(":")
        if not (sep and x and y):
            raise ConfigError(f"--versus {v}: expected METHOD:METHOD, e.g. pbrl_oracle2:pbrl")
        versus.append((x, y))
    if args.with_ and args.confirm_seeds:
        raise ConfigError(
            "--confirm-seeds re-runs the best configuration of DIR alone: run it without --with"
        )
    if args.with_ and args.export_best:
        raise ConfigError(
            "--export-best exports the best settings of DIR alone: run it without --with"
        )
    if args.export_best:  # before the report is drawn: one line, nothing done
        from pbrl_dist.report.export import check_export_target

        check_export_target(Path(args.export_best), overwrite=args.overwrite)
    if args.confirm_seeds or args.export_best:  # they import problem.target: trust before code
        from pbrl_dist.launch.trust import check_results

        flag = "--confirm-seeds" if args.confirm_seeds else "--export-best"
        check_results(out, f"pbrl report {flag}")
    report_folder(out, versus=versus, others=[Path(p) for p in args.with_ or []])
    not_started = _not_started(out)
    if not_started:
        print(f"{not_started}; `pbrl status {out}` shows every trial's state")
    if args.export_best:
        from pbrl_dist.report.export import export_best

        export_best(
            out,
            Path(args.export_best),
            metric=args.metric,
            mode=args.mode,
            overwrite=args.overwrite,
        )
    if args.confirm_seeds:
        from pbrl_dist.launch.confirm import confirm_best

        confirm_best(
            out, args.confirm_seeds, metric=args.metric, mode=args.mode, overwrite=args.overwrite
        )
    return 0


def _not_started(out: Path) -> str | None:
    """``"6 of the 18 planned trials have not started"`` when the record names trials without a
    folder yet (a running or interrupted sweep), else None."""
    from pbrl_dist.launch.results import read_record

    try:
        record = read_record(out)
    except ConfigError:
        return None
    block = record.get("sweep")
    block = block if isinstance(block, dict) else {}
    samples = max(1, int(block.get("num_samples", 1) or 1))
    planned = len(record.get("trials") or []) * samples
    started = sum(1 for p in out.iterdir() if (p / "config.yaml").is_file())
    if planned <= started:
        return None
    return f"{planned - started} of the {planned} planned trials have not started"


def cmd_status(args: argparse.Namespace) -> int:
    """Print every trial's state, the counts, the best so far and an ETA (``--watch``: again)."""
    from pbrl_dist.launch.status import status_command

    return status_command(Path(args.dir), watch=args.watch)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or resume) a sweep file as a Ray Tune experiment."""
    from pbrl_dist.launch.local import Interrupted
    from pbrl_dist.launch.tune_sweep import sweep_command

    sweep_file, smoke, overrides, out = _invocation(args, "sweep")
    try:
        rc = sweep_command(
            sweep_file,
            smoke=smoke,
            overrides=overrides,
            out=out,
            address=args.address,
            resume=args.resume,
            overwrite=args.overwrite,
            restart_corrupt=args.restart_corrupt,
        )
    except Interrupted as e:
        return _interrupted("sweep", e, out, args.address)
    except KeyboardInterrupt:
        hint = _resume_hint("sweep", out, args.address)
        print(f"\npbrl sweep: interrupted\nresume with: {hint}", file=sys.stderr)
        return 130
    except OSError as e:
        return _write_failed("sweep", e, out, args.address)
    if rc == 1:  # a trial failed for good (e.g. its disk was full): the way to run it again
        print(f"retry the failed ones with: {_resume_hint('sweep', out, args.address)}", flush=True)
    if not args.no_report:
        try:
            report_folder(out)
        except ConfigError as e:  # e.g. no trial complete: the sweep's own exit code says more
            print(f"pbrl report: {e}", file=sys.stderr)
            return rc or 2
    return rc


def cmd_show(args: argparse.Namespace) -> int:
    """Print each trial's resolved config without running anything."""
    from pbrl_dist.launch.trust import check_sweep_file

    check_sweep_file(args.sweep, args.overrides)  # its problem.target is imported to show it
    sweep = load_sweep(args.sweep, smoke=args.smoke, overrides=args.overrides)
    from pbrl_dist.launch.specs import sweep_notes

    for note in sweep_notes(sweep):
        print(f"# {note}", file=sys.stderr)
    picked = [t for t in sweep.trials if not args.trial or t.name in args.trial]
    if args.trial and len(picked) != len(set(args.trial)):
        missing = sorted(set(args.trial) - {t.name for t in picked})
        names = ", ".join(t.name for t in sweep.trials[:10])
        raise ConfigError(f"--trial {missing[0]}: no such trial; the sweep has {names}, ...")
    for t in picked:
        print(f"# --- trial {t.name}")
        print(t.to_yaml(), end="")
    print(f"# {len(picked)} of {len(sweep.trials)} trials of {sweep.name}", file=sys.stderr)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit ``pbrl sweep`` to a cluster as a Ray Job; or follow, list or stop jobs."""
    from pbrl_dist.launch import submit

    modes = {
        "SWEEP.yaml": args.sweep,
        "--logs": args.logs,
        "--list": args.list,
        "--stop": args.stop,
    }
    given = [name for name, value in modes.items() if value]
    if len(given) > 1:
        raise ConfigError(
            f"pbrl submit: give one of SWEEP.yaml, --logs, --list, --stop, not {' and '.join(given)}"
        )
    if args.logs:
        return submit.follow_logs(args.logs, address=args.address)
    if args.list:
        return submit.list_jobs(address=args.address)
    if args.stop:
        return submit.stop_job(args.stop, address=args.address)
    if not args.sweep:
        raise ConfigError(
            "pbrl submit: SWEEP.yaml is missing (or pass --logs/--stop JOB_ID, --list)"
        )
    submit.submit(
        args.sweep,
        address=args.address,
        smoke=args.smoke,
        out=args.out,
        overrides=args.overrides,
        resume=args.resume,
    )
    return 0


def _launch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run in --out (file, --smoke and overrides as recorded there)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out that pbrl wrote"
    )
    p.add_argument(
        "--restart-corrupt",
        action="store_true",
        help="with --resume: start trials whose checkpoint is corrupt from scratch",
    )
    p.add_argument(
        "--no-report", action="store_true", help="skip the report at the end (run pbrl report)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    p = argparse.ArgumentParser(prog="pbrl", description="Penalty-based bilevel RL sweeps.")
    p.add_argument("--version", action="version", version=f"pbrl_dist {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every trial of SWEEP.yaml in this process, one by one")
    r.add_argument(
        "sweep",
        nargs="?",
        help="sweep file, e.g. sweeps/fig1_stackelberg.yaml (optional with --resume)",
    )
    r.add_argument(
        "--smoke", action="store_true", help="merge the file's smoke: block (tiny sizes)"
    )
    r.add_argument(
        "--out",
        help="results folder (default results/<sweep name>; with --smoke results/<sweep name>_smoke)",
    )
    _launch_flags(r)
    r.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. method.lam=10")
    r.set_defaults(fn=cmd_run)
    sh = sub.add_parser("show", help="print each trial's resolved config (runs nothing)")
    sh.add_argument("sweep", help="sweep file")
    sh.add_argument("--smoke", action="store_true", help="merge the file's smoke: block")
    sh.add_argument("--trial", action="append", help="only this trial (repeatable)")
    sh.add_argument("overrides", nargs="*", help="key=value config overrides")
    sh.set_defaults(fn=cmd_show)
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
    rep.add_argument(
        "--versus",
        action="append",
        metavar="X:Y",
        help="RLHF results: also P(X > Y) for methods X and Y (repeatable), e.g. an ablation "
        "against its base: --versus drlhf_absorbing:drlhf",
    )
    rep.add_argument(
        "--with",
        dest="with_",
        action="append",
        metavar="DIR2",
        help="also the trials of results folder DIR2 on DIR's seeds and problem settings "
        "(repeatable), e.g. an ablation with its base sweep: pbrl report results/ablation "
        "--with results/base --versus pbrl_no_penalty:pbrl; the report is written under DIR",
    )
    rep.add_argument(
        "--export-best",
        metavar="FILE",
        help="write a sweep file running each method's best setting (the --confirm-seeds choice) "
        "on the seeds and problem instances of DIR: pbrl run FILE",
    )
    rep.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing DIR/confirm or --export-best FILE",
    )
    rep.set_defaults(fn=cmd_report)
    st = sub.add_parser(
        "status", help="every trial's state, counts, best so far and ETA (read-only, no lock)"
    )
    st.add_argument("dir", help="results folder of pbrl run, pbrl sweep or a submitted job")
    st.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=5.0,
        metavar="SECONDS",
        help="print again every SECONDS (default 5) until every trial is final; Ctrl-C stops",
    )
    st.set_defaults(fn=cmd_status)

    sw = sub.add_parser(
        "sweep", help="run SWEEP.yaml as a Ray Tune experiment (local Ray or a cluster)"
    )
    sw.add_argument(
        "sweep",
        nargs="?",
        help="sweep file, e.g. sweeps/fig1_stackelberg.yaml (optional with --resume)",
    )
    sw.add_argument("--smoke", action="store_true", help="merge the file's smoke: block")
    sw.add_argument(
        "--out",
        help="results folder (default results/<sweep name>; with --smoke results/<sweep name>_smoke)",
    )
    sw.add_argument(
        "--address",
        help="join a running cluster (auto, or HOST:6379); default: start Ray here with all CPUs",
    )
    _launch_flags(sw)
    sw.add_argument("overrides", nargs="*", help="key=value config overrides")
    sw.set_defaults(fn=cmd_sweep)

    sb = sub.add_parser("submit", help="submit `pbrl sweep` to a Ray cluster as a Ray Job")
    sb.add_argument("sweep", nargs="?", help="sweep file (a path inside this working directory)")
    sb.add_argument(
        "--address", help="Ray Jobs API, e.g. http://127.0.0.1:8265 (default: RAY_ADDRESS or that)"
    )
    sb.add_argument("--logs", metavar="JOB_ID", help="follow the logs of a submitted job instead")
    sb.add_argument("--list", action="store_true", help="list pbrl's jobs on the cluster instead")
    sb.add_argument("--stop", metavar="JOB_ID", help="stop a submitted job instead")
    sb.add_argument("--smoke", action="store_true", help="merge the file's smoke: block")
    sb.add_argument("--out", help="results folder on the cluster (default /results/<sweep name>)")
    sb.add_argument("--resume", action="store_true", help="the job resumes --out instead")
    sb.add_argument("overrides", nargs="*", help="key=value config overrides")
    sb.set_defaults(fn=cmd_submit)
    return p


def _term_is_ctrl_c() -> Any:
    """SIGTERM (a scheduler's preemption, `kill`, `docker stop`) stops a run like Ctrl-C does.

    Python would otherwise die at once, without the count, the resume command or a final flush.
    Only in the main thread of the ``pbrl`` process (signal handlers cannot be set elsewhere).
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


class _ClosedPipeSafe:
    """``sys.stdout`` that survives its reader going away (``pbrl show ... | head``).

    The first write or flush that fails with ``BrokenPipeError`` points the file descriptor at
    ``/dev/null`` (so Python's own flush at exit is quiet too) and every later write is dropped:
    the command goes on and finishes its real work (a report still writes its files), exit code
    unchanged.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def _closed(self) -> None:
        self._gone = True
        with contextlib.suppress(Exception):
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pbrl`` console script."""
    # W&B keeps its service's address in the environment, so a pbrl started by a process that used
    # W&B would log through that parent's service: its rows would be written (or lost) on the
    # parent's schedule, not flushed when this run ends. pbrl logs through a service of its own.
    os.environ.pop("WANDB_SERVICE", None)
    stdout = sys.stdout
    sys.stdout = _ClosedPipeSafe(stdout)
    try:
        return _main(argv)
    finally:
        if isinstance(sys.stdout, _ClosedPipeSafe):
            sys.stdout.flush()
            sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (pbrl run X.yaml --smoke method.lam=3).
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    previous = _term_is_ctrl_c()
    try:
        return int(args.fn(args))
    except (ConfigError, UnsafePath) as e:
        print(f"pbrl: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a full disk under the report: one line naming the path
        print(f"pbrl: error: {write_error_line(e) if is_write_error(e) else e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # e.g. while the report draws: nothing of the run is lost
        print("\npbrl: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
