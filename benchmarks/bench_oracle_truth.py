"""Is PBRL's oracle π̂* truly better than the agent on r_φ, and how often does each estimate of p̂ say so?

At every reward epoch (or every ``--every``-th) of a PBRL run with a sweep file's settings (the toy env by
default; MinAtar with ``--sweep sweeps/experiments/e17c_minatar_confirm.yaml --env-id MinAtar/Breakout-v1``),
right where p̂ is measured (after the oracle is re-solved), this measures the quantity p̂ estimates,
V_φ(π̂*) − V_φ(π_θ) from the env's start states, by rolling both policies out for a whole episode in
``--envs`` envs with common random numbers (the same env seed and action-noise generator for both), and sets beside
it the run's two estimates: ``windows`` (the oracle's window mean of r̃_φ minus the agent's) and ``paired``
(``core.a2c.paired_value_gap`` on the agent's window). Per arm it prints the fraction of epochs with each
> 0, how often each estimate's sign agrees with the measured gap's (where that is > 2 standard errors from
0), and the oracle/agent KL on the agent's window.

    .venv/bin/python benchmarks/bench_oracle_truth.py [--seeds 20,21] [--steps 40000] [--envs 256] [--out F]
    .venv/bin/python benchmarks/bench_oracle_truth.py --report F      # the table of a finished --out file
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

import pbrl_dist.rlhf.loop as loop
from pbrl_dist.core.a2c import nstep_returns, paired_value_gap
from pbrl_dist.core.types import generator
from pbrl_dist.metrics import ListSink
from pbrl_dist.nets import reward
from pbrl_dist.problems.rlhf import GymRLHFConfig, ToyRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, run
from pbrl_dist.rlhf.reward_model import RewardModelTrainer

ROOT = Path(__file__).resolve().parents[1]
# E17b's strong oracle: re-solved with 20 steps before each reward epoch, the oracle's regular step every
# 10th update only, a 400-step penalty window, 512 samples per penalty gradient
STRONG: dict[str, object] = {
    "oracle_resolve_steps": 20, "oracle_every": 10, "penalty_window_steps": 400, "penalty_batch": 512,
}  # fmt: skip
ARMS: dict[str, dict[str, object]] = {
    "pbrl": {},  # the default oracle: 1 warm A2C step per agent update
    "resolve20": {"oracle_resolve_steps": 20},
    "resolve20_every10_win400_b512": STRONG,
    "resolve20_lr1e-3": {"oracle_resolve_steps": 20, "oracle_lr": 1e-3},  # the agent's lr is 5e-3
    "resolve20_lr2e-4": {"oracle_resolve_steps": 20, "oracle_lr": 2e-4},
    "resolve20_every10_lr1e-3": {"oracle_resolve_steps": 20, "oracle_every": 10, "oracle_lr": 1e-3},
    "resolve20_every10_win400_b512_lr1e-3": {**STRONG, "oracle_lr": 1e-3},
    "resolve20_every10_win400_b512_lr2e-4": {**STRONG, "oracle_lr": 2e-4},
    "resolve10_every10_win400_b512_lr1e-3": {
        **STRONG,
        "oracle_resolve_steps": 10,
        "oracle_lr": 1e-3,
    },
    "resolve10_every10_win400_b512_lr2e-3": {
        **STRONG,
        "oracle_resolve_steps": 10,
        "oracle_lr": 2e-3,
    },
    # E17b's and E17d's arms (run them with --sweep sweeps/experiments/e17d_toy_r1_slow_oracle.yaml)
    "e17b_strong": {**STRONG, "upper_coef": 0.1},
    "e17d_slow": {**STRONG, "upper_coef": 0.1, "oracle_lr": 1e-3},
    # E17c's arm on MinAtar (sweeps/experiments/e17c_minatar_confirm.yaml; the agent's lr is 1e-3)
    "e17c_strong": {**STRONG, "upper_coef": 0.1, "oracle_every": 25},
    "e17c_strong_lr2e-4": {**STRONG, "upper_coef": 0.1, "oracle_every": 25, "oracle_lr": 2e-4},
}


@torch.no_grad()
def true_gap(L: Any, num_envs: int, seed: int, horizon: int) -> tuple[float, float]:
    """Return (mean, standard error) of V_φ(π̂*) − V_φ(π_θ) over ``num_envs`` episodes from reset,
    the two policies on the same env seed and action noise: Σ_t γ^t r̃_φ up to each env's first
    episode end (with ``method.absorbing``, plus γ^(t+1)/(1 − γ)·r̃_φ(absorbing) after it, as the
    agent counts it), at most ``horizon`` steps (the toy env's episodes end at ``episode_length``)."""
    gamma, totals = L.problem.gamma, []
    for net in (L.oracle.net, L.agent.net):
        env = L.problem.make_env(num_envs=num_envs, seed=seed)
        gen = generator(seed, "truth")
        obs, ret = env.reset(), torch.zeros(num_envs, dtype=torch.float64)
        alive = torch.ones(num_envs, dtype=torch.bool)
        for t in range(horizon):
            o = torch.from_numpy(np.asarray(obs))
            logits, _ = net(o)
            act = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen).squeeze(-1)
            obs, _, term, trunc, _ = env.step(act.numpy())
            done = torch.from_numpy(np.asarray(term) | np.asarray(trunc))
            r = L.rm.with_end_value(L.rm.rm, L.rm.normalized(reward(L.rm.rm, o, act)), done)
            ret += torch.where(alive, gamma**t * r.double(), 0.0)
            alive &= ~done
            if not alive.any():
                break
        env.close()
        totals.append(ret)
    diff = totals[0] - totals[1]
    return float(diff.mean()), float(diff.std() / np.sqrt(num_envs))


