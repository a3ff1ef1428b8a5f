"""RLHF statistics (report/rl_stats.py): rliable's IQM, P(X > Y) and stratified bootstrap CIs against
known values, and ``pbrl report`` end to end on a results folder shaped like ``pbrl run`` writes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from rliable import metrics as rl_metrics

from pbrl_dist.config.loader import load_sweep
from pbrl_dist.report.rl_stats import (
    ALL_TASKS,
    fast_probability_of_improvement,
    final_scores,
    improvement_pairs,
    improvement_table,
    interval_estimates,
    iqm_and_mean,
    return_table,
    reward_model_table,
    score_matrix,
)

REPO = Path(__file__).resolve().parents[3]

# ---------------------------------------------------------------- IQM (rliable's aggregate_iqm)


def test_iqm_is_the_25_percent_trimmed_mean_of_all_runs_and_tasks() -> None:
    scores = np.array([[1.0, 100.0], [2.0, 3.0], [4.0, -50.0], [5.0, 6.0], [7.0, 8.0]])
    ((point, lo, hi),) = interval_estimates({"m": scores}, iqm_and_mean, reps=200).values()
    # Flattened and sorted: -50 1 2 3 4 5 6 7 8 100; 25% trimmed = drop 2 each side -> mean(2..7).
    assert point[0] == pytest.approx(4.5)
    assert point[0] == pytest.approx(scipy.stats.trim_mean(scores.ravel(), 0.25))
    assert point[1] == pytest.approx(8.6)  # the plain mean, pulled by the two outliers
    assert np.all(lo <= point) and np.all(point <= hi)


# --------------------------------------------------------- probability of improvement P(X > Y)


@pytest.mark.parametrize(
    "poi", [rl_metrics.probability_of_improvement, fast_probability_of_improvement]
)
def test_probability_of_improvement_known_values(poi: Any) -> None:
    hi, lo = np.array([[5.0], [6.0], [7.0]]), np.array([[1.0], [2.0]])
    assert poi(hi, lo) == pytest.approx(1.0)
    assert poi(lo, hi) == pytest.approx(0.0)
    assert poi(hi, hi.copy()) == pytest.approx(0.5)
    # By hand: x = 1, 2, 3 against y = 2, 2, 0. Pairs x > y: 1 (1>0) + 1 (2>0) + 3 (3>all) = 5;
    # ties x = y: 2 (x=2 with both 2s), counting 1/2 each -> U = 6, P = 6 / (3*3) = 2/3.
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [2.0], [0.0]])
    assert poi(x, y) == pytest.approx(2 / 3)
    assert poi(y, x) == pytest.approx(1 / 3)  # P(X>Y) + P(Y>X) = 1 with ties split
    # Two tasks: the per-task probabilities are averaged (2/3 and 1).
    x2 = np.hstack([x, [[9.0], [9.0], [9.0]]])
    y2 = np.hstack([y, [[0.0], [1.0], [2.0]]])
    assert poi(x2, y2) == pytest.approx((2 / 3 + 1) / 2)


def test_fast_probability_of_improvement_equals_rliable_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        n, m, tasks = rng.integers(1, 6), rng.integers(1, 6), rng.integers(1, 4)
        x = rng.integers(0, 4, size=(n, tasks)).astype(float)  # small integers: many ties
        y = rng.integers(0, 4, size=(m, tasks)).astype(float)
        assert fast_probability_of_improvement(x, y) == pytest.approx(
            rl_metrics.probability_of_improvement(x, y)
        )


def test_improvement_pairs_pbrl_over_drlhf_and_both_over_the_oracle() -> None:
    modes = {"a2c_oracle": "a2c_oracle", "drlhf": "drlhf", "pbrl": "pbrl"}
    assert improvement_pairs(modes) == [
        ("pbrl", "drlhf"),
        ("pbrl", "a2c_oracle"),
        ("drlhf", "a2c_oracle"),
    ]
    assert improvement_pairs({"a2c_oracle": "a2c_oracle"}) == []


# ------------------------------------------------------------------- bootstrap intervals


def _width(n: int, seed: int = 0) -> float:
    x = np.random.default_rng(3).normal(10.0, 2.0, size=(n, 1))
    ((_, lo, hi),) = interval_estimates({"m": x}, iqm_and_mean, reps=500, seed=seed).values()
    return float(hi[1] - lo[1])


def test_intervals_contain_the_estimate_shrink_with_seeds_and_are_reproducible() -> None:
    x = np.random.default_rng(1).normal(size=(6, 2))
    y = x + 0.3
    kw: dict[str, Any] = {"reps": 400, "seed": 11}
    a = interval_estimates({"m": x}, iqm_and_mean, **kw)["m"]
    b = interval_estimates({"m": x}, iqm_and_mean, **kw)["m"]
    assert np.all(a[1] <= a[0]) and np.all(a[0] <= a[2]) and np.all(a[1] < a[2])
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)  # same seed: bitwise the same interval
    other = interval_estimates({"m": x}, iqm_and_mean, reps=400, seed=12)["m"]
    assert not np.array_equal(other[1], a[1])  # another seed: another bootstrap
    pair = interval_estimates({"m": (x, y)}, fast_probability_of_improvement, **kw)["m"]
    assert pair[1][0] <= pair[0][0] <= pair[2][0] and pair[0][0] < 0.5
    # 5 seeds -> 80 seeds: the CI of the mean narrows about like 1/sqrt(n) (here ~4x).
    assert _width(80) < 0.5 * _width(5)


def test_bootstrap_leaves_the_global_random_state_alone() -> None:
    """rliable draws from the legacy global RNG: the seeding must not leak into the caller's."""
    np.random.seed(123)  # noqa: NPY002
    expected = np.random.random(3)  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    interval_estimates({"m": np.ones((3, 1))}, iqm_and_mean, reps=50, seed=0)
    np.testing.assert_array_equal(np.random.random(3), expected)  # noqa: NPY002


