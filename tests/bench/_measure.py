"""Run a command; print its wall seconds, peak RSS (KiB) and CPU seconds (user + system,
its children included) as one line: `SECONDS KIB CPU`.

Why a separate small process: Linux carries a process's peak RSS across exec, so a child
forked from the (large) benchmark process would report at least the benchmark's own
RSS. Forked from this small interpreter, RUSAGE_CHILDREN is the command's own peak.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def main() -> None:
    start = time.perf_counter()
    code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if code != 0:
        sys.exit(code)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{elapsed:.6f} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.6f}")


if __name__ == "__main__":
    main()
