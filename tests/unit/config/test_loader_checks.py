"""``config/loader.py``: actor counts without ``dist.backend=ray`` and a non-finite ``method.lam`` are
refused through ``pbrl run`` in one line naming the field, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import refused
from _tiny import tiny_sweep_file


@pytest.mark.parametrize("override", ["dist.num_rollout_workers=4", "dist.num_oracles=2"])
def test_loader_refuses_actor_counts_without_the_ray_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "out"
    err = refused(capsys, ["run", str(sweep), "--out", str(out), override])
    assert override.split("=")[0] in err and "dist.backend" in err
    assert not out.exists()


def test_loader_refuses_a_non_finite_lam_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tiny_sweep_file(tmp_path)
    out = tmp_path / "out"
    for value in (".inf", "nan", "-.inf"):
        err = refused(capsys, ["run", str(sweep), "--out", str(out), f"method.lam={value}"])
        assert "method.lam" in err, value
        assert not out.exists(), value
