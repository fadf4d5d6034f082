"""push and pull: what is missing on one side, moved concurrently, reported."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voiceprep import defaults
from voiceprep.errors import CacheCorruptError, CacheError, RemoteError
from voiceprep.remote.store import Remote, concurrently, open_remote, reason
from voiceprep.secrets import scrub

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

DEFAULT_JOBS = defaults.REMOTE_JOBS


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

    done = 0
    with contextlib.closing(concurrently(todo, upload, jobs)) as batches:
        for batch in batches:
            for key, outcome in batch:
                if outcome is None or not _settled(report, key, outcome):
                    continue  # evicted since it was listed, or failed (in the report)
                written, size = outcome
                if written:
                    report.moved.append(key)
                    report.bytes += size
                else:
                    report.already += 1
            if report.stopped is not None:
                break
            done += len(batch)
            if on_progress:
                on_progress(done, report.bytes)
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
    done = 0
    with contextlib.closing(store.read_many(todo, jobs=jobs)) as batches:
        for batch in batches:
            arrived = [(key, data) for key, data in batch if _settled(report, key, _gone(data))]
            try:
                # One transaction per batch: fewer lock hand-offs are most of the speed.
                imported = cache.import_entries(
                    [data for _, data in arrived], keys=[key for key, _ in arrived]
                )
            except (CacheError, OSError) as exc:
                report.stopped = report.stopped or f"the local cache: {reason(exc)}"
                break
            for (key, data), outcome in zip(arrived, imported, strict=True):
                if isinstance(outcome, CacheCorruptError):
                    report.failed.append((key, reason(outcome)))
                    continue
                if outcome is None:
                    report.already += 1  # another process imported it meanwhile
                else:
                    report.moved.append(key)
                report.bytes += len(data)
            if report.stopped is not None:
                break
            done += len(batch)
            if on_progress:
                on_progress(done, report.bytes)
    return report


def _gone(data: bytes | None | Exception) -> bytes | Exception:
    return CacheCorruptError("gone from the remote since it was listed") if data is None else data


def _settled(report: TransferReport, key: str, outcome: Any) -> bool:
    """Whether `outcome` is a result; an error goes into the report: a bad entry fails that
    key, a failing remote or local cache (unreachable, access denied, read-only, full)
    stops the transfer (what is done stays done)."""
    if isinstance(outcome, CacheCorruptError):
        report.failed.append((key, reason(outcome)))
    elif isinstance(outcome, RemoteError):
        report.stopped = report.stopped or str(outcome)
    elif isinstance(outcome, (CacheError, OSError)):
        report.stopped = report.stopped or f"the local cache: {reason(outcome)}"
    else:
        return True
    return False
