"""The reward model's teacher (``rlhf/reward_model.py``): B-Pref's teachers as ``method.teacher_*``
settings, the skip teacher's accounting, and the penalty's gradient-norm ratio in a reward step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _rlhf_tiny import TINY, TOY, TOY_SWEEP

from pbrl_dist.config import load_sweep
from pbrl_dist.config.loader import ConfigError
from pbrl_dist.executors.shards import LocalRollouts, RolloutSpec, cat_time
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import build
from pbrl_dist.rlhf import RLHFConfig, RLHFLearner, run
from pbrl_dist.rlhf.loop import _initial_pairs, ac_kwargs
from pbrl_dist.rlhf.reward_model import teacher_of
from pbrl_dist.testing import MemoryCheckpointer

TEACHERS = {  # B-Pref's settings (Lee et al. 2021, Table 1)
    "stochastic": {"teacher_mode": "bt", "teacher_beta": 1.0},
    "mistake": {"teacher_error_rate": 0.1},
    "skip": {"teacher_skip": 0.1},
    "equal": {"teacher_equal": 0.1},
    "myopic": {"teacher_gamma": 0.9},
}


def _rows(cfg: RLHFConfig) -> list[dict]:
    sink = ListSink()
    run(build(TOY), cfg, seed=3, sink=sink)
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in sink.rows]


def test_teacher_of_maps_every_knob() -> None:
    cfg = RLHFConfig(
        teacher_mode="bt", teacher_beta=4.0, teacher_error_rate=0.2, teacher_gamma=0.5,
        teacher_skip=0.3, teacher_equal=0.1,
    )  # fmt: skip
    t = teacher_of(cfg)
    assert (t.mode, t.temperature, t.error_rate, t.gamma, t.skip, t.equal) == (
        "bt", 0.25, 0.2, 0.5, 0.3, 0.1,
    )  # fmt: skip
    assert teacher_of(RLHFConfig()) == type(t)()  # the default is today's perfect teacher


@pytest.mark.parametrize("teacher", sorted(TEACHERS))
def test_each_bpref_teacher_runs_and_changes_the_labels(teacher: str) -> None:
    base = dataclasses.replace(TINY, mode="drlhf", total_env_steps=800)
    rows = _rows(dataclasses.replace(base, **TEACHERS[teacher]))
    assert rows and all(r["rm/labels_used"] > 0 for r in rows)
    assert rows != _rows(base)


def test_the_skip_teacher_counts_answered_and_skipped_queries() -> None:
    cfg = dataclasses.replace(TINY, mode="drlhf", teacher_skip=0.5)
    rows = _rows(cfg)
    last = rows[-1]
    assert last["rm/queries_skipped"] > 0
    labelling_events = last["rm/epochs"] - cfg.warmup_epochs  # one labelling per reward epoch
    asked = cfg.initial_pairs + cfg.pairs_per_epoch * labelling_events
    assert last["rm/labels_used"] + last["rm/queries_skipped"] == asked
    assert "rm/queries_skipped" not in _rows(dataclasses.replace(cfg, teacher_skip=0.0))[-1]


def test_a_teacher_that_skips_every_initial_query_is_refused_by_name() -> None:
    # the toy env's segment returns are ≥ 0 and none is 100 times their mean: every query skipped
    cfg = dataclasses.replace(TINY, mode="drlhf", teacher_skip=100.0)
    with pytest.raises(
        ValueError, match=r"method\.teacher_skip=100\.0: the teacher skipped all 16"
    ):
        run(build(TOY), cfg, seed=0, sink=ListSink())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("method.teacher_beta=2", r"method\.teacher_beta: is the bt teacher's rationality"),
        ("method.teacher_gamma=0", r"method\.teacher_gamma: must be in \(0, 1\]"),
        ("method.teacher_skip=-1", r"method\.teacher_skip: must be ≥ 0"),
        ("method.teacher_equal=-0.1", r"method\.teacher_equal: must be ≥ 0"),
    ],
)
def test_bad_teacher_settings_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(str(TOY_SWEEP), smoke=True, overrides=["methods.a2c_oracle=null", override])


def test_teacher_knobs_are_read_by_the_modes_that_learn_a_reward() -> None:
    with pytest.raises(ConfigError, match=r"method\.teacher_skip: not read by .* mode a2c_oracle"):
        load_sweep(str(TOY_SWEEP), smoke=True, overrides=["methods.a2c_oracle.teacher_skip=0.1"])
    load_sweep(str(TOY_SWEEP), smoke=True, overrides=["methods.drlhf.teacher_skip=0.1"])


def test_penalty_grad_ratio_is_logged_by_pbrl_only() -> None:
    pbrl = _rows(dataclasses.replace(TINY, mode="pbrl"))
    ratios = [r["rm/penalty_grad_ratio"] for r in pbrl if "rm/penalty_grad_ratio" in r]
    assert ratios and all(x >= 0 and torch.isfinite(torch.tensor(x)) for x in ratios)
    assert not any(
        "rm/penalty_grad_ratio" in r for r in _rows(dataclasses.replace(TINY, mode="drlhf"))
    )


def test_a_sampled_penalty_acts_only_when_the_whole_windows_p_hat_is_positive() -> None:

    cfg = dataclasses.replace(TINY, mode="pbrl", penalty_batch=16)
    prob = build(TOY)
    src = LocalRollouts(RolloutSpec(prob, "agent", 0, cfg.n_steps, ac_kwargs(prob, cfg)))
    try:
        L = RLHFLearner(
            prob, cfg, seed=0, obs_shape=tuple(src.obs_shape), num_actions=src.num_actions
        )
        _initial_pairs(L, src)
        roll = cat_time(L.window)
    finally:
        src.close()
    assert L.rm is not None
    off = L.rm.penalty_fn(roll, roll, 10.0, p_hat_now=-0.5)(L.rm.rm)
    assert float(off.detach()) == 0.0
    on = L.rm.penalty_fn(roll, roll, 10.0, p_hat_now=0.5)(L.rm.rm)
    assert on.requires_grad  # two independent 16-sample draws of the same window: p̂_B ≠ 0 by chance
    grads = torch.autograd.grad(on, [p for p in L.rm.rm.parameters() if p.requires_grad])
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_a_sampled_penalty_over_a_long_window_runs_and_resumes() -> None:

    cfg = dataclasses.replace(TINY, mode="pbrl", penalty_batch=32, penalty_window_steps=40)
    ref = _rows(cfg)
    assert ref != _rows(dataclasses.replace(cfg, penalty_batch=0))
    ck = MemoryCheckpointer(every=30, crash_after=30)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(build(TOY), cfg, seed=3, sink=ListSink(), ckpt=ck)
    sink = ListSink()
    run(build(TOY), cfg, seed=3, sink=sink, ckpt=ck)
    got = [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in sink.rows]
    assert got == [r for r in ref if r["iter"] > 30]
