"""``--confirm-seeds``: the best setting is chosen within each method, problem instances averaged over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbrl_dist.config.loader import Sweep
from pbrl_dist.report.confirm import best_per_method, rank_configs, split_axes
from pbrl_dist.report.tables import load_results

GRID = {"method.lr_x": [0.1, 0.5], "problem.game": [0, 1]}
METRIC = "upper/leader_return"

# Mean leader return per (method, lr_x, game). pbrl_value at lr_x=0.1 on game 0 is the best single
# cell of the grid (10), but lr_x=0.1 averages 5 over the games while lr_x=0.5 averages 6. indep_pg is
# worse than pbrl_value everywhere, and its best setting is lr_x=0.1 (1.0 against 0.75). The axis is
# one both methods read (indep_pg has no lam: a lam axis would not multiply it).
CELL = {
    ("pbrl_value", 0.1, 0): 10.0,
    ("pbrl_value", 0.1, 1): 0.0,
    ("pbrl_value", 0.5, 0): 6.0,
    ("pbrl_value", 0.5, 1): 6.0,
    ("indep_pg", 0.1, 0): 1.0,
    ("indep_pg", 0.1, 1): 1.0,
    ("indep_pg", 0.5, 0): 0.0,
    ("indep_pg", 0.5, 1): 1.5,
}


def _grid_folder(fake: Any, rows_of: Any) -> Path:
    """2 methods × 2 lr_x × 2 games × 2 seeds; seeds 0 and 1 are ±0.1 around the cell's mean."""
    specs = fake.specs(
        [f"sweep.grid.{k}={v}".replace(" ", "") for k, v in GRID.items()] + ["sweep.seeds=[0,1]"]
    )
    fake.record({"seeds": [0, 1], "grid": GRID}, [t.name for t in specs])
    assert len(specs) == 16
    for t in specs:
        m = t.cfg.method
        value = CELL[(m.name, m.lr_x, t.cfg.problem.game)] + (0.1 if t.cfg.seed == 0 else -0.1)
        fake.trial(t.name, t.container, rows_of(value, 40))
    # An unfinished trial with a huge value must not count.
    c = {**specs[0].container, "seed": 9}
    fake.trial("pbrl_value__lr_x=0.1__game=0__s9", c, rows_of(1e9, 20), status="incomplete")
    return fake.out


def test_split_axes_hyperparameters_and_instances() -> None:
    axes = ["problem.game", "method.lam", "seed", "dist.num_oracles", "method.lr_x", "logging.x"]
    cols = [*axes, "method.name"]
    assert split_axes(axes, cols) == (
        ["method.lam", "dist.num_oracles", "method.lr_x"],
        ["problem.game"],
    )
    assert split_axes(["method.lam", "problem.num_states"], ["problem.num_states"]) == (
        [],
        ["problem.num_states"],
    )


def test_best_setting_per_method_averages_over_games(fake: Any, rows_of: Any) -> None:
    out = _grid_folder(fake, rows_of)
    _, trials = load_results(out)
    trials = trials[trials["complete"]]
    hyper, instances = split_axes(list(GRID), list(trials.columns))
    assert (hyper, instances) == (["method.lr_x"], ["problem.game"])
    ranked = rank_configs(trials, ["method.name", *hyper], METRIC, "max", instances=instances)
    assert len(ranked) == 4 and set(ranked["n"]) == {4}  # 2 games × 2 seeds per setting
    best = best_per_method(ranked)
    got = {
        r["method.name"]: (r["method.lr_x"], r["mean"], r["compared"]) for _, r in best.iterrows()
    }
    assert got == {
        "pbrl_value": (0.5, pytest.approx(6.0), 2),
        "indep_pg": (0.1, pytest.approx(1.0), 2),
    }
    assert best.iloc[0]["instances"] == [{"problem.game": 0}, {"problem.game": 1}]
    # Minimizing picks the other setting of each method.
    low = best_per_method(rank_configs(trials, ["method.name", *hyper], METRIC, "min"))
    assert dict(zip(low["method.name"], low["method.lr_x"], strict=True)) == {
        "pbrl_value": 0.1,
        "indep_pg": 0.5,
    }


