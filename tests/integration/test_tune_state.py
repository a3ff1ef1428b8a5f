"""``pbrl sweep`` on a full disk: one line with the resume command, and ``--resume`` finishes.

Issue #20 point 8: a full disk during ``pbrl sweep`` left Tune's experiment state truncated, the run
ended in ``EOFError`` and every ``--resume`` died with ``KeyError: 'trial'``. Here Tune's driver
gets ``OSError(ENOSPC)`` while saving its experiment state (monkeypatched in this process, where the
driver runs), after writing a cut file; then the state files in ``OUT/_tune`` are cut by hand too
(as a non-atomic copy on a full disk leaves them). ``--resume`` must finish with the numbers of an
undisturbed ``pbrl run``.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from pbrl_dist.cli import main

pytestmark = [
    pytest.mark.ray,
    pytest.mark.chaos,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(600),
]

LONGER = ["method.num_iters=1500", "method.log_every=100", "dist.checkpoint_every=100"]
NAMES = ("pbrl_value__s0", "pbrl_value__s1")


def test_tune_state_disk_full_during_sweep_then_cut_state_files_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from _tiny import tiny_sweep_file
    from ray.tune.execution.tune_controller import TuneController

    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1]")
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert main(["run", str(sweep), "--out", str(ref), "--no-report", *LONGER]) == 0

    real, calls = TuneController.save_to_dir, {"n": 0}

    def full_disk(self: TuneController) -> None:
        calls["n"] += 1
        if calls["n"] < 8:
            return real(self)
        staging = Path(self._storage.experiment_driver_staging_path)
        (staging / self.experiment_state_file_name).write_text('{"trial_data": [[')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TuneController, "save_to_dir", full_disk)
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(out), "--no-report", *LONGER]) == 1
    err = capsys.readouterr().err
    ours = [x for x in err.splitlines() if x.startswith("pbrl sweep:")]
    assert ours == [
        f"pbrl sweep: cannot write {out.resolve() / '_tune' / 'tiny'}: No space left on device; "
        f"fix that, then resume with: pbrl sweep --resume --out {out}"
    ], err[-2000:]
    assert "Traceback" not in err
    monkeypatch.undo()  # space freed

    tune_dir = out / "_tune" / "tiny"
    for p in [*tune_dir.glob("experiment_state-*.json"), tune_dir / "tuner.pkl"]:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])  # cut by the full disk too
    capsys.readouterr()
    assert main(["sweep", "--resume", "--out", str(out), "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "Tune's state was damaged" in text
    for name in NAMES:
        assert (out / name / "metrics.jsonl").read_text() == (
            ref / name / "metrics.jsonl"
        ).read_text()
        got = json.loads((out / name / "result.json").read_text())["final"]
        assert got == json.loads((ref / name / "result.json").read_text())["final"]
