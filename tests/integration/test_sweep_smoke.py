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
# rl-zoo's A2C presets, and the pre-registered experiment's tuning file (its other files differ from it
# in the label settings and the seeds only; they all load in tests/unit/config)
SWEEPS += sorted((ROOT / "sweeps" / "zoo_a2c").glob("*.yaml"))
SWEEPS += [ROOT / "sweeps" / "experiments" / "e17_toy_r0.yaml"]
# Other method settings (ablations, budgets) of a file the journey matrix drives on every backend
# (test_journeys.py): each keeps its base file's problem and runs here through `pbrl run`.
VARIANTS = {
    "minatar_absorbing": "minatar_rlhf",
    "minatar_oracle_every": "minatar_rlhf",
    "minatar_a2c": "minatar_rlhf",
    "minatar_pbrl_terms": "minatar_rlhf",
    "minatar_collapse": "minatar_rlhf",
    "rlhf_toy_teachers": "rlhf_toy",
}
VARIANT_FILES = sorted((ROOT / "sweeps" / "variants").glob("*.yaml"))
SWEEPS += VARIANT_FILES


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


def test_every_variant_names_its_base() -> None:
    assert {p.stem for p in VARIANT_FILES} == set(VARIANTS), "add the new variant to VARIANTS"


@pytest.mark.parametrize("path", VARIANT_FILES, ids=lambda p: p.stem)
def test_a_variant_keeps_its_base_problem_and_runs_through_the_cli(
    path: Path, tmp_path: Path
) -> None:
    """A variant changes method settings only: its base's journeys cover its problem on every backend."""
    base = load_sweep(ROOT / "sweeps" / f"{VARIANTS[path.stem]}.yaml")
    problems = {repr(t.cfg.problem) for t in base.trials}
    variant = load_sweep(path)
    assert variant.trials and all(repr(t.cfg.problem) in problems for t in variant.trials)

    out = tmp_path / "out"
    first = variant.trials[0].cfg.problem
    grid = [f"sweep.grid.problem.env_id=[{first.env_id}]"] if "grid" in variant.block else []
    assert main(["run", str(path), "--smoke", "--out", str(out), *grid]) == 0
    _, trials = load_results(out)
    assert len(trials) == len(load_sweep(path, smoke=True, overrides=grid).trials)
    assert trials["complete"].all()
