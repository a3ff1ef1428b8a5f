"""D13 (layout and contracts): every runner satisfies its typed contract, nothing probes a runner with
``hasattr``/``getattr``, the old ``pbrl_dist/dist`` folder is gone and ruff reads every source file.

On 07a5925 the runners lived in ``pbrl_dist/dist`` (a folder name ruff excludes by default, so none of
it was linted), had no declared contract, and the loops asked ``hasattr(runner, "oracle")``.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pbrl_dist.executors import ChunkRunner, RolloutRunner
from pbrl_dist.executors.local import LocalChunkRunner, LocalRolloutRunner

ROOT = Path(__file__).resolve().parents[3]
PKG = ROOT / "pbrl_dist"


def _members(proto: type) -> list[str]:
    """The methods a protocol declares."""
    return [n for n, v in vars(proto).items() if not n.startswith("_") and callable(v)]


def _params(fn: object) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def test_d13_local_runners_satisfy_their_contracts() -> None:
    assert isinstance(LocalChunkRunner(object()), ChunkRunner)
    assert isinstance(LocalRolloutRunner(), RolloutRunner)
    assert not isinstance(LocalRolloutRunner(), ChunkRunner)  # the contracts are distinct
    assert not isinstance(object(), RolloutRunner)


@pytest.mark.parametrize(
    ("module", "cls_name", "proto"),
    [
        ("pbrl_dist.executors.ray_chunks", "RayChunkRunner", ChunkRunner),
        ("pbrl_dist.executors.ray_rollouts", "RayRolloutRunner", RolloutRunner),
        ("pbrl_dist.executors.local", "LocalChunkRunner", ChunkRunner),
        ("pbrl_dist.executors.local", "LocalRolloutRunner", RolloutRunner),
    ],
)
def test_d13_runner_classes_implement_every_contract_method(
    module: str, cls_name: str, proto: type
) -> None:
    """Checked on the classes (no Ray started): same method names and the same parameters."""
    import importlib

    cls = getattr(importlib.import_module(module), cls_name)
    members = _members(proto)
    assert members, f"{proto.__name__} declares no methods?"
    missing = [m for m in members if m not in dir(cls)]
    assert not missing, f"{cls_name} lacks {missing} of {proto.__name__}"
    assert issubclass(cls, proto)
    for m in members:
        assert _params(getattr(cls, m)) == _params(getattr(proto, m)), (
            f"{cls_name}.{m} has another signature than {proto.__name__}.{m}"
        )


def test_d13_no_runner_is_probed_with_hasattr_or_getattr() -> None:
    pattern = re.compile(r"\b(hasattr|getattr)\(\s*runner\b")
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted(PKG.rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "runners probed instead of typed:\n" + "\n".join(hits)


def test_d13_no_dist_folder_and_ruff_reads_every_source_file() -> None:
    assert not (PKG / "dist").exists(), "pbrl_dist/dist is back (ruff excludes `dist` by default)"
    ruff_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {})
    ruff_cfg = ruff_cfg.get("ruff", {})
    excludes = [
        *ruff_cfg.get("exclude", []),
        *ruff_cfg.get("extend-exclude", []),
        *ruff_cfg.get("lint", {}).get("exclude", []),
    ]
    assert not [e for e in excludes if "pbrl_dist" in e], excludes
    pytest.importorskip("ruff")
    shown = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "pbrl_dist"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    listed = {Path(line.strip()).resolve() for line in shown.splitlines() if line.strip()}
    sources = {p.resolve() for p in PKG.rglob("*.py")}
    unread = sorted(str(p.relative_to(ROOT)) for p in sources - listed)
    assert not unread, f"ruff skips {unread}"


def test_d13_executor_tests_are_collected(pytestconfig: pytest.Config) -> None:
    """No folder on the way to these tests matches pytest's ``norecursedirs`` (``dist`` does)."""
    here = Path(__file__).resolve().parent
    assert (here / "__init__.py").exists()
    assert {"test_contracts.py", "test_pool.py"} <= {p.name for p in here.glob("test_*.py")}
    patterns = pytestconfig.getini("norecursedirs")
    for part in here.relative_to(ROOT).parts:
        assert not any(fnmatch.fnmatch(part, pat) for pat in patterns), (part, patterns)
    testpaths = pytestconfig.getini("testpaths")
    assert any(here.is_relative_to(ROOT / t) for t in testpaths), testpaths