# --------------------------------------------------------- tables from a frame of curves


def _curve_rows(
    method: str, mode: str, seed: int, final: float, *, game: str | None = None, **extra: Any
) -> list[dict[str, Any]]:
    """Four logged rows at 500..2000 env frames ramping to ``final``; no return in the first."""
    rows = []
    for k, frames in enumerate((500, 1000, 1500, 2000)):
        r: dict[str, Any] = {
            "trial": f"{method}__{game}__s{seed}",
            "status": "complete",
            "seed": seed,
            "problem.name": "atari_rlhf" if game else "toy_rlhf",
            "method.name": method,
            "method.mode": mode,
            "iter": k,
            "env_frames": frames,
            "rl/episode_return": np.nan if k == 0 else final * frames / 2000,
            **extra,
        }
        if game:
            r["problem.game"] = game
        rows.append(r)
    return rows


def _atari_curves() -> pd.DataFrame:
    rows = []
    finals = {
        "Pong": {"pbrl": [5.0, 6.0, 7.0], "drlhf": [1.0, 2.0, 3.0]},
        "Breakout": {"pbrl": [100.0, 300.0, 200.0], "drlhf": [250.0, 150.0, 50.0]},
    }
    for game, per in finals.items():
        for method, vals in per.items():
            for seed, v in enumerate(vals):
                rows += _curve_rows(method, method, seed, v, game=game, **{"rm/accuracy": 0.7})
    return pd.DataFrame(rows)


