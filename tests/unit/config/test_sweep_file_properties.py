"""Property-based: for generated sweep files and overrides, ``pbrl run`` either refuses in one line
(exit 2, nothing written) or runs trials whose ``config.yaml`` is exactly the config that ran and whose
names agree with it, with every override honoured (``config/loader.py``, ``cli.py``)."""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from _trial_names import check_names_agree
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pbrl_dist.cli import main
from pbrl_dist.config import ConfigError, load_sweep

DEMO = Path(__file__).resolve().parents[3] / "sweeps" / "demo_fig1.yaml"
BASE: dict[str, Any] = yaml.safe_load(DEMO.read_text())
BASE["logging"] = {"wandb": "disabled", "progress_every_s": 60}
BASE["method"]["num_iters"] = 3
BASE["method"]["log_every"] = 1
BASE["sweep"]["seeds"] = [0]
del BASE["smoke"]

lams = st.sampled_from([1.0, 5.0, 20.0, 80.0])
lrs = st.sampled_from([0.05, 0.1, 0.2])
METHODS = ["pbrl_value", "pbrl_bellman", "indep_pg"]

# Edits of the file as data: (description, function of the dict).
file_edits = st.one_of(
    st.tuples(st.just("method.lam"), lams),
    st.tuples(st.just("grid.method.lam"), st.lists(lams, min_size=1, max_size=2, unique=True)),
    st.tuples(st.just("grid.method.lr_x"), st.lists(lrs, min_size=1, max_size=2, unique=True)),
    st.tuples(
        st.just("grid.problem.game"),
        st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
    ),
    st.tuples(st.just("methods.lr_x"), st.tuples(st.sampled_from(METHODS), lrs)),
    st.tuples(st.just("seeds"), st.lists(st.integers(0, 5), min_size=1, max_size=2, unique=True)),
    # malformed structure, each of which must be refused in one line
    st.tuples(st.just("sweep"), st.sampled_from([5, "x", [1, 2]])),
    st.tuples(st.just("methods"), st.sampled_from([["a", "b"], 5])),
    st.tuples(st.just("method"), st.sampled_from([5, "pbrl", [1]])),
    st.tuples(st.just("top.seed"), st.integers(0, 3)),
    st.tuples(st.just("grid.seed"), st.lists(st.integers(0, 3), min_size=1, max_size=2)),
    st.tuples(st.just("long_name"), st.integers(65, 300)),
    st.tuples(st.just("deep"), st.integers(20, 60)),
    st.tuples(st.just("unknown"), st.sampled_from(["methodz", "sweeps", "problems"])),
    st.tuples(st.just("duplicate"), st.sampled_from(["name: again", "problem: {game: 1}"])),
)

overrides = st.one_of(
    st.builds(lambda v: f"method.lam={v}", lams),
    st.builds(lambda v: f"method.lr_x={v}", lrs),
    st.builds(lambda m, v: f"methods.{m}.lr_x={v}", st.sampled_from(METHODS), lrs),
    st.builds(lambda g: f"problem.game={g}", st.integers(0, 3)),
    st.builds(lambda s: f"sweep.seeds=[{s}]", st.integers(0, 4)),
    st.just("method.lr_y=${method.lr_x}"),
    st.just("seed=2"),
    st.builds(lambda v: f"sweep.grid.method.lam=[{v}]", lams),
)


def _apply(data: dict[str, Any], edit: tuple[str, Any]) -> str | None:
    """Apply one edit; return extra YAML text to append (a duplicate key), if any."""
    kind, v = edit
    if not all(isinstance(data.get(k), dict) for k in ("method", "methods", "sweep", "problem")):
        data[kind.split(".")[0]] = v  # an earlier edit broke the structure; this one adds to it
        return None
    if not isinstance(data["sweep"].get("grid"), dict):
        data["sweep"]["grid"] = {}
    if kind == "method.lam":
        data["method"]["lam"] = v
    elif kind.startswith("grid."):
        data["sweep"]["grid"][kind[len("grid.") :]] = v
    elif kind == "methods.lr_x" and isinstance(data["methods"].get(v[0]), dict):
        data["methods"][v[0]]["lr_x"] = v[1]
    elif kind == "seeds":
        data["sweep"]["seeds"] = v
    elif kind in ("sweep", "methods", "method"):
        data[kind] = v
    elif kind == "top.seed":
        data["seed"] = v
    elif kind == "long_name":
        data["methods"]["m" * v] = {"algo": "indep_pg", "lr_x": 0.5, "lr_y": 0.5}
    elif kind == "deep":
        node: Any = 1
        for _ in range(v):
            node = {"a": node}
        data["problem"]["nested"] = node
    elif kind == "unknown":
        data[v] = {}
    elif kind == "duplicate":
        return v + "\n"  # a top-level key given a second time
    return None


def _expected(ovs: list[str]) -> dict[tuple[str, str], Any]:
    """(method or '*', dotted key) → the value every such trial must run, from plain overrides."""
    want: dict[tuple[str, str], Any] = {}
    for ov in ovs:
        key, text = ov.split("=", 1)
        if key.startswith(("sweep.", "seed")) or "${" in text:
            continue
        value = yaml.safe_load(text)
        if key.startswith("methods."):
            _, m, leaf = key.split(".")
            want[(m, f"method.{leaf}")] = value
        else:
            want[("*", key)] = value
    return want


def _value(container: dict[str, Any], key: str) -> Any:
    node: Any = container
    for part in key.split("."):
        node = node[part]
    return node


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(file_edits, max_size=3), ovs=st.lists(overrides, max_size=3))
def test_a_generated_sweep_runs_as_recorded_or_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edits: list[Any], ovs: list[str]
) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    data = copy.deepcopy(BASE)
    extra = "".join(_apply(data, edit) or "" for edit in edits)
    path = work / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) + extra)
    out = work / "out"
    capsys.readouterr()
    try:
        sweep = load_sweep(path, overrides=ovs)
    except ConfigError as e:
        event(f"refused: {str(e).replace(str(path), 'FILE')[:70]}")
        rc = main(["run", str(path), "--out", str(out), *ovs])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and err.startswith("pbrl: error: "), err
        assert not out.exists()
        return
    check_names_agree(sweep)
    want = _expected(ovs)
    for t in sweep.trials:
        for (m, key), value in want.items():
            if m in ("*", t.cfg.method.name) and (t.cfg.method.name, key) not in want:
                assert math.isclose(_value(t.container, key), value), (t.name, key)
            if m == t.cfg.method.name:
                assert math.isclose(_value(t.container, key), value), (t.name, key)
    if len(sweep.trials) > 8:
        event("loaded, not run")
        return  # the loader's properties above hold; running is for small sweeps
    event("ran")
    rc = main(["run", str(path), "--out", str(out), "--no-report", *ovs])
    assert rc == 0, capsys.readouterr().err
    for t in sweep.trials:
        assert yaml.safe_load((out / t.name / "config.yaml").read_text()) == t.container
    assert sorted(p.parent.name for p in out.glob("*/config.yaml")) == sorted(
        t.name for t in sweep.trials
    )
    shutil.rmtree(work)
