"""E17b, beside `pbrl report`'s paired line: the paired t-test, a Bonferroni-adjusted (97.5%) bootstrap CI
of the mean d, the signed-rank test, collapsed runs per arm, and the mechanism fields' means.

    .venv/bin/python docs/results/e17b/analyze.py docs/results/e17b
"""

import glob
import json
import sys

import numpy as np
import scipy.stats as ss

out = sys.argv[1] if len(sys.argv) > 1 else "docs/results/e17b"


def finals(arm: str) -> dict[int, dict]:
    got = {}
    for f in glob.glob(f"{out}/{arm}__s*/result.json"):
        r = json.load(open(f))
        if r.get("status") == "complete":
            got[int(f.split("__s")[1].split("/")[0])] = r["final"]
    return got


a2c, drlhf, pbrl = finals("a2c_oracle"), finals("drlhf"), finals("pbrl_lam10_strong")
seeds = sorted(set(a2c) & set(drlhf) & set(pbrl))
scale = np.mean([a2c[s]["rl/episode_return"] for s in seeds])
d = np.array([(pbrl[s]["rl/episode_return"] - drlhf[s]["rl/episode_return"]) / scale for s in seeds])
print(f"n = {len(d)} pairs, A2C mean {scale:.2f}; mean d {d.mean():.4f}, sd {d.std(ddof=1):.4f}")
print(f"paired t-test p = {ss.ttest_1samp(d, 0).pvalue:.4f}; signed-rank p = {ss.wilcoxon(d).pvalue:.4f}")
boot = np.random.default_rng(0).choice(d, (20000, len(d))).mean(1)
for level in (0.95, 0.975):
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    print(f"{level:.1%} percentile bootstrap CI of mean d: [{lo:.4f}, {hi:.4f}]")
for name, arm in (("drlhf", drlhf), ("pbrl_lam10_strong", pbrl)):
    v = np.array([arm[s]["rl/episode_return"] for s in seeds])
    print(f"{name}: mean {v.mean():.2f}, median {np.median(v):.2f}, runs below 40: {(v < 40).sum()}")
for name, arm in (("drlhf", drlhf), ("pbrl_lam10_strong", pbrl)):
    keys = ["oracle/episode_return", "penalty/p_hat_positive", "rm/penalty_grad_ratio",
            "upper/score_grad_ratio", "rm/eval_accuracy"]  # fmt: skip
    means = {k: np.mean([arm[s][k] for s in seeds if k in arm[s]]) for k in keys if k in arm[seeds[0]]}
    print(name, {k: round(float(v), 3) for k, v in means.items()})