def test_final_scores_take_the_last_return_of_complete_trials_only() -> None:
    rows = _curve_rows("pbrl", "pbrl", 0, 40.0, **{"rm/accuracy": 0.75})
    rows += [{**r, "rl/episode_return": 1e6} for r in _curve_rows("pbrl", "pbrl", 1, 0.0)]
    for r in rows[4:]:
        r["status"] = "incomplete"
    rows[3]["rl/episode_return"] = np.nan  # no episode ended in the last window
    scores = final_scores(pd.DataFrame(rows))
    assert len(scores) == 1
    row = scores.iloc[0]
    assert row["task"] == "toy_rlhf" and row["method"] == "pbrl" and row["mode"] == "pbrl"
    assert row["rl/episode_return"] == pytest.approx(30.0)  # the 1500-frame row: 40 * 1500/2000
    assert row["rm/accuracy"] == pytest.approx(0.75) and np.isnan(row["rm/return_corr"])


def test_configuration_axes_name_methods_and_problem_axes_name_tasks() -> None:
    curves = _atari_curves().assign(**{"method.lr": 0.001})
    scores = final_scores(curves, axes=["problem.game", "method.lr", "seed"])
    assert set(scores["method"]) == {"pbrl lr=0.001", "drlhf lr=0.001"}
    assert set(scores["task"]) == {"Pong", "Breakout"}
    assert scores.groupby(["task", "method"]).size().tolist() == [3, 3, 3, 3]


def test_several_tasks_per_task_rows_and_an_aggregate_only_where_scale_free() -> None:
    scores = final_scores(_atari_curves())
    assert set(scores["task"]) == {"Pong", "Breakout"}
    ret = return_table(scores, reps=200)
    assert ALL_TASKS not in set(ret["task"])  # raw returns of different games are not stacked
    pong = ret[(ret["task"] == "Pong") & (ret["method"] == "pbrl")].iloc[0]
    assert pong["n"] == 3 and pong["mean"] == pytest.approx(6.0)
    imp = improvement_table(scores, reps=200).set_index("task")
    assert imp.loc["Pong", "p"] == pytest.approx(1.0) and imp.loc["Pong", "verdict"] == "pbrl"
    # Breakout: pbrl 100,300,200 vs drlhf 250,150,50 -> 1 + 3 + 2 = 6 of 9 pairs -> 2/3.
    assert imp.loc["Breakout", "p"] == pytest.approx(2 / 3)
    assert imp.loc["Breakout", "verdict"] == "not significant"
    assert imp.loc[ALL_TASKS, "p"] == pytest.approx((1 + 2 / 3) / 2)  # rank-based: averaged
    rm = reward_model_table(scores, reps=100)
    assert set(rm["task"]) == {"Pong", "Breakout", ALL_TASKS}
    assert np.allclose(rm["mean"], 0.7) and set(rm["metric"]) == {"rm/accuracy"}

    # With baselines every score is normalised and an aggregate row appears.
    base = {"Pong": (0.0, 10.0), "Breakout": (0.0, 400.0)}
    mat = score_matrix(
        scores[scores["method"] == "pbrl"], "rl/episode_return", ["Pong", "Breakout"], base
    )
    np.testing.assert_allclose(mat, [[0.5, 0.25], [0.6, 0.75], [0.7, 0.5]])  # seeds 0, 1, 2
    norm = return_table(scores, reps=200, baselines=base)
    agg = norm[(norm["task"] == ALL_TASKS) & (norm["method"] == "pbrl")].iloc[0]
    assert agg["n"] == 3 and agg["normalized"]
    assert agg["iqm"] == pytest.approx(scipy.stats.trim_mean(mat.ravel(), 0.25))


# ------------------------------------------------- `pbrl report` on a platform-shaped folder

TRUE_FINALS = {
    "a2c_oracle": [91.0, 92.0, 93.0, 94.0],
    "drlhf": [79.0, 82.0, 84.0, 87.0],
    "pbrl": [80.0, 81.0, 85.0, 90.0],
}
"""Final true returns per seed 0..3. P(pbrl > drlhf) = (1 + 1 + 3 + 4) / 16 = 9/16 (not significant
with 4 seeds); the oracle beats every run of both learned-reward methods."""


