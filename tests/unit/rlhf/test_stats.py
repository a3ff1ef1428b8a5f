"""The RLHF loop's accumulators (``rlhf/stats.py``): PBRL's coupling metrics per row and per run."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from _rlhf_tiny import TINY, TOY

from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import build
from pbrl_dist.rlhf import run
from pbrl_dist.rlhf.reward_model import RewardModelTrainer
from pbrl_dist.rlhf.stats import CouplingStats, load_into, state_of


def test_coupling_stats_means_per_row_and_positive_fraction_per_run() -> None:
    s = CouplingStats()
    assert s.take() == {}  # nothing measured: nothing logged (never a NaN)
    for p in (0.5, -1.0, 2.0):
        s.add_p_hat(p)
    s.score_loss += [1.0, 3.0]
    s.score_grad_ratio += [0.1]
    assert s.take() == {
        "upper/score_loss": 2.0,
        "upper/score_grad_ratio": 0.1,
        "penalty/p_hat": pytest.approx(0.5),
        "penalty/p_hat_positive": pytest.approx(2 / 3),
    }
    s.add_p_hat(-3.0)
    # the means start again; the fraction counts the whole run: 2 of 4 epochs
    assert s.take() == {"penalty/p_hat": -3.0, "penalty/p_hat_positive": 0.5}
    assert load_into(CouplingStats, state_of(s)) == s


def test_a_pbrl_run_logs_the_mechanism_beside_the_agent() -> None:
    sink = ListSink()
    run(build(TOY), dataclasses.replace(TINY, mode="pbrl"), seed=3, sink=sink)
    last = sink.rows[-1]
    assert 0.0 <= last["penalty/p_hat_positive"] <= 1.0
    assert last["upper/score_grad_ratio"] > 0
    assert "oracle/episode_return" in last and "rl/episode_return" in last
    # the score term's loss is the mean over the updates that applied it, not the last update's
    assert any(r.get("upper/score_loss", 0.0) != 0.0 for r in sink.rows)
    drlhf = ListSink()
    run(build(TOY), dataclasses.replace(TINY, mode="drlhf"), seed=3, sink=drlhf)
    assert not {"penalty/p_hat", "oracle/episode_return", "upper/score_loss"} & {
        k for r in drlhf.rows for k in r
    }


def test_p_hat_is_measured_before_each_reward_epoch_on_the_reward_model_it_precedes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every p̂ is measured right before a reward epoch, on r_φ as it stands then (the epoch count not
    yet advanced, the parameters the epoch starts from), and the run's logged fraction with p̂ > 0 is
    the fraction of those measurements."""
    calls: list[tuple[str, int, float, list[torch.Tensor]]] = []
    gap, epoch = RewardModelTrainer.value_gap, RewardModelTrainer.epoch

    def params(rm: RewardModelTrainer) -> list[torch.Tensor]:
        return [p.detach().clone() for p in rm.rm.parameters()]

    def measured(self: RewardModelTrainer, oracle_roll: Any, agent_roll: Any) -> float:
        value = gap(self, oracle_roll, agent_roll)
        calls.append(("gap", self.stats.epochs, value, params(self)))
        return value

    def trained(self: RewardModelTrainer, penalty: Any) -> None:
        calls.append(("epoch", self.stats.epochs, 0.0, params(self)))
        epoch(self, penalty)

    monkeypatch.setattr(RewardModelTrainer, "value_gap", measured)
    monkeypatch.setattr(RewardModelTrainer, "epoch", trained)
    sink = ListSink()
    run(build(TOY), dataclasses.replace(TINY, mode="pbrl"), seed=3, sink=sink)
    gaps = [i for i, c in enumerate(calls) if c[0] == "gap"]
    assert len(gaps) >= 3
    for i in gaps:
        nxt = calls[i + 1]
        assert nxt[0] == "epoch" and nxt[1] == calls[i][1]
        assert all(torch.equal(a, b) for a, b in zip(calls[i][3], nxt[3], strict=True))
    values = np.array([calls[i][2] for i in gaps])
    assert sink.rows[-1]["penalty/p_hat_positive"] == pytest.approx(float(np.mean(values > 0)))
    assert 0 < np.mean(values > 0) < 1  # both signs occur, so the fraction can tell them apart
