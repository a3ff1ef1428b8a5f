"""Every sweep file loads, and its smoke block runs end-to-end through `pbrl run` (local backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrl_dist.algos.base import MethodConfig
from pbrl_dist.cli import main
from pbrl_dist.config import load_sweep
from pbrl_dist.report import load_results

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))


def _tabular(path: Path) -> bool:
    """A grid file whose trials all run tabular loops (the method schema says so, not the file name);
    `pbrl run` runs grids, files with random search axes need `pbrl sweep` (test_journeys.py), and
    examples/ has its own test (test_user_problem.py)."""
    sw = load_sweep(path, smoke=True)
    return (
        path.parent.name == "sweeps"
        and not sw.block.get("search")
        and all(isinstance(t.cfg.method, MethodConfig) for t in sw.trials)
    )


TABULAR = [p for p in SWEEPS if _tabular(p)]


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
