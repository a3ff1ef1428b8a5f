"""The RLHF method config (``rlhf/config.py``): c = 1/λ's decay period in updates or as a fraction of
the trial."""

from __future__ import annotations

import dataclasses

import pytest
from _rlhf_tiny import TINY, TOY, TOY_SWEEP

from pbrl_dist.config import load_sweep
from pbrl_dist.config.loader import ConfigError
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import build
from pbrl_dist.rlhf import RLHFConfig, run


def test_decay_period_in_updates_or_as_a_fraction_of_them() -> None:
    assert RLHFConfig().decay_period(3730) == 100_000  # the paper's period: never reached here
    assert RLHFConfig(upper_coef_decay_every_fraction=0.8).decay_period(3730) == 2984
    assert RLHFConfig(upper_coef_decay_every_fraction=0.8).decay_period(125_000) == 100_000
    assert RLHFConfig(upper_coef_decay_every_fraction=1e-9).decay_period(10) == 1


def test_a_run_decays_c_at_the_fractions_of_its_updates() -> None:
    cfg = dataclasses.replace(
        TINY, mode="pbrl", upper_coef_decay_every=100_000, upper_coef_decay_every_fraction=0.25
    )
    sink = ListSink()
    run(build(TOY), cfg, seed=0, sink=sink)
    n = cfg.num_updates(TOY.num_envs)
    M = round(0.25 * n)
    for row in sink.rows:  # the row after update k logs c_{k-1} = c0·decay^⌊(k−1)/M⌋
        assert row["upper/coef"] == cfg.upper_coef * cfg.upper_coef_decay ** (
            (row["iter"] - 1) // M
        )
    assert sink.rows[-1]["upper/coef"] == 0.5**3  # three decays in the trial


def test_the_decay_period_is_set_one_way_only() -> None:
    load_sweep(
        str(TOY_SWEEP), smoke=True, overrides=["methods.pbrl.upper_coef_decay_every_fraction=0.8"]
    )
    with pytest.raises(
        ConfigError, match=r"method\.upper_coef_decay_every_fraction: sets the decay"
    ):
        load_sweep(
            str(TOY_SWEEP),
            smoke=True,
            overrides=[
                "methods.pbrl.upper_coef_decay_every_fraction=0.8",
                "methods.pbrl.upper_coef_decay_every=500",
            ],
        )
    with pytest.raises(ConfigError, match=r"method\.upper_coef_decay_every_fraction: must be in"):
        load_sweep(
            str(TOY_SWEEP), smoke=True, overrides=["methods.pbrl.upper_coef_decay_every_fraction=2"]
        )
