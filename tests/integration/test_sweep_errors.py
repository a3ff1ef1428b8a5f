"""Bad input to ``pbrl sweep`` stops with one message before Ray starts or anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbrl_dist.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture
def no_ray_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend no Ray is running, and fail the test if anything tries to start one."""

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", boom)


BAD = [
    (["method.lamb=3"], "method.lamb"),
    (["sweep.grid.method.lam=[1, abc]"], "method.lam"),
    (["sweep.grid.method.lam=[]"], "sweep.grid.method.lam"),
    (["sweep.seeds=[0, x]"], "sweep.seeds"),
    (["sweep.search={method.lr_x: {loguniform: [0, 1]}}"], "sweep.search.method.lr_x"),
    (["sweep.search={method.lr_x: {normal: [0, 1]}}"], "sweep.search.method.lr_x"),
    (["sweep.search={method.lam: {choice: [5, -1]}}"], "sweep.search.method.lam"),
    (["sweep.num_samples=3"], "sweep.num_samples"),
    (["sweep.scheduler.name=pbt"], "sweep.scheduler.name"),
    (["sweep.scheduler.sideways=1"], "sweep.scheduler.sideways"),
    (["dist.checkpoint_every=0"], "dist.checkpoint_every"),
    (["dist.placement_strategy=RANDOM"], "dist.placement_strategy"),
    # 1 + 8 CPUs > this machine (Monte Carlo: exact gradients start no rollout workers)
    (["dist.backend=ray", "method.estimator=mc", "dist.num_rollout_workers=8"], "dist"),
    (["dist.cpus_per_trial=64"], "dist"),
]


@pytest.mark.usefixtures("no_ray_start")
@pytest.mark.parametrize(("overrides", "field"), BAD)
def test_bad_input_one_message_nothing_written(
    tiny_sweep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    field: str,
) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(tiny_sweep), "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pbrl: error: {field}"), err[0]
    assert not out.exists()


@pytest.mark.usefixtures("no_ray_start")
def test_malformed_or_missing_file_and_bad_resume(
    tmp_path: Path, tiny_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nproblem: [unclosed\n")
    out = tmp_path / "out"
    for argv, msg in [
        (["sweep", str(bad)], "malformed YAML"),
        (["sweep", str(tmp_path / "nope.yaml")], "no such sweep file"),
        (["sweep", str(tiny_sweep), "--resume"], "--resume"),
    ]:
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
        assert not out.exists()


@pytest.mark.usefixtures("no_ray_start")
def test_existing_out_is_not_touched(tiny_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["sweep", str(tiny_sweep), "--out", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "mine"