@torch.no_grad()
def paired(L: Any, roll: Any) -> dict[str, float]:
    """Return the first-order paired estimate (``core.a2c.paired_value_gap``) on the agent's window
    and the oracle/agent KL there: π̂*'s and π_θ's log-probabilities of the window's actions, the
    window's returns of r̃_φ bootstrapped by the agent's critic (cut at episode ends), the critic as
    baseline."""
    r_TN = L.rm.learned_reward(roll, update_stats=False)
    T, N = r_TN.shape
    obs = torch.cat([roll.obs_TN, roll.last_obs_N.unsqueeze(0)]).reshape(-1, *roll.obs_TN.shape[2:])
    logits, values = L.agent.net(obs)
    values_TN = values.reshape(T + 1, N)
    returns = nstep_returns(r_TN, roll.dones_TN, values_TN[-1], gamma=L.problem.gamma)
    lp = torch.log_softmax(logits[: T * N].float(), -1)
    lq = torch.log_softmax(L.oracle.net(obs[: T * N])[0].float(), -1)
    act = roll.actions_TN.reshape(-1, 1)
    p = paired_value_gap(
        lq.gather(-1, act).squeeze(-1), lp.gather(-1, act).squeeze(-1), returns.reshape(-1),
        values_TN[:-1].reshape(-1), gamma=L.problem.gamma,
    )  # fmt: skip
    return {"paired": float(p), "kl": float((lq.exp() * (lq - lp)).sum(-1).mean())}


