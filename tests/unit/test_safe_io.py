"""``safe_io``: every write into a results folder is atomic and never goes through a planted link.

Issue #20 point 6: a linked ``report/summary.csv`` or figure overwrote a file outside the folder, and
a kill mid-report left a 0-byte ``summary.csv`` and a truncated PNG. These drive ``pbrl report`` (and
the helpers under it) the way a hostile folder or a full disk would.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pbrl_dist.cli import main
from pbrl_dist.safe_io import (
    TMP_PREFIX,
    UnsafePath,
    atomic_file,
    atomic_write_text,
    open_append,
)

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-seed tiny run with its report (written once, copied per test)."""
    from _tiny import tiny_sweep_file

    where = tmp_path_factory.mktemp("run")
    sweep = tiny_sweep_file(where, seeds="[0, 1]")
    out = where / "out"
    assert main(["run", str(sweep), "--out", str(out)]) == 0
    return out


@pytest.fixture
def out(results: Path, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "out"
    shutil.copytree(results, dest, symlinks=True)
    return dest


def _temps(folder: Path) -> list[Path]:
    return list(folder.rglob(f"{TMP_PREFIX}*"))


def test_safe_io_atomic_write_refuses_a_link_or_a_folder_resolving_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "out", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("theirs")
    (root / "linked.txt").symlink_to(victim)
    with pytest.raises(UnsafePath, match=r"linked\.txt: is a symbolic link"):
        atomic_write_text(root / "linked.txt", "ours", root=root)
    (root / "report").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="outside the results folder"):
        atomic_write_text(root / "report" / "summary.csv", "ours", root=root)
    assert victim.read_text() == "theirs"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    # Inside the folder (a real sub-folder, a new file): written whole, mode as the umask says.
    (root / "real").mkdir()
    atomic_write_text(root / "real" / "a.txt", "ours", root=root)
    assert (root / "real" / "a.txt").read_text() == "ours"
    umask = os.umask(0)
    os.umask(umask)
    assert (root / "real" / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert _temps(root) == []


def test_safe_io_atomic_file_leaves_the_old_file_whole_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"old": 1}')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pbrl_dist.safe_io.os.fsync", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write_text(path, '{"new": 2}')
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == '{"old": 1}'
    assert _temps(tmp_path) == []
    # An exception in the writer (a kill is the same for the target) also leaves it whole.
    monkeypatch.undo()

    def killed_mid_write() -> None:
        with atomic_file(path, "w") as fh:
            fh.write('{"ha')
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        killed_mid_write()
    assert path.read_text() == '{"old": 1}'


def test_safe_io_open_append_never_follows_a_link(tmp_path: Path) -> None:
    from pbrl_dist.metrics import JsonlSink

    victim = tmp_path / "victim"
    victim.write_text("theirs\n")
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symbolic link"):
        JsonlSink(link)
    with pytest.raises(UnsafePath):
        open_append(link)
    assert victim.read_text() == "theirs\n"
    sink = JsonlSink(tmp_path / "real.jsonl")  # a plain file appends as before
    sink.log({"iter": 1})
    sink.close()
    assert (tmp_path / "real.jsonl").read_text() == '{"iter": 1}\n'


@pytest.mark.parametrize(
    "planted", ["report/summary.csv", "figures/fig1_stackelberg.png", "report", "figures"]
)
def test_safe_io_report_refuses_links_planted_in_the_results_folder(
    out: Path, tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"theirs")
    target = out / planted
    if target.is_dir():
        import shutil

        shutil.rmtree(target)
        target.symlink_to(outside, target_is_directory=True)
    else:
        target.unlink()
        target.symlink_to(victim)
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err
    assert "symbolic link" in err[0]
    assert victim.read_bytes() == b"theirs"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


@pytest.mark.parametrize("cut", ["to_csv", "savefig"])
def test_safe_io_report_killed_mid_write_keeps_the_previous_files_whole(
    out: Path, cut: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill half-way through writing summary.csv or the figure: the old files stay as they were."""
    import matplotlib.figure
    import pandas as pd

    files = [out / "report" / "summary.csv", out / "figures" / "fig1_stackelberg.png"]
    before = [p.read_bytes() for p in files]
    owner = pd.DataFrame if cut == "to_csv" else matplotlib.figure.Figure

    def half_then_killed(self: object, target: object, *args: object, **kwargs: object) -> None:
        if hasattr(target, "write"):
            target.write("half" if cut == "to_csv" else b"\x89PNG half")  # type: ignore[attr-defined]
        else:
            Path(str(target)).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, cut, half_then_killed)
    assert main(["report", str(out)]) == 130
    assert [p.read_bytes() for p in files] == before
    assert _temps(out) == []


def test_safe_io_report_on_a_full_disk_ends_in_one_line_naming_the_file(
    out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (out / "report" / "summary.csv").read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pbrl_dist.safe_io.os.fsync", full)
    capsys.readouterr()
    assert main(["report", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"pbrl: error: cannot write {out / 'report' / 'summary.csv'}: No space left on device"
    ]
    assert (out / "report" / "summary.csv").read_bytes() == before


def test_safe_io_results_lock_is_never_truncated_through_a_planted_link(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``out/.lock`` is truncated and rewritten by each driver: a link there must not reach out."""
    victim = tmp_path / "victim"
    victim.write_text("theirs")
    (out / ".lock").unlink(missing_ok=True)
    (out / ".lock").symlink_to(victim)
    capsys.readouterr()
    assert main(["run", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{out / '.lock'}: is a symbolic link" in err[0], err
    assert victim.read_text() == "theirs"
