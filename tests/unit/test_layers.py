"""The layers of DESIGN.md §2: import-linter's contracts (pyproject.toml) hold, and no import circle.

Two independent checks of the same picture: ``lint-imports`` (grimp's graph), and a graph built here
from every ``import`` statement of every file with ``ast`` — lazy imports inside functions and imports
under ``TYPE_CHECKING`` included — searched for circles (strongly connected components) and for
arrows that run up the layer list. Each check is also shown to fail on a planted defect.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "pbrl_dist"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


# ---- the graph ---------------------------------------------------------------------------------


def _modules(pkg_dir: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _nearest(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def import_graph(pkg_dir: Path) -> dict[str, set[str]]:
    """Every module of the package → the package's modules it imports anywhere in its file.

    ``from a.b import c`` counts as an import of ``a.b.c`` when that is a module, else of ``a.b``;
    relative imports are resolved; a name outside the package is not an arrow.
    """
    pkg = pkg_dir.name
    modules = _modules(pkg_dir)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(_nearest(a.name, modules) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here[: len(here) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.add(sub if sub in modules else _nearest(base, modules))
        graph[name] = {t for t in targets if t and t != name and t.split(".")[0] == pkg}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def part(module: str) -> str:
    """``pbrl_dist.algos.pbrl`` → ``algos``: the subpackage or top-level module it belongs to."""
    return module.split(".")[1] if "." in module else ""


def layer_contract(pyproject: Path = ROOT / "pyproject.toml") -> list[set[str]]:
    """The ``layers`` contract of pyproject.toml, top first; each layer a set of parts."""
    contracts = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [{p.strip() for p in layer.split("|")} for layer in layers]


def wrong_arrows(graph: dict[str, set[str]], layers: list[set[str]]) -> list[tuple[str, str]]:
    """Imports between parts that do not point to a lower layer (siblings are independent)."""
    rank = {p: i for i, layer in enumerate(layers) for p in layer}
    return sorted(
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if part(a) and part(b) and part(a) != part(b) and rank[part(a)] >= rank[part(b)]
    )


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


# ---- the package -------------------------------------------------------------------------------


def test_lint_imports_keeps_every_contract() -> None:
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout and "layers" not in out.stderr


def test_import_graph_of_pbrl_dist_has_no_circle_lazy_imports_included() -> None:
    graph = import_graph(PKG)
    assert len(graph) > 50 and graph["pbrl_dist.catalog"] >= {"pbrl_dist.rlhf"}
    assert circles(graph) == []


def test_every_arrow_between_parts_points_down_the_layer_contract() -> None:
    graph = import_graph(PKG)
    layers = layer_contract()
    listed = set().union(*layers)
    parts = {part(m) for m in graph} - {""}
    assert parts == listed, f"parts not in the contract: {parts - listed}; gone: {listed - parts}"
    assert wrong_arrows(graph, layers) == []
    # the arrows the layers were drawn for
    assert "pbrl_dist.executors.shards" in graph["pbrl_dist.rlhf.loop"]
    assert "pbrl_dist.catalog" in graph["pbrl_dist.config"]


def design_layers(design: Path = ROOT / "DESIGN.md") -> list[set[str]]:
    """The layer picture of DESIGN.md §2 (``cli | testing → launch → …``), top first."""
    text = design.read_text(encoding="utf-8")
    start = text.index("```\ncli | testing")
    picture = text[start + 4 : text.index("```", start + 4)]
    return [
        {p.strip() for p in layer.split("|")} for layer in picture.replace("\n", " ").split("→")
    ]


def design_table(design: Path = ROOT / "DESIGN.md") -> dict[str, set[str]]:
    """DESIGN.md §2's table: part → the pbrl_dist parts its last column says it imports."""
    rows: dict[str, set[str]] = {}
    for line in design.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`") or cells[0] == "`module`":
            continue
        name = cells[0].strip("`").removesuffix("/").removesuffix(".py")
        words = re.sub(r"\([^)]*\)", "", cells[2]).replace(";", ",").split(",")
        parts = set().union(*layer_contract())  # pbrl_dist parts; the rest are third-party
        rows[name] = {w.strip().strip("`") for w in words} & parts
    return rows


def test_design_md_draws_the_layers_and_the_imports_the_code_has() -> None:
    assert design_layers() == layer_contract()
    graph = import_graph(PKG)
    actual: dict[str, set[str]] = {}
    for a, targets in graph.items():
        actual.setdefault(part(a), set()).update(part(b) for b in targets)
    actual = {p: deps - {p, ""} for p, deps in actual.items() if p}
    assert design_table() == actual


