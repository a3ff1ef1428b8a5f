"""``pbrl report`` on a results folder of 1,000 finished trials.

    .venv/bin/python benchmarks/bench_report.py                 # 2 methods × 5 λ × 100 seeds (Figure 1 problem)
    .venv/bin/python benchmarks/bench_report.py --rl            # the toy RLHF problem (rliable statistics)
    .venv/bin/python benchmarks/bench_report.py --profile       # cProfile of the report, top 30 by cumulative time

The folder is made the way ``pbrl run`` makes one, from a real run: the script runs a small real sweep
(one trial per method, ``run_local``), then writes N trial folders with the project's own writers
(``config.yaml`` from each trial's ``to_yaml``, ``metrics.jsonl`` through ``JsonlSink`` with the real
rows' metric values scaled per trial, ``result.json`` as the trial driver writes it, ``sweep.yaml``
by ``write_record``, the marker by ``mark``) and times ``report_folder`` (what ``pbrl report DIR``
runs: load, summary table, CSV/Parquet, figures; rliable statistics for RL problems).
Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import yaml

from pbrl_dist.config import load_sweep
from pbrl_dist.launch.local import run_local
from pbrl_dist.launch.results import mark, write_record
from pbrl_dist.launch.specs import fingerprint
from pbrl_dist.metrics import JsonlSink
from pbrl_dist.report.command import report_folder
from pbrl_dist.safe_io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logging.wandb=disabled", "logging.progress_every_s=100000"]


def sweep_file(folder: Path, *, rl: bool, lams: int, seeds: int) -> Path:
    """The sweep whose trials the folder holds: two methods × ``lams`` grid values × ``seeds`` seeds."""
    if rl:  # the toy RLHF sweep at its smoke size, rows every 100 env steps
        data = yaml.safe_load((ROOT / "sweeps" / "rlhf_toy.yaml").read_text())
        smoke = data.pop("smoke")
        data["problem"].update(smoke["problem"])
        data["method"].update({**smoke["method"], "log_every_steps": 100})
        data["methods"] = {k: data["methods"][k] for k in ("drlhf", "pbrl")}
        data["method"].pop("clip_true_reward")  # read by the A2C oracle only
        data["sweep"] = {
            "seeds": list(range(seeds)),
            "grid": {"method.lr": [round(5e-3 * (i + 1), 4) for i in range(lams)]},
        }
    else:
        demo = yaml.safe_load((ROOT / "sweeps" / "demo_fig1.yaml").read_text())
        data = {
            "problem": demo["problem"],
            "method": {**demo["method"], "num_iters": 400, "log_every": 10},
            "methods": {k: demo["methods"][k] for k in ("pbrl_value", "pbrl_bellman")},
            "sweep": {
                "seeds": list(range(seeds)),
                "grid": {"method.lam": [round(5.0 * 2**i, 3) for i in range(lams)]},
            },
        }
    data["name"] = "bench_report"
    path = folder / "bench_report.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def real_trials(path: Path, out: Path) -> dict[str, Path]:
    """Run one real trial per method (the first grid value, seed 0); return {method: its folder}."""
    ((axis, values),) = yaml.safe_load(path.read_text())["sweep"]["grid"].items()
    over = [*QUIET, "sweep.seeds=[0]", f"sweep.grid.{axis}=[{values[0]}]"]
    sweep = load_sweep(path, overrides=over)
    with contextlib.redirect_stdout(io.StringIO()):
        run_local(sweep, out)
    return {t.cfg.method.name: out / t.name for t in sweep.trials}


def fabricate(path: Path, real: dict[str, Path], out: Path) -> int:
    """Write every trial of ``path`` into ``out`` from the real trial of its method."""
    sweep = load_sweep(path, overrides=QUIET)
    out.mkdir()
    mark(out)
    write_record(
        sweep,
        out,
        runner="local",
        launch_id="bench",
        fingerprint=fingerprint(sweep.trials),
        smoke=False,
        overrides=QUIET,
    )
    for i, t in enumerate(sweep.trials):
        src = real[t.cfg.method.name]
        tdir = out / t.name
        tdir.mkdir()
        atomic_write_text(tdir / "config.yaml", t.to_yaml())
        rng = np.random.default_rng(i)
        scale = float(np.exp(rng.normal(0.0, 0.1)))
        rows = [json.loads(x) for x in (src / "metrics.jsonl").read_text().splitlines()]
        sink = JsonlSink(tdir / "metrics.jsonl")
        for row in rows:
            sink.log({k: _vary(k, v, scale) for k, v in row.items()})
        sink.close()
        res = json.loads((src / "result.json").read_text())
        res.update(trial=t.name, final={k: _vary(k, v, scale) for k, v in res["final"].items()})
        atomic_write_text(tdir / "result.json", json.dumps(res, indent=1))
    return len(sweep.trials)


def _vary(key: str, value: Any, scale: float) -> Any:
    return value * scale if "/" in key and isinstance(value, float) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rl", action="store_true", help="the toy RLHF problem (rliable statistics)")
    ap.add_argument("--lams", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--keep",
        type=Path,
        help="make the folder here (a new path) and keep it; or, if it is there, report it again "
        "(e.g. to compare the report files of two code versions)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        out = folder / "results"
        if not out.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            path = sweep_file(folder, rl=args.rl, lams=args.lams, seeds=args.seeds)
            t0 = time.perf_counter()
            real = real_trials(path, folder / "real")
            t1 = time.perf_counter()
            fabricate(path, real, out)
            t2 = time.perf_counter()
            print(f"real run {t1 - t0:.1f} s, folder written in {t2 - t1:.1f} s", flush=True)
        trials = sorted(out.glob("*/metrics.jsonl"))
        rows = sum(1 for _ in trials[0].open())
        kind = yaml.safe_load(trials[0].with_name("config.yaml").read_text())["problem"]["name"]
        print(
            f"{len(trials)} trials × {rows} metrics rows (problem {kind}), {os.cpu_count()} CPUs",
            flush=True,
        )
        prof = cProfile.Profile() if args.profile else None
        sink = io.StringIO()
        t3 = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            if prof is not None:
                prof.enable()
            report_folder(out)
            if prof is not None:
                prof.disable()
        t4 = time.perf_counter()
        print(f"{'pbrl report (report_folder)':<40} {t4 - t3:8.2f} s", flush=True)
        if prof is not None:
            pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
