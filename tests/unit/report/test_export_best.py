"""``pbrl report DIR --export-best FILE`` (``report/export.py``): a sweep file of each method's best setting.

One real tiny sweep (``sweeps/demo_fig1.yaml --smoke``, 20 iterations: 3 methods × 2 λ, seed 0) is run
once for the module; FILE is exported through the CLI, loaded with the project's loader and compared
trial by trial with the config.yaml of the trial ``--confirm-seeds`` would choose. A fake folder with a
``problem.game`` grid (``conftest.Fake``) checks that problem instances stay a grid and seeds carry over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pbrl_dist.cli import main
from pbrl_dist.config.loader import ConfigError, load_sweep
from pbrl_dist.launch.confirm import _choose
from pbrl_dist.report.export import export_best

ROOT = Path(__file__).resolve().parents[3]
METRIC = "upper/leader_return"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real results folder: ``pbrl run sweeps/demo_fig1.yaml --smoke method.num_iters=20``."""
    out = tmp_path_factory.mktemp("export") / "demo"
    argv = ["run", str(ROOT / "sweeps/demo_fig1.yaml"), "--smoke", "method.num_iters=20"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        assert main([*argv, "logging.wandb=disabled", "--out", str(out), "--no-report"]) == 0
    return out


def _config(trial_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((trial_dir / "config.yaml").read_text(encoding="utf-8"))


def _without(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``config`` without the dotted ``keys``."""
    config = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))
    for key in keys:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node.pop(last)
    return config


def test_export_best_reproduces_the_chosen_trial_of_every_method(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best_file = tmp_path / "best.yaml"
    assert main(["report", str(demo), "--export-best", str(best_file)]) == 0
    capsys.readouterr()
    # The choice is --confirm-seeds' choice.
    _, best, metric, mode, hyper, _, _ = _choose(demo, None, None)
    assert (metric, mode, hyper) == (METRIC, "max", ["method.lam"])
    chosen = {str(r["method.name"]): str(r["trials"][0]) for r in best.to_dict("records")}
    assert set(chosen) == {"pbrl_value", "pbrl_bellman", "indep_pg"}

    text = best_file.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["sweep"] == {"seeds": [0]}  # the record's seeds; no grid or search axis left
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert str(demo.resolve()) in header[0] and METRIC in header[2] and "max" in header[2]
    for method, trial in chosen.items():
        assert any(line.startswith(f"#   {method} ") and trial in line for line in header)

    trials = load_sweep(best_file).trials
    assert sorted(t.cfg.method.name for t in trials) == sorted(chosen)
    for t in trials:
        want = _config(demo / chosen[t.cfg.method.name])
        assert t.cfg.seed == 0 and t.container["exp"] == f"{want['exp']}_best"
        assert _without(t.container, "seed", "exp") == _without(want, "seed", "exp"), t.name

    # `pbrl show` reads it through the CLI, and `pbrl run` gets the chosen trials' numbers again.
    assert main(["show", str(best_file)]) == 0
    shown = capsys.readouterr().out
    assert all(f"# --- trial {t.name}" in shown for t in trials)
    rerun = tmp_path / "rerun"
    assert main(["run", str(best_file), "--out", str(rerun), "--no-report"]) == 0
    for t in trials:
        got = json.loads((rerun / t.name / "result.json").read_text())["final"][METRIC]
        was = json.loads((demo / chosen[t.cfg.method.name] / "result.json").read_text())
        assert got == was["final"][METRIC], t.name


def test_export_best_refuses_an_existing_file_without_overwrite(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best_file = tmp_path / "best.yaml"
    best_file.write_text("mine\n", encoding="utf-8")
    assert main(["report", str(demo), "--export-best", str(best_file)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert err == [
        f"pbrl: error: --export-best {best_file}: exists; pass --overwrite to replace it"
    ]
    assert best_file.read_text(encoding="utf-8") == "mine\n"
    assert cap.out == ""  # refused before the report was drawn
    export_best(demo, best_file, overwrite=True)
    assert load_sweep(best_file).name == "demo_fig1_best"


def test_export_best_keeps_problem_instances_as_a_grid_and_the_seeds(
    fake: Any, rows_of: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 methods × lr_x ∈ {0.1, 0.5} × game ∈ {0, 1} × seeds {0, 1}: pbrl_value's best lr_x is 0.5
    (mean 6 over the games, against 5 for 0.1), indep_pg's is 0.1; each runs on both games and both
    seeds."""
    grid = {"method.lr_x": [0.1, 0.5], "problem.game": [0, 1]}
    mean = {("pbrl_value", 0.1): [10.0, 0.0], ("pbrl_value", 0.5): [6.0, 6.0]}
    mean |= {("indep_pg", 0.1): [1.0, 1.0], ("indep_pg", 0.5): [0.0, 1.5]}
    axes = ["sweep.grid.method.lr_x=[0.1,0.5]", "sweep.grid.problem.game=[0,1]"]
    specs = fake.specs(axes) + fake.specs([*axes, "sweep.seeds=[1]"])
    fake.record({"seeds": [0, 1], "grid": grid}, [t.name for t in specs])
    for t in specs:
        m = t.cfg.method
        value = mean[(m.name, m.lr_x)][t.cfg.problem.game]
        fake.trial(t.name, t.container, rows_of(value, 40))
    best_file = fake.root / "best.yaml"
    summary = export_best(fake.out, best_file)
    assert summary["instance_axes"] == ["problem.game"] and summary["seeds"] == [0, 1]
    assert {m: p["setting"] for m, p in summary["methods"].items()} == {
        "pbrl_value": {"method.lr_x": 0.5},
        "indep_pg": {"method.lr_x": 0.1},
    }
    data = yaml.safe_load(best_file.read_text(encoding="utf-8"))
    assert data["sweep"] == {"seeds": [0, 1], "grid": {"problem.game": [0, 1]}}
    trials = load_sweep(best_file).trials
    assert len(trials) == 2 * 2 * 2
    for t in trials:
        want = _config(fake.out / summary["methods"][t.cfg.method.name]["trial"])
        assert t.cfg.method.lr_x == (0.5 if t.cfg.method.name == "pbrl_value" else 0.1)
        same = ("seed", "exp", "problem.game")
        assert _without(t.container, *same) == _without(want, *same), t.name
    assert {(t.cfg.problem.game, t.cfg.seed) for t in trials} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert "exported the best setting of 2 method(s)" in capsys.readouterr().out


def test_export_best_without_a_complete_trial_names_the_flag(fake: Any, rows_of: Any) -> None:
    (spec, *_) = fake.specs()
    fake.record({"seeds": [0]}, [spec.name])
    fake.trial(spec.name, spec.container, rows_of(1.0, 20), status="incomplete")
    best_file = fake.root / "best.yaml"
    with pytest.raises(ConfigError, match=r"^--export-best: .*: no complete trial$"):
        export_best(fake.out, best_file)
    assert not best_file.exists()
