"""``pbrl report``: summary.parquet, and ``--confirm-seeds`` re-running the best grid point on fresh seeds."""

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
    assert conf["config"] == {"method.name": "pbrl_value", "method.lam": best_lam}
    assert conf["confirm_seeds"] == [2, 3, 4] == fresh_seeds({0, 1}, 3)
    dirs = sorted(p.name for p in (out / "confirm").iterdir() if p.is_dir())
    assert dirs == [f"{stem}__s{s}" for s in (2, 3, 4)]
    lo, hi = conf["confirm_ci95"]
    assert lo <= conf["confirm_mean"] <= hi and len(conf["confirm_values"]) == 3
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
