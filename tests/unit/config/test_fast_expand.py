"""The template path of ``load_sweep`` (``loader._FastTrials``), ``dump_yaml``, the expansion progress
line and ``specs.QuickRespec`` give exactly what the full per-trial merge gives: the same trials,
the same YAML, the same first error. And ``pbrl report``'s faster reading of ``config.yaml`` and its
IQM give the numbers they gave before."""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
import yaml
from _trial_names import check_names_agree, check_same_trials, strictly_equal
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pbrl_dist.config import ConfigError, load_sweep, loader
from pbrl_dist.config.schema import SweepBlock
from pbrl_dist.launch import specs
from pbrl_dist.report import tables
from pbrl_dist.report.rl_stats import trim_mean_quarter

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "sweeps" / "demo_fig1.yaml"
SEARCH = ROOT / "sweeps" / "fig1_search.yaml"


def _both(
    monkeypatch: pytest.MonkeyPatch, path: Path, **kw: Any
) -> tuple[loader.Sweep, loader.Sweep, int]:
    """(template-path sweep, full-merge sweep, trials the template path left to the full merge)."""
    slow = []
    full = loader._slow_trial

    def counted(*a: Any, **k: Any) -> Any:
        slow.append(a)
        return full(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(loader, "_slow_trial", counted)
        fast = load_sweep(path, **kw)
    with monkeypatch.context() as m:
        m.setattr(loader, "FAST", False)
        reference = load_sweep(path, **kw)
    return fast, reference, len(slow)


def _error(monkeypatch: pytest.MonkeyPatch, fast: bool, path: Path, **kw: Any) -> str:
    with monkeypatch.context() as m:
        m.setattr(loader, "FAST", fast)
        with pytest.raises(ConfigError) as e:
            load_sweep(path, **kw)
    return str(e.value)


def _write(tmp_path: Path, edit: Any) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    edit(data)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_load_sweep_builds_a_plain_grid_from_templates_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, reference, slow = _both(monkeypatch, DEMO)
    assert slow == 0 and len(fast.trials) == 15  # (2 PBRL methods x 2 lam + indep_pg) x 3 seeds
    check_same_trials(fast, reference)


def test_load_sweep_template_path_types_each_grid_value_as_the_merge_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int → float, YAML-1.1 text "1e-3" → float (omegaconf's own conversion), bools, a float for
    a float field of ``dist``, several axes and seeds, the trial names read from the typed values."""

    def edit(data: dict[str, Any]) -> None:
        data["sweep"] = {
            "seeds": [4, 1],
            "grid": {
                "method.lam": [3, 2.5, "1e-3"],
                "method.warm_start": [True, False],
                "dist.cpus_per_trial": [0.5],
                "logging.project": ["p-2"],
            },
        }

    fast, reference, slow = _both(monkeypatch, _write(tmp_path, edit))
    # PBRL: 3 lam x 2 warm_start x 2 seeds per method; indep_pg reads neither axis: 2 seeds
    assert slow == 0 and len(fast.trials) == 2 * (3 * 2 * 2) + 2
    check_same_trials(fast, reference)
    check_names_agree(fast)
    pbrl = [t for t in fast.trials if t.cfg.method.algo == "pbrl"]  # indep_pg keeps its own lam
    lams = {type(t.container["method"]["lam"]) for t in pbrl}
    assert lams == {float} and {t.cfg.method.lam for t in pbrl} == {3.0, 2.5, 0.001}
    assert [t.cfg.seed for t in fast.trials[:13]] == [4] * 13  # seed-major, in sweep.seeds order
    assert {t.cfg.dist.cpus_per_trial for t in fast.trials} == {0.5}


def test_load_sweep_leaves_interpolations_to_the_full_merge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    over = ["method.lr_y=${method.lr_x}", "sweep.grid.method.lr_x=[0.1,0.2]"]
    fast, reference, slow = _both(monkeypatch, DEMO, smoke=True, overrides=over)
    # 10 trials (indep_pg does not read lam: one per lr_x); indep_pg's 4 full points are built to
    # learn what it reads, then its 2 trials without lam: 14 full merges, none by the template path
    assert len(fast.trials) == 10 and slow == 14
    check_same_trials(fast, reference)
    assert all(t.cfg.method.lr_y == t.cfg.method.lr_x for t in fast.trials)


def _outcome(monkeypatch: pytest.MonkeyPatch, fast: bool, **kw: Any) -> loader.Sweep | str:
    with monkeypatch.context() as m:
        m.setattr(loader, "FAST", fast)
        try:
            return load_sweep(**kw)
        except ConfigError as e:
            return str(e)


@pytest.mark.parametrize(
    "override",
    [
        "sweep.grid.method.lam=[5, -2]",  # a range check, at the second grid value
        "sweep.grid.method.lam=[5, abc]",  # not a float
        "sweep.grid.method.lam=[5, true]",  # a bool for a float
        "sweep.grid.problem.gamma=[0.5, 1.0]",  # a range check of the problem
        "sweep.grid.method.nope=[1, 2]",  # no such field
        "sweep.grid.method.algo=[pbrl, nope]",  # an axis that picks the schema
        "sweep.grid.method.oracle=[exact, nope]",  # a choice
        "sweep.grid.problem.tau=[0.1, 0.0]",  # tau > 0 with the Bellman penalty
        "sweep.grid.method={lam: -3}",  # a whole section as an axis value
        "sweep.grid.method.lam=[5, '${oc.env:PBRL_NOT_SET_ANYWHERE}']",  # cannot be resolved
        "method.lam=${nope}",  # an interpolation to nothing
        "logging.project=${oc.env:HOME}",  # a W&B project from the environment
        "sweep.grid.dist.num_oracles=[0, 2]",  # actors need dist.backend=ray
        "sweep.grid.dist.num_rollout_workers=[1, -1]",  # a count
        "sweep.grid.method.lam=[5, .nan]",  # not finite
    ],
)
def test_a_bad_grid_value_fails_with_the_same_message_on_both_paths(
    override: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args: dict[str, Any] = {"path": DEMO, "smoke": True, "overrides": [override]}
    reference = _outcome(monkeypatch, False, **args)
    assert isinstance(reference, str), override  # the full merge refuses it ...
    assert _outcome(monkeypatch, True, **args) == reference  # ... in the very same words


def test_a_trial_name_too_long_fails_with_the_same_message_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = {
        "path": DEMO,
        "smoke": True,
        "overrides": [f"sweep.grid.logging.project=[a,{'b' * 250}]"],
    }
    message = _error(monkeypatch, True, **args)
    assert message.startswith("sweep.grid: trial name") and message == _error(
        monkeypatch, False, **args
    )


def _block_direct(block: dict[str, Any]) -> Any:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepBlock), block))


@pytest.mark.parametrize(
    "block",
    [
        {"seeds": list(range(300))},
        {"seeds": [*range(100), True]},  # a bool among the seeds: omegaconf's own typing
        {"seeds": [*range(100), "7"]},  # text: omegaconf converts it
        {"grid": {"method.lam": [0.5 * i for i in range(200)], "problem.game": [0, 1]}},
        {"grid": {"a.b": [*range(70), 1.5, True, None, "x", "1e-3"]}},
        {"grid": {"a.b": [*range(70), [1, 2]]}},  # a list item: typed by omegaconf
        {"grid": {"a.b": [*range(70), "${x}"]}},  # an interpolation: left to omegaconf
        {"seeds": list(range(80)), "grid": {"a": list(range(99))}, "max_trials": 5},
    ],
    ids=lambda b: str(b)[:40],
)
def test_typed_sweep_block_is_omegaconf_typing(block: dict[str, Any]) -> None:
    def outcome(typing: Any) -> Any:
        try:
            return typing(block)
        except OmegaConfBaseException as e:  # the same error, in the same words
            return f"{type(e).__name__}: {e}"

    strictly_equal(outcome(loader.typed_sweep_block), outcome(_block_direct))


def test_typed_sweep_block_refuses_a_bad_seed_in_a_long_list_as_omegaconf_does() -> None:
    block = {"seeds": [*range(100), "x"]}
    with pytest.raises(OmegaConfBaseException) as want:
        _block_direct(block)
    with pytest.raises(OmegaConfBaseException) as got:
        loader.typed_sweep_block(block)
    assert str(got.value) == str(want.value) and "seeds[100]" in str(got.value)


_text = st.text(
    alphabet=st.sampled_from([*"ab :#'\"-?!&*{}[],|>%@`\n\t\\é€0.e+~", "\u2028", "\x85"]),
    max_size=90,
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(["yes", "no", "null", "~", "1e-3", "0x1F", "1_000", "True", "", " x", "x "]),
)
_keys = st.one_of(st.sampled_from(["lam", "a b", "1", "null", "x: y", "-", ""]), _text)
_docs = st.recursive(
    st.dictionaries(_keys, _scalar, min_size=1, max_size=5),
    lambda inner: st.dictionaries(_keys, st.one_of(_scalar, inner), min_size=1, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(doc=_docs)
def test_dump_yaml_is_yaml_safe_dump(doc: dict[str, Any]) -> None:
    assert loader.dump_yaml(doc) == yaml.safe_dump(doc, sort_keys=False)


def test_dump_yaml_of_long_text_shared_nodes_and_lists_is_yaml_safe_dump() -> None:
    shared = {"k": 1}
    for doc in (
        {"a": {"b": {"c": "word " * 40}}, "d": "word " * 40},
        {"a": shared, "b": shared},  # an anchor and an alias
        {"a": [1, 2], "b": {}},
        {"k" * 150: 1},
        {"a": {"b": -0.0, "c": 0.0, "d": float("nan"), "e": float("-inf")}},
        # one key, values equal in Python but written differently: the piece cache keeps them apart
        *({"a": v} for v in (0.0, -0.0, 1, 1.0, True, "1", None, "null", float("nan"))),
    ):
        assert loader.dump_yaml(doc) == yaml.safe_dump(doc, sort_keys=False)  # type: ignore[arg-type]


def test_expansion_progress_line_only_after_two_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]
    quick = loader._Progress(4, clock=lambda: now[0])
    for _ in range(4):
        now[0] += 0.4
        quick.step()
    quick.end()
    assert capsys.readouterr().err == ""
    slow = loader._Progress(5, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 0.9
        slow.step()
    slow.end()
    assert capsys.readouterr().err.splitlines() == [
        "pbrl: expanding 5 trials … 3/5",  # 2.7 s
        "pbrl: expanding 5 trials … 5/5",  # 4.5 s: 1.8 s later, the last count
    ]


@pytest.mark.parametrize("value", [5.0, 2, "7.5", -1.0, True, "abc", 1e300])
def test_quick_respec_is_respec_or_leaves_the_trial_to_it(value: Any) -> None:
    sweep = load_sweep(SEARCH, smoke=True, overrides=["sweep.grid.problem.game=[0,1]"])
    before = copy.deepcopy([t.cfg for t in sweep.trials])
    quick = specs.QuickRespec()
    for t, key in itertools.product(sweep.trials, ["method.lam", "problem.tau", "method.name"]):
        got = quick.cfg(t, key, value)
        try:
            want = specs.respec(t, {key: value}).cfg
        except ConfigError:
            assert got is None, (t.name, key)  # respec raises its own error
            continue
        assert got is not None, (t.name, key)
        strictly_equal(got, want, f"{t.name}:{key}")
    assert [t.cfg for t in sweep.trials] == before  # the trials themselves are untouched


def test_check_search_refuses_with_the_same_message_with_and_without_quick_respec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    over = ["sweep.search.problem.tau={uniform: [-1, 0.5]}"]
    sweep = load_sweep(SEARCH, smoke=True, overrides=over)
    block = specs.typed_block(sweep)
    with pytest.raises(ConfigError) as fast:
        specs.check_search(sweep, block)
    monkeypatch.setattr(specs.QuickRespec, "cfg", lambda *a: None)
    with pytest.raises(ConfigError) as full:
        specs.check_search(sweep, block)
    assert str(fast.value) == str(full.value)
    assert str(fast.value).startswith("sweep.search.problem.tau: value -1 is invalid for trial")


# --- pbrl report: the same numbers, faster ---------------------------------------------------------

SHIPPED = sorted([*ROOT.glob("sweeps/*.yaml"), *ROOT.glob("sweeps/variants/*.yaml")])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(doc=_docs)
def test_report_reads_config_yaml_as_yaml_safe_load(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, sort_keys=False)
    strictly_equal(tables._read_config(text), yaml.safe_load(text))


def test_report_reads_every_shipped_trial_config_as_yaml_safe_load() -> None:
    for path in SHIPPED:
        for t in load_sweep(path, smoke=True).trials:
            text = t.to_yaml()
            strictly_equal(tables._read_config(text), yaml.safe_load(text), t.name)
    with pytest.raises(yaml.YAMLError) as fast:
        tables._read_config("a: [1, 2\nb: 3\n")
    with pytest.raises(yaml.YAMLError) as slow:
        yaml.safe_load("a: [1, 2\nb: 3\n")
    assert str(fast.value) == str(slow.value)  # a damaged file: the pure-Python parser's words


def test_trim_mean_quarter_is_scipy_trim_mean_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    cases: list[np.ndarray] = []
    for i in range(400):
        a = rng.normal(size=(int(rng.integers(1, 60)), int(rng.integers(1, 5))))
        a *= 10 ** rng.uniform(-3, 3)
        if i % 3 == 1:
            a = np.round(a, 1)  # ties
        if i % 3 == 2:
            a = a[rng.integers(0, len(a), size=len(a))]  # a bootstrap resample
        cases += [a, a.T.copy().T]  # C and Fortran order
    nan = rng.normal(size=(9, 2))
    nan[3, 1] = np.nan
    cases += [nan, np.zeros((0, 3)), np.arange(12).reshape(6, 2), rng.normal(size=(4, 3, 2))]
    for a in cases:
        for axis in (None, 0):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = np.asarray(trim_mean_quarter(a, axis))
                want = np.asarray(scipy.stats.trim_mean(a, 0.25, axis=axis))
            assert got.shape == want.shape and got.tobytes() == want.tobytes(), (a.shape, axis)
