"""A write failure ends with one line: ``pbrl run`` on a full disk, an unusable ``--out``.

Issue #20 point 8: write failures ended in tracebacks and the resume command was never printed. A
full disk is injected (an ``OSError(ENOSPC)`` at a chosen write, monkeypatched inside an in-process
CLI call); an unusable ``--out`` is a path under a regular file (and, when not root, a folder of mode
0555).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main

pytestmark = pytest.mark.chaos


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.strip()]


def test_run_disk_full_at_a_checkpoint_is_one_line_with_the_resume_command_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1]")
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert main(["run", str(sweep), "--out", str(ref), "--no-report"]) == 0
    real_save, saves = torch.save, {"n": 0}

    def full_on_the_sixth(obj: object, f: object, *args: object, **kwargs: object) -> None:
        saves["n"] += 1
        if saves["n"] == 6:  # the second trial's second checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("pbrl_dist.launch.checkpoints.torch.save", full_on_the_sixth)
    capsys.readouterr()
    assert main(["run", str(sweep), "--out", str(out)]) == 1
    state = out / "pbrl_value__s1" / "checkpoint" / "state.pt"
    assert _err_lines(capsys) == [
        f"pbrl run: cannot write {state}: No space left on device; fix that, then resume with: "
        f"pbrl run --resume --out {out}"
    ]
    assert not (out / "report").exists()  # stopped at once: no report of a partial run
    assert (out / "pbrl_value__s0" / "result.json").exists()
    assert not (out / "pbrl_value__s1" / "result.json").exists()
    monkeypatch.undo()  # space freed
    assert main(["run", "--resume", "--out", str(out)]) == 0
    for name in ("pbrl_value__s0", "pbrl_value__s1"):
        assert (out / name / "metrics.jsonl").read_text() == (
            ref / name / "metrics.jsonl"
        ).read_text()
        got = json.loads((out / name / "result.json").read_text())["final"]
        assert got == json.loads((ref / name / "result.json").read_text())["final"]


def test_run_disk_full_in_metrics_jsonl_names_the_results_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pbrl_dist.metrics import JsonlSink

    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "out"

    def full(self: JsonlSink, row: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(JsonlSink, "log", full)
    capsys.readouterr()
    assert main(["run", str(sweep), "--out", str(out)]) == 1
    err = _err_lines(capsys)
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert f"pbrl run --resume --out {out}" in err[0]


def test_run_out_under_a_file_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    out = blocker / "results"
    capsys.readouterr()
    assert main(["run", str(sweep), "--out", str(out)]) == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"pbrl: error: --out {out}: cannot write"), err
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores a folder's mode 0555 (the test above covers an unusable --out as root)",
)
def test_run_read_only_out_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(["run", str(sweep), "--out", str(parent / "out")]) == 2
        err = _err_lines(capsys)
        assert len(err) == 1 and "Permission denied" in err[0], err
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)
