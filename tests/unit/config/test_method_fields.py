"""One method schema per loop: a method field the trial's algo/mode does not read is an error naming
it (exit 2, nothing written); allowed values come from the loops' own registries."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from pbrl_dist.algos import ALGO_SPECS
from pbrl_dist.algos.pbrl import ESTIMATORS
from pbrl_dist.cli import main
from pbrl_dist.config import ConfigError, load_sweep
from pbrl_dist.config.schema import CHOICES
from pbrl_dist.core.oracles import ORACLES

ROOT = Path(__file__).resolve().parents[3]
SWEEPS = ROOT / "sweeps"

METAGRAD_ONLY = """\
name: mg
problem: {name: incentive, num_states: 3, num_actions1: 2, num_actions2: 2}
method: {name: metagrad, algo: metagrad, estimator: mc, num_iters: 5, log_every: 5}
logging: {wandb: disabled}
"""
DRLHF_ONLY = """\
name: dr
problem: {name: toy_rlhf, num_envs: 2}
method: {name: drlhf, algo: rlhf, mode: drlhf, use_penalty_in_reward: true, total_env_steps: 100}
logging: {wandb: disabled}
"""


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(text, encoding="utf-8")
    return str(p)


CASES = [
    # method.penalty=bellman on the incentive sweep: no loop there has a penalty choice
    ("fig3", [str(SWEEPS / "fig3_incentive.yaml"), "method.penalty=bellman"], "method.penalty",
     "not read by algo metagrad, pbrl_ni, start_line"),
    # estimator=mc for the meta-gradient (its own methods: entry, or a file with that method alone)
    ("metagrad_entry", [str(SWEEPS / "fig3_incentive.yaml"), "methods.metagrad.estimator=mc"],
     "method.estimator", "not read by algo metagrad"),
    ("metagrad_file", [METAGRAD_ONLY], "method.estimator", "not read by algo metagrad"),
    # mode=drlhf with use_penalty_in_reward=true
    ("drlhf_entry", [str(SWEEPS / "rlhf_toy.yaml"), "methods.drlhf.use_penalty_in_reward=true"],
     "method.use_penalty_in_reward", "not read by algo rlhf in mode drlhf"),
    ("drlhf_file", [DRLHF_ONLY], "method.use_penalty_in_reward", "in mode drlhf"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "field", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_setting_the_loop_does_not_read_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str, says: str
) -> None:
    if not args[0].endswith(".yaml"):
        args = [_write(tmp_path, args[0]), *args[1:]]
    out = tmp_path / "out"
    assert main(["run", args[0], "--out", str(out), *args[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pbrl: error: {field}: ") and says in err[0], err[0]
    assert "trial " in err[0] and ".yaml" in err[0]
    assert not out.exists()
    assert main(["show", *args]) == 2


def test_shared_fields_some_method_reads_are_fine() -> None:
    """A shared method: block (or method.* override) sets fields for every method of the file."""
    sw = load_sweep(SWEEPS / "fig1_stackelberg.yaml", smoke=True, overrides=["method.oracle=pmd"])
    assert {t.cfg.method.oracle for t in sw.trials} == {"pmd"}  # indep_pg ignores it, pbrl reads it
    load_sweep(SWEEPS / "fig3_incentive.yaml", smoke=True, overrides=["method.estimator=mc"])
    load_sweep(SWEEPS / "rlhf_toy.yaml", smoke=True, overrides=["method.rm_lr=1e-3"])


def test_own_entry_field_not_read_is_an_error_even_at_its_default() -> None:
    with pytest.raises(ConfigError, match=r"method\.lam: not read by algo start_line"):
        load_sweep(SWEEPS / "fig3_incentive.yaml", overrides=["methods.start_line.lam=20.0"])


def test_allowed_values_come_from_the_registries() -> None:
    assert not any(k.startswith("method.") for k in CHOICES)
    pbrl = ALGO_SPECS["pbrl"]
    assert set(pbrl.choices["penalty"]) == {p for p, _ in ESTIMATORS}
    assert set(pbrl.choices["oracle"]) == set(ORACLES)
    with pytest.raises(ConfigError, match=r"method\.penalty: 'bellmann' .*did you mean 'bellman'"):
        load_sweep(SWEEPS / "fig1_stackelberg.yaml", overrides=["method.penalty=bellmann"])
    with pytest.raises(ConfigError, match=r"method\.estimator: 'mc2' .*pbrl_ni"):
        load_sweep(SWEEPS / "fig3_incentive.yaml", overrides=["method.estimator=mc2"])


@pytest.mark.parametrize(
    "path", sorted(SWEEPS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(SWEEPS))
)
def test_every_sweep_file_still_loads(path: Path) -> None:
    load_sweep(path)
    load_sweep(path, smoke=True)


@pytest.mark.parametrize(
    "path",
    [SWEEPS / "shaping_chain.yaml", ROOT / "examples" / "tax_design.yaml"],
    ids=lambda p: p.stem,
)
def test_an_estimator_the_problem_cannot_run_is_refused_before_anything_runs(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(path), "--smoke", "--out", str(out), "method.estimator=mc"]) == 2
    err = capsys.readouterr().err
    assert "method.estimator: problem" in err and "supports exact only (got mc)" in err
    assert not out.exists()


def test_a_search_axis_no_method_reads_is_an_error(tmp_path: Path) -> None:
    """``sweep.search`` axes count like grid axes: searching a field no method reads does nothing."""
    with pytest.raises(ConfigError, match=r"method\.penalty: not read by algo metagrad, pbrl_ni"):
        load_sweep(
            SWEEPS / "fig3_incentive.yaml",
            smoke=True,
            overrides=["sweep.search={method.penalty: {choice: [value, bellman]}}"],
        )
    # a searched field some method reads is fine (fig1_search searches lam and lr_x of PBRL)
    assert load_sweep(SWEEPS / "fig1_search.yaml", smoke=True).trials


def test_a_grid_axis_a_method_does_not_read_multiplies_only_the_methods_that_read_it() -> None:
    """``indep_pg`` has no oracle: a grid over ``method.oracle`` runs it once per game, not per value,
    under its own settings, and the sweep's notes say so."""
    sw = load_sweep(
        SWEEPS / "fig1_stackelberg.yaml",
        smoke=True,
        overrides=["sweep.grid.method.oracle=[exact,pmd]"],
    )
    per_method = Counter(t.cfg.method.name for t in sw.trials)
    assert per_method == {"pbrl_value": 4, "pbrl_bellman": 4, "indep_pg": 2}  # 2 games x 1 seed
    indep = [t for t in sw.trials if t.cfg.method.name == "indep_pg"]
    assert [t.name for t in indep] == ["indep_pg__game=0__s0", "indep_pg__game=1__s0"]
    assert {t.cfg.method.oracle for t in indep} == {"exact"}  # the file's value, not an axis value
    pbrl = {
        (t.cfg.problem.game, t.cfg.method.oracle) for t in sw.trials if t.cfg.method.algo == "pbrl"
    }
    assert pbrl == {(g, o) for g in (0, 1) for o in ("exact", "pmd")}
    assert sw.notes == [
        "sweep.grid.method.oracle: method indep_pg (algo indep_pg) does not read it, so it runs once, "
        "not once per value"
    ]


