"""push and pull: what is missing on one side, moved on worker threads, reported."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voiceprep.errors import CacheCorruptError, CacheError, RemoteError
from voiceprep.remote.store import Remote, check_object, open_remote, reason, scrub

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

DEFAULT_JOBS = 8


@dataclass
class TransferReport:
    """What a push or pull did (or, with dry_run, would do)."""

    direction: str  # "push" | "pull"
    remote: str
    moved: list[str] = field(default_factory=list)  # keys pushed / pulled (or to move)
    already: int = 0  # entries both sides hold (or a racing pusher stored first)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # pull: wanted keys the remote lacks
    stopped: str | None = None  # the remote failed: the transfer stopped early
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def as_dict(self) -> dict[str, Any]:
        moved = "would_push" if self.direction == "push" else "would_pull"
        if not self.dry_run:
            moved = "pushed" if self.direction == "push" else "pulled"
        return {
            "direction": self.direction,
            "remote": scrub(self.remote),
            "dry_run": self.dry_run,
            moved: len(self.moved),
            "already_there": self.already,
            "failed": len(self.failed),
            "bytes": self.bytes,
            "missing_on_remote": len(self.missing),
            "keys": list(self.moved),
            "failures": [{"key": k, "reason": r} for k, r in self.failed],
            "stopped": self.stopped,
        }


Progress = Callable[[int, int], None]  # (entries done, bytes done so far)


def push(
    cache: AudioCache,
    remote: str | Remote,
    *,
    keys: Iterable[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    dry_run: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Progress | None = None,
) -> TransferReport:
    """Upload the entries (of `keys`, default all) the remote lacks."""
    store = open_remote(remote)
    local = cache.keys()
    wanted = local if keys is None else local & set(keys)
    present = store.listing()
    todo = sorted(wanted - present.keys())
    report = TransferReport("push", store.url, already=len(wanted) - len(todo), dry_run=dry_run)
    if dry_run:
        report.moved = todo
        return report
    if on_start:
        on_start(len(todo), 0)

    def upload(key: str) -> tuple[bool, int] | None:
        try:
            data = cache.entry_bytes(key)
        except KeyError:  # evicted since it was listed: nothing to push
            return None
        return store.write(key, data), len(data)

    for key, outcome in _run(todo, upload, jobs, report, on_progress):
        if outcome is None:
            continue
        written, size = outcome
        if written:
            report.moved.append(key)
            report.bytes += size
        else:
            report.already += 1
    return report


def pull(
    cache: AudioCache,
    remote: str | Remote,
    *,
    keys: Iterable[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    dry_run: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Progress | None = None,
) -> TransferReport:
    """Download the entries (of `keys`, default all the remote has) the cache lacks; each
    one is checked before it is imported, and a bad one is reported and skipped."""
    store = open_remote(remote)
    present = store.listing()
    local = cache.keys()
    wanted = set(present) if keys is None else set(keys)
    report = TransferReport("pull", store.url, dry_run=dry_run)
    report.missing = sorted(wanted - local - present.keys())
    todo = sorted((wanted & present.keys()) - local)
    report.already = len(wanted & local)
    if dry_run:
        report.moved = todo
        report.bytes = sum(present[k] for k in todo)
        return report
    if on_start:
        on_start(len(todo), sum(present[k] for k in todo))

    def download(key: str) -> tuple[bool, int]:
        # All on the worker: the cache is thread-safe, and its fsyncs then overlap too.
        data = store.read(key)
        if data is None:
            raise CacheCorruptError("gone from the remote since it was listed")
        check_object(key, data)
        return cache.import_entry(data) is not None, len(data)

    for key, (imported, size) in _run(todo, download, jobs, report, on_progress):
        if imported:
            report.moved.append(key)
        else:
            report.already += 1  # another process imported it meanwhile
        report.bytes += size
    return report


def _run(
    keys: list[str],
    work: Callable[[str], Any],
    jobs: int,
    report: TransferReport,
    on_progress: Progress | None,
) -> Iterator[tuple[str, Any]]:
    """`work(key) -> (moved, size)` on `jobs` threads, results yielded as they finish. A bad
    entry fails that key; a failing remote or local cache (unreachable, access denied,
    read-only, full) stops the transfer, what is done stays done, and `report.stopped` says
    why."""
    done = 0
    moved_bytes = 0
    window = max(1, jobs) * 4  # bounded: results wait in memory only this deep
    pending: dict[Future[Any], str] = {}
    queue = iter(keys)
    with ThreadPoolExecutor(
        max_workers=max(1, jobs), thread_name_prefix="voiceprep-remote"
    ) as pool:
        try:
            while True:
                while report.stopped is None and len(pending) < window:
                    key = next(queue, None)
                    if key is None:
                        break
                    pending[pool.submit(work, key)] = key
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    key = pending.pop(future)
                    try:
                        result = future.result()
                    except CacheCorruptError as exc:
                        report.failed.append((key, reason(exc)))
                        continue
                    except RemoteError as exc:
                        report.stopped = report.stopped or str(exc)
                        continue
                    except (CacheError, OSError) as exc:
                        report.stopped = report.stopped or f"the local cache: {reason(exc)}"
                        continue
                    yield key, result
                    done += 1
                    if result is not None:
                        moved_bytes += result[1]
                    if on_progress:
                        on_progress(done, moved_bytes)
        finally:
            for future in pending:
                future.cancel()
