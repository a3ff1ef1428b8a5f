"""E17c (pre-registered in RESULTS.md), beside `pbrl report`'s paired lines: per game, the seed-paired d =
(PBRL - DRLHF) / A2C with A2C the mean final return of `minatar_rlhf`'s A2C on the true reward (seeds 0-9),
its 95% and Bonferroni 97.5% percentile bootstrap CIs, the paired t and signed-rank tests, runs at or below
the random policy's return, the mechanism fields' means and the time per agent frame against DRLHF's.

    .venv/bin/python docs/results/e17c/analyze.py docs/results/e17c docs/results/minatar_rlhf
"""

import glob
import json
import sys

import numpy as np
import scipy.stats as ss

out = sys.argv[1] if len(sys.argv) > 1 else "docs/results/e17c"
base = sys.argv[2] if len(sys.argv) > 2 else "docs/results/minatar_rlhf"
GAMES = {"Breakout": 0.28, "SpaceInvaders": 4.0}  # random policy's return (RESULTS.md, minatar_rlhf)
ARMS = ("drlhf_absorbing", "pbrl_lam10_strong_absorbing")
MECHANISM = ("oracle/episode_return", "penalty/p_hat_positive", "rm/penalty_grad_ratio",
             "upper/score_grad_ratio", "rm/eval_accuracy")  # fmt: skip


def results(folder: str, arm: str, game: str) -> dict[int, dict]:
    got = {}
    for f in glob.glob(f"{folder}/{arm}__env_id=MinAtar_{game}-v1__s*/result.json"):
        r = json.load(open(f))
        if r.get("status") == "complete":
            got[int(f.split("__s")[-1].split("/")[0])] = r
    return got


for game, random_return in GAMES.items():
    a2c = results(base, "a2c_oracle", game)
    scale = np.mean([r["final"]["rl/episode_return"] for r in a2c.values()])
    drlhf, pbrl = (results(out, arm, game) for arm in ARMS)
    seeds = sorted(set(drlhf) & set(pbrl))
    ret = {arm: np.array([r[s]["final"]["rl/episode_return"] for s in seeds])
           for arm, r in zip(ARMS, (drlhf, pbrl), strict=True)}  # fmt: skip
    d = (ret[ARMS[1]] - ret[ARMS[0]]) / scale
    print(f"== {game}: {len(seeds)} pairs, A2C scale {scale:.2f} ({len(a2c)} seeds of {base})")
    print(f"mean d {d.mean():+.4f}, sd {d.std(ddof=1):.4f}, IQM d {ss.trim_mean(d, 0.25):+.4f}")
    print(f"paired t-test p = {ss.ttest_1samp(d, 0).pvalue:.4f}; signed-rank p = {ss.wilcoxon(d).pvalue:.4f}")
    boot = np.random.default_rng(0).choice(d, (20000, len(d))).mean(1)
    for level in (0.95, 0.975):
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        print(f"  {level:.1%} percentile bootstrap CI of mean d: [{lo:+.4f}, {hi:+.4f}]")
    for arm, r in zip(ARMS, (drlhf, pbrl), strict=True):
        v = ret[arm]
        mech = {k: round(float(np.mean([r[s]["final"][k] for s in seeds if k in r[s]["final"]])), 3)
                for k in MECHANISM if k in r[seeds[0]]["final"]}  # fmt: skip
        print(f"  {arm}: mean {v.mean():.2f}, median {np.median(v):.2f}, "
              f"runs at or below random ({random_return}): {(v <= random_return).sum()}; {mech}")
    wall = {arm: np.array([r[s]["wall_s"] for s in seeds]) for arm, r in zip(ARMS, (drlhf, pbrl), strict=True)}
    print(f"  time per agent frame, PBRL / DRLHF (same seeds, one core, sequential): "
          f"{np.mean(wall[ARMS[1]] / wall[ARMS[0]]):.2f}x")
