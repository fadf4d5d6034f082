"""Figures about voiceprep's shape, read from the code (issue #24).

    python tests/bench/code_figures.py [--list]

- import cycles: strongly connected groups of modules in the graph of imports of
  voiceprep's own modules, at module or function level (not under TYPE_CHECKING; a
  package's `__init__` counts as the package);
- private reaches: `obj._name` where `obj` is not `self`/`cls` (a reach into another
  object's private member), plus `from voiceprep.x import _name` across modules;
- function-level imports of voiceprep's own modules;
- modules over 600 lines.

`--list` prints every offending place. The duplicate pairs come from the `duplicates`
tool: `duplicates --repo voiceprep --most 200`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "voiceprep"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names (voiceprep uses no relative imports: "" for one)."""
    return "" if node.level else node.module or ""


def own_imports(module: str, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """voiceprep modules `node` imports (`from pkg import mod` names the module)."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "voiceprep":
                found.add(alias.name)
        return found
    target = absolute(module, node)
    if target.split(".")[0] != "voiceprep":
        return found
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.add(sub if sub in known else target)
    return found


def function_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports inside a function body (at any depth), each once."""
    seen: set[int] = set()
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in seen:
                    seen.add(id(node))
                    yield node


def module_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (outside functions, not under TYPE_CHECKING)."""

    def visit(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    yield from visit(node.body)
                yield from visit(node.orelse)
            elif isinstance(node, (ast.Try,)):
                yield from visit(node.body)
                for handler in node.handlers:
                    yield from visit(handler.body)
                yield from visit(node.orelse)
                yield from visit(node.finalbody)
            elif isinstance(node, ast.ClassDef):
                yield from visit(node.body)

    return visit(tree.body)


def private_reaches(module: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            ):
                continue
            yield node.lineno, f"{ast.unparse(owner)}.{name}"
        elif isinstance(node, ast.ImportFrom) and not node.level:
            target = node.module or ""
            if target.split(".")[0] != "voiceprep" or target == module:
                continue
            # A package's private modules (voiceprep.cli._output) are its modules' own.
            package = module.rsplit(".", 1)[0]
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    if target == package or target.startswith(package + "."):
                        continue
                    yield node.lineno, f"from {target} import {alias.name}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            strong(node)
    return found


def main(argv: list[str]) -> int:
    show = "--list" in argv
    files = sorted(ROOT.rglob("*.py"))
    trees = {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in files}
    known = set(trees)
    graph: dict[str, set[str]] = {}
    late: list[str] = []
    reaches: list[str] = []
    long: list[str] = []
    for module, (path, tree) in trees.items():
        rel = path.relative_to(ROOT.parent)
        deps: set[str] = set()
        for node in [*module_level(tree), *function_level(tree)]:
            deps |= own_imports(module, node, known)
        # `import voiceprep.a.b` also runs the packages above it; a package's __init__
        # importing its own submodules is not a cycle through the package.
        graph[module] = {d for d in deps if d in known and d != module}
        for node in function_level(tree):
            if own_imports(module, node, known):
                late.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        reaches += [f"{rel}:{line}: {what}" for line, what in private_reaches(module, tree)]
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long.append(f"{rel}: {lines} lines")
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    for group in found:
        print("  " + " <-> ".join(group))
    print(f"private reaches: {len(reaches)}")
    print(f"function-level imports of voiceprep modules: {len(late)}")
    print(f"modules over {MAX_LINES} lines: {len(long)}")
    for entry in long:
        print("  " + entry)
    if show:
        print("\n# private reaches")
        print("\n".join(reaches))
        print("\n# function-level imports")
        print("\n".join(late))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