def test_monte_carlo_fields_multiply_only_the_monte_carlo_methods() -> None:
    """An exact gradient draws no rollouts: a grid over ``method.mc_batch`` runs the exact methods once
    (a note each), the Monte Carlo one once per value; ``mc_q_batch`` is read by the Bellman penalty's
    Monte Carlo estimate only."""
    sw = load_sweep(
        SWEEPS / "fig1_stackelberg.yaml",
        smoke=True,
        overrides=[
            "sweep.grid.problem.game=[0]",
            "methods.pbrl_value.estimator=mc",
            "sweep.grid.method.mc_batch=[32,64]",
        ],
    )
    per_method = Counter(t.cfg.method.name for t in sw.trials)
    assert per_method == {"pbrl_value": 2, "pbrl_bellman": 1, "indep_pg": 1}
    assert {t.cfg.method.mc_batch for t in sw.trials if t.cfg.method.name == "pbrl_value"} == {
        32,
        64,
    }
    assert sorted(sw.notes) == [
        f"sweep.grid.method.mc_batch: method {m} (algo {a}) does not read it, so it runs once, "
        "not once per value"
        for m, a in (("indep_pg", "indep_pg"), ("pbrl_bellman", "pbrl"))
    ]
    reads = ALGO_SPECS["pbrl"].fields_read
    base = load_sweep(SWEEPS / "fig1_stackelberg.yaml", smoke=True).trials
    value, bellman = (next(t.cfg.method for t in base if t.cfg.method.name == n)
                      for n in ("pbrl_value", "pbrl_bellman"))  # fmt: skip
    assert "mc_batch" not in reads(value) and "mc_q_batch" not in reads(bellman)  # exact
    mc = dataclasses.replace(bellman, estimator="mc")
    assert {"mc_batch", "mc_q_batch"} <= reads(mc)
    assert "mc_q_batch" not in reads(dataclasses.replace(value, estimator="mc"))
    # setting them for exact methods is allowed (a file switches estimator per method)
    load_sweep(SWEEPS / "fig1_stackelberg.yaml", smoke=True, overrides=["method.mc_batch=64"])
    # but a grid over them with no Monte Carlo method would never run its values
    with pytest.raises(
        ConfigError, match=r"sweep.grid.method.mc_batch: no method of the sweep reads it"
    ):
        load_sweep(
            SWEEPS / "fig1_stackelberg.yaml",
            smoke=True,
            overrides=["sweep.grid.method.mc_batch=[32,64]"],
        )


