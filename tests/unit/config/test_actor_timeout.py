"""``dist.actor_timeout_s``: the longest one actor call may take (issue #20, point 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrl_dist.config import ConfigError, load_sweep
from pbrl_dist.config.schema import DistConfig
from pbrl_dist.executors.pool import DEFAULT_TIMEOUT_S

FIG1 = Path(__file__).resolve().parents[3] / "sweeps" / "fig1_stackelberg.yaml"


def test_dist_config_actor_timeout_defaults_to_at_most_a_minute() -> None:
    assert DistConfig().actor_timeout_s == DEFAULT_TIMEOUT_S == 60.0
    (t, *_) = load_sweep(FIG1, smoke=True).trials
    assert t.cfg.dist.actor_timeout_s == 60.0


def test_load_sweep_takes_an_actor_timeout_override() -> None:
    sw = load_sweep(FIG1, smoke=True, overrides=["dist.actor_timeout_s=3"])
    assert {t.cfg.dist.actor_timeout_s for t in sw.trials} == {3.0}


@pytest.mark.parametrize("bad", ["0", "-1", ".inf", ".nan"])
def test_load_sweep_refuses_an_actor_timeout_that_is_not_a_positive_number(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_sweep(FIG1, smoke=True, overrides=[f"dist.actor_timeout_s={bad}"])
    assert str(e.value).startswith("dist.actor_timeout_s"), str(e.value)
