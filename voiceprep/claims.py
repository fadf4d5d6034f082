"""Claims: the lease the fill path (voiceprep.fill) takes on a key before synthesizing it,
so that processes sharing a cache directory pay for a phrase once (voiceprep.cache.leases).

The one home of the lease TTL (`lease_ttl`) and the poll interval (`LEASE_POLL_SECONDS`).
Claims and releases are write transactions, run off the event loop in the filler's lease
thread; `claim_many` claims several keys in one (warm claims the next phrases while its
requests run), and releases queued meanwhile go together.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceprep.errors import CacheError

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache, Lease

log = logging.getLogger(__name__)

LEASE_POLL_SECONDS = 0.05  # how often a key another process holds is looked at again
DEFAULT_ATTEMPT_SECONDS = 60.0  # what one attempt is allowed when no timeout is given


def lease_ttl(timeout: float | None, retries: int) -> float:
    """How long a claim lasts: every attempt a synthesis may make, plus a margin."""
    attempt = timeout if timeout is not None else DEFAULT_ATTEMPT_SECONDS
    return attempt * (retries + 1) + 30.0


@dataclass(frozen=True)
class Claim:
    """What claiming a key gave: our lease to synthesize under (None: no sharing, e.g. a
    read-only cache), or the audio another process stored meanwhile, or `held`: another
    process is synthesizing it right now (only when the caller would rather not wait)."""

    lease: Lease | None = None
    pcm: bytes | None = None
    held: bool = False


class Claims:
    """The claims of one filler on its cache directory (None: memory only, no sharing).

    `read` is the filler's read of an entry (None when absent or unreadable); `pool` gives
    the filler's lease thread (CacheError once the filler is closed).
    """

    def __init__(
        self,
        disk: AudioCache | None,
        *,
        ttl: float,
        read: Callable[[str], bytes | None],
        pool: Callable[[], ThreadPoolExecutor],
    ) -> None:
        self.disk, self.ttl, self.read, self.pool = disk, ttl, read, pool
        self._unreleased: deque[Lease] = deque()  # taken by the lease thread, in batches

    async def claim(self, key: str, *, wait: bool) -> Claim:
        """Claim `key` before synthesizing it.

        Another process holding it is waited for (`wait`; bounded by the lease's ttl, then
        we synthesize regardless) or reported as `held`. A cache that cannot lease
        (read-only, full) just means no sharing.
        """
        disk = self.disk
        deadline = asyncio.get_running_loop().time() + self.ttl
        while True:
            (claim,) = await self.claim_many([key])
            if not claim.held or not wait:
                return claim
            assert disk is not None
            try:
                while disk.lease_holder(key) is not None and not _past(deadline):
                    await asyncio.sleep(LEASE_POLL_SECONDS)
                pcm = self.read(key)
            except CacheError as exc:
                return self._unshared(exc)[0]
            if pcm is not None or _past(deadline):
                return Claim(pcm=pcm)

    async def claim_many(self, keys: Sequence[str]) -> list[Claim]:
        """`claim` of each key without waiting, in one write transaction."""
        disk = self.disk
        if disk is None:
            return [Claim() for _ in keys]
        try:
            if disk.read_only:
                return [Claim() for _ in keys]
            job = self.pool().submit(self._claim_many, disk, keys)
            return await asyncio.shield(asyncio.wrap_future(job))
        except CacheError as exc:
            return self._unshared(exc, len(keys))

    def _claim_many(self, disk: AudioCache, keys: Sequence[str]) -> list[Claim]:
        leases = disk.claim_many(keys, ttl=self.ttl)
        claims = []
        try:
            for key, lease in zip(keys, leases, strict=True):
                if lease is None:
                    claims.append(Claim(held=True))
                    continue
                pcm = self.read(key)  # stored just before our claim?
                if pcm is not None:
                    disk.release_all([lease])
                claims.append(Claim(pcm=pcm) if pcm is not None else Claim(lease=lease))
        except BaseException:
            disk.release_all(lease for lease in leases if lease is not None)
            raise
        return claims

    def _unshared(self, exc: CacheError, count: int = 1) -> list[Claim]:
        assert self.disk is not None
        log.warning("cache %s cannot share work (%s); synthesizing", self.disk.directory, exc)
        return [Claim() for _ in range(count)]

    def held_elsewhere(self, key: str) -> bool:
        """True while another process holds a live lease on `key`."""
        return self.disk is not None and self.disk.lease_holder(key) is not None

    def release(self, lease: Lease | None) -> None:
        """Give a lease up, off the event loop (not once the filler is closed)."""
        if lease is None:
            return
        try:
            pool = self.pool()
        except CacheError:
            return
        self._unreleased.append(lease)
        pool.submit(self._release_queued)

    def _release_queued(self) -> None:
        # The queued job keeps this object, so its disk, alive; a cache collected meanwhile
        # would close its index under this write.
        leases = []
        while self._unreleased:
            leases.append(self._unreleased.popleft())
        if leases and self.disk is not None:
            self.disk.release_all(leases)


def _past(deadline: float) -> bool:
    return asyncio.get_running_loop().time() >= deadline
