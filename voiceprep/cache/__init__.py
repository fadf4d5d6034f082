"""AudioCache: the on-disk store that warm, say, `cache …`, serve and TTSAudioCache share.

Layout of a cache directory::

    index.sqlite                     the index (SQLite, WAL mode; -wal/-shm beside it)
    audio/ab/<key>.<id>.wav          one self-describing WAV (s16le) per entry, sharded by
                                     the key's first two hex digits; <id> =
                                     <host>-<pid>-<random> names the writer, unique per write
    audio/ab/<key>.<id>.tmp          a write in progress (or the leftover of a crash)

The package, one job per module:

- `records`     CacheEntry, EntryMeta, CacheStats, VerifyReport, MergeReport, RebuildReport
- `entries`     entry files: names, atomic writes, checked reads, the metadata chunk
                (`read_entry`), scanning; never follows a path outside the cache
- `index`       SQLite: connections, fork, read-only media, schema and migrations,
                transactions that delete files after they commit, error classification
- `store`       AudioCache: get, put, evict, remove, prune, import/export of entry files
- `leases`      cross-process claims of a key before synthesizing it
- `maintenance` verify, repair, rebuild, merge
"""

from __future__ import annotations

from voiceprep.cache.entries import (
    AUDIO_DIR,
    HOST_TAG,
    ORPHAN_GRACE_SECONDS,
    STALE_TEMP_SECONDS,
    read_entry,
)
from voiceprep.cache.index import INDEX_NAME, SCHEMA_VERSION
from voiceprep.cache.leases import Lease, LeaseInfo
from voiceprep.cache.records import (
    CacheEntry,
    CacheStats,
    EntryMeta,
    MergeReport,
    RebuildReport,
    VerifyReport,
)
from voiceprep.cache.store import AudioCache


__all__ = [
    "AUDIO_DIR",
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
