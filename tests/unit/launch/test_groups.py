"""``launch/groups.py``: which trials form one Tune trial, and ``aggregate_rows``: what it reports."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.config.loader import ConfigError, load_sweep
from pbrl_dist.launch.groups import group_spec, make_groups
from pbrl_dist.launch.specs import typed_block
from pbrl_dist.launch.tune_trainable import aggregate_rows


def _groups(tmp_path: Path, *overrides: str, seeds: str = "[0, 1, 2]") -> list:
    sweep = load_sweep(str(tiny_sweep_file(tmp_path, seeds=seeds)), overrides=list(overrides))
    return make_groups(sweep.trials, typed_block(sweep))


def _strip(container: dict, *dotted: str) -> dict:
    c = {k: v for k, v in container.items() if k != "seed"}
    for key in dotted:
        top, leaf = key.split(".")
        c[top] = {k: v for k, v in c[top].items() if k != leaf}
    return c


def test_make_groups_puts_a_configurations_seeds_in_one_group(tmp_path: Path) -> None:
    groups = _groups(tmp_path, "sweep.grid={method.lam: [5.0, 20.0]}")
    assert [g.name for g in groups] == ["pbrl_value__lam=5.0", "pbrl_value__lam=20.0"]
    for g in groups:
        assert [m.cfg.seed for m in g.members] == [0, 1, 2]
        assert len({str(_strip(m.container)) for m in g.members}) == 1  # equal but for the seed
        assert g.batched  # tabular, exact gradients: one batch


def test_make_groups_joins_group_over_values_and_seed_mode_keeps_single_trials(
    tmp_path: Path,
) -> None:
    over = _groups(
        tmp_path,
        "sweep.grid={problem.game: [0, 1], method.lam: [5.0, 20.0]}",
        "sweep.group_over=[problem.game]",
    )
    assert [g.name for g in over] == ["pbrl_value__lam=5.0", "pbrl_value__lam=20.0"]
    assert [(m.cfg.problem.game, m.cfg.seed) for m in over[0].members] == [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
    ]
    single = _groups(tmp_path, "sweep.trials=seed")
    assert [g.size for g in single] == [1, 1, 1]
    assert [g.name for g in single] == [m.name for g in single for m in g.members]


def test_sweep_block_refuses_a_bad_trial_unit_or_group_axis(tmp_path: Path) -> None:
    path = str(tiny_sweep_file(tmp_path))
    with pytest.raises(ConfigError, match=r"sweep\.trials: 'seeds' is not allowed"):
        load_sweep(path, overrides=["sweep.trials=seeds"])
    with pytest.raises(ConfigError, match=r"sweep\.group_over: 'problem\.game' is not a grid axis"):
        load_sweep(path, overrides=["sweep.group_over=[problem.game]"])
    with pytest.raises(ConfigError, match=r"sweep\.aggregate: 'median' is not allowed"):
        load_sweep(path, overrides=["sweep.aggregate=median"])


def test_group_spec_applies_one_sample_to_every_member(tmp_path: Path) -> None:
    groups = {g.name: g for g in _groups(tmp_path)}
    g = group_spec({"trial": "pbrl_value", "search": {"method.lam": 7.5}}, groups, "abc_00001")
    assert [m.cfg.method.lam for m in g.members] == [7.5, 7.5, 7.5]
    assert [m.cfg.seed for m in g.members] == [0, 1, 2]
    assert all(m.name.startswith(f"pbrl_value__s{m.cfg.seed}__") for m in g.members)
    assert len({m.name.split("__", 2)[2] for m in g.members}) == 1  # one sample, one suffix


def test_aggregate_rows_means_metrics_keeps_the_step_and_never_averages_nan_away() -> None:
    rows = [
        {"iter": 10, "a": 1.0, "games": [1.0, 3.0]},
        {"iter": 10, "a": 2.0, "games": [2.0, 2.0]},
        {"iter": 10, "a": 6.0, "games": [0.0, 0.0]},
    ]
    agg = aggregate_rows(rows)
    assert agg["iter"] == 10 and agg["seeds"] == 3
    assert agg["a"] == pytest.approx(3.0) and agg["games"] == pytest.approx(4.0 / 3.0)
    assert math.isnan(aggregate_rows([*rows, {"iter": 10, "a": math.nan, "games": [1.0]}])["a"])
    # IQM of 1, 2, 6, 100: the middle half (2, 6) → 4 (rliable's trimmed mean, 25% each side)
    four = [{"iter": 1, "a": v} for v in (1.0, 2.0, 6.0, 100.0)]
    assert aggregate_rows(four, "iqm")["a"] == pytest.approx(4.0)
    assert aggregate_rows(four, "mean")["a"] == pytest.approx(27.25)
