"""AudioCache: the on-disk store that warm, say, `cache …`, serve and TTSAudioCache share.

Layout of a cache directory::

    index.sqlite                     the index (SQLite, WAL mode; -wal/-shm beside it)
    audio/ab/<key>.<id>.wav          one self-describing WAV (s16le) per entry, sharded by
                                     the key's first two hex digits; <id> =
                                     <host>-<pid>-<random> names the writer, unique per write
    audio/ab/<key>.<id>.tmp          a write in progress (or the leftover of a crash)

The package, by dependency (each module imports only those listed above it):

- `records`     CacheEntry (`from_meta`, `.meta`), EntryMeta, CacheStats and the reports
- `entries`     entry files: names, atomic writes, checked reads, the metadata chunk
                (`read_entry`), scanning; never follows a path outside the cache
- `sqlite`      SQLite errors made clear, "locked" retried, transactions that delete
                files after they commit, statements over many keys
- `index`       the index: connections, fork, read-only media, schema and migrations,
                the eviction policy (EVICTION_POLICY), rows <-> records and inserts
- `leases`      cross-process claims of a key before synthesizing it
- `writes`      write a file then commit its row, evicting to the limits
- `maintenance` verify, repair, rebuild, merge: on an Index and its files
- `store`       AudioCache, the public face: get, put, remove, prune, import/export
"""

from __future__ import annotations

from voiceprep.cache.entries import (
    AUDIO_DIR,
    HOST_TAG,
    ORPHAN_GRACE_SECONDS,
    STALE_TEMP_SECONDS,
    read_entry,
)
from voiceprep.cache.leases import Lease, LeaseInfo
from voiceprep.cache.records import (
    CacheEntry,
    CacheStats,
    EntryMeta,
    MergeReport,
    RebuildReport,
    VerifyReport,
)
from voiceprep.cache.schema import SCHEMA_VERSION
from voiceprep.cache.sqlite import INDEX_NAME
from voiceprep.cache.store import AudioCache

__all__ = [
    "AUDIO_DIR",
    "HOST_TAG",
    "INDEX_NAME",
    "ORPHAN_GRACE_SECONDS",
    "SCHEMA_VERSION",
    "STALE_TEMP_SECONDS",
    "AudioCache",
    "CacheEntry",
    "CacheStats",
    "EntryMeta",
    "Lease",
    "LeaseInfo",
    "MergeReport",
    "RebuildReport",
    "VerifyReport",
    "read_entry",
]