def test_confirm_reruns_each_methods_best_on_every_game(
    fake: Any, rows_of: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.launch import confirm

    out = _grid_folder(fake, rows_of)
    ran: list[Sweep] = []

    def run_local(sweep: Sweep, where: Path, overwrite: bool = False) -> list[dict]:
        where.mkdir()
        ran.append(sweep)
        return [
            {
                "trial": t.name,
                METRIC: CELL[(t.cfg.method.name, t.cfg.method.lr_x, t.cfg.problem.game)]
                + t.cfg.seed / 100,
            }
            for t in sweep.trials
        ]

    monkeypatch.setattr(confirm, "run_local", run_local)
    summary = confirm.confirm_best(out, 3)
    (sweep,) = ran
    names = [t.name for t in sweep.trials]
    assert len(names) == len(set(names)) == 2 * 2 * 3  # methods × games × fresh seeds
    assert (
        "pbrl_value__lr_x=0.5__game=1__s11" in names and "indep_pg__lr_x=0.1__game=0__s10" in names
    )
    planned = {
        (t.cfg.method.name, t.cfg.method.lr_x, t.cfg.problem.game, t.cfg.seed) for t in sweep.trials
    }
    assert planned == {
        (m, lr, g, s)
        for m, lr in (("pbrl_value", 0.5), ("indep_pg", 0.1))
        for g in (0, 1)
        for s in (10, 11, 12)  # above every seed used in the folder, the unfinished s9 included
    }
    assert summary["hyperparameter_axes"] == ["method.lr_x"]
    assert summary["instance_axes"] == ["problem.game"]
    assert summary["confirm_seeds"] == [10, 11, 12]
    saved = json.loads((out / "confirm" / "confirm.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    by = {m["method"]: m for m in saved["methods"]}
    assert by["pbrl_value"]["config"] == {"method.name": "pbrl_value", "method.lr_x": 0.5}
    assert by["indep_pg"]["config"] == {"method.name": "indep_pg", "method.lr_x": 0.1}
    assert by["pbrl_value"]["grid_mean"] == pytest.approx(6.0)
    assert by["indep_pg"]["grid_mean"] == pytest.approx(1.0)
    assert by["pbrl_value"]["grid_n"] == 4 and by["pbrl_value"]["grid_seeds"] == [0, 1]
    pv = by["pbrl_value"]
    assert len(pv["confirm_values"]) == 6 and pv["confirm_mean"] == pytest.approx(6.11)
    lo, hi = pv["confirm_ci95"]
    assert lo <= pv["confirm_mean"] <= hi
    assert by["indep_pg"]["confirm_mean"] == pytest.approx(1.11)
    assert all(n.startswith("indep_pg__") for n in by["indep_pg"]["confirm_trials"])
    text = capsys.readouterr().out
    assert "pbrl_value lr_x=0.5: grid mean 6" in text and "indep_pg lr_x=0.1: grid mean 1" in text
    assert "game=0" not in text.split("re-running")[0]  # a game is never a chosen setting


def test_confirm_covers_games_an_interrupted_grid_never_reached(
    fake: Any, rows_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """indep_pg at lr_x=0.1 never ran game 1 (the sweep was stopped): it is still re-run on game 1."""
    import shutil

    from pbrl_dist.launch import confirm

    out = _grid_folder(fake, rows_of)
    for s in (0, 1):
        shutil.rmtree(out / f"indep_pg__lr_x=0.1__game=1__s{s}")
    ran: list[Sweep] = []

    def run_local(sweep: Sweep, where: Path, overwrite: bool = False) -> list[dict]:
        where.mkdir()
        ran.append(sweep)
        return [{"trial": t.name, METRIC: 1.0} for t in sweep.trials]

    monkeypatch.setattr(confirm, "run_local", run_local)
    summary = confirm.confirm_best(out, 1)
    planned = {(t.cfg.method.name, t.cfg.method.lr_x, t.cfg.problem.game) for t in ran[0].trials}
    assert ("indep_pg", 0.1, 1) in planned and len(planned) == 4
    assert "indep_pg__lr_x=0.1__game=1__s10" in [t.name for t in ran[0].trials]
    by = {m["method"]: m for m in summary["methods"]}
    assert by["indep_pg"]["instances"] == [{"problem.game": 0}, {"problem.game": 1}]
    assert by["indep_pg"]["grid_n"] == 2  # scored on what ran: game 0, two seeds
