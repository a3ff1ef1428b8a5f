"""Figure 3 claims with fixed seeds, through the `pbrl run` path.

Claims (issue: zero-sum lower level, acceptance 2): every method's final NI gap ≤ 1e-2, and mean designer
return ordered PBRL > meta-gradient > start line. Small version: 3 instances, 400 iterations (default suite);
full version: the sweep file (10 instances, 1000 iterations; `-m slow`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pbrl_dist.config import load_sweep
from pbrl_dist.launch.local import run_local
from pbrl_dist.report import load_results

FIG3 = Path(__file__).resolve().parents[2] / "sweeps" / "fig3_incentive.yaml"


def _run(tmp_path: Path, overrides: list[str]) -> pd.DataFrame:
    run_local(load_sweep(FIG3, overrides=overrides), tmp_path / "out")
    _, trials = load_results(tmp_path / "out")
    assert trials["complete"].all()
    return trials


def _check(trials: pd.DataFrame) -> None:
    assert trials["lower/ni_gap"].max() <= 1e-2, (
        trials.groupby("method.name")["lower/ni_gap"].max().to_dict()
    )
    ret = trials.groupby("method.name")["upper/designer_return"].mean()
    assert ret["pbrl_ni"] > ret["metagrad"] > ret["start_line"], ret.to_dict()


@pytest.mark.learning
def test_fig3_claims_small(tmp_path: Path) -> None:
    trials = _run(
        tmp_path,
        ["sweep.grid.problem.game=[0,1,2]", "method.num_iters=400", "method.log_every=100"],
    )
    assert len(trials) == 9
    _check(trials)


@pytest.mark.slow
@pytest.mark.learning
def test_fig3_claims_full(tmp_path: Path) -> None:
    trials = _run(tmp_path, ["method.log_every=100"])
    assert len(trials) == 30
    _check(trials)
