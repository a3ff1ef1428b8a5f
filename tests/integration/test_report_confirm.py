"""``pbrl report``: summary.parquet, and ``--confirm-seeds`` re-running each method's best setting on
fresh seeds (real tiny trials)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pbrl_dist.cli import main
from pbrl_dist.report.confirm import fresh_seeds, rank_configs
from pbrl_dist.report.tables import load_results


def test_confirm_seeds_reruns_the_best_configuration(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    grid = ["sweep.grid.method.lam=[0.5,20]", "sweep.seeds=[0,1]", "method.num_iters=30"]
    assert main(["run", str(tiny_sweep), "--out", str(out), *grid]) == 0
    summary = pd.read_parquet(out / "report" / "summary.parquet")
    assert set(summary["metric"]) >= {"upper/leader_return", "lower/gap"}

    _, trials = load_results(out)
    ranked = rank_configs(trials, ["method.name", "method.lam"], "upper/leader_return", "max")
    best_lam = ranked.iloc[0]["method.lam"]
    stem = ranked.iloc[0]["trials"][0].rsplit("__s", 1)[0]  # e.g. pbrl_value__lam=20

    capsys.readouterr()
    assert main(["report", str(out), "--confirm-seeds", "3"]) == 0
    text = capsys.readouterr().out
    conf = json.loads((out / "confirm" / "confirm.json").read_text())
    assert conf["metric"] == "upper/leader_return" and conf["mode"] == "max"
    assert conf["hyperparameter_axes"] == ["method.lam"] and conf["instance_axes"] == []
    (best,) = conf["methods"]
    assert best["config"] == {"method.name": "pbrl_value", "method.lam": best_lam}
    assert best["settings_compared"] == 2 and best["grid_seeds"] == [0, 1]
    assert conf["confirm_seeds"] == [2, 3, 4] == fresh_seeds({0, 1}, 3)
    dirs = sorted(p.name for p in (out / "confirm").iterdir() if p.is_dir())
    assert dirs == [f"{stem}__s{s}" for s in (2, 3, 4)] == sorted(best["confirm_trials"])
    lo, hi = best["confirm_ci95"]
    assert lo <= best["confirm_mean"] <= hi and len(best["confirm_values"]) == 3
    assert "confirmation on fresh seeds" in text
    # The main report still counts only the grid's own trials.
    _, again = load_results(out)
    assert len(again) == 4
    # Results are not overwritten silently; minimizing another metric works too.
    assert main(["report", str(out), "--confirm-seeds", "2"]) == 2
    assert (
        main(
            [
                "report",
                str(out),
                "--confirm-seeds",
                "1",
                "--metric",
                "lower/gap",
                "--mode",
                "min",
                "--overwrite",
            ]
        )
        == 0
    )
    assert (
        main(["report", str(out), "--confirm-seeds", "1", "--metric", "nope/x", "--overwrite"]) == 2
    )


def test_confirm_seeds_per_method_over_every_game(
    tiny_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two methods × two step sizes × two games: each method's best step size (games averaged) on every
    game. (The axis is one both methods read: a λ axis would not multiply indep_pg.)"""
    out = tmp_path / "out"
    args = [
        "methods.pbrl_value.algo=pbrl",
        "methods.indep_pg.algo=indep_pg",
        "sweep.grid.method.lr_x=[0.1,0.5]",
        "sweep.grid.problem.game=[0,1]",
        "sweep.seeds=[0]",
        "method.num_iters=20",
    ]
    assert main(["run", str(tiny_sweep), "--out", str(out), *args]) == 0
    _, trials = load_results(out)
    assert len(trials) == 8 and set(trials["method.name"]) == {"pbrl_value", "indep_pg"}
    ranked = rank_configs(trials, ["method.name", "method.lr_x"], "upper/leader_return", "max")
    want = {m: g.iloc[0]["method.lr_x"] for m, g in ranked.groupby("method.name", sort=False)}

    capsys.readouterr()
    assert main(["report", str(out), "--confirm-seeds", "2"]) == 0
    conf = json.loads((out / "confirm" / "confirm.json").read_text())
    assert conf["instance_axes"] == ["problem.game"] and conf["confirm_seeds"] == [1, 2]
    by = {m["method"]: m for m in conf["methods"]}
    assert set(by) == {"pbrl_value", "indep_pg"}
    for method, lr in want.items():
        assert by[method]["config"] == {"method.name": method, "method.lr_x": lr}
        assert by[method]["instances"] == [{"problem.game": 0}, {"problem.game": 1}]
        assert len(by[method]["confirm_values"]) == 4  # 2 games × 2 fresh seeds
    _, again = load_results(out / "confirm")
    assert len(again) == 8 and again["trial"].is_unique
    games = again.groupby("method.name")["problem.game"].apply(lambda g: sorted(set(g)))
    assert all(g == [0, 1] for g in games)
    assert set(zip(again["method.name"], again["method.lr_x"], strict=True)) == set(want.items())
