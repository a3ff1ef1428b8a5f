"""``launch/results.py``: a kill at any moment of ``--overwrite`` leaves a folder ``--overwrite`` takes.

The kill is simulated in-process: ``Path.rename`` (moving old entries aside) or ``shutil.rmtree``
(deleting them) raises a ``BaseException`` that nothing in pbrl catches, after part of the work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _tiny import tiny_sweep_file

from pbrl_dist.cli import main
from pbrl_dist.launch import results
from pbrl_dist.launch.results import MARKER, TRASH_PREFIX


class _Killed(BaseException):
    """What SIGKILL would be, as far as the folder is concerned."""


@pytest.mark.parametrize("where", ["moving_aside", "deleting"])
def test_results_overwrite_killed_midway_is_finished_by_the_next_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tiny_sweep_file(tmp_path, seeds="[0, 1]")
    out = tmp_path / "out"
    argv = ["run", str(sweep), "--out", str(out), "--no-report"]
    assert main(argv) == 0
    before = sorted(p.name for p in out.iterdir())
    with monkeypatch.context() as m:
        if where == "moving_aside":
            real_rename = Path.rename
            calls = {"n": 0}

            def rename(self: Path, target: Any) -> Path:
                calls["n"] += 1
                if calls["n"] > 2:
                    raise _Killed
                return real_rename(self, target)

            m.setattr(Path, "rename", rename)
        else:

            def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
                trials = [p for p in Path(path).iterdir() if (p / "config.yaml").exists()]
                (trials[0] / "config.yaml").unlink()  # half a trial folder deleted
                raise _Killed

            m.setattr(results.shutil, "rmtree", rmtree)
        with pytest.raises(_Killed):
            main([*argv, "--overwrite"])
    left = sorted(p.name for p in out.iterdir())
    assert (out / MARKER).exists() and any(n.startswith(TRASH_PREFIX) for n in left), left
    assert main([*argv, "--overwrite"]) == 0
    after = sorted(p.name for p in out.iterdir())
    assert after == before, (before, after)
    for name in ("pbrl_value__s0", "pbrl_value__s1"):
        assert json.loads((out / name / "result.json").read_text())["status"] == "complete"
    assert sweep.exists()  # nothing outside out was touched
