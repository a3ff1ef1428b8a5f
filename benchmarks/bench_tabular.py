"""Time per PBRL outer iteration (exact mode, paper size) and batched-vs-looped games.

Usage:  .venv/bin/python benchmarks/bench_tabular.py [--iters 300] [--repeats 3]

Every number is measured side by side in this one process (best of --repeats), single-threaded torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from pbrl_dist.algos import pbrl
from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.stackelberg import StackelbergProblem, make_game, stack_games

SIZE = dict(
    num_states=10, num_leader_actions=5, num_follower_actions=5, sparsity=0.7, gamma=0.9, tau=0.1
)


def time_run(problem: StackelbergProblem, cfg: MethodConfig, repeats: int) -> float:
    """Best wall seconds of ``pbrl.run`` over ``repeats``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        pbrl.run(problem, cfg, seed=0, sink=ListSink())
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    """Print the table recorded in BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    K = args.iters
    games = [make_game(**SIZE, game=i) for i in range(10)]
    base = MethodConfig(lam=20.0, lr_x=0.125, lr_y=0.125, num_iters=K, log_every=10**9)

    print(f"PBRL exact mode, |S|=10 |A|=|B|=5, {K} outer iterations, best of {args.repeats}")
    print(f"{'variant':44s} {'ms/iter':>8s} {'vs warm exact':>14s}")
    one = StackelbergProblem(games[0])
    variants = {
        "value, exact oracle (SPI), warm start": dict(),
        "value, exact oracle (SPI), cold start": dict(warm_start=False),
        "value, soft VI oracle, warm start": dict(oracle="vi", oracle_steps=10_000),
        "value, soft VI oracle, cold start": dict(
            oracle="vi", oracle_steps=10_000, warm_start=False
        ),
        "value, PMD oracle T=5 (eta=1), warm start": dict(oracle="pmd", oracle_steps=5),
        "bellman, exact oracle (SPI), warm start": dict(penalty="bellman", lam=200.0),
    }
    ref = None
    for name, kw in variants.items():
        t = time_run(one, dataclasses.replace(base, **kw), args.repeats) / K * 1e3
        ref = ref or t
        print(f"{name:44s} {t:8.3f} {t / ref:13.2f}x")

    loop = sum(time_run(StackelbergProblem(g), base, args.repeats) for g in games)
    batch = time_run(StackelbergProblem(stack_games(games)), base, args.repeats)
    print(
        f"\n10 games, {K} iterations each: loop {loop:.2f} s, one batch {batch:.2f} s, "
        f"speed-up {loop / batch:.2f}x"
    )


if __name__ == "__main__":
    main()
