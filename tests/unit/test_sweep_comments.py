"""The commands in each sweep file's header comments agree with what ``pbrl`` does: each names its own
file, and every folder a ``pbrl report`` or ``--resume`` line reads is one a ``pbrl run|sweep`` line of
the same file writes (``--out``, else ``results/<name>``, ``results/<name>_smoke`` with ``--smoke``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("sweeps/*.yaml"), *ROOT.glob("sweeps/variants/*.yaml")])


def _commands(path: Path) -> list[list[str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"#\s+(pbrl .*)", line)
        if m:
            out.append(shlex.split(m.group(1).split("#")[0].split("->")[0]))
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_sweep_file_comments_name_the_folders_pbrl_writes(path: Path) -> None:
    name = yaml.safe_load(path.read_text()).get("name") or path.stem
    written, read = set(), []
    for argv in _commands(path):
        verb, args = argv[1], argv[2:]
        out = args[args.index("--out") + 1] if "--out" in args else None
        if verb in ("run", "sweep") and "--resume" not in args:
            assert args[0] == str(path.relative_to(ROOT)), f"{path.name}: {argv} runs another file"
            written.add(out or f"results/{name}{'_smoke' if '--smoke' in args else ''}")
        elif verb in ("run", "sweep"):
            read.append(out)
        elif verb == "report":
            read.append(args[0])
    for line in path.read_text().splitlines():  # "-> results/x" says where a command writes
        m = re.match(r"#\s+pbrl .*-> (\S+)", line)
        if m:
            assert m.group(1) in written, f"{path.name}: {line}"
    for folder in read:
        assert folder in written, f"{path.name}: reads {folder}, but its commands write {written}"
