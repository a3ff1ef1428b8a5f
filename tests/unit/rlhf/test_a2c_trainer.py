"""The A2C trainer (``rlhf/a2c.py``): the gradient-norm ratio of PBRL's score term, measured without
changing the step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _rlhf_tiny import TINY, TOY
from torch import nn

from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import build
from pbrl_dist.rlhf import a2c, run


def test_grad_norm_ratio_of_two_linear_forms_is_the_ratio_of_their_coefficient_norms() -> None:
    net = nn.Linear(3, 1, bias=False).double()
    a = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)  # ‖a‖ = 5
    b = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)  # ‖b‖ = 3
    out_a, out_b = net(a).sum(), net(b).sum()  # ∇_w (w·a) = a
    assert a2c.grad_norm_ratio(out_a, out_b, net) == pytest.approx(5 / 3, rel=1e-12)
    assert net.weight.grad is None  # nothing accumulated
    assert a2c.grad_norm_ratio(out_a, torch.zeros(()), net) is None  # no gradient below: no ratio
    assert a2c.grad_norm_ratio(torch.zeros(()), out_b, net) == 0.0


def test_measuring_the_score_terms_ratio_leaves_the_run_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = dataclasses.replace(TINY, mode="pbrl", total_env_steps=800)

    def rows() -> list[dict]:
        sink = ListSink()
        run(build(TOY), cfg, seed=1, sink=sink)
        drop = ("perf/", "upper/score_grad_ratio", "rm/penalty_grad_ratio")
        return [{k: v for k, v in r.items() if not k.startswith(drop)} for r in sink.rows]

    measured = rows()
    monkeypatch.setattr(a2c, "grad_norm_ratio", lambda *_: None)
    import pbrl_dist.rlhf.reward_model as rm_mod

    monkeypatch.setattr(rm_mod, "grad_norm_ratio", lambda *_: None)
    assert rows() == measured
