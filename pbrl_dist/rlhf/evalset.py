"""A common evaluation set for the reward model: the same labelled segment pairs for every method and seed.

``rm/accuracy`` and ``rm/return_corr`` score r_φ on each run's *own* fresh segments, so they are not
comparable across methods: a collapsed agent makes trivially rankable segments (on MinAtar Breakout they
anti-correlated with the final return). The evaluation set fixes the segments instead: fixed reference
policies (uniform random in half the envs; a *sticky* random policy, which repeats its previous action with
probability ``STICKY``, in the other half, for longer coherent behaviour) step the problem's own env,
seeded by ``EVAL_SEED`` and never by the trial seed; pairs are cut from those rollouts as the trial cuts its
own (same segment length, same absorbing-state rule) and labelled by the true return (no teacher noise).
Every row then scores r_φ on them: ``rm/eval_accuracy`` (strict pairs ranked right) and
``rm/eval_return_corr`` (predicted vs true segment returns).
"""

from __future__ import annotations

import numpy as np
import torch

from pbrl_dist.core.preference import SegmentPairs, sample_segment_pairs
from pbrl_dist.core.types import generator
from pbrl_dist.nets import reward
from pbrl_dist.problems.rlhf import RLHFProblem

EVAL_SEED = (
    20_211_103  # fixed: the set depends on the problem and the settings below, never on the trial
)
STICKY = 0.75
NUM_ENVS = 4


def reference_pairs(
    problem: RLHFProblem, *, num_pairs: int, H: int, absorb_action: int | None
) -> SegmentPairs:
    """Roll the reference policies out and cut ``num_pairs`` pairs of ``H`` steps from them (enough
    steps per env for 2·num_pairs distinct windows)."""
    steps = max(2 * H, -(-2 * num_pairs * H // NUM_ENVS))
    env = problem.make_env(num_envs=NUM_ENVS, seed=EVAL_SEED)
    try:
        rng = np.random.default_rng(EVAL_SEED)
        obs = env.reset()
        sticky = np.arange(NUM_ENVS) >= NUM_ENVS // 2
        act = rng.integers(env.num_actions, size=NUM_ENVS)
        obs_l, act_l, rew_l, done_l = [], [], [], []
        for _ in range(steps):
            fresh = rng.integers(env.num_actions, size=NUM_ENVS)
            keep = sticky & (rng.random(NUM_ENVS) < STICKY)
            act = np.where(keep, act, fresh)
            next_obs, r, term, trunc, _ = env.step(act)
            obs_l.append(np.array(obs, copy=True))
            act_l.append(act.copy())
            rew_l.append(np.asarray(r, dtype=np.float32))
            done_l.append(np.asarray(term) | np.asarray(trunc))
            obs = next_obs
    finally:
        env.close()
    return sample_segment_pairs(
        obs_TN=torch.from_numpy(np.stack(obs_l)),
        actions_TN=torch.from_numpy(np.stack(act_l)).to(torch.int64),
        true_rewards_TN=torch.from_numpy(np.stack(rew_l)),
        done_TN=torch.from_numpy(np.stack(done_l)),
        num_pairs=num_pairs,
        H=H,
        generator=generator(EVAL_SEED, "rlhf", "eval_pairs"),
        absorb_action=absorb_action,
    )


@torch.no_grad()
def eval_scores(rm: torch.nn.Module, pairs: SegmentPairs) -> dict[str, float]:
    """Return ``rm/eval_accuracy`` and ``rm/eval_return_corr`` of r_φ (in eval mode) on ``pairs``."""
    pred1 = reward(rm, pairs.obs1_BH, pairs.act1_BH).sum(1).double()
    pred2 = reward(rm, pairs.obs2_BH, pairs.act2_BH).sum(1).double()
    true1, true2 = pairs.ret1_B.double(), pairs.ret2_B.double()
    strict = true1 != true2
    out: dict[str, float] = {}
    if bool(strict.any()):
        right = ((pred1 > pred2) == (true1 > true2))[strict]
        out["rm/eval_accuracy"] = float(right.double().mean())
    pred, true = torch.cat([pred1, pred2]).numpy(), torch.cat([true1, true2]).numpy()
    if pred.std() > 0 and true.std() > 0:
        out["rm/eval_return_corr"] = float(np.corrcoef(pred, true)[0, 1])
    return out
