"""The package's shape, read from the code (tests/bench/code_figures.py): no module imports
a module that imports it, and modules do not reach into other objects' private members
(a few reach into third-party frameworks' where no public hook exists)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
import code_figures  # noqa: E402


def trees() -> dict[str, tuple[Path, ast.Module]]:
    return {
        code_figures.module_name(path): (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(code_figures.ROOT.rglob("*.py"))
    }


def test_no_import_cycle_between_voiceprep_modules() -> None:
    parsed = trees()
    graph: dict[str, set[str]] = {}
    for module, (_, tree) in parsed.items():
        nodes = [*code_figures.module_level(tree), *code_figures.function_level(tree)]
        deps: set[str] = set()
        for node in nodes:
            deps |= code_figures.own_imports(module, node, set(parsed))
        graph[module] = {d for d in deps if d in parsed and d != module}

    assert code_figures.cycles(graph) == []


def test_the_cache_package_reaches_into_no_private_member() -> None:
    reaches = [
        (module, line, what)
        for module, (_, tree) in trees().items()
        if module.startswith("voiceprep.cache")
        for line, what in code_figures.private_reaches(module, tree)
    ]
    assert reaches == []


def test_voiceprep_modules_are_imported_at_the_top_but_for_a_few_measured_deferrals() -> None:
    """An import of voiceprep's own modules inside a function hides a dependency; one stays
    only where it keeps `voiceprep --help` fast, and says by how much (docs/architecture.md)."""
    late = []
    for module, (path, tree) in trees().items():
        source = path.read_text().splitlines()
        for node in code_figures.function_level(tree):
            if code_figures.own_imports(module, node, set()):
                late.append((f"{path.name}:{node.lineno}", source[node.lineno - 1]))
    unexplained = [(where, line) for where, line in late if "# deferred: +" not in line]
    assert unexplained == []
    assert len(late) <= 25
