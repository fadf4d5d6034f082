"""What each deferred import of a voiceprep module saves `voiceprep --help` (issue #24).

    python tests/bench/bench_imports.py [--runs 9] [--instructions]

For every module that some voiceprep function imports (the `# deferred: +N % on --help`
imports that tests/bench/code_figures.py lists), runs
`python -X importtime -c "import voiceprep.cli; import MODULE"` and prints MODULE's
cumulative import time as a share of importing the CLI in the same process: what that
import would add to every start if it were at its module's top. Medians of `--runs`
runs; ratios rather than times, so a loaded machine still gives comparable figures.
`--instructions` counts instructions instead (valgrind's callgrind, PYTHONHASHSEED=0:
the same figure on every run, however loaded the machine; ~10 s a run): MODULE's share
is then (instructions of both imports - instructions of the CLI's) / the CLI's.
Compiles voiceprep's bytecode first, as `pip install` does.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import os
import re
import statistics
import subprocess
import sys

import code_figures

_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$")


def deferred_modules() -> dict[str, list[str]]:
    """module → the places (file:line) that import it inside a function."""
    found: dict[str, list[str]] = {}
    known = {code_figures.module_name(p) for p in code_figures.ROOT.rglob("*.py")}
    for path in sorted(code_figures.ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module = code_figures.module_name(path)
        for node in code_figures.function_level(tree):
            for target in code_figures.own_imports(module, node, known):
                where = f"{path.relative_to(code_figures.ROOT.parent)}:{node.lineno}"
                found.setdefault(target, []).append(where)
    return found


def share(module: str) -> float:
    """MODULE's import time over the CLI's, measured in one process."""
    code = f"import voiceprep.cli; import {module}"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        check=True,
        capture_output=True,
        text=True,
    )
    times = {}
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            times[match.group(2)] = int(match.group(1))
    return times.get(module, 0) / times["voiceprep.cli"]


def instructions(code: str) -> int:
    """Instructions `python -c code` executes (valgrind's callgrind)."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        + [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--instructions", action="store_true", help="count with valgrind")
    args = parser.parse_args()
    compileall.compile_dir(code_figures.ROOT, quiet=1)
    rows = []
    cli = instructions("import voiceprep.cli") if args.instructions else 0
    for module, places in deferred_modules().items():
        if args.instructions:
            median = instructions(f"import voiceprep.cli; import {module}") / cli - 1
        else:
            median = statistics.median(share(module) for _ in range(args.runs))
        rows.append((median, module, places))
    for median, module, places in sorted(rows, reverse=True):
        print(f"+{median * 100:5.1f} %  {module:28s} {', '.join(places)}")


if __name__ == "__main__":
    main()
