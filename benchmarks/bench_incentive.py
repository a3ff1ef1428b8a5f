"""Time per PBRL-NI outer iteration at the Figure 3 size, exact and Monte Carlo, side by side.

Usage:  .venv/bin/python benchmarks/bench_incentive.py [--iters 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.algos.incentive import run_metagrad, run_pbrl_ni
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.incentive import IncentiveProblem, make_game


def main() -> None:
    """Print the table recorded in BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem = IncentiveProblem(
        make_game(
            num_states=5, num_actions1=3, num_actions2=3, gamma=0.8, tau=0.1, cost_coef=0.0, game=0
        )
    )
    K = args.iters
    base = MethodConfig(lam=5.0, lr_x=0.1, lr_y=0.1, num_iters=K, log_every=10**9)
    variants = {
        "PBRL-NI exact, exact oracles (SPI, warm)": (run_pbrl_ni, {}),
        "PBRL-NI exact, PG oracles T=1 (paper)": (
            run_pbrl_ni,
            dict(oracle="pg", oracle_steps=1, oracle_lr=0.1),
        ),
        "PBRL-NI MC (H=5, N=24), exact oracles": (
            run_pbrl_ni,
            dict(estimator="mc", mc_batch=24, mc_horizon=5, mc_chunk=24),
        ),
        "PBRL-NI MC (H=5, N=24), PG oracles T=1": (
            run_pbrl_ni,
            dict(
                estimator="mc",
                mc_batch=24,
                mc_horizon=5,
                mc_chunk=24,
                oracle="pg",
                oracle_steps=1,
                oracle_lr=0.1,
            ),
        ),
        "meta-gradient exact": (run_metagrad, dict(lr_x=1.0, lr_y=1.0)),
    }
    print(f"Incentive design |S|=5 |A1|=|A2|=3, {K} outer iterations, best of {args.repeats}")
    print(f"{'variant':44s} {'ms/iter':>8s} {'vs first':>9s}")
    ref = None
    for name, (fn, kw) in variants.items():
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn(problem, dataclasses.replace(base, **kw), seed=0, sink=ListSink())
            best = min(best, time.perf_counter() - t0)
        ms = best / K * 1e3
        ref = ref or ms
        print(f"{name:44s} {ms:8.3f} {ms / ref:8.2f}x")


if __name__ == "__main__":
    main()
