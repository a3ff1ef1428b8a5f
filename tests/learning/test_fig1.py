"""Figure 1 claims, with fixed seeds, through the same path as `pbrl run`.

Claims (issue: foundation, acceptance 3): both PBRL variants end with follower gap ≤ 1e-2 on every game,
and PBRL-value's mean leader return beats independent PG's. The default suite checks them on 3 games and
one seed; the `slow` test runs the full sweep file (10 games × 3 seeds).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pbrl_dist.config import load_sweep
from pbrl_dist.launch.local import run_local
from pbrl_dist.report import load_results

ROOT = Path(__file__).resolve().parents[2]
FIG1 = ROOT / "sweeps" / "fig1_stackelberg.yaml"


def _run(tmp_path: Path, overrides: list[str]) -> pd.DataFrame:
    sweep = load_sweep(FIG1, overrides=overrides)
    run_local(sweep, tmp_path / "out")
    _, trials = load_results(tmp_path / "out")
    assert trials["complete"].all()
    return trials


def _check_claims(trials: pd.DataFrame) -> None:
    by = trials.groupby("method.name")
    for method in ("pbrl_value", "pbrl_bellman"):
        gaps = by.get_group(method)["lower/gap"]
        assert gaps.max() <= 1e-2, f"{method}: worst follower gap {gaps.max():.4g}"
    ret = by["upper/leader_return"].mean()
    assert ret["pbrl_value"] > ret["indep_pg"], ret.to_dict()


@pytest.mark.learning
def test_fig1_claims_small(tmp_path: Path) -> None:
    trials = _run(
        tmp_path, ["sweep.seeds=[0]", "sweep.grid.problem.game=[0,1,2]", "method.log_every=500"]
    )
    assert len(trials) == 9
    _check_claims(trials)


@pytest.mark.slow
@pytest.mark.learning
def test_fig1_claims_full(tmp_path: Path) -> None:
    trials = _run(tmp_path, ["method.log_every=200"])
    assert len(trials) == 90
    _check_claims(trials)