def test_catalog_imports_every_module_that_registers_a_builtin() -> None:
    registers = set()
    for name, path in _modules(PKG).items():
        for node in ast.parse(path.read_text()).body:  # module level only: what an import runs
            call = node.value if isinstance(node, ast.Expr | ast.Assign) else None
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") in {
                "register_algo",
                "register_problem",
            }:
                registers.add(name)
    assert registers >= {"pbrl_dist.algos.pbrl", "pbrl_dist.rlhf", "pbrl_dist.problems.shaping"}
    assert registers <= import_graph(PKG)["pbrl_dist.catalog"]


def test_importing_config_registers_every_builtin_problem_and_loop() -> None:
    code = (
        "import pbrl_dist.config.loader\n"
        "from pbrl_dist.algos.registry import algo_specs\n"
        "from pbrl_dist.catalog import LOGGED_METRICS\n"
        "from pbrl_dist.problems.registry import problem_specs\n"
        "print(' '.join(sorted(algo_specs())))\n"
        "print(' '.join(sorted(problem_specs())))\n"
        "print(' '.join(LOGGED_METRICS['toy_rlhf']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    algos, problems, toy = out.stdout.splitlines()
    assert set(algos.split()) >= {"pbrl", "indep_pg", "pbrl_ni", "metagrad", "start_line", "rlhf"}
    assert set(problems.split()) >= {
        "stackelberg", "incentive", "shaping", "atari_rlhf", "toy_rlhf", "gym_rlhf",
    }  # fmt: skip
    assert "rm/accuracy" in toy.split()  # the rlhf loop's metrics join the problem's


# ---- each check fails on a planted defect ------------------------------------------------------


def test_design_table_reads_parts_and_leaves_out_notes_and_packages(tmp_path: Path) -> None:
    design = tmp_path / "DESIGN.md"
    design.write_text(
        "| module | purpose | imports |\n|---|---|---|\n"
        "| `algos/` | loops | executors (`protocols`, `local`), core; torch |\n"
        "| `core/` | math | torch |\n| `cadence.py` | due | — |\n",
        encoding="utf-8",
    )
    assert design_table(design) == {"algos": {"executors", "core"}, "core": set(), "cadence": set()}


def test_circles_finds_a_lazy_circle_and_nothing_else(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import g\n",
            "pkg/b.py": "def g():\n    from . import a  # lazy, relative\n    return a\n",
            "pkg/c.py": "import pkg.a\nimport os\n",
            "pkg/sub/__init__.py": "from .d import x\n",
            "pkg/sub/d.py": "x = 1\n",
        },
    )
    graph = import_graph(tmp_path / "pkg")
    assert graph["pkg.b"] == {"pkg.a"} and graph["pkg.sub"] == {"pkg.sub.d"}
    assert circles(graph) == [["pkg.a", "pkg.b"]]


def test_wrong_arrows_flags_an_upward_and_a_sibling_arrow() -> None:
    graph = {
        "pbrl_dist.cli": {"pbrl_dist.core.mdp"},
        "pbrl_dist.core.mdp": {"pbrl_dist.cli"},  # upward
        "pbrl_dist.nets": {"pbrl_dist.core"},  # between independent siblings
    }
    layers = [{"cli"}, {"nets", "core"}]
    assert wrong_arrows(graph, layers) == [
        ("pbrl_dist.core.mdp", "pbrl_dist.cli"),
        ("pbrl_dist.nets", "pbrl_dist.core"),
    ]


def test_lint_imports_breaks_on_a_lazy_upward_import_and_an_unplaced_part(tmp_path: Path) -> None:
    shutil.copytree(PKG, tmp_path / "pbrl_dist", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    types = tmp_path / "pbrl_dist/core/types.py"
    types.write_text(types.read_text() + "\n\ndef _planted():\n    from pbrl_dist import cli\n")
    (tmp_path / "pbrl_dist/newpart.py").write_text('"""Nowhere in the layer list."""\n')
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "pbrl_dist.core is not allowed to import pbrl_dist.cli" in out.stdout
    assert "not listed as layers:\n\n- pbrl_dist.newpart" in out.stdout  # every part has its place
    assert "No cycles are allowed in pbrl_dist." in out.stdout  # core → cli → … → core
    assert import_graph(tmp_path / "pbrl_dist")["pbrl_dist.core.types"] >= {"pbrl_dist.cli"}
