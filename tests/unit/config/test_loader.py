"""Sweep files: expansion, overrides, and bad input stopped with one message naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbrl_dist.cli import main
from pbrl_dist.config import ConfigError, load_sweep

ROOT = Path(__file__).resolve().parents[3]
FIG1 = ROOT / "sweeps" / "fig1_stackelberg.yaml"


def test_fig1_expands_methods_games_seeds() -> None:
    sw = load_sweep(FIG1)
    assert len(sw.trials) == 3 * 10 * 3
    names = {t.name for t in sw.trials}
    assert "pbrl_value__game=3__s1" in names
    t = next(t for t in sw.trials if t.name == "pbrl_bellman__game=3__s1")
    assert t.cfg.method.penalty == "bellman" and t.cfg.method.lam == 200.0
    assert t.cfg.problem.game == 3 and t.cfg.seed == 1 and t.cfg.method.num_iters == 2000
    assert {"problem", "method", "seed"} <= set(t.container)


def test_trials_run_seed_major() -> None:
    """Every method and grid point of a seed comes before the next seed: a sweep stopped part-way has
    compared the methods on the same seeds."""
    seeds = [t.cfg.seed for t in load_sweep(FIG1).trials]
    assert seeds == sorted(seeds, key=[0, 1, 2].index) and seeds[:30] == [0] * 30
    first = [t.name for t in load_sweep(FIG1).trials[:3]]
    assert [n.split("__")[0] for n in first] == ["pbrl_value", "pbrl_value", "pbrl_value"]
    methods = {t.name.split("__")[0] for t in load_sweep(FIG1).trials[:30]}
    assert methods == {"pbrl_value", "pbrl_bellman", "indep_pg"}


def test_smoke_and_overrides_apply_last() -> None:
    sw = load_sweep(
        FIG1, smoke=True, overrides=["method.lam=7", "method.num_iters=5", "sweep.seeds=[4]"]
    )
    assert len(sw.trials) == 3 * 2 * 1
    assert all(
        t.cfg.method.lam == 7.0 and t.cfg.method.num_iters == 5 and t.cfg.seed == 4
        for t in sw.trials
    )


BAD = [
    (["method.lamb=3"], "method.lamb"),
    (["method.lam=abc"], "method.lam"),
    (["method.lam=-1"], "method.lam"),
    (["problem.gamma=1.0"], "problem.gamma"),
    (["problem.tau=0"], "problem.tau"),  # Bellman penalty (and the exact oracle) need τ > 0
    (["problem.num_states=0"], "problem.num_states"),
    (["method.penalty=huber"], "method.penalty"),
    (["problem.name=chess"], "problem.name"),
    (["nonsense.key=1"], "nonsense"),
    (["sweep.grid.problem.game=[]"], "sweep.grid.problem.game"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD)
def test_bad_input_names_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_sweep(FIG1, smoke=True, overrides=overrides)
    assert str(e.value).startswith(field), str(e.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: {name: stackelberg\nmethod: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_sweep(bad)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("problem: {name: stackelberg}\nmethodz: {}\n")
    with pytest.raises(ConfigError, match=r"^methodz: unknown top-level key"):
        load_sweep(unknown)


def test_cli_bad_input_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res"
    rc = main(["run", str(FIG1), "--smoke", "--out", str(out), "method.lam=-2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "method.lam: must be ≥ 0 (got -2" in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_non_empty_out_without_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    rc = main(["run", str(FIG1), "--smoke", "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]


DEMO_TEXT = (ROOT / "sweeps" / "demo_fig1.yaml").read_text()
MALFORMED = {
    "methods-list": ("methods: [a, b]\n", "methods: must be a mapping"),
    "sweep-int": ("sweep: 5\n", "sweep: must be a mapping"),
    "method-int": ("method: 5\n", "method: must be a mapping"),
    "deep": ("problem: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested deeper than 16"),
    "long-name": (
        "methods:\n  " + "m" * 300 + ": {algo: indep_pg}\n",
        "methods.mmmm",
    ),
    "duplicate": (None, "key 'lam' is given twice"),
    "top-seed": ("seed: 3\n", "seed: the seeds of a sweep are its seed axis sweep.seeds"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_sweep_file_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each structural error: exit 2, one line naming the key, no results folder."""
    text, expect = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    if text is None:  # a key given twice in one mapping (YAML would keep the last one silently)
        path.write_text(
            DEMO_TEXT.replace(
                "    lr_x: 0.125\n", "    lam: 1.0\n    lr_x: 0.125\n    lam: 2.0\n", 1
            )
        )
    else:
        # the malformed node replaces the file's own (a top-level key given twice is refused too)
        top = text.split(":")[0]
        kept = [ln for ln in DEMO_TEXT.split("\n\n") if not ln.startswith(f"{top}:")]
        path.write_text("\n\n".join(kept) + "\n" + text)
    out = tmp_path / "out"
    rc = main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and expect in err, err
    assert not out.exists()


def test_a_deep_or_duplicated_override_value_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^method\.x: the value is nested deeper"):
        load_sweep(FIG1, smoke=True, overrides=["method.x=" + "[" * 500 + "]" * 500])
    with pytest.raises(ConfigError, match=r"^problem: key 'a' is given twice"):
        load_sweep(FIG1, smoke=True, overrides=["problem={a: 1, a: 2}"])
