"""Trust before code: check a results folder, a sweep file and its ``problem.target`` before running them.

Three things pbrl loads can run code: a ``problem.target`` (a user's Python file or module, imported
while a sweep file or a trial's ``config.yaml`` is read), and Tune's experiment state (``tuner.pkl``,
a pickle unpickled by ``--resume``). Whoever can write one of them can run code as you. So before
anything is imported or unpickled:

- a results folder must carry pbrl's marker, belong to you and be writable by no one else, and so must
  everything in it (``sweep.yaml``, each ``config.yaml``, ``_tune/``, ``tuner.pkl``, experiment state);
- a sweep file (and a ``config.yaml``) that names a ``problem.target`` must belong to you (or root)
  and be writable by no one else, and so must the target's file and the folder that holds it.

"Writable by no one else" allows group write only for your private group (a group named like you,
with no other members: what a ``umask 002`` system gives every file you make). Nothing here reads a
file beyond its metadata, except YAML (parsed safely, never executed).
"""

from __future__ import annotations

import grp
import importlib.machinery
import os
import pwd
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from pbrl_dist.config.loader import ConfigError

MARKER = ".pbrl_results"  # the same as results.MARKER (imported there from here would be circular)
MAX_YAML_BYTES = 1 << 20


def _private_group(gid: int) -> bool:
    """True when ``gid`` is this user's own group: named like the user, nobody else in it."""
    try:
        me = pwd.getpwuid(os.getuid()).pw_name
        g = grp.getgrgid(gid)
    except (KeyError, OSError):
        return False
    return g.gr_name == me and set(g.gr_mem) <= {me} and gid == os.getgid()


def _others_can_write(st: os.stat_result) -> bool:
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _private_group(st.st_gid)


def _refuse_mode(what: str, p: Path, st: os.stat_result) -> ConfigError:
    return ConfigError(
        f"{what}: {p} is writable by others (mode {stat.S_IMODE(st.st_mode):o}), so it could run "
        f"their code as you; `chmod go-w {p}` if you trust its contents, then try again"
    )


def check_path(p: Path, what: str, *, root_ok: bool = False) -> None:
    """``p`` (followed if a link) belongs to you (or root with ``root_ok``) and no one else can write it."""
    st = p.stat()
    uid = os.getuid()
    if st.st_uid != uid and not (root_ok and st.st_uid == 0):
        raise ConfigError(f"{what}: {p} belongs to uid {st.st_uid}, not you ({uid}); not using it")
    if _others_can_write(st):
        raise _refuse_mode(what, p, st)


def _walk(out: Path) -> Iterator[Path]:
    """Every entry under ``out`` (links not followed)."""
    for root, dirs, files in os.walk(out, followlinks=False):
        base = Path(root)
        for name in (*dirs, *files):
            yield base / name


def check_folder(out: Path, what: str, *, marker: bool = True) -> None:
    """``out`` is pbrl's (marker), yours, and no one else can write it or anything in it."""
    if not out.is_dir():
        raise ConfigError(f"{what}: {out} is not a results folder")
    if marker and not (out / MARKER).exists():
        raise ConfigError(f"{what}: {out} has no {MARKER} marker; pbrl did not write it")
    check_path(out, what)
    for p in _walk(out):
        try:
            if p.is_symlink():
                if not p.exists():
                    continue  # dangling: nothing to load through it
                st = p.stat()  # what it points to is what would be read
            else:
                st = p.lstat()
        except OSError:
            continue
        if st.st_uid != os.getuid():
            raise ConfigError(
                f"{what}: {p} belongs to uid {st.st_uid}, not you ({os.getuid()}); not using {out}"
            )
        if _others_can_write(st):
            raise ConfigError(
                f"{what}: {p} is writable by others (mode {stat.S_IMODE(st.st_mode):o}), so it "
                f"could run their code as you; `chmod -R go-w {out}` if you trust it, then try again"
            )


