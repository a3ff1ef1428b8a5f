"""The loader's one rule for overrides against axes, the seed axis, resolution at launch, and trial
names derived from the config that runs (``config/loader.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _trial_names import at as _at
from _trial_names import check_names_agree, check_same_trials

from pbrl_dist.cli import main
from pbrl_dist.config import ConfigError, load_sweep, loader

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "sweeps" / "demo_fig1.yaml"
FIG1 = ROOT / "sweeps" / "fig1_stackelberg.yaml"
SEARCH = ROOT / "sweeps" / "fig1_search.yaml"
MINATAR = ROOT / "sweeps" / "minatar_rlhf.yaml"
FILES = sorted([*ROOT.glob("sweeps/*.yaml"), *ROOT.glob("sweeps/variants/*.yaml")]) + sorted(
    ROOT.glob("examples/*.yaml")
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_trial_name_of_every_sweep_file_equals_its_config(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """... and every trial equals the one the full merge builds (``loader.FAST`` off: all eight
    layers merged onto the schema per trial, as before the template path)."""
    for smoke in (False, True):
        if smoke and "smoke" not in yaml.safe_load(path.read_text()):
            continue
        sweep = load_sweep(path, smoke=smoke)
        check_names_agree(sweep)
        with monkeypatch.context() as m:
            m.setattr(loader, "FAST", False)
            check_same_trials(sweep, load_sweep(path, smoke=smoke))


@pytest.mark.parametrize(
    ("path", "override", "key", "value"),
    [
        (DEMO, "method.lam=5", "method.lam", 5.0),
        (MINATAR, "problem.env_id=MinAtar/Asterix-v1", "problem.env_id", "MinAtar/Asterix-v1"),
        (FIG1, "problem.game=5", "problem.game", 5),
    ],
    ids=["demo-lam", "minatar-env", "fig1-game"],
)
def test_an_override_of_a_grid_axis_replaces_the_axis(
    path: Path, override: str, key: str, value: Any
) -> None:
    sweep = load_sweep(path, smoke=True, overrides=[override])
    assert sweep.trials and all(_at(t.container, key) == value for t in sweep.trials)
    assert key not in sweep.block["grid"]
    assert any(
        n.startswith(f"{key}: the value set in the command line replaces") for n in sweep.notes
    )
    check_names_agree(sweep)


def test_an_override_of_a_search_axis_replaces_the_axis(tmp_path: Path) -> None:
    sweep = load_sweep(SEARCH, smoke=True, overrides=["method.lam=5"])
    assert set(sweep.block["search"]) == {"method.lr_x"}
    assert all(t.cfg.method.lam == 5.0 for t in sweep.trials)
    # the demo's λ grid axis as a search axis: refused there (indep_pg does not read λ, so its samples
    # would be copies of one run), replaced in a copy with the PBRL methods only
    swap = ["sweep.search.method.lam={loguniform: [1, 9]}"]
    with pytest.raises(ConfigError, match=r"^sweep\.search\.method\.lam: method indep_pg"):
        load_sweep(DEMO, smoke=True, overrides=swap)
    data = yaml.safe_load(DEMO.read_text())
    del data["methods"]["indep_pg"]
    pbrl_only = tmp_path / "demo_pbrl.yaml"
    pbrl_only.write_text(yaml.safe_dump(data, sort_keys=False))
    swapped = load_sweep(pbrl_only, smoke=True, overrides=swap)
    assert "method.lam" not in swapped.block["grid"] and "method.lam" in swapped.block["search"]
    assert any("sweep.search axis of the command line replaces" in n for n in swapped.notes)


@pytest.mark.parametrize(
    "override", ["methods.pbrl_value.lam=3", "methods.indep_pg.lam=3"], ids=["pbrl", "indep"]
)
def test_a_method_value_under_an_axis_for_every_method_is_refused(override: str) -> None:
    with pytest.raises(ConfigError, match=r"^methods\.\w+\.lam: method\.lam is swept"):
        load_sweep(DEMO, smoke=True, overrides=[override])


def test_a_later_layer_overrides_a_method_value_and_the_specific_beats_the_shared() -> None:
    sweep = load_sweep(
        DEMO,
        smoke=True,
        overrides=["method.lr_x=0.3", "methods.pbrl_value.lr_x=0.07", "method.num_iters=7"],
    )
    lr = {t.cfg.method.name: t.cfg.method.lr_x for t in sweep.trials}
    assert lr == {"pbrl_value": 0.07, "pbrl_bellman": 0.3, "indep_pg": 0.3}
    assert {t.cfg.method.num_iters for t in sweep.trials} == {7}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("sweep.grid={seed: [1, 2]}", "sweep.grid.seed"),
        ("sweep.grid.seed=[1,2]", "sweep.grid.seed"),
        ("sweep.search.seed={choice: [1, 2]}", "sweep.search.seed"),
        ("seed=3", "seed"),
    ],
)
def test_the_seed_is_set_only_by_sweep_seeds(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: .*sweep\.seeds"):
        load_sweep(DEMO, smoke=True, overrides=[override])
    seeds = load_sweep(DEMO, smoke=True, overrides=["sweep.seeds=[1,2]"])
    assert sorted({t.cfg.seed for t in seeds.trials}) == [1, 2]
    check_names_agree(seeds)


def test_a_top_level_seed_in_a_file_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text())
    data["seed"] = 4
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^seed: the seeds of a sweep are .*sweep\.seeds"):
        load_sweep(path)


def test_interpolations_are_resolved_once_into_the_recorded_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PBRL_TEST_SCALE", "0.25")
    sweep = load_sweep(
        DEMO,
        smoke=True,
        overrides=["method.init_scale=${oc.env:PBRL_TEST_SCALE}", "method.lr_y=${method.lr_x}"],
    )
    for t in sweep.trials:
        assert t.container["method"]["init_scale"] == 0.25 == t.cfg.method.init_scale
        assert t.container["method"]["lr_y"] == t.container["method"]["lr_x"]
        assert "${" not in t.to_yaml()
    monkeypatch.delenv("PBRL_TEST_SCALE")
    with pytest.raises(ConfigError, match=r"^method\.init_scale: cannot be resolved"):
        load_sweep(DEMO, smoke=True, overrides=["method.init_scale=${oc.env:PBRL_TEST_SCALE}"])


def test_an_environment_value_never_names_a_wandb_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBRL_TEST_PROJECT", "secret")
    with pytest.raises(ConfigError, match=r"^logging\.project: .*written out"):
        load_sweep(DEMO, smoke=True, overrides=["logging.project=${oc.env:PBRL_TEST_PROJECT}"])


def test_pbrl_run_runs_and_records_the_override_of_an_axis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    rc = main(
        ["run", str(DEMO), "--smoke", "--out", str(out), "method.lam=5", "method.num_iters=4"]
    )
    assert rc == 0
    assert "method.lam: the value set in the command line replaces" in capsys.readouterr().out
    record = yaml.safe_load((out / "sweep.yaml").read_text())
    assert "method.lam" not in (record["sweep"].get("grid") or {})
    trials = sorted(p.parent.name for p in out.glob("*/config.yaml"))
    assert trials == ["indep_pg__s0", "pbrl_bellman__s0", "pbrl_value__s0"]
    for name in trials:
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert cfg["method"]["lam"] == 5.0 and cfg["method"]["num_iters"] == 4


def test_a_resume_whose_interpolation_resolves_differently_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "res"
    monkeypatch.setenv("PBRL_TEST_SCALE", "0.25")
    args = ["--smoke", "method.init_scale=${oc.env:PBRL_TEST_SCALE}", "method.num_iters=4"]
    assert main(["run", str(DEMO), "--out", str(out), "--no-report", *args]) == 0
    config = (out / "pbrl_value__lam=20.0__s0" / "config.yaml").read_text()
    assert "init_scale: 0.25" in config and "${" not in config
    monkeypatch.setenv("PBRL_TEST_SCALE", "0.5")
    capsys.readouterr()
    assert main(["run", "--resume", "--out", str(out)]) == 2
    # (a loaded machine may take > 2 s over the interpolated trials: progress lines are no error)
    err = "".join(
        ln
        for ln in capsys.readouterr().err.splitlines(True)
        if not ln.startswith("pbrl: expanding")
    )
    assert "--resume: the trials differ" in err and err.count("\n") == 1, err
    assert (out / "pbrl_value__lam=20.0__s0" / "config.yaml").read_text() == config