def _rows(mode: str, final: float, seed: int) -> list[dict[str, Any]]:
    """metrics.jsonl rows with the keys a toy_rlhf smoke trial logs (copied from a real one)."""
    rows = []
    for k, frames in enumerate((500, 1000, 1500, 2000)):
        r: dict[str, Any] = {
            "iter": 17 + 25 * k,
            "env_frames": frames,
            "perf/env_frames": frames,
            "rl/episode_return": final * frames / 2000,
            "rl/best_episode_return": final + 5.0,
            "rl/episodes": 12 * (k + 1),
            "lower/policy_loss": 0.01,
            "lower/value_loss": 0.02,
            "lower/entropy": 0.3,
        }
        if mode != "a2c_oracle":
            r |= {
                "rm/accuracy": 0.6 + 0.05 * seed + (0.1 if mode == "pbrl" else 0.0),
                "rm/return_corr": 0.5 + 0.1 * seed,
                "rm/labels_used": 28 + 20 * k,
                "rm/epochs": 5 * (k + 1),
                "rm/bt_loss": 0.5,
            }
        if mode == "pbrl":
            r |= {"penalty/value": 2.0, "perf/oracle_env_frames": frames - 160, "upper/coef": 1.0}
        r["perf/env_steps_per_s"] = 2000.0
        rows.append(r)
    return rows


def _write_trial(
    out: Path, name: str, container: dict[str, Any], rows: list[dict[str, Any]], done: bool
) -> None:
    d = out / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(container, sort_keys=False), encoding="utf-8")
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if done:
        res = {"trial": name, "status": "complete", "wall_s": 1.0, "final": rows[-1]}
        (d / "result.json").write_text(json.dumps(res), encoding="utf-8")


def _toy_results(tmp_path: Path) -> Path:
    sweep = load_sweep(
        REPO / "sweeps" / "rlhf_toy.yaml", smoke=True, overrides=["sweep.seeds=[0,1,2,3,4]"]
    )
    out = tmp_path / "out"
    out.mkdir()
    for spec in sweep.trials:
        mode, seed = spec.container["method"]["mode"], int(spec.container["seed"])
        if seed == 4:  # an unfinished run with an absurd return: never counted
            if mode == "pbrl":
                _write_trial(out, spec.name, spec.container, _rows(mode, 1e6, seed)[:2], done=False)
            continue
        _write_trial(
            out, spec.name, spec.container, _rows(mode, TRUE_FINALS[mode][seed], seed), True
        )
    return out


