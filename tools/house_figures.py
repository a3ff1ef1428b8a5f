"""Figures of the house (issue 18's closing note): the import graph between pbrl_dist's parts and files,
the ``Any`` annotations and the ``hasattr``/``getattr`` probes, README's length.

    .venv/bin/python tools/house_figures.py              # this checkout
    PYTHONPATH=/path/to/other/checkout .venv/bin/python tools/house_figures.py /path/to/other/checkout

Lazy (function-level) imports count like top-level ones. "Upward" is measured against the layer order
of ``pyproject.toml``'s import-linter contract (DESIGN.md §2), the same order for any checkout measured.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import grimp
import networkx


def layers(root: Path) -> list[set[str]]:
    cfg = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (contract,) = [c for c in cfg["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    return [{p.strip() for p in layer.split("|")} for layer in contract["layers"]]


def part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else "(root)"


def sccs(nodes: set[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    """Strongly connected components with more than one node (networkx, a dependency of torch)."""
    g = networkx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return [c for c in networkx.strongly_connected_components(g) if len(c) > 1]


def annotations(tree: ast.AST) -> tuple[int, int]:
    """(uses of ``Any`` inside annotations, parameters annotated exactly ``Any``)."""
    uses = plain = 0
    for node in ast.walk(tree):
        anns: list[ast.expr] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            for a in args:
                if a.annotation is not None:
                    anns.append(a.annotation)
                    if isinstance(a.annotation, ast.Name) and a.annotation.id == "Any":
                        plain += 1
            if node.returns is not None:
                anns.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for ann in anns:
            text = ast.unparse(ann)
            uses += sum(1 for n in ast.walk(ann) if isinstance(n, ast.Name) and n.id == "Any")
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):  # a string annotation
                uses += text.count("Any")
    return uses, plain


def probes(tree: ast.AST) -> int:
    return sum(
        1
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("hasattr", "getattr")
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    graph = grimp.build_graph("pbrl_dist", include_external_packages=False, cache_dir=None)
    mods = {m for m in graph.modules if m.startswith("pbrl_dist")}
    file_edges = {
        (a, b)
        for a in mods
        for b in graph.find_modules_directly_imported_by(a)
        if b in mods and a != b
    }
    parts = {part(m) for m in mods}
    part_edges = {(part(a), part(b)) for a, b in file_edges if part(a) != part(b)}
    rank: dict[str, int] = {}
    for i, layer in enumerate(layers(root)):
        for p in layer:
            rank[p] = i
    upward = sorted((a, b) for a, b in part_edges if a in rank and b in rank and rank[b] < rank[a])
    part_circles = sccs(parts, part_edges)
    # file circles: a package's __init__ counts as a file of its own
    file_circles = sccs(mods, file_edges)
    any_uses = plain_any = n_probes = 0
    lines = 0
    for f in sorted((root / "pbrl_dist").rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        tree = ast.parse(text)
        u, p = annotations(tree)
        any_uses += u
        plain_any += p
        n_probes += probes(tree)
        lines += text.count("\n")
    launch = sum(f.read_text().count("\n") for f in (root / "pbrl_dist" / "launch").rglob("*.py"))
    readme = (root / "README.md").read_text().count("\n")
    print(f"checkout: {root}")
    print(f"parts: {len(parts)}  arrows between parts: {len(part_edges)}  upward: {len(upward)} {upward}")
    print(f"circles between parts: {len(part_circles)} {[sorted(c) for c in part_circles]}")
    print(f"circles between files: {len(file_circles)} (sizes {[len(c) for c in file_circles]})")
    print(f"Any in annotations: {any_uses}  parameters typed plain Any: {plain_any}")
    print(f"hasattr/getattr calls: {n_probes}")
    print(f"package lines: {lines}  launch/: {launch} ({launch / lines:.0%})  README: {readme} lines")


if __name__ == "__main__":
    main()
