"""A problem defined outside pbrl_dist (examples/tax_design.py) runs through `pbrl run` and `pbrl sweep`
with no change to the package: ``problem.target`` names it, by file or by module on PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "tax_design.yaml"
FILES = ("config.yaml", "metrics.jsonl", "final_state.npz", "result.json")
SMOKE_TRIALS = ("pbrl_value__game=0__s0", "pbrl_bellman__game=0__s0", "indep_pg__game=0__s0")


def _check_results(out: Path) -> None:
    for name in SMOKE_TRIALS:
        assert all((out / name / f).exists() for f in FILES), name
        done = json.loads((out / name / "result.json").read_text())
        assert done["status"] == "complete" and "upper/principal_return" in done["final"]
    assert (out / "figures" / "tax_design.png").exists()
    assert (out / "report" / "summary.csv").exists()


def test_example_runs_through_pbrl_run_by_file_target(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(EXAMPLE), "--smoke", "--out", str(out)]) == 0
    _check_results(out)
    cfg = yaml.safe_load((out / SMOKE_TRIALS[0] / "config.yaml").read_text())
    assert cfg["problem"]["name"] == "tax_design"
    assert cfg["problem"]["target"] == f"{ROOT / 'examples' / 'tax_design.py'}:SPEC"
    # The recorded config resumes from any working directory: nothing runs again.
    stamp = (out / SMOKE_TRIALS[0] / "result.json").stat().st_mtime_ns
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert (out / SMOKE_TRIALS[0] / "result.json").stat().st_mtime_ns == stamp


def test_module_target_on_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    text = EXAMPLE.read_text().replace("target: tax_design.py:SPEC", "target: tax_design:SPEC")
    sweep = tmp_path / "tax_module.yaml"
    sweep.write_text(text)
    out = tmp_path / "run"
    assert main(["run", str(sweep), "--smoke", "--out", str(out), "method.num_iters=10"]) == 0
    cfg = yaml.safe_load((out / SMOKE_TRIALS[0] / "config.yaml").read_text())
    assert cfg["problem"]["target"] == "tax_design:SPEC"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("no_such_module_xyz:SPEC", "does not import"),
        ("tax_design.py:NOPE", "has no attribute 'NOPE'"),
        ("tax_design.py:TaxDesignConfig", "not a pbrl_dist.problems.ProblemSpec"),
        ("missing_file.py:SPEC", "no such file"),
    ],
)
def test_a_bad_target_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, says: str
) -> None:
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(EXAMPLE.read_text().replace("tax_design.py:SPEC", target))
    (tmp_path / "tax_design.py").write_text((ROOT / "examples" / "tax_design.py").read_text())
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "problem.target" in err[0] and says in err[0], err
    assert not out.exists()


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
@pytest.mark.timeout(300)
def test_example_runs_through_pbrl_sweep_on_tune(tmp_path: Path) -> None:
    """Tune trials run in Ray worker processes: they re-import the target from the trial config."""
    out, ref = tmp_path / "tune", tmp_path / "local"
    ray_backend = [
        *("dist.backend=ray", "dist.num_rollout_workers=1", "dist.num_oracles=1"),
        *("dist.cpus_per_worker=0.25", "dist.cpus_per_trial=0.5"),
    ]
    # the Ray backend too: its oracle actors are other processes that must re-import the target
    assert main(["sweep", str(EXAMPLE), "--smoke", "--out", str(out), *ray_backend]) == 0
    _check_results(out)
    assert main(["run", str(EXAMPLE), "--smoke", "--out", str(ref)]) == 0
    for name in SMOKE_TRIALS:
        got = json.loads((out / name / "result.json").read_text())["final"]
        want = json.loads((ref / name / "result.json").read_text())["final"]
        assert got["upper/principal_return"] == want["upper/principal_return"], name
    rec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert rec["runner"] == "tune" and sorted(rec["trials"]) == sorted(SMOKE_TRIALS)


def test_an_installed_entry_point_registers_the_problem(tmp_path: Path) -> None:
    """A package that declares ``[project.entry-points."pbrl_dist.problems"]`` needs no problem.target:
    ``problem.name`` alone finds it (a fresh process, so the registry starts empty)."""
    site = tmp_path / "site"
    dist = site / "tax_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tax-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pbrl_dist.problems]\ntax_design = tax_design:SPEC\n")
    sweep = tmp_path / "tax_ep.yaml"
    sweep.write_text(
        EXAMPLE.read_text().replace("  target: tax_design.py:SPEC", "  name: tax_design", 1)
    )
    assert "target:" not in sweep.read_text().split("method")[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "examples")])}
    out = tmp_path / "ep"
    p = subprocess.run(
        [sys.executable, "-m", "pbrl_dist.cli", "run", str(sweep), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**env, "WANDB_MODE": "disabled"},
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    _check_results(out)


def test_a_user_problem_with_its_own_field_names_runs(tmp_path: Path) -> None:
    """Nothing outside a problem assumes its field names: the example with ``num_states`` and
    ``num_actions`` renamed (and a name of its own) runs through ``pbrl run`` and ``pbrl show``."""
    renames = {"tax_design": "tax_renamed", "num_states": "n_cells", "num_actions": "n_levies"}
    for src, dst in (("tax_design.py", "tax_renamed.py"), ("tax_design.yaml", "tax_renamed.yaml")):
        text = (ROOT / "examples" / src).read_text()
        for old, new in renames.items():
            text = text.replace(old, new)
        assert "num_states" not in text and "num_actions" not in text
        (tmp_path / dst).write_text(text)
    sweep = tmp_path / "tax_renamed.yaml"
    out = tmp_path / "run"
    assert main(["show", str(sweep), "--smoke"]) == 0
    assert main(["run", str(sweep), "--smoke", "--out", str(out), "method.num_iters=10"]) == 0
    for name in SMOKE_TRIALS:
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert cfg["problem"]["n_cells"] == 6 and "num_states" not in cfg["problem"]
        assert json.loads((out / name / "result.json").read_text())["status"] == "complete"
