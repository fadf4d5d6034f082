"""The write path shared by AudioCache and maintenance's merge: write an entry file, then
commit its row, evicting down to the limits in the same transaction (files go after the
commit). Works on an Index and its files; the policy's order is `index.POLICY`.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from voiceprep.cache import faults
from voiceprep.cache.entries import encode_entry, entry_name, unlink_quietly
from voiceprep.cache.index import Index, insert_row
from voiceprep.cache.records import CacheEntry, EntryMeta
from voiceprep.cache.schema import POLICY
from voiceprep.cache.sqlite import Transaction, delete_rows, select_rows
from voiceprep.errors import CacheError

_PUBLISH_ATTEMPTS = 3


class Limits(NamedTuple):
    """A cache's size limits (None: no limit), enforced after every write."""

    max_entries: int | None = None
    max_bytes: int | None = None


def store_entry(
    index: Index,
    meta: EntryMeta,
    pcm: bytes,
    *,
    limits: Limits,
    last_used: float,
    hits: int = 0,
    blob: bytes | None = None,
    replace: bool = True,
) -> tuple[CacheEntry, bool]:
    """Write the file, then commit its row: (the entry, whether it was stored).

    With `replace` false, a key already present is left alone (False).
    """
    index.writable()  # fail before writing any file
    blob = encode_entry(pcm, meta) if blob is None else blob
    for _ in range(_PUBLISH_ATTEMPTS):
        relative = entry_name(meta.key)
        entry = CacheEntry.from_meta(
            meta,
            path=index.directory / relative,
            size=len(blob),
            pcm_bytes=len(pcm),
            last_used=last_used,
            hits=hits,
        )
        index.files.write(relative, meta.key, blob)
        faults.reached("renamed")
        published = publish(index, [entry], limits=limits, replace=replace)[0]
        if published is not None:
            return entry, published
    raise CacheError(
        f"{index.directory}: a concurrent `verify --repair` kept removing the new file; "
        "nothing was stored"
    )


def publish(
    index: Index, entries: Sequence[CacheEntry], *, limits: Limits, replace: bool
) -> list[bool | None]:
    """Commit the rows of files already in place, in one transaction.

    Per entry: True when committed, False when `replace` is false and the key was
    already there (the new file is removed), None when the file vanished before the
    commit.
    """
    outcomes: list[bool | None] = []
    with index.write() as (conn, tx):
        for entry in entries:
            tx.on_rollback(functools.partial(unlink_quietly, entry.path))
        keys = [entry.key for entry in entries]
        old = {row["key"]: row["file"] for row in select_rows(conn, "key, file", keys)}
        for entry in entries:
            relative = entry.path.relative_to(index.directory).as_posix()
            if not entry.path.exists():
                # verify(repair=True) took it for an orphan before our row existed;
                # it deletes orphans under this same lock, so checking here is enough.
                outcomes.append(None)
                continue
            previous = old.get(entry.key)
            if previous is not None:
                if not replace:
                    tx.delete_after_commit(entry.key, relative)
                    outcomes.append(False)
                    continue
                conn.execute("DELETE FROM entries WHERE key = ?", (entry.key,))
                if previous != relative:  # a repair may have indexed our file already
                    tx.delete_after_commit(entry.key, previous)
            insert_row(conn, entry, relative)
            old[entry.key] = relative
            outcomes.append(True)
        evict(index, conn, tx, limits)
    return outcomes


def evict(
    index: Index, conn: sqlite3.Connection, tx: Transaction, limits: Limits
) -> list[sqlite3.Row]:
    """Delete rows in the policy's order until both limits hold; returns their rows.

    Walks the policy's SQL index from the first to go, so the cost is the number of
    entries evicted, not the number cached. Files go after the commit.
    """
    max_entries, max_bytes = limits
    if max_entries is None and max_bytes is None:
        return []
    count, size = conn.execute("SELECT count, size FROM totals WHERE id = 0").fetchone()

    def over() -> bool:
        return (max_entries is not None and count > max_entries) or (
            max_bytes is not None and size > max_bytes
        )

    if not over():
        return []
    victims: list[sqlite3.Row] = []
    cursor = conn.execute(f"SELECT {index.columns} FROM entries {POLICY['cull']}")
    for row in cursor:
        if not over():
            break
        victims.append(row)
        count -= 1
        size -= row["size"]
    cursor.close()
    drop(conn, tx, victims)
    return victims


def drop(conn: sqlite3.Connection, tx: Transaction, rows: Sequence[sqlite3.Row]) -> None:
    """Delete `rows`; their files go after the commit."""
    delete_rows(conn, [row["key"] for row in rows])
    for row in rows:
        tx.delete_after_commit(row["key"], row["file"])
