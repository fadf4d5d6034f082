"""Leases: one writer at a time synthesizes a key, across processes and hosts.

Before synthesizing a missing key, a writer claims it: a row in the index's `leases`
table with the writer's identity (`<host>-<pid>-<random>`) and an expiry. Others that
find a live lease wait for the entry instead of paying for the same synthesis. A lease
lapses when it expires, or at once when its writer's process is gone from this host
(kill -9), so a crashed writer never blocks anyone for long. Correctness never depends
on a lease: a writer that waited too long, or a filesystem whose locking lies, only
costs a duplicate synthesis; the entry itself is still published atomically.

    lease = cache.claim(key, ttl=120)
    if lease is None:                      # someone else is synthesizing it
        cache.wait_for(key, timeout=120)   # then read it (or claim again if it lapsed)
    else:
        with lease:                        # released on exit, even on failure
            if not cache.contains(key):    # it may have landed just before the claim
                cache.put(key, synthesize(...), ...)
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceprep.cache.entries import check_key, parse_writer, writer_gone, writer_id
from voiceprep.errors import CacheError

if TYPE_CHECKING:
    from voiceprep.cache.index import Index

DEFAULT_TTL = 120.0


@dataclass(frozen=True)
class LeaseInfo:
    key: str
    owner: str  # <host>-<pid>-<random>
    expires: float  # unix time

    def live(self, now: float | None = None) -> bool:
        """Not expired, and its writer is not known to be dead."""
        if self.expires <= (time.time() if now is None else now):
            return False
        return not writer_gone(parse_writer(self.owner))


class Lease:
    """A claim on one key; release it (or leave the `with` block) when the entry is stored."""

    def __init__(self, index: Index, key: str, owner: str, expires: float, ttl: float) -> None:
        self.index = index  # the cache index it was taken on
        self.key = key
        self.owner = owner
        self.expires = expires
        self.ttl = ttl
        self.released = False

    def renew(self) -> bool:
        """Push the expiry `ttl` seconds ahead; False if the lease was lost meanwhile."""
        expires = time.time() + self.ttl
        with self.index.write() as (conn, _):
            cursor = conn.execute(
                "UPDATE leases SET expires = ? WHERE key = ? AND owner = ?",
                (expires, self.key, self.owner),
            )
            held = cursor.rowcount == 1
        if held:
            self.expires = expires
        return held

    def release(self) -> None:
        """Give the key up (idempotent; never raises for a cache that went away)."""
        release_all([self])

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.key[:12]}, owner={self.owner!r})"


def claim(index: Index, keys: Sequence[str], *, ttl: float = DEFAULT_TTL) -> list[Lease | None]:
    """Take the lease on each of `keys` unless another live writer holds it (then None),
    all in one write transaction."""
    for key in keys:
        check_key(key)
    if ttl <= 0:
        raise CacheError(f"a lease needs a positive ttl, not {ttl}")
    owner = f"{writer_id()}-{uuid.uuid4().hex[:8]}"
    leases: list[Lease | None] = []
    with index.write() as (conn, _):
        now = time.time()
        for key in keys:
            sql = "SELECT owner, expires FROM leases WHERE key = ?"
            row = conn.execute(sql, (key,)).fetchone()
            if row is not None and LeaseInfo(key, row["owner"], row["expires"]).live(now):
                leases.append(None)
                continue
            conn.execute(
                "INSERT OR REPLACE INTO leases (key, owner, expires) VALUES (?, ?, ?)",
                (key, owner, now + ttl),
            )
            leases.append(Lease(index, key, owner, now + ttl, ttl))
    return leases


def release_all(leases: Iterable[Lease]) -> None:
    """Give the keys of `leases` up, one write transaction per cache (idempotent; never
    raises for a cache that went away)."""
    by_index: dict[int, tuple[Index, list[tuple[str, str]]]] = {}
    for lease in leases:
        if not lease.released:
            lease.released = True
            by_index.setdefault(id(lease.index), (lease.index, []))[1].append(
                (lease.key, lease.owner)
            )
    for index, rows in by_index.values():
        with contextlib.suppress(CacheError), index.write() as (conn, _):
            conn.executemany("DELETE FROM leases WHERE key = ? AND owner = ?", rows)


def holder(index: Index, key: str) -> LeaseInfo | None:
    """The live lease on `key`, if any."""
    if index.reader() is None or index.version < 2:
        return None
    rows = index.query("SELECT key, owner, expires FROM leases WHERE key = ?", (key,))
    if not rows:
        return None
    info = LeaseInfo(rows[0]["key"], rows[0]["owner"], rows[0]["expires"])
    return info if info.live() else None


def wait_for(index: Index, key: str, *, timeout: float, poll: float = 0.05) -> bool:
    """Block until `key` is cached or no live lease holds it (bounded); whether cached."""
    deadline = time.monotonic() + timeout
    while True:
        if index.contains(key):
            return True
        if holder(index, key) is None:
            return index.contains(key)
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def expire_lapsed(index: Index) -> int:
    """Delete lapsed leases (expired, or of dead writers on this host); how many."""
    if index.version < 2:
        return 0
    rows = index.query("SELECT key, owner, expires FROM leases")
    lapsed = [row for row in rows if not LeaseInfo(row[0], row[1], row[2]).live()]
    if not lapsed:
        return 0
    with index.write() as (conn, _):
        for row in lapsed:
            conn.execute(
                "DELETE FROM leases WHERE key = ? AND owner = ? AND expires = ?",
                (row[0], row[1], row[2]),
            )
    return len(lapsed)
