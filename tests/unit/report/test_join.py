"""``pbrl report DIR --with BASE``: an ablation folder reported together with its base sweep's trials
on the same seeds and problem settings, and nothing else of the base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pbrl_dist.cli import main
from pbrl_dist.config.loader import ConfigError
from pbrl_dist.report.command import join_results


@pytest.fixture
def folders(tmp_path: Path, rows_of: Any, fake_at: Any) -> tuple[Any, Any]:
    """An ablation (method ``abl``, seeds 0-1, game 0) and its base (``base``, seeds 0-2, games 0-1)."""
    (tmp_path / "abl").mkdir()
    (tmp_path / "base").mkdir()
    abl, base = fake_at(tmp_path / "abl"), fake_at(tmp_path / "base")
    cfg = abl.specs()[0].container
    abl.record({"seeds": [0, 1]})
    base.record({"seeds": [0, 1, 2], "grid": {"problem.game": [0, 1]}})
    for seed in (0, 1):
        c = {**cfg, "seed": seed, "method": {**cfg["method"], "name": "abl"}}
        abl.trial(f"abl__s{seed}", c, rows_of(2.0 + seed, 40))
    for game in (0, 1):
        for seed in (0, 1, 2):
            c = {**cfg, "seed": seed, "problem": {**cfg["problem"], "game": game}}
            c["method"] = {**cfg["method"], "name": "base"}
            base.trial(f"base__game={game}__s{seed}", c, rows_of(1.0 + seed, 40))
    return abl, base


def test_only_the_base_trials_on_the_ablations_seeds_and_problem_join(
    folders: tuple[Any, Any],
) -> None:
    abl, base = folders
    curves, trials, axes, lines = join_results(abl.out, [base.out])
    assert sorted(trials["trial"]) == ["abl__s0", "abl__s1", "base__game=0__s0", "base__game=0__s1"]
    assert set(curves["trial"]) == set(trials["trial"])
    assert axes == ["problem.game"]
    assert lines == [
        f"with 2 of the 6 trials of {base.out} (same seeds and problem; methods: base)"
    ]


def test_the_cli_reports_both_methods_under_the_ablation_folder(
    folders: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    abl, base = folders
    assert main(["report", str(abl.out), "--with", str(base.out)]) == 0
    summary = pd.read_csv(abl.out / "report" / "summary.csv")
    rows = summary[summary["metric"] == "upper/leader_return"].set_index("method.name")
    assert rows.loc["abl", "n"] == 2 and rows.loc["abl", "mean"] == pytest.approx(2.5)
    assert rows.loc["base", "n"] == 2 and rows.loc["base", "mean"] == pytest.approx(1.5)
    assert not (base.out / "report").exists()  # the base folder is only read
    assert "with 2 of the 6 trials of" in capsys.readouterr().out


def test_a_bad_with_folder_is_one_error_and_writes_nothing(
    folders: tuple[Any, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    abl, _ = folders
    assert main(["report", str(abl.out), "--with", str(tmp_path / "nope")]) == 2
    assert "--with" in capsys.readouterr().err and not (abl.out / "report").exists()
    with pytest.raises(ConfigError, match=r"trial abl__s0 is in .* too"):
        join_results(abl.out, [abl.out])


def test_settings_match_whatever_the_column_dtype(folders: tuple[Any, Any], rows_of: Any) -> None:
    """A base trial without ``problem.game`` turns that column to float (0 -> 0.0): still a match."""
    abl, base = folders
    cfg = abl.specs()[0].container
    other = {**cfg, "seed": 0, "problem": {k: v for k, v in cfg["problem"].items() if k != "game"}}
    other["method"] = {**cfg["method"], "name": "other"}
    base.trial("other__s0", other, rows_of(0.0, 40))
    _, trials, _, _ = join_results(abl.out, [base.out])
    assert sorted(trials["trial"])[2:] == ["base__game=0__s0", "base__game=0__s1"]


def test_versus_compares_a_method_of_each_folder(
    folders: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    abl, base = folders
    assert main(["report", str(abl.out), "--with", str(base.out), "--versus", "abl:base"]) == 0
    assert main(["report", str(abl.out), "--versus", "abl:base"]) == 2
    assert "no method 'base' in" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["no-shared-seed", "same-method", "confirm"])
def test_a_with_folder_that_cannot_join_is_one_error_naming_it(
    folders: tuple[Any, Any],
    tmp_path: Path,
    rows_of: Any,
    fake_at: Any,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    abl, _ = folders
    (tmp_path / "c").mkdir()
    other = fake_at(tmp_path / "c")
    cfg = abl.specs()[0].container
    seed, method = (7, "other") if case == "no-shared-seed" else (0, "abl")
    other.trial(
        "x__s0",
        {**cfg, "seed": seed, "method": {**cfg["method"], "name": method}},
        rows_of(1.0, 40),
    )
    extra = ["--confirm-seeds", "2"] if case == "confirm" else []
    assert main(["report", str(abl.out), "--with", str(other.out), *extra]) == 2
    err = capsys.readouterr().err
    want = {
        "no-shared-seed": f"--with {other.out}: none of its 1 trials has the seed",
        "same-method": f"--with {other.out}: method abl is in {abl.out} too",
        "confirm": "--confirm-seeds re-runs the best configuration of DIR alone",
    }[case]
    assert want in err, err
    assert not (abl.out / "report").exists()
