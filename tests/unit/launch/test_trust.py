"""``launch/trust.py``: a results folder, a sweep file and its ``problem.target`` are checked before any
code they name is imported or any pickle in them is loaded, by every verb that reads them.

Each planted piece of code would create a sentinel file if it ever ran; every refusal is one line
(``pbrl: error: ...``, exit 2) and the sentinel never appears.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml

from pbrl_dist.cli import main
from pbrl_dist.config.loader import ConfigError
from pbrl_dist.launch.results import check_trusted, prepare_out_dir
from pbrl_dist.launch.trust import check_sweep_file

pytestmark = pytest.mark.chaos

SWEEP = """\
name: evil
problem: {{name: stackelberg, target: {target}}}
method: {{name: pbrl_value, algo: pbrl, penalty: value, estimator: exact, oracle: exact, lam: 20.0,
         lr_x: 0.1, lr_y: 0.1, num_iters: 4, log_every: 2}}
logging: {{wandb: disabled, progress_every_s: 1000}}
sweep: {{seeds: [0]}}
"""


class _Planted:
    """A pickle that creates a file when unpickled."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (Path(self.target).touch, ())


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(sweep file naming evil.py:SPEC, evil.py, sentinel path evil.py creates at import)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    sentinel = tmp_path / "PWNED"
    evil = src / "evil.py"
    evil.write_text(f"from pathlib import Path\nPath({str(sentinel)!r}).touch()\nSPEC = None\n")
    sweep = src / "evil.yaml"
    sweep.write_text(SWEEP.format(target="evil.py:SPEC"))
    return sweep, evil, sentinel


def _results(tmp_path: Path, sweep: Path, runner: str = "local") -> Path:
    """A results folder as pbrl leaves it (marker, record naming the sweep file, one trial)."""
    out = tmp_path / "out"
    prepare_out_dir(out, overwrite=False)
    record = {"name": "evil", "source": str(sweep), "overrides": [], "runner": runner}
    (out / "sweep.yaml").write_text(yaml.safe_dump(record))
    trial = out / "pbrl_value__s0"
    trial.mkdir()
    cfg = {
        "seed": 0,
        "problem": {"name": "stackelberg", "target": str(sweep.parent / "evil.py:SPEC")},
    }
    (trial / "config.yaml").write_text(yaml.safe_dump(cfg))
    return out


def _one_line_refusal(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> str:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pbrl: error:"), err
    assert words in lines[0], err
    return lines[0]


@pytest.mark.parametrize("verb", ["run", "sweep"])
def test_trust_resume_refuses_a_folder_others_can_write_before_importing_its_target(
    planted: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verb: str,
) -> None:
    sweep, _, sentinel = planted
    out = _results(tmp_path, sweep)
    out.chmod(0o777)
    _one_line_refusal(capsys, [verb, "--resume", "--out", str(out)], "writable by others")
    assert not sentinel.exists()


def test_trust_sweep_resume_refuses_a_mode_666_tuner_pkl_before_unpickling_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    sentinel = tmp_path / "PWNED"
    sweep = tmp_path / "plain.yaml"
    sweep.write_text(SWEEP.replace(", target: {target}", ""))
    out = _results(tmp_path, sweep, runner="tune")
    tune_dir = out / "_tune" / "evil"
    tune_dir.mkdir(parents=True)
    pkl = tune_dir / "tuner.pkl"
    pkl.write_bytes(pickle.dumps(_Planted(str(sentinel))))
    pkl.chmod(0o666)
    line = _one_line_refusal(capsys, ["sweep", "--resume", "--out", str(out)], "tuner.pkl")
    assert "writable by others" in line
    assert not sentinel.exists()
    with pytest.raises(ConfigError, match=r"tuner\.pkl"):  # the check Tune's restore sits behind
        check_trusted(out, tune_dir)


def test_trust_refuses_a_mode_666_target_in_every_verb_that_imports_it(
    planted: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep, evil, sentinel = planted
    out = _results(tmp_path, sweep)
    evil.chmod(0o666)
    for argv in (
        ["run", "--resume", "--out", str(out)],
        ["sweep", "--resume", "--out", str(out)],
        ["report", str(out), "--confirm-seeds", "2"],
        ["show", str(sweep)],
        ["run", str(sweep), "--out", str(tmp_path / "fresh")],
    ):
        line = _one_line_refusal(capsys, argv, "writable by others")
        assert "evil.py" in line, argv
    assert not sentinel.exists()
    assert not (tmp_path / "fresh").exists()


def test_trust_refuses_a_target_named_by_a_writable_trial_config(
    planted: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep, _, sentinel = planted
    out = _results(tmp_path, sweep)
    cfg = out / "pbrl_value__s0" / "config.yaml"
    cfg.chmod(0o666)
    line = _one_line_refusal(capsys, ["report", str(out), "--confirm-seeds", "2"], "config.yaml")
    assert "writable by others" in line
    assert not sentinel.exists()


def test_trust_a_well_moded_target_passes_and_is_imported(
    planted: tuple[Path, Path, Path],
) -> None:
    """The control: the same files with safe modes pass the check, and the sentinel works."""
    sweep, _, sentinel = planted
    from pbrl_dist.problems.registry import resolve_target

    check_sweep_file(sweep)
    with pytest.raises(ValueError, match="no attribute"):
        resolve_target(f"{sweep.parent / 'evil.py'}:SPEC")  # imported, then refused
    assert sentinel.exists()
