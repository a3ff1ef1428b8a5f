"""The results folder: pbrl's marker, a safe ``--overwrite``, and the provenance record ``sweep.yaml``.

``--overwrite`` deletes only a folder that pbrl wrote: it carries ``MARKER``, it is not ``.``, the
working directory, one of its parents, the home folder or a git checkout, and it holds nothing but
pbrl's own entries (trial folders with a ``config.yaml``, ``sweep.yaml``, ``_tune``, ``report``,
``figures``, ``confirm``). Anything else is the user's, and the folder is left alone with one message
naming what is in the way.

``sweep.yaml`` records what ran and how: the source file, the resolved ``sweep:`` block, the trial
names, the exact command, the overrides, ``--smoke``, the launch id (W&B run ids derive from it and
survive ``--resume``), the git commit of the working directory (if any), the package versions, host
and time.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pbrl_dist.config.loader import ConfigError, Sweep
from pbrl_dist.safe_io import TMP_PREFIX, atomic_write_text, check_target, write_error_line

MARKER = ".pbrl_results"
LOCK = ".lock"
DRIVER_FILES = frozenset({LOCK, ".ray_session"})  # what a running driver keeps in its folder
RECORD = "sweep.yaml"
FAILED = "failed.json"
"""Written into a trial folder when the trial raised under ``pbrl run`` (its one-line reason, for
``pbrl status``); removed when a later launch runs the trial again."""
TRASH_PREFIX = ".pbrl-trash-"  # old entries that ``--overwrite`` is removing
OWN_ENTRIES = frozenset(
    {MARKER, RECORD, "_tune", "report", "figures", "confirm", "confirm.json", LOCK, ".ray_session"}
)
PACKAGES = ("pbrl_dist", "ray", "torch", "numpy", "omegaconf", "wandb", "gymnasium", "ale-py")


def _foreign(out: Path) -> list[str]:
    """Top-level entries of ``out`` that pbrl did not write."""
    bad = []
    for p in sorted(out.iterdir()):
        if p.name in OWN_ENTRIES or (p.name.startswith(TMP_PREFIX) and not p.is_symlink()):
            continue  # ours (a temporary file left by a kill mid-write too)
        if p.name.startswith(TRASH_PREFIX) and p.is_dir() and not p.is_symlink():
            continue  # what a killed --overwrite was removing
        if p.is_dir() and not p.is_symlink() and (p / "config.yaml").exists():
            continue  # a trial folder
        bad.append(p.name)
    return bad


def _protected(out: Path) -> str | None:
    """Why ``out`` must never be deleted, or None."""
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd:
        return "it is the working directory"
    if real in cwd.parents:
        return "it holds the working directory"
    if real == Path.home().resolve() or real == Path(real.anchor):
        return "it is the home folder or a file-system root"
    if (real / ".git").exists():
        return "it is a git checkout"
    return None


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Raise ``ConfigError`` unless ``out`` may be used (missing, empty, or a pbrl folder with ``overwrite``).

    Writes nothing.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if not out.exists() or all(p.name in DRIVER_FILES for p in out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"--out {out}: folder exists and is not empty; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    why = _protected(out)
    if why is None and not (out / MARKER).exists():
        why = f"pbrl did not write it (no {MARKER} marker)"
    if why is None:
        foreign = _foreign(out)
        if foreign:
            shown = ", ".join(foreign[:5]) + (
                f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            )
            why = f"it holds files pbrl did not write ({shown})"
    if why is not None:
        raise ConfigError(f"--out {out}: --overwrite refused: {why}; choose another --out")


def prepare_out_dir(out: Path, *, overwrite: bool) -> None:
    """Create ``out`` with pbrl's marker; replace a pbrl folder only with ``overwrite`` (checked first).

    The lock file (held by this process, see ``hold_lock``) survives the replacement.
    """
    check_out_dir(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    # Recoverable at every instant: each old entry is first renamed (atomic) into one trash folder
    # inside ``out``, which is deleted last; the marker stays throughout (``mark`` rewrites it). A
    # kill at any point leaves pbrl's marker, whole pbrl entries and a trash folder, which
    # ``--overwrite`` accepts and finishes removing.
    trash = out / f"{TRASH_PREFIX}{os.getpid()}-{time.time_ns()}"
    for p in list(out.iterdir()):
        if p.name in DRIVER_FILES or p.name == MARKER:  # this driver's own, held right now
            continue
        if not trash.exists():
            trash.mkdir()
        p.rename(trash / p.name)
    if trash.exists():
        shutil.rmtree(trash)
    mark(out)


@contextlib.contextmanager
def hold_lock(out: Path, command: str) -> Iterator[None]:
    """Hold ``out/.lock`` for the duration: one driver per results folder.

    An exclusive ``flock``: the kernel releases it when the holder exits or is killed, so a lock left
    by a dead driver is never in the way (stale locks need no clean-up). The file names the holder
    (host, pid, command, start) for the message a second driver gets.
    """
    created = not out.exists()
    path = out / LOCK
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_target(path)  # a planted link would be truncated through below
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fh = os.fdopen(os.open(path, flags, 0o644), "r+", encoding="utf-8")
    except OSError as e:  # before anything is written: an unusable --out, one line
        raise ConfigError(f"--out {out}: {write_error_line(e)}; choose another --out") from None
    locked = False
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(
                f"--out {out}: in use by {holder}; wait for it to finish or stop it "
                "(a second driver would duplicate or delete its results)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(
            f"pbrl {command} (host {platform.node()}, pid {os.getpid()}, "
            f"since {time.strftime('%Y-%m-%d %H:%M:%S')})\n"
        )
        fh.flush()
        locked = True
        yield
    finally:
        if locked and created and {p.name for p in out.iterdir()} <= DRIVER_FILES:
            for p in out.iterdir():  # stopped before writing anything: leave no trace
                p.unlink()
            out.rmdir()
        fh.close()  # releases the flock


def mark(out: Path) -> None:
    """Write pbrl's marker into ``out`` (who and when)."""
    atomic_write_text(
        out / MARKER,
        yaml.safe_dump({"written_by": "pbrl_dist", "user": _user(), "created": time.time()}),
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def git_commit(where: Path) -> str | None:
    """The git commit of ``where`` (with ``+dirty`` when the tree has changes), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on (and Python's)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_record(sweep: Sweep, out: Path, **extra: Any) -> None:
    """Write ``out/sweep.yaml``: what ran (source, sweep block, trials) and how (provenance, ``extra``)."""
    record = {
        "name": sweep.name,
        "source": str(sweep.path),
        "sweep": sweep.block,
        "trials": [t.name for t in sweep.trials],
        **extra,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cwd": str(Path.cwd()),
        "git_commit": git_commit(Path.cwd()),
        "versions": versions(),
        "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(out / RECORD, yaml.safe_dump(record, sort_keys=False))


def inside(out: Path, path: Path) -> Path:
    """Return ``path`` if it lies inside ``out`` (after resolving links and ``..``), else ``ConfigError``."""
    if not path.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"{path}: outside the results folder {out}; refusing to write there")
    return path


def check_trusted(out: Path, *inside: Path) -> None:
    """Before Tune unpickles its state from ``out``: pbrl's folder, yours, and writable by you alone.

    Tune's experiment state (``tuner.pkl``) is a pickle, which can run code when loaded, so a results
    folder is trusted input: it must carry pbrl's marker, belong to this user, and neither it nor
    anything in it (``inside`` too, e.g. the Tune folder; see ``launch/trust.py``) may be writable by
    anyone else.
    """
    from pbrl_dist.launch.trust import check_folder

    check_folder(out, "--resume")
    for p in inside:
        if not p.resolve().is_relative_to(out.resolve()):
            check_folder(p, "--resume", marker=False)


def read_record(out: Path) -> dict[str, Any]:
    """Return ``out/sweep.yaml`` (``ConfigError`` if it is missing or unreadable)."""
    path = out / RECORD
    if not path.exists():
        raise ConfigError(f"--resume: {path} is missing; {out} was not written by pbrl run/sweep")
    try:
        rec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume: {path} is unreadable ({type(e).__name__})") from None
    if not isinstance(rec, dict):
        raise ConfigError(f"--resume: {path} is not a pbrl sweep record")
    return rec
