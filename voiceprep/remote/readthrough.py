"""A remote consulted where prompts are used (warm, TTSAudioCache, serve)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voiceprep.errors import CacheCorruptError, CacheError, RemoteError
from voiceprep.remote.store import Remote, reason

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

log = logging.getLogger("voiceprep.remote")
# `close()` waits this long for the pushes and imports in flight (each is bounded by the
# remote's own timeouts; one still running after it finishes on its own).
CLOSE_WAIT_SECONDS = 30.0


class ReadThrough:
    """A remote consulted on a local miss, that degrades to nothing when it fails.

    The first failure disables it for the life of the object and is reported once through
    `on_warning` (default: the `voiceprep.remote` logger): a remote that is down never fails
    an agent, it only stops helping.

    Pushes and imports run in threads of their own, not cancelled with their caller: one
    begun completes, and `close()` waits for them (bounded), so an entry synthesized just
    before shutdown still reaches the remote.
    """

    def __init__(
        self,
        remote: str | Remote,
        *,
        push: bool = False,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.push_enabled = push
        self._warn = on_warning or _log_warning
        self._remote: Remote | None = None
        self._url = remote.url if isinstance(remote, Remote) else str(remote)
        self.disabled: str | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._jobs: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        try:
            if isinstance(remote, Remote):
                self._remote = remote
            else:
                # Consulted while an agent or a client waits: fail in seconds.
                self._remote = Remote(remote, fail_fast=True)
        except RemoteError as exc:
            self._disable(str(exc))

    def _disable(self, why: str) -> None:
        if self.disabled is None:
            self.disabled = why
            self._warn(f"remote cache disabled, continuing with the local cache only: {why}")

    def get(self, key: str) -> tuple[bytes, bytes] | None:
        """(entry file, PCM) of `key` from the remote, or None (missing, bad, or down)."""
        if self._remote is None or self.disabled is not None:
            return None
        try:
            return self._remote.fetch_entry(key)
        except CacheCorruptError as exc:
            _log_warning(f"ignoring remote entry: {reason(exc)}")
            return None
        except RemoteError as exc:
            self._disable(str(exc))
            return None

    def put(self, key: str, data: bytes) -> bool:
        if not self.push_enabled or self._remote is None or self.disabled is not None:
            return False
        try:
            return self._remote.write(key, data)
        except RemoteError as exc:
            self._disable(str(exc))
            return False

    async def fetch(self, key: str, disk: AudioCache | None) -> bytes | None:
        """On a local miss: `key`'s PCM from the remote (imported into `disk` when given), or
        None. Off the event loop; never raises for the remote's sake."""
        if self.disabled is not None:
            return None
        found = await asyncio.to_thread(self.get, key)
        if found is None:
            return None
        data, pcm = found
        if disk is not None:
            await self._job(_keep, disk, key, data)
        return pcm

    async def publish(self, key: str, disk: AudioCache | None) -> None:
        """After a synthesis stored in `disk`: push its entry, when pushing is on."""
        if not self.push_enabled or disk is None or self.disabled is not None:
            return
        await self._job(self._publish, key, disk)

    def _publish(self, key: str, disk: AudioCache) -> None:
        try:
            data = disk.entry_bytes(key)
        except (KeyError, CacheError, OSError):
            return  # not stored (read-only or full disk): nothing to push
        self.put(key, data)

    def _job(self, fn: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        """`fn(*args)` in a thread `close()` waits for; awaiting it may be cancelled, the
        job itself is not."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="voiceprep-remote"
                )
            job = self._pool.submit(fn, *args)
            self._jobs.add(job)
        job.add_done_callback(self._forget)
        return asyncio.shield(asyncio.wrap_future(job))

    def _forget(self, job: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._jobs.discard(job)

    def close(self, timeout: float = CLOSE_WAIT_SECONDS) -> None:
        """Wait up to `timeout` seconds for the pushes and imports in flight."""
        with self._lock:
            jobs, pool, self._pool = set(self._jobs), self._pool, None
        if pool is None:
            return
        _, late = concurrent.futures.wait(jobs, timeout=timeout)
        pool.shutdown(wait=False)
        if late:
            self._warn(
                f"{len(late)} remote transfer(s) still running after {timeout:g} s at close; "
                "left to finish on their own"
            )


def read_through(
    remote: str | Remote | ReadThrough | None, *, push: bool = False
) -> ReadThrough | None:
    """What `TTSAudioCache(remote=…, push_remote=…)` holds."""
    if remote is None or isinstance(remote, ReadThrough):
        return remote
    return ReadThrough(remote, push=push)


def _keep(disk: AudioCache, key: str, data: bytes) -> None:
    """Import a remote entry into `disk`, best effort as the disk tier is. A read-only
    cache (an image layer) is not an error: the entry is then served from memory only."""
    try:
        if not disk.read_only:
            disk.import_entry(data)
    except (CacheError, OSError) as exc:
        _log_warning(f"could not store remote entry {key[:12]}: {reason(exc)}")


def _log_warning(message: str) -> None:
    log.warning("%s", message)
