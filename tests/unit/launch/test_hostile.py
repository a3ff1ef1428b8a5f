"""Hostile input and shared folders: nothing executed, nothing hangs, one driver per folder.

Each test names what it guards; all drive the CLI (``main``) or the loader as a user's input would.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main
from pbrl_dist.config.loader import ConfigError, load_sweep
from pbrl_dist.launch.checkpoints import CorruptCheckpoint, load_state, save_state
from pbrl_dist.launch.results import LOCK, check_trusted, hold_lock, prepare_out_dir

pytestmark = pytest.mark.chaos

TINY = """\
name: tiny
problem: {name: stackelberg, num_states: 4, num_leader_actions: 3, num_follower_actions: 3,
          sparsity: 0.5, gamma: 0.8, tau: 0.2}
method: {name: pbrl_value, algo: pbrl, penalty: value, estimator: exact, oracle: exact, lam: 20.0,
         lr_x: 0.1, lr_y: 0.1, num_iters: 40, log_every: 10}
dist: {checkpoint_every: 10}
logging: {wandb: disabled, progress_every_s: 1000}
sweep: {seeds: [0, 1]}
"""


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


class _Planted:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (Path(self.target).touch, ())


def test_a_planted_pickle_checkpoint_is_refused_not_executed(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"k": 1, "x": _Planted(str(target))}))
    with pytest.raises(CorruptCheckpoint, match=str(path)):
        load_state(path, restart_corrupt=False)
    assert not target.exists()
    # Real states (tensors, numpy arrays, RNG states, plain data) load.
    import numpy as np
    import torch

    good = tmp_path / "good.pt"
    state = {
        "k": 3,
        "x": torch.ones(2),
        "a": np.arange(4, dtype=np.uint8),
        "g": torch.Generator().get_state(),
        "n": {"s": "t", "f": 1.5},
    }
    save_state(state, good)
    back = load_state(good, restart_corrupt=False)
    assert back is not None and back["k"] == 3 and np.array_equal(back["a"], state["a"])


@pytest.mark.parametrize("name", ["../..", "a/b", ".hidden", "x..y"])
def test_a_sweep_name_is_never_a_path(tiny: Path, name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out), f"name={name}"]) == 2
    assert not out.exists()


def test_yaml_bombs_huge_grids_folders_and_binary_files_are_refused_fast(tmp_path: Path) -> None:
    levels = ['  - &a0 ["x","x","x","x","x","x","x","x","x"]']
    levels += [f"  - &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 7)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "name: bomb\nproblem: {name: stackelberg}\nmethod: {name: m}\ndescription:\n"
        + "\n".join(levels)
        + "\nsweep:\n  grid:\n    method.lam: [*a6]\n"
    )
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_sweep(bomb)
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigError, match="is not a file"):
        load_sweep(tmp_path)
    huge = tmp_path / "huge.yaml"  # a valid YAML file just over the 1 MiB cap: refused unread
    huge.write_text(TINY + "# " + "x" * (1 << 20) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="larger than 1 MiB; not a sweep file"):
        load_sweep(huge)
    assert time.perf_counter() - t0 < 1
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_sweep(binary)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        TINY.replace(
            "sweep: {seeds: [0, 1]}",
            "sweep: {seeds: [0, 1], grid: {method.lam: " + str(list(range(1, 10_001))) + "}}",
        )
    )
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"more than sweep\.max_trials=10000"):
        load_sweep(grid)
    assert time.perf_counter() - t0 < 10
    small = tmp_path / "small.yaml"
    small.write_text(
        TINY.replace(
            "sweep: {seeds: [0, 1]}", "sweep: {seeds: [0, 1], grid: {method.lam: [1, 2, 3]}}"
        )
    )
    with pytest.raises(ConfigError, match="max_trials=5"):
        load_sweep(small, overrides=["sweep.max_trials=5"])
    assert (
        len(load_sweep(small, overrides=["sweep.max_trials=6"]).trials) == 6
    )  # the cap is overridable


def test_two_drivers_on_one_folder_the_second_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with hold_lock(out, "run"):
        prepare_out_dir(out, overwrite=False)
        # A second process (another driver) cannot take it; it is told who holds it.
        code = (
            "import sys; from pathlib import Path; from pbrl_dist.launch.results import hold_lock\n"
            "from pbrl_dist.config.loader import ConfigError\n"
            "try:\n  with hold_lock(Path(sys.argv[1]), 'sweep'): print('GOT IT')\n"
            "except ConfigError as e: print('REFUSED', e)\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60
        )
        assert res.stdout.startswith("REFUSED") and f"pid {os.getpid()}" in res.stdout
    # Released when the holder is done (or dies: the kernel drops a flock with its process).
    res = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60
    )
    assert res.stdout.startswith("GOT IT")
    assert (out / LOCK).exists()


def test_a_lock_left_by_a_killed_driver_is_not_in_the_way(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, time; from pathlib import Path; from pbrl_dist.launch.results import hold_lock\n"
        "with hold_lock(Path(sys.argv[1]), 'run'):\n"
        "  Path(sys.argv[1], 'x').write_text('1'); print('HELD', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("HELD")
    proc.kill()
    proc.wait(timeout=30)
    with hold_lock(out, "run"):  # no stale lock to clean up by hand
        pass


def test_a_refused_run_leaves_no_folder_behind(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    assert main(["run", str(tiny), "--out", str(out), "dist.cpus_per_trial=100000"]) == 2
    assert not out.exists()


def test_resume_refuses_a_folder_others_can_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_out_dir(out, overwrite=False)
    check_trusted(out)
    out.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        check_trusted(out)
    out.chmod(0o755)
    (out / ".pbrl_results").unlink()
    with pytest.raises(ConfigError, match="marker"):
        check_trusted(out)


def test_a_failing_trial_fails_alone_and_the_run_goes_on(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pbrl_dist.launch.local as local

    real = local.run_trial

    def flaky(trial, **kw):  # type: ignore[no-untyped-def]
        if trial.name.endswith("s0"):
            raise RuntimeError("simulated crash of this trial")
        return real(trial, **kw)

    monkeypatch.setattr(local, "run_trial", flaky)
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1/2 trials failed: pbrl_value__s0" in err and "pbrl run --resume --out" in err
    assert (out / "pbrl_value__s1" / "result.json").exists()
    monkeypatch.setattr(local, "run_trial", real)
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert (out / "pbrl_value__s0" / "result.json").exists()


def test_resume_repairs_damaged_complete_trials_and_says_so(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out)]) == 0
    want = {
        n: (out / n / "metrics.jsonl").read_text() for n in ("pbrl_value__s0", "pbrl_value__s1")
    }
    m = out / "pbrl_value__s0" / "metrics.jsonl"
    m.write_text(m.read_text()[:-15])  # a partly written last line
    (out / "pbrl_value__s1" / "final_state.npz").unlink()
    capsys.readouterr()
    assert main(["run", "--resume", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pbrl_value__s0: repairing (metrics.jsonl is empty or has a damaged line)" in text
    assert "pbrl_value__s1: repairing (final_state.npz is missing or unreadable)" in text
    for n, rows in want.items():
        assert (out / n / "metrics.jsonl").read_text() == rows
        assert (out / n / "final_state.npz").exists()
    # The report reads a truncated result.json as not complete instead of crashing.
    res = out / "pbrl_value__s0" / "result.json"
    res.write_text(res.read_text()[:10])
    assert main(["report", str(out)]) == 0
    assert "left out 1 of 2 trials: 1 incomplete" in capsys.readouterr().out


@pytest.mark.ray
def test_an_embedded_ray_leaves_no_session_folder_after_a_clean_run() -> None:
    # In a fresh process: the test worker may already hold a Ray runtime of its own.
    code = (
        "from pathlib import Path\nimport ray\n"
        "from pbrl_dist.launch.ray_session import ensure_ray, started_session, stop_ray\n"
        "assert ensure_ray(num_cpus=1)\n"
        "s = Path(started_session())\nassert s.exists() and s.name.startswith('session_')\n"
        "stop_ray(clean=True)\n"
        "print('GONE' if not s.exists() and not ray.is_initialized() else 'LEFT', s)\n"
    )
    env = {**os.environ, "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}
    env.pop("RAY_ADDRESS", None)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0 and res.stdout.startswith("GONE"), res.stdout + res.stderr[-2000:]


def test_every_trial_folder_is_checked_to_be_inside_out(tmp_path: Path) -> None:
    from pbrl_dist.launch.results import inside

    out = tmp_path / "out"
    out.mkdir()
    assert inside(out, out / "pbrl_value__s0") == out / "pbrl_value__s0"
    (out / "link").symlink_to(tmp_path)
    for bad in (out / ".." / "x", out / "link" / "x", Path("/etc/passwd")):
        with pytest.raises(ConfigError, match="outside the results folder"):
            inside(out, bad)


def test_sigterm_then_a_sigkill_during_the_resume_still_ends_bitwise(
    tiny: Path, tmp_path: Path
) -> None:
    """A scheduler's SIGTERM stops `pbrl run` like Ctrl-C (130, resume command); a SIGKILL of the
    resume itself (a double kill) is resumed again; the end equals an uninterrupted run."""
    import signal

    args = [
        "method.num_iters=4000",
        "method.log_every=100",
        "dist.checkpoint_every=200",
        "sweep.seeds=[0]",
    ]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(ref), *args]) == 0
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "pbrl_dist.cli", "run", str(tiny), "--out", str(out), *args]
    state = out / "pbrl_value__s0" / "checkpoint" / "state.pt"

    def start_and_wait(argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        t0 = time.monotonic()
        seen = state.stat().st_mtime_ns if state.exists() else 0
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            if state.exists() and state.stat().st_mtime_ns != seen:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be stopped; raise num_iters"
        return proc

    first = start_and_wait(cmd)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err[-2000:]
    assert f"resume with: pbrl run --resume --out {out}" in err
    resume = [sys.executable, "-m", "pbrl_dist.cli", "run", "--resume", "--out", str(out)]
    second = start_and_wait(resume)
    second.kill()  # SIGKILL: no handler runs
    second.wait(timeout=60)
    third = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    name = "pbrl_value__s0"
    assert (out / name / "metrics.jsonl").read_text() == (ref / name / "metrics.jsonl").read_text()
    assert not state.exists()  # a complete trial keeps no checkpoint


def test_an_unfinished_trial_whose_folder_was_deleted_starts_over(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Tune trial keeps its checkpoint outside its folder: when the folder (metrics) is deleted, the
    rows before the checkpoint are gone, so the trial runs from scratch instead of resuming with a hole;
    its files then equal an undisturbed run's."""
    from pbrl_dist.launch.trial import Trial, run_trial
    from pbrl_dist.testing import MemoryCheckpointer

    spec = load_sweep(tiny).trials[0]
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "trial"
    run_trial(Trial(spec, ref_dir), progress=False)
    ck = MemoryCheckpointer(every=10, crash_after=20)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_trial(Trial(spec, dir_), progress=False, ckpt=ck)
    assert ck.saved is not None and ck.saved["k"] == 20
    shutil.rmtree(dir_)  # the unfinished trial's folder goes; its checkpoint (elsewhere) stays
    run_trial(Trial(spec, dir_), progress=False, ckpt=ck)
    assert "metrics.jsonl is gone" in capsys.readouterr().out
    assert (dir_ / "metrics.jsonl").read_text() == (ref_dir / "metrics.jsonl").read_text()
    assert ck.saved["k"] == 40  # it ran all 40 iterations again and saved as it went


