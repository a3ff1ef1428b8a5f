"""A trial that ends without its ``result.json`` is "stopped by the scheduler" only when there is a
scheduler and Ctrl-C has not come; otherwise it is unfinished and ``--resume`` runs it again.

Ctrl-C from a terminal reaches the trial processes too; one caught while finishing (W&B's last upload
raised MailboxClosedError) was marked ``stopped.json`` by the scheduler rule, so no later resume ran it.
The end-to-end journey is tests/integration/test_interrupt.py; these pin the decision itself.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pbrl_dist.config.loader import load_sweep
from pbrl_dist.launch import tune_sweep
from pbrl_dist.launch.groups import make_groups
from pbrl_dist.launch.recovery import RESULT

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def specs() -> dict[str, Any]:
    """The smoke sweep's Tune trials, one seed each (``sweep.trials=seed``): a trial's name is its
    folder's."""
    sweep = load_sweep(
        str(ROOT / "sweeps" / "demo_fig1.yaml"), smoke=True, overrides=["sweep.trials=seed"]
    )
    return {g.name: g for g in make_groups(sweep.trials, tune_sweep.typed_block(sweep))}


@pytest.fixture
def handler() -> Any:
    """Restore SIGINT's handler after a test that plays Tune's part."""
    before = signal.getsignal(signal.SIGINT)
    yield before
    signal.signal(signal.SIGINT, before)


def _tune_runs(ctrl_c: tune_sweep._CtrlC) -> Any:
    """Do what Tune does at the start of a run: put in its own SIGINT handler, restoring on Ctrl-C."""
    previous = signal.getsignal(signal.SIGINT)

    def tune_handler(sig: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, tune_handler)
    return tune_handler


def _end(progress: Any, name: str) -> None:
    trial = SimpleNamespace(config={"trial": name}, trial_id="x_00000", last_result={"iter": 40})
    progress.on_trial_start(0, [], trial)
    progress.on_trial_complete(0, [], trial)


@pytest.mark.parametrize(
    ("scheduler", "ctrl_c", "stopped"),
    [(True, False, True), (True, True, False), (False, False, False), (False, True, False)],
    ids=["asha", "asha+ctrl-c", "fifo", "fifo+ctrl-c"],
)
def test_only_the_scheduler_marks_a_trial_stopped(
    tmp_path: Path,
    specs: dict[str, Any],
    handler: Any,
    capsys: pytest.CaptureFixture[str],
    scheduler: bool,
    ctrl_c: bool,
    stopped: bool,
) -> None:
    name = next(iter(specs))
    watch = tune_sweep._CtrlC()
    progress = tune_sweep._Progress(len(specs), specs, tmp_path, scheduler=scheduler, ctrl_c=watch)
    tune_handler = _tune_runs(watch)
    watch.seen()
    if ctrl_c:
        tune_handler(signal.SIGINT, None)  # the first Ctrl-C, as Tune handles it
    _end(progress, name)
    line = capsys.readouterr().out
    assert (tmp_path / name / tune_sweep.STOPPED).exists() is stopped
    assert not (tmp_path / name / RESULT).exists()
    if stopped:
        assert "stopped by the scheduler at iteration 40" in line and progress.stopped == 1
    else:
        assert "ended without its result (interrupted); --resume runs it again" in line
        assert progress.unfinished == 1 and progress.stopped == 0
    assert progress.ended == 1


def test_ctrl_c_is_seen_after_tune_restored_the_handler_and_not_after_a_normal_end(
    handler: Any,
) -> None:
    watch = tune_sweep._CtrlC()
    assert not watch.seen()  # Tune has not started
    tune_handler = _tune_runs(watch)
    assert not watch.seen()  # running, no Ctrl-C
    watch.close()  # a normal end: pbrl's handler is put back
    assert signal.getsignal(signal.SIGINT) is handler

    watch = tune_sweep._CtrlC()
    tune_handler = _tune_runs(watch)
    assert not watch.seen()
    tune_handler(signal.SIGINT, None)
    assert watch.seen()
    assert signal.getsignal(signal.SIGINT) is handler  # a second Ctrl-C is Python's own