def _read_yaml(path: Path) -> Any:
    """The parsed file, or None when it is not readable YAML (the loader reports that itself)."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            return None
        from pbrl_dist.config.loader import _read_yaml as bounded

        return bounded(path)
    except Exception:
        return None


def targets_in(data: Any) -> list[str]:
    """Every ``problem.target`` value in a parsed sweep file, record, override or ``config.yaml``.

    Conservative: any string (or list of strings) under a key ``target`` or a dotted key ending in
    ``.target``, at any depth (methods, smoke block, grid axes).
    """
    found: list[str] = []

    def visit(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                visit(v, str(k))
        elif isinstance(node, list):
            for v in node:
                visit(v, key)
        elif isinstance(node, str) and (key == "target" or key.endswith(".target")):
            found.append(node)

    visit(data, "")
    return found


def targets_of_overrides(overrides: Sequence[str]) -> list[str]:
    """``problem.target=...`` (and grid axes of it) among command-line overrides."""
    found: list[str] = []
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip().endswith("target"):
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        found += targets_in({"target": value})
    return found


def _module_origin(name: str) -> Path | None:
    """The file ``import name`` would run, found without running anything (None: not found/loaded)."""
    if not name or name in sys.modules:
        return None
    parts = name.split(".")
    path: list[str] | None = None
    origin: Path | None = None
    for i, part in enumerate(parts):
        if ".".join(parts[: i + 1]) in sys.modules:
            mod = sys.modules[".".join(parts[: i + 1])]
            path = list(getattr(mod, "__path__", []) or [])
            origin = None
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, path or sys.path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        origin = Path(spec.origin) if spec.origin and spec.has_location else None
        path = list(spec.submodule_search_locations or [])
        if origin is not None:  # a parent package's __init__ runs too
            check_target_file(origin, f"problem.target {name}")
    return origin


def check_target_file(path: Path, what: str) -> None:
    """A file that will be imported: yours (or root's), and neither it nor its folder writable by others."""
    check_path(path, what, root_ok=True)
    folder = path.resolve().parent
    st = folder.stat()
    if _others_can_write(st) and not st.st_mode & stat.S_ISVTX:
        raise _refuse_mode(what, folder, st)


def check_targets(targets: Iterable[str], base_dirs: Sequence[Path] = ()) -> None:
    """Check the code each ``problem.target`` would import, before it is imported."""
    for target in dict.fromkeys(targets):
        mod = target.partition(":")[0].strip()
        what = f"problem.target {target}"
        if mod.endswith(".py"):
            p = Path(mod)
            cands = [p] if p.is_absolute() else [*(b / p for b in base_dirs), p]
            for c in cands:
                if c.is_file():
                    check_target_file(c, what)
        else:
            try:
                _module_origin(mod)
            except ConfigError:
                raise
            except Exception:  # a lookup that fails is left to the import's own message
                continue


def check_sweep_file(sweep_file: str | Path, overrides: Sequence[str] = ()) -> None:
    """Before a sweep file is loaded: if it (or an override) names a ``problem.target``, the file and
    the target's code must be yours and writable by no one else. A file without a target runs no code."""
    path = Path(sweep_file)
    data = _read_yaml(path) if path.is_file() else None
    in_file = targets_in(data) if data is not None else []
    from_cli = targets_of_overrides(overrides)
    if in_file:
        check_path(path, f"{path} names problem.target (code)", root_ok=True)
    check_targets(in_file, [path.resolve().parent])
    check_targets(from_cli)


def check_results(out: Path, what: str) -> None:
    """Before a folder's code or pickles are loaded: the folder and all in it, then every target that
    its record (``sweep.yaml``: source file, overrides) and its trials' ``config.yaml`` name."""
    check_folder(out, what)
    record = _read_yaml(out / "sweep.yaml")
    if isinstance(record, dict):
        source = record.get("source")
        overrides = [str(o) for o in record.get("overrides") or []]
        if isinstance(source, str) and Path(source).is_file():
            check_sweep_file(source, overrides)
        else:
            check_targets(targets_of_overrides(overrides))
    for cfg in sorted(out.rglob("config.yaml")):
        check_targets(targets_in(_read_yaml(cfg)), [cfg.parent])