def test_resume_across_a_pbrl_upgrade_that_added_a_setting_at_its_default(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep started by an older pbrl (its configs lack a setting added since) resumes when the new
    setting is at its default; a real change of what runs is still refused."""
    out = tmp_path / "out"
    assert main(["run", str(tiny), "--out", str(out)]) == 0
    # Make the folder look as if an older pbrl wrote it: no method.warm_start in the trial configs,
    # and a fingerprint over those configs.
    record = yaml.safe_load((out / "sweep.yaml").read_text())
    record["fingerprint"] = "0123456789abcdef"
    (out / "sweep.yaml").write_text(yaml.safe_dump(record))
    for cfg_path in out.glob("*/config.yaml"):
        cfg = yaml.safe_load(cfg_path.read_text())
        del cfg["method"]["warm_start"]
        cfg_path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    before = {p: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob("*/result.json")}
    assert main(["run", "--resume", "--out", str(out)]) == 0
    assert "predates method.warm_start; resuming with it at the default" in capsys.readouterr().out
    # ... and its finished trials count as finished: none is run again (the configs stay the old ones).
    assert before and {p: (p.stat().st_mtime_ns, p.read_text()) for p in before} == before
    assert all("warm_start" not in p.read_text() for p in out.glob("*/config.yaml"))
    # a setting the old run had, now different: refused, nothing runs
    assert main(["run", "--resume", "--out", str(out), "method.lr_x=0.2"]) == 2
    assert "the trials differ" in capsys.readouterr().err
