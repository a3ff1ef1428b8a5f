"""Every sweep file loads, and its smoke block runs end-to-end through `pbrl run` (local backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrl_dist.cli import main
from pbrl_dist.config import load_sweep
from pbrl_dist.report import load_results

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))
# `pbrl run` runs grids; files with random search axes need `pbrl sweep` (test_journeys.py runs those).
TABULAR = [
    p
    for p in SWEEPS
    if p.stem.startswith(("fig1", "fig3", "shaping")) and not load_sweep(p).block.get("search")
]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_loads(path: Path) -> None:
    full = load_sweep(path)
    smoke = load_sweep(path, smoke=True)
    assert 0 < len(smoke.trials) <= len(full.trials)


@pytest.mark.parametrize("path", TABULAR, ids=lambda p: p.stem)
def test_smoke_block_runs_through_the_cli(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(path), "--smoke", "--out", str(out)]) == 0
    _, trials = load_results(out)
    assert len(trials) == len(load_sweep(path, smoke=True).trials)
    assert trials["complete"].all()
    for name in trials["trial"]:
        assert {"config.yaml", "metrics.jsonl", "final_state.npz", "result.json"} <= {
            p.name for p in (out / name).iterdir()
        }
    assert any((out / "figures").glob("*.png"))
