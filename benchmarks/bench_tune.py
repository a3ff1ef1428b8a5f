"""Ray Tune and the ray executor on this machine: parallel efficiency, per-trial overhead, MC crossover.

    .venv/bin/python benchmarks/bench_tune.py            # full Figure 1 sweep (90 trials, a few minutes)
    .venv/bin/python benchmarks/bench_tune.py --quick    # 18 trials of 500 iterations

Three measurements, one table each:

1. Parallel efficiency of the Figure 1 sweep under ``pbrl sweep`` (embedded Ray, all CPUs):
   Σ trial compute time (each trial's ``wall_s``: its outer loop, as in ``pbrl run``) ÷ (sweep wall × CPUs).
   Ray's start-up is timed separately and left out of the sweep wall.
2. Fixed overhead per trial: N trials of one outer iteration through Tune (with and without
   ``reuse_actors``) against the same trials in-process (``pbrl run``): (Tune wall × CPUs ÷ N) − in-process
   time per trial.
3. The Monte Carlo problem size at which the ray executor (2 rollout-worker actors) beats the local
   executor: the time of one value-penalty gradient estimate (two rollout batches) against the number of
   rollouts N, chunked so that each worker gets one chunk; new parameters every call (so the broadcast is
   included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray
import torch

from pbrl_dist.algos.base import mc_estimate
from pbrl_dist.config import load_sweep
from pbrl_dist.executors.local import LocalChunkRunner
from pbrl_dist.executors.ray_chunks import RayChunkRunner
from pbrl_dist.launch.local import run_local
from pbrl_dist.launch.tune_sweep import run_sweep
from pbrl_dist.problems.stackelberg import StackelbergProblem, make_game

ROOT = Path(__file__).resolve().parents[1]
FIG1 = ROOT / "sweeps" / "fig1_stackelberg.yaml"
QUIET = ["logging.wandb=disabled", "logging.progress_every_s=100000"]


def _quiet_sweep(sweep, out: Path, **kw) -> tuple[int, float]:
    """Run a Tune sweep with its output silenced; return (rc, wall seconds)."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = devnull
        try:
            rc = run_sweep(sweep, out, **kw)
        finally:
            sys.stdout, sys.stderr = old_out, old_err
    return rc, time.perf_counter() - t0


def efficiency(tmp: Path, quick: bool, cpus: int) -> dict:
    overrides = [*QUIET]
    if quick:
        overrides += [
            "sweep.grid.problem.game=[0,1,2]",
            "sweep.seeds=[0,1]",
            "method.num_iters=500",
        ]
    sweep = load_sweep(FIG1, overrides=overrides)
    rc, wall = _quiet_sweep(sweep, tmp / "eff")
    walls = [
        json.loads((tmp / "eff" / t.name / "result.json").read_text())["wall_s"]
        for t in sweep.trials
    ]
    return {
        "trials": len(sweep.trials),
        "rc": rc,
        "sweep_wall_s": wall,
        "sum_trial_s": sum(walls),
        "efficiency": sum(walls) / (wall * cpus),
    }


def overhead(tmp: Path, n: int, cpus: int) -> dict:
    overrides = [
        *QUIET,
        "method.num_iters=1",
        "method.log_every=1",
        f"sweep.grid.problem.game=[{','.join(str(g) for g in range(n))}]",
        "sweep.seeds=[0]",
    ]
    sweep = load_sweep(FIG1, overrides=overrides)
    sweep.trials = [t for t in sweep.trials if t.cfg.method.name == "pbrl_value"]
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        old = sys.stdout
        sys.stdout = devnull
        try:
            run_local(sweep, tmp / "inproc")
        finally:
            sys.stdout = old
    local = (time.perf_counter() - t0) / n
    out = {"n": n, "inproc_per_trial_s": local}
    for reuse in ("0", "1"):
        os.environ["PBRL_TUNE_REUSE_ACTORS"] = reuse
        _, wall = _quiet_sweep(sweep, tmp / f"tune_reuse{reuse}")
        out[f"tune_wall_reuse{reuse}_s"] = wall
        out[f"overhead_reuse{reuse}_s"] = wall * cpus / n - local
    os.environ.pop("PBRL_TUNE_REUSE_ACTORS")
    return out