def one(
    arm: dict[str, object], seed: int, steps: int, num_envs: int, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Run one PBRL trial of ``args.sweep``'s settings; return one record per measured reward epoch
    (every ``args.every``-th)."""
    sweep = OmegaConf.load(ROOT / args.sweep)
    method = {k: v for k, v in OmegaConf.to_container(sweep.method).items() if k != "algo"}
    problem = {k: v for k, v in OmegaConf.to_container(sweep.problem).items() if k != "name"}
    if args.env_id:
        problem["env_id"] = args.env_id
    cfg = RLHFConfig(
        **{**method, "total_env_steps": steps, "log_every_steps": steps, "mode": "pbrl", **arm}
    )
    built = (
        build(GymRLHFConfig(**problem))
        if sweep.problem.name == "gym_rlhf"
        else build(ToyRLHFConfig(**problem))
    )
    epochs = [0]
    recs: list[dict[str, float]] = []
    learners: list[Any] = []
    init, value_gap = loop.RLHFLearner.__init__, RewardModelTrainer.value_gap

    def keep(self: Any, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        learners.append(self)

    def measured(rm: RewardModelTrainer, oracle_roll: Any, agent_roll: Any) -> float:
        windows = value_gap(rm, oracle_roll, agent_roll)  # what the run itself measures
        epochs[0] += 1
        if (epochs[0] - 1) % args.every == 0:
            L = learners[-1]
            gap, se = true_gap(L, num_envs, seed=1000 * seed + epochs[0], horizon=args.horizon)
            recs.append({"true": gap, "se": se, "windows": windows, **paired(L, agent_roll)})
        return windows

    loop.RLHFLearner.__init__, RewardModelTrainer.value_gap = keep, measured  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run(built, cfg, seed=seed, sink=ListSink())
    finally:
        loop.RLHFLearner.__init__, RewardModelTrainer.value_gap = init, value_gap  # type: ignore[method-assign]
    return recs


def summary(recs: list[dict[str, float]]) -> dict[str, float]:
    """Fractions > 0, sign agreement where the measured gap is clear, median KL."""
    true = np.array([r["true"] for r in recs])
    clear = np.abs(true) > 2 * np.array([r["se"] for r in recs])
    out = {"epochs": len(recs), "true>0": float(np.mean(true > 0)), "clear": float(clear.mean())}
    for k in ("paired", "windows"):
        est = np.array([r[k] for r in recs])
        out[f"{k}>0"] = float(np.mean(est > 0))
        agree = (est > 0) == (true > 0)
        out[f"{k}_agrees"] = float(np.mean(agree[clear])) if clear.any() else float("nan")
    out["kl_median"] = float(np.median([r["kl"] for r in recs]))
    return out


def report(path: str) -> None:
    """Print, per arm of a ``--out`` file, over all its epochs pooled: the fractions of epochs where the
    measured gap is clearly positive (> 2 standard errors: the oracle is better), clearly negative (it
    is worse) or within the noise; the fraction where the run's two-window estimate is > 0 and where
    its sign agrees with a clear gap's, the same agreement for the paired estimate, the median KL and
    the median gap (r̃_φ's discounted units); and the range of the clearly-better fraction over seeds."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    head = ("better", "worse", "unclear", "windows>0", "w agrees", "p agrees", "KL", "gap")
    print(f"{'arm':38s} seeds " + " ".join(f"{h:>9s}" for h in head) + "  better, per seed")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        runs = [r for r in rows if r["arm"] == arm]
        det = [e for r in runs for e in r["epochs_detail"]]
        true, se = np.array([e["true"] for e in det]), np.array([e["se"] for e in det])
        clear = np.abs(true) > 2 * se
        windows, paired = (
            np.array([e["windows"] for e in det]),
            np.array([e["paired"] for e in det]),
        )
        cells = (
            np.mean(clear & (true > 0)),
            np.mean(clear & (true < 0)),
            np.mean(~clear),
            np.mean(windows > 0),
            np.mean(((windows > 0) == (true > 0))[clear]),
            np.mean(((paired > 0) == (true > 0))[clear]),
            np.median([e["kl"] for e in det]),
            np.median(true),
        )
        per_seed = []
        for r in runs:
            t = np.array([e["true"] for e in r["epochs_detail"]])
            c = np.abs(t) > 2 * np.array([e["se"] for e in r["epochs_detail"]])
            per_seed.append(float(np.mean(c & (t > 0))))
        line = " ".join(f"{v:9.2f}" if i < 7 else f"{v:+9.4f}" for i, v in enumerate(cells))
        print(f"{arm:38s} {len(runs):5d} {line}  [{min(per_seed):.2f}, {max(per_seed):.2f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="20,21")
    ap.add_argument("--steps", type=int, default=40_000)
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument(
        "--arms", default=",".join(list(ARMS)[:3]), help=f"comma list of: {', '.join(ARMS)}"
    )
    ap.add_argument(
        "--sweep", default="sweeps/rlhf_toy.yaml", help="the settings (method, problem)"
    )
    ap.add_argument("--env-id", help="problem.env_id of a gym sweep (e.g. MinAtar/Breakout-v1)")
    ap.add_argument("--every", type=int, default=1, help="measure every this many reward epochs")
    ap.add_argument("--horizon", type=int, default=1000, help="steps per measured episode, at most")
    ap.add_argument("--out", help="append one JSON line per run here")
    ap.add_argument("--report", metavar="FILE", help="print the table of an --out file and stop")
    args = ap.parse_args()
    if args.report:
        report(args.report)
        return
    torch.set_num_threads(1)
    for name in args.arms.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            recs = one(ARMS[name], seed, args.steps, args.envs, args)
            line = {
                "arm": name, "seed": seed, "steps": args.steps, "sweep": args.sweep,
                "env_id": args.env_id, **summary(recs),
            }  # fmt: skip
            print(json.dumps(line), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps({**line, "epochs_detail": recs}) + "\n")


if __name__ == "__main__":
    main()
