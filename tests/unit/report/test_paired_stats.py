"""Seed-paired statistics of ``pbrl report`` (report/rl_stats.py ``paired_table``): d = X(seed) −
Y(seed) against hand computations, its A2C normalisation, the gain of pairing, the 80%-power
effect against a Monte Carlo of paired t-tests, and ``pbrl report`` end to end."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from pbrl_dist.config.loader import load_sweep
from pbrl_dist.report.rl_stats import (
    ALL_TASKS,
    PAIRED_COLUMNS,
    format_paired,
    improvement_table,
    min_detectable_effect,
    paired_differences,
    paired_table,
)

REPO = Path(__file__).resolve().parents[3]
RETURN = "rl/episode_return"
REPS = 400


def _scores(finals: Mapping[str, Mapping[str, Sequence[float | None]]]) -> pd.DataFrame:
    """A ``final_scores`` frame from {task: {method: [final return of seed 0, 1, ...]}}; a method's
    mode is its name; None: that seed did not finish."""
    rows = []
    for task, per in finals.items():
        for method, vals in per.items():
            for seed, v in enumerate(vals):
                if v is not None:
                    rows.append(
                        {
                            "task": task,
                            "method": method,
                            "mode": method,
                            "seed": seed,
                            "trial": f"{method}__{task}__s{seed}",
                            "env_frames": 2000.0,
                            RETURN: float(v),
                        }
                    )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # row order must not matter


def _paired(scores: pd.DataFrame, reps: int = REPS) -> pd.DataFrame:
    imp = improvement_table(scores, reps=reps)
    return paired_table(scores, imp, reps=reps).set_index(["task", "x", "y"])


# ------------------------------------------------------------------ (a) mean and IQM by hand

X5 = [10.0, 12.0, 9.0, 15.0, 11.0]
Y5 = [8.0, 13.0, 7.0, 10.0, 11.0]
D5 = np.array(X5) - np.array(Y5)  # 2, -1, 2, 5, 0


def test_paired_mean_and_iqm_equal_the_hand_computation() -> None:
    row = _paired(_scores({"toy": {"pbrl": X5, "drlhf": Y5}})).loc[("toy", "pbrl", "drlhf")]
    assert row["n"] == 5
    assert row["mean"] == pytest.approx(1.6)  # (2 − 1 + 2 + 5 + 0) / 5
    # Sorted -1 0 2 2 5; 25% trimmed: drop one each side -> mean(0, 2, 2) = 4/3.
    assert row["iqm"] == pytest.approx(4 / 3)
    assert row["iqm"] == pytest.approx(scipy.stats.trim_mean(D5, 0.25))
    assert row["sd"] == pytest.approx(np.std(D5, ddof=1))
    assert row["mean_lo"] <= row["mean"] <= row["mean_hi"]
    assert row["iqm_lo"] <= row["iqm"] <= row["iqm_hi"]
    assert row["mde"] == pytest.approx(min_detectable_effect(5, np.std(D5, ddof=1)))
    # No a2c_oracle in this frame: raw return points, said so.
    assert row["unit"] == "raw" and np.isnan(row["scale"])
    assert row["note"] == "raw return (no a2c_oracle trials on toy)"


def test_pairs_are_matched_by_seed_and_unshared_seeds_left_out() -> None:
    # pbrl seed 5 and drlhf seed 2 have no partner; seed 2 of pbrl is left out too.
    scores = _scores({"toy": {"pbrl": [*X5, 99.0], "drlhf": [Y5[0], Y5[1], None, *Y5[3:]]}})
    mat = paired_differences(scores, "pbrl", "drlhf", ["toy"])
    np.testing.assert_array_equal(mat[:, 0], np.delete(D5, 2))
    row = _paired(scores).loc[("toy", "pbrl", "drlhf")]
    assert row["n"] == 4 and row["mean"] == pytest.approx(np.delete(D5, 2).mean())


def test_fewer_than_two_shared_seeds_says_why() -> None:
    scores = _scores({"toy": {"pbrl": [1.0, 2.0, None], "drlhf": [None, 3.0, 4.0]}})
    paired = paired_table(scores, improvement_table(scores, reps=50), reps=50)
    (row,) = paired.to_dict("records")
    assert row["n"] == 1 and row["verdict"] == "too few shared seeds"
    assert row["note"].startswith("1 seed(s) finished by both on toy; need 2")
    assert np.isnan(row["mean"]) and np.isnan(row["mde"])
    text = format_paired(paired)
    assert "no paired statistic: 1 seed(s) finished by both on toy; need 2" in text
    none = _scores({"toy": {"pbrl": [1.0, None], "drlhf": [None, 3.0]}})
    (row,) = paired_table(none, improvement_table(none, reps=50), reps=50).to_dict("records")
    assert row["n"] == 0 and row["verdict"] == "too few shared seeds"


# ----------------------------------------------------------------- (b) the A2C normalisation


def test_differences_are_divided_by_the_a2c_oracle_mean_of_the_task() -> None:
    oracle = [90.0, 100.0, 110.0, 95.0, 105.0]  # mean 100
    paired = _paired(_scores({"toy": {"pbrl": X5, "drlhf": Y5, "a2c_oracle": oracle}}))
    row = paired.loc[("toy", "pbrl", "drlhf")]
    assert row["unit"] == "a2c" and row["scale"] == pytest.approx(100.0) and row["note"] == ""
    assert row["mean"] == pytest.approx(1.6 / 100)
    assert row["iqm"] == pytest.approx(4 / 3 / 100)
    assert row["sd"] == pytest.approx(np.std(D5, ddof=1) / 100)
    assert row["mde"] == pytest.approx(min_detectable_effect(5, np.std(D5, ddof=1)) / 100)
    vs = paired.loc[("toy", "pbrl", "a2c_oracle")]  # the gap to the oracle, in oracle units
    assert vs["mean"] == pytest.approx(np.mean(np.array(X5) - oracle) / 100)
    assert vs["verdict"] == "a2c_oracle"


def test_a_nonpositive_oracle_mean_falls_back_to_raw_and_says_so() -> None:
    oracle = [-5.0, -3.0, -4.0, -4.0, -4.0]
    row = _paired(_scores({"toy": {"pbrl": X5, "drlhf": Y5, "a2c_oracle": oracle}})).loc[
        ("toy", "pbrl", "drlhf")
    ]
    assert row["unit"] == "raw" and np.isnan(row["scale"])
    assert row["mean"] == pytest.approx(1.6)
    assert row["note"] == "raw return (the a2c_oracle mean on toy is -4 ≤ 0)"


def test_all_tasks_row_only_on_the_a2c_scale() -> None:
    pong = {"pbrl": X5, "drlhf": Y5, "a2c_oracle": [20.0] * 5}
    breakout = {"pbrl": [4.0, 5.0, 6.0, 7.0, 8.0], "drlhf": [3.0, 3.0, 3.0, 3.0, 3.0]}
    mixed = _paired(_scores({"Pong": pong, "Breakout": breakout}))
    assert mixed.loc[("Pong", "pbrl", "drlhf"), "unit"] == "a2c"
    assert mixed.loc[("Breakout", "pbrl", "drlhf"), "unit"] == "raw"
    assert mixed.loc[("Breakout", "pbrl", "drlhf"), "mean"] == pytest.approx(3.0)
    agg = mixed.loc[(ALL_TASKS, "pbrl", "drlhf")]  # P(X > Y) has this row; d cannot be stacked
    assert agg["verdict"] == "no common scale" and np.isnan(agg["mean"])
    assert "no a2c_oracle trials on Breakout" in agg["note"]
    assert "no paired statistic: no common scale over tasks: raw return" in format_paired(
        mixed.reset_index()
    )

    both = {"Pong": pong, "Breakout": {**breakout, "a2c_oracle": [10.0] * 5}}
    agg = _paired(_scores(both)).loc[(ALL_TASKS, "pbrl", "drlhf")]
    mat = np.column_stack([D5 / 20.0, np.array([1.0, 2.0, 3.0, 4.0, 5.0]) / 10.0])
    assert agg["unit"] == "a2c" and agg["n"] == 10  # 5 seeds × 2 tasks
    assert agg["mean"] == pytest.approx(mat.mean())
    assert agg["iqm"] == pytest.approx(scipy.stats.trim_mean(mat.ravel(), 0.25))
    assert agg["verdict"] == "pbrl"


# -------------------------------------------------------------------------- (c) pairing


def test_pairing_removes_the_seed_shared_noise() -> None:
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0.0, 20.0, size=10)  # initial weights and pairs: shared by X and Y
    y = 50.0 + seed_effect
    x = y + 1.0 + rng.normal(0.0, 0.2, size=10)
    scores = _scores({"toy": {"pbrl": list(x), "drlhf": list(y)}})
    imp = improvement_table(scores, reps=REPS).set_index(["task", "x", "y"])
    unpaired = imp.loc[("toy", "pbrl", "drlhf")]
    assert unpaired["verdict"] == "not significant"  # rank-based, unpaired: lost in the noise
    assert unpaired["lo"] < 0.5 < unpaired["hi"]
    row = _paired(scores).loc[("toy", "pbrl", "drlhf")]
    assert row["verdict"] == "pbrl" and 0.0 < row["mean_lo"] < 1.0 < row["mean_hi"] < 2.0
    # The same seeds unpaired (seeds of Y shuffled): the difference is as noisy as the returns.
    assert np.std(x - y[::-1], ddof=1) > 10 * row["sd"]


# ----------------------------------------------------------------------- (d) the power line


def test_min_detectable_effect_has_80_percent_power_by_monte_carlo() -> None:
    n, sims = 10, 20_000
    delta = min_detectable_effect(n, 1.0)
    # Normal approximation (z_0.975 + z_0.8) / √n = 0.886 is too optimistic at n = 10.
    assert 0.9 < delta < 1.1
    rng = np.random.default_rng(12345)
    d = rng.normal(delta, 1.0, size=(sims, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(n))
    power = np.mean(np.abs(t) > scipy.stats.t.ppf(0.975, n - 1))
    assert power == pytest.approx(0.80, abs=0.02)
    # In the units of sd, and shrinking as n grows.
    assert min_detectable_effect(n, 2.5) == pytest.approx(2.5 * delta)
    effects = [min_detectable_effect(k, 1.0) for k in (2, 3, 5, 10, 20, 40, 80)]
    assert all(a > b for a, b in itertools.pairwise(effects))
    assert effects[-1] == pytest.approx(2.8 / np.sqrt(80), rel=0.03)  # ~normal for large n
    assert np.isnan(min_detectable_effect(1, 1.0)) and np.isnan(min_detectable_effect(5, 0.0))


# ------------------------------------------------------------ (e) `pbrl report` end to end

FINALS: dict[str, list[float | None]] = {
    "a2c_oracle": [91.0, 92.0, 93.0, 94.0, 95.0],  # mean 93
    "drlhf": [79.0, 82.0, 84.0, 87.0, None],  # seed 4 unfinished
    "pbrl": [80.0, 84.0, 85.0, 90.0, 100.0],  # d vs drlhf on seeds 0-3: 1, 2, 1, 3
}


def _rows(mode: str, final: float, seed: int) -> list[dict[str, Any]]:
    rows = []
    for k, frames in enumerate((500, 1000, 1500, 2000)):
        r: dict[str, Any] = {
            "iter": 17 + 25 * k,
            "env_frames": frames,
            "rl/episode_return": final * frames / 2000,
        }
        if mode != "a2c_oracle":
            r |= {"rm/accuracy": 0.7, "rm/return_corr": 0.5 + 0.1 * seed}
        rows.append(r)
    return rows


def _toy_folder(tmp_path: Path) -> Path:
    sweep = load_sweep(
        REPO / "sweeps" / "rlhf_toy.yaml", smoke=True, overrides=["sweep.seeds=[0,1,2,3,4]"]
    )
    out = tmp_path / "out"
    out.mkdir()
    for spec in sweep.trials:
        mode, seed = spec.container["method"]["mode"], int(spec.container["seed"])
        final = FINALS[mode][seed]
        d = out / spec.name
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(spec.container), encoding="utf-8")
        rows = _rows(mode, 1e6 if final is None else final, seed)
        rows = rows[:2] if final is None else rows  # an unfinished run: never counted
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
        if final is not None:
            res = {"trial": spec.name, "status": "complete", "wall_s": 1.0, "final": rows[-1]}
            (d / "result.json").write_text(json.dumps(res), encoding="utf-8")
    return out


def test_pbrl_report_prints_and_writes_the_paired_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.cli import main

    out = _toy_folder(tmp_path)
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()

    # Unpaired, 5 vs 4 seeds: P(pbrl > drlhf) is not significant; paired on the 4 shared seeds,
    # d = 1, 2, 1, 3 (÷ 93) are all positive: the CI of the mean lies above 0.
    (vs,) = [x for x in lines if x.startswith("P(pbrl > drlhf) = ")]
    assert "5 vs 4 seeds" in vs and vs.endswith("not significant (the 95% CI contains 0.5)")
    start = next(i for i, x in enumerate(lines) if x.startswith("seed-paired differences"))
    assert start > lines.index(vs)  # under the P(X > Y) lines
    assert lines[start + 1].startswith("unit a2c: d ÷ the task's mean a2c_oracle return")
    assert "min effect: the smallest mean d a two-sided paired t-test (α = 0.05)" in text
    header = lines[start + 2].split()
    assert header[:4] == ["pair", "task", "n", "unit"] and "verdict" in header
    rows = lines[start + 3 : start + 6]
    table = {tuple(x.split()[:3]): x for x in rows}
    assert set(table) == {
        ("d(pbrl", "−", "drlhf)"),
        ("d(pbrl", "−", "a2c_oracle)"),
        ("d(drlhf", "−", "a2c_oracle)"),
    }
    table = {(k[0][2:], k[2][:-1]): x for k, x in table.items()}
    row = table[("pbrl", "drlhf")]
    assert row.split()[3:7] == ["toy_rlhf", "4", "a2c", "0.01882"]
    assert row.endswith("pbrl better (the 95% CI of the mean lies above 0)")
    # pbrl − oracle on seeds 0-4: -11, -8, -8, -4, 5 (÷ 93). Some resamples cancel exactly (e.g.
    # -11, 5, 5, 5, -4): the upper bound is 0, not a round-off -1e-18 "below 0".
    vs_oracle = table[("pbrl", "a2c_oracle")]
    assert vs_oracle.split()[4] == "5"  # seed 4: both finished
    assert vs_oracle.endswith("not significant (the 95% CI of the mean contains 0)")
    assert table[("drlhf", "a2c_oracle")].endswith(
        "a2c_oracle better (the 95% CI of the mean lies below 0)"
    )
    csv = out / "report" / "paired_stats.csv"
    assert f"rl stats: {csv}" in text

    paired = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert list(paired.columns) == [*PAIRED_COLUMNS, "level", "reps", "seed", "alpha", "power"]
    r = paired.set_index(["x", "y"]).loc[("pbrl", "drlhf")]
    d = np.array([1.0, 2.0, 1.0, 3.0]) / 93.0
    assert r["task"] == "toy_rlhf" and r["n"] == 4 and r["unit"] == "a2c"
    assert r["scale"] == pytest.approx(93.0)
    assert r["mean"] == pytest.approx(d.mean()) and r["iqm"] == pytest.approx(1.5 / 93.0)
    assert 0.0 < r["mean_lo"] <= r["mean"] <= r["mean_hi"]
    assert r["sd"] == pytest.approx(np.std(d, ddof=1))
    assert r["mde"] == pytest.approx(min_detectable_effect(4, float(np.std(d, ddof=1))))
    assert r["verdict"] == "pbrl" and pd.isna(r["note"])
    assert (r["level"], r["reps"], r["seed"], r["alpha"], r["power"]) == (0.95, 2000, 0, 0.05, 0.8)
    assert paired.set_index(["x", "y"]).loc[("pbrl", "a2c_oracle"), "mean_hi"] == 0.0
    # The existing rows are still there and unchanged in shape.
    stats = pd.read_csv(out / "report" / "rl_stats.csv")
    imp = stats[(stats["section"] == "improvement") & (stats["method"] == "pbrl")]
    assert imp.set_index("versus").loc["drlhf", "n_versus"] == 4


def test_equal_differences_have_no_t_test_but_a_point_interval() -> None:
    scores = _scores({"toy": {"pbrl": [2.0, 3.0, 4.0], "drlhf": [1.0, 2.0, 3.0]}})
    row = _paired(scores, reps=50).loc[("toy", "pbrl", "drlhf")]
    assert row["mean"] == row["mean_lo"] == row["mean_hi"] == pytest.approx(1.0)
    assert row["sd"] == 0.0 and np.isnan(row["mde"]) and row["verdict"] == "pbrl"
    assert row["note"].startswith("every d(pbrl − drlhf) on toy is the same: no t-test; raw return")
