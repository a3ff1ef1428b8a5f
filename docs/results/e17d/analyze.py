"""E17d's pre-registered numbers: the slow-oracle arm against E17b's DRLHF (primary) and E17b's PBRL arm
(secondary), seed-paired on seeds 200-299, in units of A2C's mean final return on those seeds.

    .venv/bin/python docs/results/e17d/analyze.py results/e17d docs/results/e17b

Per comparison: n, mean d with its 95% and 97.5% percentile bootstrap CIs (20,000 resamples of the pairs,
generator seed 0), the paired t and signed-rank p-values, the IQM of d, P(new > old) over pairs (ties
count half), the verdict by the pre-registered rule (95% CI above 0: helps; below: hurts; else no detectable
difference); then runs below a return of 40 per arm and the mechanism fields' means.
"""

import glob
import json
import sys

import numpy as np
import scipy.stats as ss

new_dir = sys.argv[1] if len(sys.argv) > 1 else "results/e17d"
old_dir = sys.argv[2] if len(sys.argv) > 2 else "docs/results/e17b"


def finals(folder: str, arm: str) -> dict[int, dict]:
    got = {}
    for f in glob.glob(f"{folder}/{arm}__s*/result.json"):
        with open(f) as fh:
            r = json.load(fh)
        if r.get("status") == "complete":
            got[int(f.split("__s")[1].split("/")[0])] = r["final"]
    return got


def iqm(x: np.ndarray) -> float:
    lo, hi = np.quantile(x, [0.25, 0.75])
    return float(x[(x >= lo) & (x <= hi)].mean())


slow = finals(new_dir, "pbrl_lam10_strong_slow")
a2c, drlhf, strong = (finals(old_dir, a) for a in ("a2c_oracle", "drlhf", "pbrl_lam10_strong"))
seeds = sorted(set(slow) & set(a2c) & set(drlhf) & set(strong))
scale = np.mean([a2c[s]["rl/episode_return"] for s in seeds])
print(f"{len(seeds)} seeds ({len(slow)} slow-oracle runs complete); A2C mean {scale:.2f}")
for name, base in (("slow - drlhf (primary)", drlhf), ("slow - strong (secondary)", strong)):
    d = np.array(
        [(slow[s]["rl/episode_return"] - base[s]["rl/episode_return"]) / scale for s in seeds]
    )
    boot = np.random.default_rng(0).choice(d, (20000, len(d))).mean(1)
    ci95 = np.quantile(boot, [0.025, 0.975])
    ci975 = np.quantile(boot, [0.0125, 0.9875])
    verdict = "helps" if ci95[0] > 0 else "hurts" if ci95[1] < 0 else "no detectable difference"
    p_imp = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    print(
        f"{name}: mean d {d.mean():+.4f} [{ci95[0]:+.4f}, {ci95[1]:+.4f}] (97.5%: [{ci975[0]:+.4f}, "
        f"{ci975[1]:+.4f}]), sd {d.std(ddof=1):.4f}, IQM d {iqm(d):+.4f}, P(new > old) {p_imp:.2f}, "
        f"t p = {ss.ttest_1samp(d, 0).pvalue:.4f}, signed-rank p = {ss.wilcoxon(d).pvalue:.4f} -> {verdict}"
    )
keys = ["oracle/episode_return", "penalty/p_hat_positive", "rm/penalty_grad_ratio",
        "upper/score_grad_ratio", "rm/eval_accuracy"]  # fmt: skip
for name, arm in (
    ("drlhf", drlhf),
    ("pbrl_lam10_strong", strong),
    ("pbrl_lam10_strong_slow", slow),
):
    v = np.array([arm[s]["rl/episode_return"] for s in seeds])
    means = {k: round(float(np.mean([arm[s][k] for s in seeds if k in arm[s]])), 3)
             for k in keys if k in arm[seeds[0]]}  # fmt: skip
    print(
        f"{name}: mean {v.mean():.2f}, median {np.median(v):.2f}, runs below 40: {(v < 40).sum()}",
        means,
    )
