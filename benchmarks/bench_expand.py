"""Expanding and validating a 10,000-trial sweep file: the start of ``pbrl show``, ``pbrl run`` and ``pbrl sweep``.

    .venv/bin/python benchmarks/bench_expand.py                # 10,000 trials (2 methods × 25 λ × 20 lr_x × 10 seeds)
    .venv/bin/python benchmarks/bench_expand.py --lams 5       # 2,000 trials (a quicker look)
    .venv/bin/python benchmarks/bench_expand.py --profile      # cProfile of load_sweep, top 25 by own time

It writes a sweep file under a temporary folder (``sweeps/demo_fig1.yaml``'s problem and method block, two
PBRL methods, a grid over ``method.lam`` × ``method.lr_x`` and ``sweep.seeds``) and times, one after the
other in this process (nothing is run, nothing is written but the file):

1. ``load_sweep``: read, merge, type and validate every trial (what ``pbrl show`` does before it prints);
2. the rest of ``pbrl run``'s start: ``check_local_sweep``, ``check_bounds`` and the ``fingerprint``;
3. the rest of ``pbrl sweep``'s start before Ray: ``typed_block``, ``check_search``, ``check_bounds``,
   ``fingerprint``, ``check_fits`` — for the grid alone and with one search axis
   (``sweep.search.method.lr_y={loguniform: [0.05, 0.5]}``, which ``check_search`` probes on every trial);
4. with ``--long-axes``: ``load_sweep`` of one method × 10,000 seeds, and × one 10,000-value grid axis.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pbrl_dist.config import load_sweep
from pbrl_dist.launch.local import check_local_sweep
from pbrl_dist.launch.specs import check_bounds, check_fits, check_search, fingerprint, typed_block

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sweeps" / "demo_fig1.yaml"


def write_sweep(folder: Path, *, lams: int, lrs: int, seeds: int) -> tuple[Path, int]:
    """The demo's problem with 2 PBRL methods × ``lams`` λ × ``lrs`` lr_x × ``seeds`` seeds."""
    demo = yaml.safe_load(DEMO.read_text())
    data = {
        "name": "bench_expand",
        "problem": demo["problem"],
        "method": demo["method"],
        "methods": {
            "pbrl_value": {"algo": "pbrl", "penalty": "value", "lr_y": 0.125},
            "pbrl_bellman": {"algo": "pbrl", "penalty": "bellman", "lr_y": 0.2},
        },
        "logging": {"wandb": "disabled", "progress_every_s": 30},
        "sweep": {
            "seeds": list(range(seeds)),
            "grid": {
                "method.lam": [round(5.0 * 1.2**i, 4) for i in range(lams)],
                "method.lr_x": [round(0.01 * (i + 1), 3) for i in range(lrs)],
            },
        },
    }
    path = folder / "bench_expand.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, 2 * lams * lrs * seeds


def _time(label: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    dt = time.perf_counter() - t0
    print(f"{label:<58} {dt:8.2f} s", flush=True)
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lams", type=int, default=25)
    ap.add_argument("--lrs", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="cProfile load_sweep; print the top 25")
    ap.add_argument("--no-search", action="store_true", help="skip the search-axis variant")
    ap.add_argument(
        "--long-axes",
        action="store_true",
        help="also one method × 10,000 seeds, and one method × a 10,000-value grid axis",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, n = write_sweep(Path(tmp), lams=args.lams, lrs=args.lrs, seeds=args.seeds)
        print(f"{n} trials, {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            load_sweep(path)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
            return
        sweep, t_load = _time(
            "load_sweep (pbrl show / run / sweep: expand + validate)", load_sweep, path
        )
        assert len(sweep.trials) == n, len(sweep.trials)
        t0 = time.perf_counter()
        check_local_sweep(sweep)
        check_bounds(sweep.trials, local=True)
        _time("  fingerprint", fingerprint, sweep.trials)
        t_run = time.perf_counter() - t0
        print(f"{'pbrl run start after load_sweep (checks + fingerprint)':<58} {t_run:8.2f} s")

        def sweep_start(s):  # type: ignore[no-untyped-def]
            block = typed_block(s)
            check_search(s, block)
            check_bounds(s.trials, local=True)
            fingerprint(s.trials)
            cpus = float(os.cpu_count() or 1)
            check_fits(s.trials, cpus, cpus)

        _, t_sw = _time("pbrl sweep start after load_sweep (grid)", sweep_start, sweep)
        print(f"{'total: pbrl run start':<58} {t_load + t_run:8.2f} s")
        print(f"{'total: pbrl sweep start (before Ray)':<58} {t_load + t_sw:8.2f} s")
        if not args.no_search:
            over = ["sweep.search.method.lr_y={loguniform: [0.05, 0.5]}"]
            searched, t_l2 = _time(
                "load_sweep with a search axis", load_sweep, path, overrides=over
            )
            _, t_s2 = _time("pbrl sweep start after load_sweep (search)", sweep_start, searched)
            print(f"{'total: pbrl sweep start with a search axis':<58} {t_l2 + t_s2:8.2f} s")
        if args.long_axes:
            data = yaml.safe_load(path.read_text())
            data["methods"] = {"pbrl_value": data["methods"]["pbrl_value"]}
            lam = [round(1.0 + 0.001 * i, 4) for i in range(10_000)]
            for label, block in (
                ("10,000 seeds", {"seeds": list(range(10_000))}),
                ("a 10,000-value grid axis", {"seeds": [0], "grid": {"method.lam": lam}}),
            ):
                data["sweep"] = block
                path.write_text(yaml.safe_dump(data, sort_keys=False))
                _time(f"load_sweep, one method × {label}", load_sweep, path)


if __name__ == "__main__":
    main()
