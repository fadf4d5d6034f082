"""Named points in the write path where a test may stop a writer dead.

The cache calls `reached(name)` at each point; it does nothing unless a test process
(tests/cache_worker.py) installs a hook with `install`, e.g. one that SIGKILLs the
process the third time `"renamed"` is reached. Crash tests then hit exactly the instant
they mean to, instead of killing at a random moment.

Points, in the order a put reaches them:

- `temp-written`: the entry's temporary file is written and fsynced, not yet renamed.
- `renamed`: the entry file has its final name; its row is not committed.
- `doomed`: a file whose row the transaction drops (replaced, evicted) is renamed
  `<name>.del`; not committed yet.
- `committed`: the row is committed; files it replaced are not yet deleted.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS = ("temp-written", "renamed", "doomed", "committed")
_hook: Callable[[str], object] | None = None


def reached(point: str) -> None:
    if _hook is not None:
        _hook(point)


def install(hook: Callable[[str], object] | None) -> None:
    """Call `hook(point)` at every named point (None: stop)."""
    global _hook
    _hook = hook
