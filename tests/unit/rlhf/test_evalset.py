"""The reward model's common evaluation set (``rlhf/evalset.py``): the same pairs for every method and
seed, scored in every row without touching the run's numbers."""

from __future__ import annotations

import dataclasses

import torch
from _rlhf_tiny import TINY, TOY
from torch import nn

from pbrl_dist.core.preference import SegmentPairs
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import build
from pbrl_dist.rlhf import RLHFLearner, run
from pbrl_dist.rlhf.evalset import eval_scores, reference_pairs


class FirstFeature(nn.Module):
    """r(s, a) = sign·s[0] for every action."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, obs: torch.Tensor, generator: object = None) -> torch.Tensor:
        return self.sign * obs[..., :1].expand(*obs.shape[:-1], 3)


def test_eval_scores_of_a_perfect_and_of_an_inverted_reward_model() -> None:
    r1 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])  # returns 1, 0, 4
    r2 = torch.tensor([[0.0, 0.0], [3.0, 0.0], [2.0, 2.0]])  # returns 0, 3, 4 (a tie)
    act = torch.zeros(3, 2, dtype=torch.int64)
    pairs = SegmentPairs(r1[..., None], act, r2[..., None], act, r1.sum(1), r2.sum(1))
    assert eval_scores(FirstFeature(1.0), pairs) == {
        "rm/eval_accuracy": 1.0,  # the tie is left out
        "rm/eval_return_corr": 1.0,
    }
    flipped = eval_scores(FirstFeature(-1.0), pairs)
    assert flipped["rm/eval_accuracy"] == 0.0
    assert abs(flipped["rm/eval_return_corr"] + 1.0) < 1e-12


def test_every_method_and_seed_scores_the_same_pairs() -> None:
    sets = []
    for mode, seed in (("drlhf", 0), ("pbrl", 7)):
        cfg = dataclasses.replace(TINY, mode=mode, rm_eval_pairs=16)
        prob = build(TOY)
        env = prob.make_env(num_envs=1, seed=0)
        shape, n = tuple(env.obs_shape), env.num_actions
        env.close()
        L = RLHFLearner(prob, cfg, seed=seed, obs_shape=shape, num_actions=n)
        sets.append(L.eval_pairs)
    a, b = sets
    assert a is not None and b is not None and len(a) == 16
    for f in dataclasses.fields(SegmentPairs):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
    assert (a.ret1_B != a.ret2_B).any()  # informative pairs, not all ties
    again = reference_pairs(build(TOY), num_pairs=16, H=TINY.segment_length, absorb_action=None)
    assert torch.equal(again.obs1_BH, a.obs1_BH)


def test_the_eval_set_adds_its_scores_and_changes_no_other_number() -> None:
    def rows(**kw: int) -> list[dict]:
        sink = ListSink()
        run(build(TOY), dataclasses.replace(TINY, mode="pbrl", **kw), seed=2, sink=sink)
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in sink.rows]

    with_eval, without = rows(rm_eval_pairs=16), rows()
    assert all(0.0 <= r["rm/eval_accuracy"] <= 1.0 for r in with_eval)
    eval_keys = ("rm/eval_accuracy", "rm/eval_return_corr")
    assert [{k: v for k, v in r.items() if k not in eval_keys} for r in with_eval] == without