def crossover(sizes: list[int], horizon: int, reps: int) -> list[dict]:
    problem = StackelbergProblem(
        make_game(
            num_states=10,
            num_leader_actions=5,
            num_follower_actions=5,
            sparsity=0.7,
            gamma=0.9,
            tau=0.1,
            game=0,
        )
    )
    x0, y0 = problem.init_params(0, 0.5)
    pi_hat = torch.softmax(y0, -1)
    local = LocalChunkRunner(problem)
    remote = RayChunkRunner(problem, num_workers=2)
    rows = []
    try:
        for n in sizes:
            times = {}
            for name, runner in (("local", local), ("ray2", remote)):
                mc_estimate(
                    runner,
                    x0,
                    y0,
                    pi_hat,
                    parts=("joint", "hat"),
                    total=n,
                    chunk=max(1, n // 2),
                    horizon=horizon,
                    seed=0,
                    k=-1,
                )  # warm-up
                ts = []
                for k in range(reps):
                    x = x0 + 1e-3 * k  # new parameters every call: the broadcast is timed too
                    t0 = time.perf_counter()
                    mc_estimate(
                        runner,
                        x,
                        y0,
                        pi_hat,
                        parts=("joint", "hat"),
                        total=n,
                        chunk=max(1, n // 2),
                        horizon=horizon,
                        seed=0,
                        k=k,
                    )
                    ts.append(time.perf_counter() - t0)
                times[name] = statistics.median(ts)
            rows.append(
                {
                    "rollouts": n,
                    **{f"{k}_ms": v * 1e3 for k, v in times.items()},
                    "speedup": times["local"] / times["ray2"],
                }
            )
    finally:
        remote.shutdown()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sweep and fewer sizes")
    ap.add_argument("--skip-sweep", action="store_true", help="only the overhead and MC parts")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpus = os.cpu_count() or 1
    print(f"machine: {cpus} CPUs, torch {torch.__version__}, ray {ray.__version__}")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    print(f"embedded ray.init: {time.perf_counter() - t0:.1f}s (not counted below)\n")
    with tempfile.TemporaryDirectory(prefix="bench_tune_") as d:
        tmp = Path(d)
        if not args.skip_sweep:
            e = efficiency(tmp, args.quick, cpus)
            print("1. Figure 1 sweep through Tune" + (" (quick)" if args.quick else ""))
            print(
                f"   trials={e['trials']}  sweep wall={e['sweep_wall_s']:.1f}s  Σ trial compute="
                f"{e['sum_trial_s']:.1f}s  CPUs={cpus}  parallel efficiency={e['efficiency']:.2f}"
                f"  (rc={e['rc']})\n"
            )
        o = overhead(tmp, 8 if args.quick else 20, cpus)
        print(f"2. fixed overhead per trial (num_iters=1, N={o['n']} trials, {cpus} CPUs)")
        print(f"   in-process (pbrl run): {o['inproc_per_trial_s']:.3f}s per trial")
        for reuse in ("0", "1"):
            print(
                f"   Tune reuse_actors={reuse == '1'}: wall {o[f'tune_wall_reuse{reuse}_s']:.1f}s  "
                f"overhead ≈ {o[f'overhead_reuse{reuse}_s']:.2f}s CPU-time per trial"
            )
        print()
        sizes = [64, 256, 1024, 4096] if args.quick else [64, 256, 1024, 4096, 16384, 65536]
        rows = crossover(sizes, horizon=10, reps=7 if args.quick else 15)
        print(
            "3. one MC value-penalty gradient estimate (2 rollout batches of N, horizon 10, 10×5×5 game)"
        )
        print(f"   {'N':>7}  {'local ms':>9}  {'ray 2 workers ms':>16}  {'speed-up':>8}")
        for r in rows:
            print(
                f"   {r['rollouts']:>7}  {r['local_ms']:>9.1f}  {r['ray2_ms']:>16.1f}  {r['speedup']:>8.2f}"
            )
        win = [
            r["rollouts"] for i, r in enumerate(rows) if all(q["speedup"] > 1.0 for q in rows[i:])
        ]
        print(
            f"   ray executor faster from N = {win[0] if win else 'never (in this range)'} (medians; faster at every larger N too)"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
