"""W&B sink: one run id per launch of a trial, the sweep's mode decision, offline runs on disk, and
what a run carries (group per launch, flat config with the swept keys, tags, x axis, end status).

No network: "reachable" is a listening socket on 127.0.0.1, "unreachable" a port just closed or a
documentation address (192.0.2.1, never routed).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.config.loader import TrialSpec, load_sweep
from pbrl_dist.launch import wandb_sink
from pbrl_dist.launch.wandb_sink import (
    decide_mode,
    end_summary,
    flat_config,
    init_kwargs,
    new_launch_id,
    open_wandb,
    run_id,
    step_metric,
    swept_keys,
    wandb_group,
)

ROOT = Path(__file__).resolve().parents[3]
ID_CHARS = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEY = "k" * 40


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B variables from the caller, and a netrc that does not exist (not the user's)."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A TCP server that accepts connections (the kernel's backlog answers; nothing is read)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.fixture
def spec(tmp_path: Path) -> TrialSpec:
    return load_sweep(tiny_sweep_file(tmp_path, wandb="offline")).trials[0]


# ---- run ids -------------------------------------------------------------------------------------


def test_run_id_is_the_same_for_the_same_launch_and_trial() -> None:
    launch = new_launch_id()
    assert run_id(launch, "pbrl_value__s0") == run_id(launch, "pbrl_value__s0")
    assert run_id(launch, "pbrl_value__s0").startswith("pbrl_value__s0-")


def test_run_id_differs_between_launches_and_between_trials() -> None:
    a, b = new_launch_id(), new_launch_id()
    assert a != b
    assert run_id(a, "pbrl_value__s0") != run_id(b, "pbrl_value__s0")
    assert run_id(a, "pbrl_value__s0") != run_id(a, "pbrl_value__s1")
    # 16 experiments with the same sweep and trial names no longer share one id.
    assert len({run_id(new_launch_id(), "pbrl_value__s0") for _ in range(16)}) == 16


def test_launch_id_is_12_hex_and_run_id_keeps_the_wandb_charset() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", new_launch_id())
    for trial in ("pbrl_value__s0", "a b/c:d,lam=0.5", "λ" * 10, "x" * 300, ""):
        rid = run_id("0123456789ab", trial)
        assert ID_CHARS.fullmatch(rid), rid
    long = run_id("0123456789ab", "x" * 300)
    assert run_id("0123456789ab", "x" * 299) != long  # the hash covers the whole name


# ---- decide_mode ---------------------------------------------------------------------------------


def test_disabled_and_offline_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    assert decide_mode("disabled") == ("disabled", None)
    assert decide_mode("offline") == ("offline", None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert decide_mode("online") == ("disabled", None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert decide_mode("offline") == ("offline", None)


def test_online_without_a_key_is_offline_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    mode, note = decide_mode("online")
    assert mode == "offline" and note is not None
    assert "API key" in note and "wandb sync OUT/*/wandb/offline-run-*" in note
    assert "\n" not in note
    monkeypatch.setenv("WANDB_MODE", "online")  # the env var asks for online too
    assert decide_mode("offline")[0] == "offline"


def test_online_with_a_key_but_unreachable_api_is_offline_within_seconds(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port}")
    t0 = time.perf_counter()
    mode, note = decide_mode("online")
    assert time.perf_counter() - t0 < 5.0
    assert mode == "offline" and note is not None
    assert f"127.0.0.1:{closed_port}" in note and "not reachable" in note
    assert "wandb sync OUT/*/wandb/offline-run-*" in note and "\n" not in note
    assert KEY not in note


def test_a_silent_api_host_costs_at_most_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", "https://192.0.2.1")  # TEST-NET-1: never answers
    t0 = time.perf_counter()
    mode, note = decide_mode("online", timeout_s=0.5)
    assert time.perf_counter() - t0 < 3.0
    assert mode == "offline" and note is not None and "192.0.2.1" in note


@pytest.mark.parametrize("machine", ["netloc", "host"])
def test_a_netrc_key_counts(
    machine: str, listening_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `wandb login` writes "machine <host[:port]> login user password <key>" for the API host.
    name = f"127.0.0.1:{listening_port}" if machine == "netloc" else "127.0.0.1"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {name}\n  login user\n  password {KEY}\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listening_port}")
    assert decide_mode("online") == ("online", None)
    # A key for another host does not count.
    netrc.write_text(f"machine api.example.org login user password {KEY}\n", encoding="utf-8")
    mode, note = decide_mode("online")
    assert mode == "offline" and note is not None and "API key" in note and KEY not in note


def test_online_with_env_key_and_reachable_api_is_online(
    listening_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listening_port}/")
    assert decide_mode("online") == ("online", None)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert decide_mode("offline") == ("online", None)


# ---- open_wandb ----------------------------------------------------------------------------------


class FakeRun:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs, self.logged, self.finished = kwargs, [], None
        self.id = kwargs["id"]
        self.axes: list[tuple[str, str | None]] = []
        self.summary: dict[str, Any] = {}

    def log(self, row: dict, step: int | None = None) -> None:
        self.logged.append((step, row))

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        self.axes.append((name, step_metric))

    def finish(self, exit_code: int = 0) -> None:
        self.finished = exit_code


def test_the_drivers_mode_overrides_the_trials_own(
    spec: TrialSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = pytest.importorskip("wandb")
    calls: list[dict[str, Any]] = []

    def fake_init(**kwargs: Any) -> FakeRun:
        calls.append(kwargs)
        return FakeRun(kwargs)

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setenv("WANDB_MODE", "online")  # would ask for online (and probe) on its own
    sink = open_wandb(spec, tmp_path / "t", group="g", launch_id="0123456789ab", mode="offline")
    assert sink is not None and len(calls) == 1
    kw = calls[0]
    assert kw["mode"] == "offline" and kw["resume"] == "allow" and kw["group"] == "g/01234567"
    assert kw["id"] == run_id("0123456789ab", spec.name) and kw["dir"] == str(tmp_path / "t")
    assert open_wandb(spec, tmp_path / "t", launch_id="x", mode="disabled") is None
    with pytest.raises(ValueError, match="online, offline or disabled"):
        open_wandb(spec, tmp_path / "t", launch_id="x", mode="dryrun")


def test_a_failed_online_start_falls_back_to_offline(
    spec: TrialSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wandb = pytest.importorskip("wandb")
    modes: list[str] = []

    def flaky_init(**kwargs: Any) -> FakeRun:
        modes.append(kwargs["mode"])
        if kwargs["mode"] == "online":
            raise TimeoutError("init timed out\nmore")
        return FakeRun(kwargs)

    monkeypatch.setattr(wandb, "init", flaky_init)
    sink = open_wandb(spec, tmp_path / "t", launch_id="0123456789ab", mode="online")
    assert sink is not None and modes == ["online", "offline"]
    said = [x for x in capsys.readouterr().out.splitlines() if "W&B" in x]
    assert len(said) == 1 and "TimeoutError: init timed out" in said[0] and "wandb sync" in said[0]


def test_an_offline_run_leaves_a_folder_wandb_sync_uploads(spec: TrialSpec, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    launch = new_launch_id()
    trial_dir = tmp_path / spec.name
    sink = open_wandb(spec, trial_dir, group="tiny", launch_id=launch, mode="offline")
    assert sink is not None
    try:
        assert sink.run.id == run_id(launch, spec.name)
        sink.log({"iter": 10, "upper/leader_return": 0.5, "per_game": [1.0, 3.0]})
        sink.log({"iter": 20, "upper/leader_return": 0.75, "per_game": [2.0, 4.0]})
    finally:
        sink.close()
        wandb_sink.teardown()
    runs = list((trial_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(run_id(launch, spec.name))
    files = list(runs[0].glob("run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0


# ---- what a run carries --------------------------------------------------------------------------

RECORD = {
    "name": "demo",
    "sweep": {"seeds": [0, 1], "grid": {"method.lam": [5.0, 20.0], "problem.game": [0]}},
    "trials": ["pbrl_value__lam=5.0__s0", "indep_pg__lam=5.0__s0"],
    "launch_id": "0123456789ab",
    "smoke": True,
    "overrides": ["method.num_iters=7", "method.lr_x=0.2"],
    "command": "pbrl run demo.yaml --smoke method.num_iters=7 method.lr_x=0.2",
}


def test_wandb_group_is_the_sweep_and_the_launch_kind_and_id() -> None:
    assert wandb_group("demo", "0123456789ab", {"smoke": True}) == "demo/smoke-01234567"
    assert wandb_group("demo", "fedcba987654", {"smoke": False}) == "demo/full-fedcba98"
    # A record that does not say smoke or full (e.g. confirm's) and no launch id: what is known.
    assert wandb_group("demo", "0123456789ab", {}) == "demo/01234567"
    assert wandb_group("demo", "", {}) == "demo"


def test_flat_config_makes_dotted_keys_and_keeps_lists_as_values() -> None:
    nested = {"method": {"lam": 20.0, "hidden": [64, 64], "by_game": {}}, "seed": 3}
    assert flat_config(nested) == {
        "method.lam": 20.0,
        "method.hidden": [64, 64],
        "method.by_game": {},
        "seed": 3,
    }
    assert flat_config({"a": {"b": {"c": 1}}}) == {"a.b.c": 1}


def test_swept_keys_are_what_varies_between_the_launchs_trials(spec: TrialSpec) -> None:
    # spec is pbrl_value: another method in the trial list makes method.name swept; a one-value
    # grid axis is not swept; two seeds are.
    assert swept_keys(spec, RECORD) == ["method.name", "method.lam", "seed"]
    one = {"sweep": {"seeds": [0], "search": {"method.lr_x": {"loguniform": [0.01, 0.5]}}},
           "trials": ["pbrl_value__s0"]}  # fmt: skip
    assert swept_keys(spec, one) == ["method.lr_x"]
    assert swept_keys(spec, {}) == []


def test_init_kwargs_carry_group_job_type_tags_notes_and_flat_config(
    spec: TrialSpec, tmp_path: Path
) -> None:
    kw = init_kwargs(spec, tmp_path / "t", group="demo", launch_id="0123456789ab", record=RECORD)
    assert kw["group"] == "demo/smoke-01234567" and kw["job_type"] == "pbrl_value"
    assert kw["tags"] == ["pbrl_value", "stackelberg", "smoke", "exact"]
    assert kw["notes"] == RECORD["command"] and kw["id"] == run_id("0123456789ab", spec.name)
    cfg = kw["config"]
    assert cfg["method.lam"] == spec.cfg.method.lam and cfg["problem.name"] == "stackelberg"
    assert not any(isinstance(v, dict) and v for v in cfg.values())
    assert cfg["swept"] == ["method.name", "method.lam", "seed"]
    assert cfg["launch.overrides"] == "method.num_iters=7 method.lr_x=0.2"
    assert cfg["launch.kind"] == "smoke" and cfg["launch.id"] == "0123456789ab"


def test_a_monte_carlo_method_is_tagged_mc_and_rlhf_has_no_estimator_tag(tmp_path: Path) -> None:
    mc = load_sweep(tiny_sweep_file(tmp_path), overrides=["method.estimator=mc"]).trials[0]
    kw = init_kwargs(mc, tmp_path, group=None, launch_id="", record={"smoke": False})
    assert kw["tags"] == ["pbrl_value", "stackelberg", "full", "mc"]
    rl = load_sweep(ROOT / "sweeps/rlhf_toy.yaml", smoke=True).trials[-1]
    kw = init_kwargs(rl, tmp_path, group=None, launch_id="", record={})
    assert kw["tags"] == ["pbrl", "toy_rlhf"] and kw["group"] == "rlhf_toy"


def test_step_metric_is_env_frames_for_rl_and_iter_for_tabular(
    spec: TrialSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert step_metric(spec) == "iter"
    rl = load_sweep(ROOT / "sweeps/rlhf_toy.yaml", smoke=True).trials[0]
    assert step_metric(rl) == "env_frames"
    wandb = pytest.importorskip("wandb")
    runs: list[FakeRun] = []
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.append(FakeRun(kw)) or runs[-1])
    assert open_wandb(rl, tmp_path / "rl", launch_id="ab", mode="offline") is not None
    assert open_wandb(spec, tmp_path / "tab", launch_id="ab", mode="offline") is not None
    assert runs[0].axes == [("env_frames", None), ("*", "env_frames")]
    assert runs[1].axes == [("iter", None), ("*", "iter")]


def test_open_wandb_reads_the_record_beside_the_trial_folder(
    spec: TrialSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    wandb = pytest.importorskip("wandb")
    runs: list[FakeRun] = []
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.append(FakeRun(kw)) or runs[-1])
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(RECORD), encoding="utf-8")
    open_wandb(spec, tmp_path / spec.name, group="demo", launch_id="0123456789ab", mode="offline")
    (tmp_path / "sweep.yaml").write_text("- not\n- a record\n", encoding="utf-8")
    open_wandb(spec, tmp_path / spec.name, group="demo", launch_id="0123456789ab", mode="offline")
    assert runs[0].kwargs["group"] == "demo/smoke-01234567"
    assert runs[1].kwargs["group"] == "demo/01234567"  # unreadable record: what is known


def test_a_failing_define_metric_costs_one_line_not_the_run(
    spec: TrialSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wandb = pytest.importorskip("wandb")

    class NoAxes(FakeRun):
        def define_metric(self, name: str, step_metric: str | None = None) -> None:
            raise RuntimeError("no metrics today")

    monkeypatch.setattr(wandb, "init", lambda **kw: NoAxes(kw))
    sink = open_wandb(spec, tmp_path / "t", launch_id="ab", mode="offline")
    assert sink is not None
    sink.log({"iter": 10, "upper/leader_return": 1.0})
    assert sink.run.logged == [(10, {"iter": 10, "upper/leader_return": 1.0})]
    said = [x for x in capsys.readouterr().out.splitlines() if "W&B" in x]
    assert said == ["    W&B define_metric failed (RuntimeError: no metrics today)"]


def test_end_summary_says_complete_diverged_interrupted_or_failed() -> None:
    from pbrl_dist.metrics import Diverged

    assert end_summary(True) == {"status": "complete"}
    div = Diverged("lower/gap", 30, {"iter": 30})
    assert end_summary(False, div) == {
        "status": "diverged",
        "diverged_metric": "lower/gap",
        "diverged_iter": 30,
    }
    seen = []
    for error in (KeyboardInterrupt, RuntimeError):
        try:
            try:
                raise error
            finally:
                seen.append(end_summary(False)["status"])
        except BaseException:
            pass
    assert seen == ["interrupted", "failed"]


def test_close_puts_the_summary_before_finishing(spec: TrialSpec, tmp_path: Path) -> None:
    run = FakeRun({"id": "x"})
    order: list[str] = []
    run.finish = lambda exit_code=0: order.append(f"finish {exit_code} {run.summary}")  # type: ignore[method-assign]
    wandb_sink.WandbSink(run).close(exit_code=1, summary={"status": "failed"})
    assert order == ["finish 1 {'status': 'failed'}"]


def test_own_second_waits_until_no_earlier_launch_folder_has_this_seconds_stamp(
    tmp_path: Path,
) -> None:
    """W&B stamps a launch's folder to the second: a resume within that second must not reuse it."""
    import datetime

    wdir = tmp_path / "wandb"
    wdir.mkdir()
    wandb_sink._own_second(tmp_path, "rid1")  # nothing there: no wait
    now = datetime.datetime.now()
    (wdir / f"offline-run-{now:%Y%m%d_%H%M%S}-rid1").mkdir()
    (wdir / f"offline-run-{now:%Y%m%d_%H%M%S}-other").mkdir()
    wandb_sink._own_second(tmp_path, "rid1")
    after = datetime.datetime.now()
    assert f"{after:%Y%m%d_%H%M%S}" != f"{now:%Y%m%d_%H%M%S}"
    t0 = time.perf_counter()
    wandb_sink._own_second(tmp_path, "other2")  # another run's folder does not make it wait
    assert time.perf_counter() - t0 < 0.5
