"""Writes into a results folder: atomic, and never through a link planted there.

Every file pbrl writes into a results folder (tables, figures, ``result.json``, ``config.yaml``,
``sweep.yaml``, checkpoints, ...) goes through here: it is written to a temporary file in the same
folder (created with ``O_EXCL``, so never through a link), flushed to disk and renamed over the
target, so a kill or a full disk mid-write leaves the previous file whole (or none), never a
truncated one. Before writing, ``check_target`` refuses a target that is itself a symbolic link, or
whose folder resolves outside ``root`` (a linked ``report/`` or trial folder): ``UnsafePath`` names
the path. A rename would replace such a link rather than write through it, but a planted link is
refused all the same, so the user learns about it.

Append-only streams (``metrics.jsonl``) are opened with ``open_append``: ``O_NOFOLLOW``, never a link.

A leaf: imports the standard library only, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".pbrl-tmp-"
"""Temporary files start with this; a kill mid-write may leave one behind (pbrl's own, removable)."""

WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO}
)
"""Errors that mean "this folder cannot be written now" (disk full, read-only, no permission)."""


class UnsafePath(Exception):
    """A write target is a symbolic link, or lies outside the results folder after resolving links."""


def check_target(path: Path | str, root: Path | str | None = None) -> Path:
    """Return ``path`` if pbrl may write it, else raise ``UnsafePath`` naming it.

    Refused: ``path`` is a symbolic link (wherever it points), or the real path of its folder is not
    inside the real path of ``root`` (default: the folder itself, i.e. only the link test applies).
    """
    path = Path(path)
    if path.is_symlink():
        raise UnsafePath(
            f"{path}: is a symbolic link (to {os.readlink(path)}); pbrl does not write through links "
            "in a results folder: remove it and run again"
        )
    if root is not None:
        parent, real_root = os.path.realpath(path.parent), os.path.realpath(root)
        if os.path.commonpath([parent, real_root]) != real_root:
            raise UnsafePath(
                f"{path}: its folder resolves to {parent}, outside the results folder {root} "
                "(a symbolic link in between); pbrl does not write there: remove the link and run again"
            )
    return path


def _create_temp(path: Path, suffix: str = "") -> tuple[int, str]:
    """A new file beside ``path`` (``O_EXCL``: never an existing file or link), mode 0666 less the
    umask like any file the user creates; return (descriptor, its path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = os.path.join(path.parent, f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise with_filename(e, path) from None
    raise with_filename(FileExistsError(errno.EEXIST, "no free temporary name"), path)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can open or sync a folder
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def with_filename(e: OSError, path: Path) -> OSError:
    """``e`` with the target as its file name (messages name what could not be written)."""
    if e.filename is not None and TMP_PREFIX not in str(e.filename):
        return e
    if e.errno is None:
        return e
    new = OSError(e.errno, e.strerror or str(e), str(path))  # the errno's own subclass
    new.__cause__ = e
    return new


@contextlib.contextmanager
def atomic_file(
    path: Path | str, mode: str = "wb", *, root: Path | str | None = None, **open_kw: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit, sync it and rename it over
    ``path`` (atomic). On an error the temporary file is removed and ``path`` is left as it was.

    ``mode`` is ``"wb"`` or ``"w"`` (then ``encoding`` defaults to UTF-8). Checked first with
    ``check_target(path, root)``. An ``OSError`` carries ``path`` as its file name.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file: mode {mode!r}: only 'w' or 'wb'")
    path = check_target(path, root)
    if mode == "w":
        open_kw.setdefault("encoding", "utf-8")
    fd, tmp = _create_temp(path)
    with _renamed_over(tmp, path), os.fdopen(fd, mode, **open_kw) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: Path | str, *, root: Path | str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) for writers that want a file name; on a clean
    exit it is synced and renamed over ``path``. Prefer ``atomic_file`` where the writer takes a file
    object. The temporary file exists (empty, created with ``O_EXCL``) when the block starts.
    """
    path = check_target(path, root)
    fd, tmp = _create_temp(path, path.suffix)  # the suffix names the format (savefig)
    os.close(fd)
    with _renamed_over(tmp, path):
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _renamed_over(tmp: str, path: Path) -> Iterator[None]:
    """The block fills and syncs ``tmp``; then ``tmp`` is renamed over ``path`` and the folder synced.
    On any error ``tmp`` is removed (``path`` stays as it was) and an ``OSError`` names ``path``."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise with_filename(e, path) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes, *, root: Path | str | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_file``)."""
    with atomic_file(path, "wb", root=root) as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str, *, root: Path | str | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_file``)."""
    with atomic_file(path, "w", root=root) as fh:
        fh.write(text)


def open_append(path: Path | str, *, root: Path | str | None = None) -> IO[str]:
    """Open ``path`` for appending text (UTF-8), created if missing, never through a link
    (``O_NOFOLLOW``: a planted link raises ``UnsafePath``)."""
    path = check_target(path, root)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(
                f"{path}: is a symbolic link; pbrl does not append through links"
            ) from None
        raise with_filename(e, path) from None
    return os.fdopen(fd, "a", encoding="utf-8")


def write_error_line(e: OSError, fallback: Path | str | None = None) -> str:
    """``e`` as one line naming the path and the system's reason, e.g.
    ``cannot write results/x/report/summary.csv: No space left on device``."""
    where = e.filename or fallback
    reason = e.strerror or str(e) or type(e).__name__
    return f"cannot write {where}: {reason}" if where else f"write failed: {reason}"


def is_write_error(e: BaseException) -> bool:
    """True for an ``OSError`` that means the folder cannot be written (disk full, read-only, ...)."""
    return isinstance(e, OSError) and e.errno in WRITE_ERRNOS