def test_a_grid_axis_a_mode_does_not_read_runs_that_method_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The A2C baseline of the RLHF sweep has no teacher: a teacher-noise grid runs it once (the note is
    printed before the run), DRLHF and PBRL once per value."""
    sw = load_sweep(
        SWEEPS / "rlhf_toy.yaml",
        smoke=True,
        overrides=["sweep.grid.method.teacher_error_rate=[0.0,0.2]"],
    )
    assert sorted(t.name for t in sw.trials) == [
        "a2c_oracle__s0",
        "drlhf__teacher_error_rate=0.0__s0",
        "drlhf__teacher_error_rate=0.2__s0",
        "pbrl__teacher_error_rate=0.0__s0",
        "pbrl__teacher_error_rate=0.2__s0",
    ]
    assert main(["show", str(SWEEPS / "rlhf_toy.yaml"), "--smoke",
                 "sweep.grid.method.teacher_error_rate=[0.0,0.2]"]) == 0  # fmt: skip
    got = capsys.readouterr()
    shown = got.out + got.err
    assert (
        "# sweep.grid.method.teacher_error_rate: method a2c_oracle (algo rlhf in mode a2c_oracle) does not "
        "read it" in shown
    )
    assert "# 5 of 5 trials" in shown


def test_a_grid_axis_no_method_reads_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match=r"method\.penalty: not read by algo metagrad, pbrl_ni"):
        load_sweep(
            SWEEPS / "fig3_incentive.yaml",
            smoke=True,
            overrides=["sweep.grid.method.penalty=[value,bellman]"],
        )


def test_a_search_axis_one_method_does_not_read_is_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """indep_pg has no lam: its λ samples would all be one run (a search cannot drop the axis for
    one method as a grid does), so the sweep is refused, naming the axis and the method."""
    args = [str(SWEEPS / "fig1_stackelberg.yaml"), "--smoke"]
    search = "sweep.search={method.lam: {loguniform: [2.0, 200.0]}}"
    with pytest.raises(ConfigError, match=r"^sweep\.search\.method\.lam: method indep_pg \(algo "):
        load_sweep(args[0], smoke=True, overrides=[search])
    assert main(["show", *args, search]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "so its samples would be copies of one run" in err[0], err
    # without indep_pg every method reads it
    assert load_sweep(SWEEPS / "fig1_search.yaml", smoke=True).trials
