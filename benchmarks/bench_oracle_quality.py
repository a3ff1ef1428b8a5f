"""How good is PBRL's oracle π̂*, and what does it cost? Oracle settings side by side with DRLHF on the toy env.

For each seed, every arm runs one after the other in this process (one torch thread), with the settings of
``sweeps/rlhf_toy.yaml``; per arm it prints the time per agent frame as a ratio to DRLHF's on the same seed
(interleaved, so machine noise hits all arms alike), the fraction of reward epochs with p̂ > 0 before the
epoch (``penalty/p_hat_positive``: the penalty acts only then), and the oracle's and the agent's final true
return. Issue 17's goal: p̂ > 0 in ≥ 90% of reward epochs at ≤ 2× DRLHF's time per agent frame.

    .venv/bin/python benchmarks/bench_oracle_quality.py [--seeds 0,1,2,3] [--steps 80000] [--out FILE.jsonl]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import ToyRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, run

ROOT = Path(__file__).resolve().parents[1]
# E17b's strong oracle: re-solved with 20 steps before each reward epoch, the oracle's regular step every
# 10th update only, a 400-step penalty window, 512 samples per penalty gradient
STRONG: dict[str, object] = {
    "mode": "pbrl", "oracle_resolve_steps": 20, "oracle_every": 10, "penalty_window_steps": 400,
    "penalty_batch": 512,
}  # fmt: skip
ARMS: dict[str, dict[str, object]] = {
    "drlhf": {"mode": "drlhf"},
    "pbrl": {"mode": "pbrl"},  # the default oracle: 1 warm A2C step per agent update
    "resolve20": {"mode": "pbrl", "oracle_resolve_steps": 20},
    "cold4": {"mode": "pbrl", "oracle_steps": 4, "oracle_warm_start": False},
    "cold4_resolve20": {
        "mode": "pbrl", "oracle_steps": 4, "oracle_warm_start": False, "oracle_resolve_steps": 20,
    },
    "resolve20_win400": {"mode": "pbrl", "oracle_resolve_steps": 20, "penalty_window_steps": 400},
    "resolve20_win400_b512": {
        "mode": "pbrl", "oracle_resolve_steps": 20, "penalty_window_steps": 400, "penalty_batch": 512,
    },
    "resolve20_every10_win400_b512": STRONG,
    "resolve20_every10_lr1e-3": {
        "mode": "pbrl", "oracle_resolve_steps": 20, "oracle_every": 10, "oracle_lr": 1e-3,
    },
    "resolve20_every10_win400_b512_lr1e-3": {**STRONG, "oracle_lr": 1e-3},
    "resolve10_every10_win400_b512_lr1e-3": {**STRONG, "oracle_resolve_steps": 10, "oracle_lr": 1e-3},
    "resolve10_every10_win400_b512_lr2e-3": {**STRONG, "oracle_resolve_steps": 10, "oracle_lr": 2e-3},
}  # fmt: skip
DEFAULT_ARMS = "drlhf,pbrl,resolve20,cold4,cold4_resolve20"
PBRL_ONLY = ("upper_coef", "upper_coef_decay", "upper_coef_decay_every", "oracle_steps")


def one(arm: dict[str, object], seed: int, steps: int) -> dict[str, float]:
    """Run one toy trial; return its seconds per 1000 agent frames and final mechanism numbers."""
    sweep = OmegaConf.load(ROOT / "sweeps" / "rlhf_toy.yaml")
    method = {k: v for k, v in OmegaConf.to_container(sweep.method).items() if k != "algo"}
    problem = {k: v for k, v in OmegaConf.to_container(sweep.problem).items() if k != "name"}
    if arm["mode"] != "pbrl":
        method = {k: v for k, v in method.items() if k not in PBRL_ONLY}
    cfg = RLHFConfig(**{**method, "total_env_steps": steps, "log_every_steps": steps, **arm})
    sink = ListSink()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run(build(ToyRLHFConfig(**problem)), cfg, seed=seed, sink=sink)
    dt = time.perf_counter() - t0
    last = sink.rows[-1]
    return {
        "s_per_kframe": dt / last["env_frames"] * 1000,
        "return": last["rl/episode_return"],
        "oracle_return": last.get("oracle/episode_return", float("nan")),
        "p_hat_positive": last.get("penalty/p_hat_positive", float("nan")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--steps", type=int, default=80_000)
    ap.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma list of: {', '.join(ARMS)}")
    ap.add_argument("--out", help="append one JSON line per run here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.arms.split(",")
    if names[0] != "drlhf" or any(n not in ARMS for n in names):
        raise SystemExit(f"--arms: drlhf first (the baseline), then any of {', '.join(ARMS)}")
    got: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for seed in seeds:
        for name in names:
            arm = ARMS[name]
            r = one(arm, seed, args.steps)
            got[name].append(r)
            line = {"arm": name, "seed": seed, "steps": args.steps, **r}
            print(json.dumps(line), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(line) + "\n")
    base = np.array([r["s_per_kframe"] for r in got["drlhf"]])
    print(f"\ntoy env, {args.steps} agent steps, seeds {seeds}, 1 torch thread")
    print(
        f"{'arm':32s} {'time/frame vs drlhf':>20s} {'p̂ > 0 (epochs)':>16s} {'agent':>7s} {'oracle':>7s}"
    )
    for name, rows in got.items():
        ratio = np.array([r["s_per_kframe"] for r in rows]) / base
        pos = np.array([r["p_hat_positive"] for r in rows])
        ret = np.mean([r["return"] for r in rows])
        orc = np.mean([r["oracle_return"] for r in rows])
        pos_s = (
            "-" if np.isnan(pos).all() else f"{np.mean(pos):.2f} [{pos.min():.2f}, {pos.max():.2f}]"
        )
        print(f"{name:32s} {np.mean(ratio):19.2f}x {pos_s:>16s} {ret:7.1f} {orc:7.1f}")


if __name__ == "__main__":
    main()