def test_report_versus_adds_the_pairs_asked_for_and_refuses_unknown_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.cli import main

    out = _toy_results(tmp_path)
    assert main(["report", str(out), "--versus", "drlhf:nope"]) == 2
    err = capsys.readouterr().err
    assert "--versus drlhf:nope: no method 'nope' in" in err and "a2c_oracle, drlhf, pbrl" in err
    assert main(["report", str(out), "--versus", "drlhf"]) == 2
    assert "--versus drlhf: expected METHOD:METHOD" in capsys.readouterr().err
    assert not (out / "report").exists()  # bad input writes nothing
    # P(drlhf > pbrl) is not a default pair (pbrl is ranked over drlhf); asked for, it is 1 − 9/16.
    assert main(["report", str(out), "--versus", "drlhf:pbrl"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("P(drlhf > pbrl)")]
    assert line.startswith("P(drlhf > pbrl) = 0.44 [") and "4 vs 4 seeds" in line
    stats = pd.read_csv(out / "report" / "rl_stats.csv")
    row = stats[(stats["method"] == "drlhf") & (stats["versus"] == "pbrl")]
    assert row["estimate"].tolist() == [pytest.approx(7 / 16)]


def test_pbrl_report_prints_and_writes_the_rlhf_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.cli import main

    out = _toy_results(tmp_path)
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()

    assert any(x.startswith("RLHF statistics (rliable)") for x in lines)
    (pbrl_row,) = [x for x in lines if x.startswith("toy_rlhf") and x.split()[1] == "pbrl"]
    # IQM of 80, 81, 85, 90 = mean(81, 85) = 83; mean = 84; rm/accuracy mean 0.775.
    assert (
        pbrl_row.split()[2] == "4" and pbrl_row.split()[3] == "83" and pbrl_row.split()[6] == "84"
    )
    assert "0.775 [" in pbrl_row
    (oracle_row,) = [x for x in lines if x.startswith("toy_rlhf") and x.split()[1] == "a2c_oracle"]
    assert oracle_row.split()[3] == "92.5" and oracle_row.rstrip().endswith("-")
    (vs,) = [x for x in lines if x.startswith("P(pbrl > drlhf) = ")]
    assert vs.startswith("P(pbrl > drlhf) = 0.56 [") and "4 vs 4 seeds" in vs
    assert vs.endswith("not significant (the 95% CI contains 0.5)")
    (vs_oracle,) = [x for x in lines if x.startswith("P(pbrl > a2c_oracle) = ")]
    assert vs_oracle.startswith("P(pbrl > a2c_oracle) = 0.00 [0.00, 0.00]")
    assert vs_oracle.endswith("a2c_oracle better (the 95% CI lies below 0.5)")
    assert any(x.startswith("P(drlhf > a2c_oracle) = 0.00") for x in lines)

    stats = pd.read_csv(out / "report" / "rl_stats.csv")
    ret = stats[stats["section"] == "return"].set_index(["method", "statistic"])
    assert ret.loc[("pbrl", "iqm"), "estimate"] == pytest.approx(83.0)
    assert ret.loc[("drlhf", "mean"), "estimate"] == pytest.approx(83.0)
    assert (ret["n"] == 4).all()
    assert (ret["ci_lo"] <= ret["estimate"]).all() and (ret["estimate"] <= ret["ci_hi"]).all()
    imp = stats[(stats["section"] == "improvement") & (stats["method"] == "pbrl")]
    imp = imp.set_index("versus")
    assert imp.loc["drlhf", "estimate"] == pytest.approx(9 / 16)
    assert imp.loc["drlhf", "ci_lo"] < 0.5 < imp.loc["drlhf", "ci_hi"]
    assert imp.loc["drlhf", "verdict"] == "not significant"
    rm = stats[stats["section"] == "reward_model"].set_index(["method", "metric"])
    assert rm.loc[("drlhf", "rm/return_corr"), "estimate"] == pytest.approx(0.65)
    assert ("a2c_oracle", "rm/accuracy") not in rm.index
    assert set(stats["reps"]) == {2000} and set(stats["seed"]) == {0}

    curves = pd.read_csv(out / "report" / "rl_curves.csv")
    pb = curves[curves["method"] == "pbrl"].set_index("env_frames")
    assert list(pb.index) == [500, 1000, 1500, 2000] and (pb["n"] == 4).all()
    assert pb.loc[2000, "iqm"] == pytest.approx(83.0) and pb.loc[1000, "iqm"] == pytest.approx(41.5)
    assert (pb["lo"] <= pb["iqm"]).all() and (pb["iqm"] <= pb["hi"]).all()
    fig = out / "figures" / "rl_learning_curves.png"
    assert fig.stat().st_size > 10_000 and f"figure: {fig}" in text
    assert (out / "figures" / "rlhf_toy.png").exists()  # the existing RLHF figure is still drawn


def test_tabular_report_has_no_rlhf_statistics(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.report.command import report_folder

    cfg = fake.specs()[0].container
    fake.record({"seeds": [0, 1]})
    for s in (0, 1):
        fake.trial(f"pbrl_value__s{s}", {**cfg, "seed": s}, rows_of(1.0 + s, 40))
    report_folder(fake.out)
    text = capsys.readouterr().out
    assert "RLHF statistics" not in text and "P(" not in text
    assert (fake.out / "report" / "summary.csv").exists()
    assert not (fake.out / "report" / "rl_stats.csv").exists()
    assert not (fake.out / "figures" / "rl_learning_curves.png").exists()
