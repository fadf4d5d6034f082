"""Start-up: `voiceprep --version` vs `python -c "import typer"` (target ≤ 1.3×).

    python tests/bench/bench_startup.py [--runs 21] [--no-compile]

Runs both commands alternately, `--runs` times each after two warm-up runs, and prints
the medians and their ratio. Also reports whether the CLI path imported PyAV, httpx or
piper (it must not).

First it compiles voiceprep's bytecode (`compileall`), as `pip install` does for an
installed package: an editable install run with PYTHONDONTWRITEBYTECODE=1 (as on the
project machine) never gets .pyc files and compiles every voiceprep module at each start,
while typer, the reference, is installed with its bytecode. `--no-compile` skips it.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("av", "httpx", "piper", "numpy", "onnxruntime")


def voiceprep_command() -> list[str]:
    """The installed console script beside this Python, else `python -m voiceprep`."""
    script = Path(sys.executable).with_name("voiceprep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "voiceprep"]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_modules_loaded() -> list[str]:
    """Heavy top-level packages in sys.modules after `voiceprep --version` runs in-process."""
    probe = (
        "import sys\n"
        "from voiceprep.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        f"print('HEAVY=' + ','.join(sorted(loaded & set({HEAVY!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    marked = [line for line in result.stdout.splitlines() if line.startswith("HEAVY=")]
    return [name for name in marked[-1].removeprefix("HEAVY=").split(",") if name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-compile", action="store_true", help="do not write .pyc files")
    args = parser.parse_args()
    if not args.no_compile:
        import voiceprep

        compileall.compile_dir(Path(voiceprep.__file__).parent, quiet=1)

    ours_cmd = [*voiceprep_command(), "--version"]
    ref_cmd = [sys.executable, "-c", "import typer"]
    for _ in range(2):
        timed(ours_cmd)
        timed(ref_cmd)
    ours, ref = [], []
    for i in range(args.runs):
        pair = [(ours, ours_cmd), (ref, ref_cmd)]
        for times, command in pair if i % 2 == 0 else reversed(pair):
            times.append(timed(command))

    ours_median, ref_median = statistics.median(ours), statistics.median(ref)
    name = " ".join(Path(part).name for part in ours_cmd)
    print(f"{name}: median {ours_median * 1000:.1f} ms")
    print(f'python -c "import typer": median {ref_median * 1000:.1f} ms ({args.runs} runs each)')
    print(f"ratio: {ours_median / ref_median:.2f}× (target ≤ 1.3×)")
    loaded = heavy_modules_loaded()
    print(f"heavy modules imported by --version: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