def test_a_sweep_interrupted_inside_fit_exits_without_repairing(
    tmp_path: Path, specs: dict[str, Any], handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune returns normally after a graceful Ctrl-C; a resume must not then re-run trials inline."""
    repaired: list[Any] = []
    monkeypatch.setattr(tune_sweep, "repair_finished", lambda *a, **k: repaired.append(a))

    class FakeTuner:
        _local_tuner = None  # as with Ray Client: the restore keeps its pickled callbacks

        def __init__(self, *a: Any, **k: Any) -> None:
            """Take Tuner's arguments and ignore them."""

        @staticmethod
        def can_restore(path: str) -> bool:
            return True

        @classmethod
        def restore(cls, *a: Any, **k: Any) -> FakeTuner:
            return cls()

        def fit(self) -> list[Any]:
            tune_handler = _tune_runs(watch[0])
            watch[0].seen()
            tune_handler(signal.SIGINT, None)
            return []

    watch: list[Any] = []
    real = tune_sweep._CtrlC

    def make() -> Any:
        watch.append(real())
        return watch[0]

    monkeypatch.setattr(tune_sweep, "_CtrlC", make)
    monkeypatch.setattr(tune_sweep.tune, "Tuner", FakeTuner)
    monkeypatch.setattr(tune_sweep, "make_trainable", lambda *a, **k: None)
    sweep = load_sweep(str(ROOT / "sweeps" / "demo_fig1.yaml"), smoke=True)
    block = tune_sweep.typed_block(sweep)
    with pytest.raises(tune_sweep.Interrupted):
        tune_sweep._fit(
            sweep,
            make_groups(sweep.trials, block),
            block,
            tmp_path,
            resume=True,
            overwrite=False,
            record={},
            restart_corrupt=False,
            extra={},
        )
    assert repaired == []


def test_a_resumed_sweep_counts_a_trial_finished_at_the_interruption_once(
    tmp_path: Path, specs: dict[str, Any], handler: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C caught one trial after its result.json but before Tune marked it terminated.

    The resume counts it among the finished trials and Tune runs it again (it returns its stored
    result at once): it must not be counted a second time ([7/6] in a CI run).
    """
    first, second, *rest = specs
    for name in (first, second):
        (tmp_path / name).mkdir()
        (tmp_path / name / RESULT).write_text("{}", encoding="utf-8")
    watch = tune_sweep._CtrlC()
    progress = tune_sweep._Progress(len(specs), specs, tmp_path, scheduler=False, ctrl_c=watch)
    progress.count_on()
    assert progress.done == 2
    _tune_runs(watch)
    _end(progress, second)  # run again by Tune: already counted
    for name in rest:
        (tmp_path / name).mkdir()
        (tmp_path / name / RESULT).write_text("{}", encoding="utf-8")
        _end(progress, name)
    counts = [x.split("]")[0] for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert counts == [f"[{k}/{len(specs)}" for k in range(3, len(specs) + 1)]
    assert progress.ended == len(specs)


@pytest.mark.parametrize("end", ["fails", "cut", "completes"])
def test_a_counted_trial_run_again_is_counted_by_how_it_ends(
    tmp_path: Path,
    specs: dict[str, Any],
    handler: Any,
    capsys: pytest.CaptureFixture[str],
    end: str,
) -> None:
    """A counted trial whose files were damaged is really run again (its result.json is removed
    first): its new end counts it, once, and it is not said to be "already finished"."""
    first, second, *_ = specs
    for name in (first, second):
        (tmp_path / name).mkdir()
        (tmp_path / name / RESULT).write_text("{}", encoding="utf-8")
    watch = tune_sweep._CtrlC()
    progress = tune_sweep._Progress(len(specs), specs, tmp_path, scheduler=False, ctrl_c=watch)
    progress.count_on()
    _tune_runs(watch)
    (tmp_path / second / RESULT).unlink()  # run_trial starts a damaged trial afresh
    trial = SimpleNamespace(config={"trial": second}, trial_id="x", last_result={}, num_failures=1)
    if end == "fails":
        progress.on_trial_error(0, [], trial)
    else:
        if end == "completes":
            (tmp_path / second / RESULT).write_text('{"again": 1}', encoding="utf-8")
        progress.on_trial_complete(0, [], trial)
    out = capsys.readouterr().out
    assert progress.ended == 2, out
    assert out.startswith("[2/") and "already finished" not in out


def test_ctrl_c_watch_pickles_whatever_sigint_handler_is_installed() -> None:
    """Tune pickles its callbacks into tuner.pkl. A SIGINT handler that holds a lock (an embedding
    program's; in the test suite, one an earlier run left) made every in-process `pbrl sweep` fail
    with "cannot pickle '_thread.lock' object"; the watch pickles as a fresh one."""
    import signal
    import threading

    from ray import cloudpickle

    from pbrl_dist.launch.tune_sweep import _CtrlC

    class Holder:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def handle(self, signum: int, frame: object) -> None:
            pass

    before = signal.signal(signal.SIGINT, Holder().handle)
    try:
        watch = _CtrlC()
        copy = cloudpickle.loads(cloudpickle.dumps(watch))
        assert isinstance(copy, _CtrlC) and copy.tune_handler is None
    finally:
        signal.signal(signal.SIGINT, before)


def test_main_logs_through_a_wandb_service_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pbrl started by a process that used W&B inherits that service's address (WANDB_SERVICE);
    its rows would be flushed on the parent's schedule. main() drops it."""
    import os

    from pbrl_dist.cli import main

    monkeypatch.setenv("WANDB_SERVICE", "2-12345-tcp-localhost-1")
    main(
        ["show", str(Path(__file__).resolve().parents[3] / "sweeps" / "demo_fig1.yaml"), "--smoke"]
    )
    assert "WANDB_SERVICE" not in os.environ
